import pytest
import soundfile
import torch

from asr.data.corpora import DataNotFoundError, an4_dev_speakers, load_split


def test_an4_splits_dev_by_speaker(data_dir):
    train, dev, test = (load_split("an4", s, data_dir) for s in ("train", "dev", "test"))
    assert len(train) + len(dev) == 948 and len(test) == 130
    assert 50 <= len(dev) <= 150
    assert not {u.speaker for u in train} & {u.speaker for u in dev}  # no voice in both
    assert all(u.path.is_file() for u in train[:20] + dev[:5] + test[:5])
    assert test[0].text == "RUBOUT G M E F THREE NINE"
    # deterministic: the same speakers every time
    assert an4_dev_speakers(train + dev) == {u.speaker for u in dev}


def test_fsdd_official_split(data_dir):
    test, dev, train = (load_split("fsdd", s, data_dir) for s in ("test", "dev", "train"))
    assert (len(train), len(dev), len(test)) == (2400, 300, 300)
    assert {u.id.split("_")[2] for u in test} == {"0", "1", "2", "3", "4"}
    assert test[0].text in {"ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"}


def test_librispeech_published_layout(tmp_path, data_dir):
    """A tiny LibriSpeech tree (real AN4 audio re-encoded as FLAC) read through the published layout."""
    src = data_dir / "an4/wav/an4test_clstk/fcaw/an406-fcaw-b.wav"
    audio, rate = soundfile.read(src)
    for subset in ("train-clean-100", "dev-clean", "test-clean"):
        chapter = tmp_path / "LibriSpeech" / subset / "19" / "198"
        chapter.mkdir(parents=True)
        soundfile.write(chapter / "19-198-0000.flac", audio, rate)
        (chapter / "19-198.trans.txt").write_text("19-198-0000 RUBOUT G M E F THREE NINE\n")
    utts = load_split("librispeech", "dev", tmp_path)
    assert [(u.id, u.text, u.speaker) for u in utts] == [("19-198-0000", "RUBOUT G M E F THREE NINE", "19")]
    assert soundfile.info(utts[0].path).samplerate == 16000


def test_missing_corpus_says_how_to_get_it(tmp_path):
    with pytest.raises(DataNotFoundError) as e:
        load_split("an4", "train", tmp_path)
    assert str(e.value) == (f"an4 not found under {tmp_path}: run `asr download an4 --data-dir {tmp_path}`, or point "
                            f"--data-dir / ASR_DATA_DIR at a folder holding an4/")


def test_utterances_ctc_cannot_emit_leave_training_but_stay_in_evaluation(data_dir, tmp_path, caplog):
    from asr.data.datamodule import ASRDataModule

    # 8 kHz digits stacked 12 frames apart: 120 ms per output frame, too coarse for longer words
    data = ASRDataModule(dataset="fsdd", data_dir=str(data_dir), sample_rate=8000, n_mels=40, stack=3, stride=12,
                         max_utterances=60, cache_dir=str(tmp_path))
    with caplog.at_level("WARNING"):
        test, train = data.load("test"), data.load("train")
    assert len(test) == 60 and data.unemittable["test"]  # scored anyway: a coarse model pays in deletions
    assert f"fsdd test: {len(data.unemittable['test'])} utterance(s) kept, but CTC cannot emit" in caplog.text
    dropped = data.unemittable["train"]
    assert dropped and len(train) + len(dropped) == 60 and not {e.id for e in train.examples} & set(dropped)
    assert f"fsdd train: {len(dropped)} utterance(s) left out of training" in caplog.text and dropped[0] in caplog.text
    assert "(transcript empty or longer than their 120 ms frames allow)" in caplog.text


def test_no_speaker_is_in_two_an4_splits(data_dir):
    speakers = {s: {u.speaker for u in load_split("an4", s, data_dir)} for s in ("train", "dev", "test")}
    assert all(speakers.values())
    assert not speakers["train"] & speakers["dev"]
    assert not speakers["train"] & speakers["test"]
    assert not speakers["dev"] & speakers["test"]


def test_a_feature_cache_stands_in_for_the_audio(data_dir, tmp_path):
    """What the GPU carry relies on: transcripts plus a float16 cache, no WAV files at all."""
    import shutil

    from asr.data.datamodule import ASRDataModule

    kwargs = dict(dataset="an4", max_utterances=8, cache_dir=str(tmp_path / "cache"))
    full = ASRDataModule(data_dir=str(data_dir), cache_dtype="float16", **kwargs).load("dev")
    shutil.copytree(data_dir / "an4/etc", tmp_path / "data/an4/etc")  # no wav/ folder
    cached = ASRDataModule(data_dir=str(tmp_path / "data"), cache_dtype="float16", **kwargs).load("dev")
    assert [e.id for e in cached.examples] == [e.id for e in full.examples]
    assert all(torch.equal(a.log_mel, b.log_mel) and a.log_mel.dtype == torch.float32
               for a, b in zip(cached.examples, full.examples))
    fp32 = ASRDataModule(data_dir=str(data_dir), **kwargs).load("dev")
    assert max(float((a.log_mel - b.log_mel).abs().max()) for a, b in zip(fp32.examples, cached.examples)) < 1e-2
    sizes = sorted(p.stat().st_size for p in (tmp_path / "cache").glob("*.pt"))
    assert len(sizes) == 2 and sizes[0] < 0.6 * sizes[1]


def test_a_new_version_of_the_feature_code_never_reads_an_old_cache(data_dir, tmp_path, monkeypatch):
    import asr.data.dataset
    from asr.data.datamodule import ASRDataModule

    kwargs = dict(dataset="an4", data_dir=str(data_dir), max_utterances=4, cache_dir=str(tmp_path))
    ASRDataModule(**kwargs).load("dev")
    assert len(list(tmp_path.glob("features-*.pt"))) == 1
    monkeypatch.setattr(asr.data.dataset, "FEATURES_VERSION", asr.data.dataset.FEATURES_VERSION + 1)
    ASRDataModule(**kwargs).load("dev")
    assert len(list(tmp_path.glob("features-*.pt"))) == 2  # computed anew under a new key, not read from the old
