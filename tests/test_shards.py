"""Training streamed from shards on disk (data.storage: shards, asr/data/shards.py), through the real Trainer: every epoch a
new order drawn from (seed, epoch), each utterance at most once per epoch, augmentation from the audio in the shards,
and a resumed run continuing with the order the uninterrupted run had. (Two-process DDP: tests/test_ddp.py.)"""
import json

import pytest
import torch

from asr.cli import main
from asr.data.corpora import load_split
from asr.data.dataset import CorpusFeatures
from asr.base.errors import UserError
from asr.data.features import FeatureConfig, FeatureExtractor, feature_stats
from asr.data.shards import ShardedBatches, read_index, shard_files, shards_dir, write_shards
from asr.data.text import CharTokenizer
from helpers import librispeech_layout, train_argv
from recorders import read_batch_order


def sharded_train(run_dir, data_dir, *extra):
    return train_argv("an4_rnn", run_dir, data_dir, "--data.storage", "shards", "--data.shard_size", "8",
                      "--data.augment", "true", "--data.normalize", "global",
                      "--trainer.callbacks+=recorders.RecordBatchOrder", *extra,
                      cache_dir=run_dir.parent / "cache", utterances=40, batch_size=4, hidden_size=8, epochs=2)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
    base = tmp_path_factory.mktemp("sharded")
    log = base / "uninterrupted.jsonl"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BATCH_ORDER_LOG", str(log))
        assert main(sharded_train(base / "run", data_dir)) == 0
    (folder,) = (base / "cache").glob("shards-an4-*")
    return base, folder, read_batch_order(log)


def test_every_epoch_reads_its_shards_in_a_new_order_each_utterance_once(uninterrupted, data_dir):
    base, folder, order = uninterrupted
    index = read_index(folder)
    assert [s["utterances"] for s in index["shards"]] == [8] * 5 and index["audio"]  # the audio, for augmentation
    ids = {u.id for u in load_split("an4", "train", str(data_dir))[:40]}
    epochs = [order[(0, e)] for e in range(2)]
    for batches in epochs:
        seen = [i for batch in batches for i in batch]
        assert len(batches) == 10 and all(len(b) == 4 for b in batches)  # 40 utterances / 4 per batch
        assert len(seen) == len(set(seen)) == 40 and set(seen) == ids  # each once
    assert epochs[0] != epochs[1]
    last = torch.load(base / "run/checkpoints/last.ckpt", weights_only=True)
    assert last["global_step"] == 20
    assert last["datamodule_hyper_parameters"]["feature_stats"] == index["stats"]  # the model carries its statistics


def test_a_resumed_sharded_run_continues_with_the_uninterrupted_order(uninterrupted, data_dir, monkeypatch):
    base, _, expected = uninterrupted
    log = base / "resumed.jsonl"
    monkeypatch.setenv("BATCH_ORDER_LOG", str(log))
    run = base / "interrupted"
    assert main(sharded_train(run, data_dir, "--trainer.callbacks+=recorders.StopAfterFirstEpoch")) == 0
    assert main(sharded_train(run, data_dir, "--ckpt_path", str(run / "checkpoints/last.ckpt"))) == 0
    resumed = read_batch_order(log)
    assert [resumed[(0, e)] for e in range(2)] == [expected[(0, e)] for e in range(2)]


def test_inside_an_epoch_a_resume_skips_exactly_the_batches_trained(uninterrupted):
    _, folder, _ = uninterrupted
    sampler = ShardedBatches(folder, batch_size=4, seed=3, audio=True)
    sampler.set_epoch(1)
    whole = [[cut.id for cut, _ in batch] for batch in sampler]
    sampler.resume_at = (1, 4)
    assert [[cut.id for cut, _ in batch] for batch in sampler] == whole[4:]
    assert [[cut.id for cut, _ in batch] for batch in sampler] == whole  # once only


def test_ranks_read_disjoint_shards_and_take_equal_steps(uninterrupted):
    _, folder, _ = uninterrupted
    ranks = [ShardedBatches(folder, batch_size=3, seed=0, num_replicas=2, rank=r) for r in (0, 1)]
    for epoch in (0, 1):
        for r in ranks:
            r.set_epoch(epoch)
        assert not set(ranks[0].shards()) & set(ranks[1].shards())
        assert sorted(ranks[0].shards() + ranks[1].shards()) == [0, 1, 2, 3, 4]
        seen = [[cut.id for batch in r for cut, _ in batch] for r in ranks]
        assert not set(seen[0]) & set(seen[1])
        assert len(ranks[0]) == len(ranks[1]) == 16 // 3  # the rank with 2 shards of 8 sets the steps
    with pytest.raises(UserError, match="5 shard\\(s\\) for 6 processes"):
        ShardedBatches(folder, batch_size=4, num_replicas=6, rank=0)


def test_length_batches_are_full_sorted_within_a_buffer_and_take_every_cut_once():
    import random
    from types import SimpleNamespace

    from asr.data.shards import length_batches

    rng = random.Random(0)
    cuts = [SimpleNamespace(id=i, duration=rng.uniform(1, 10)) for i in range(1000)]
    batches = list(length_batches(iter(cuts), 16, 200, random.Random(1)))
    assert sorted(c.id for b in batches for c in b) == list(range(1000))
    assert [len(b) for b in batches].count(16) == len(batches) - 1  # only the stream's last one short
    # little padding: within a batch, durations close together (sorted within a 200-cut window)
    padding = sum(16 * max(c.duration for c in b) for b in batches[:-1]) / sum(c.duration for b in batches[:-1] for c in b)
    assert padding < 1.1
    assert batches != list(length_batches(iter(cuts), 16, 200, random.Random(2)))  # the order follows the generator
    assert [len(b) for b in length_batches(iter(cuts[:10]), 16, 4, random.Random(1))] == [10]  # buffer < batch


def test_shards_hold_the_features_and_statistics_memory_holds(tmp_path, data_dir):
    """The log-mels read back from the shards are the cached in-memory ones (float16 both), the running statistics
    those of the in-memory split; utterances CTC cannot emit are left out and named, as in memory."""
    config = FeatureConfig(stride=3, normalize="global")
    corpus = CorpusFeatures("an4", str(data_dir), config, str(tmp_path / "cache"), "float16", max_utterances=24)
    utts, feats = corpus.utterance_features("train")
    extractor = FeatureExtractor(config)
    long_text = utts[0].__class__(**{**vars(utts[0]), "id": "too-long", "text": "A" * 500})
    folder = shards_dir(tmp_path, "an4", utts + [long_text], extractor, 10, False)
    index = write_shards(utts + [long_text], extractor, CharTokenizer(), folder, 10)
    assert index["unemittable"] == ["too-long"] and index["utterances"] == 24
    expected = feature_stats(feats)
    for key in ("mean", "std"):
        assert torch.allclose(torch.tensor(index["stats"][key]), torch.tensor(expected[key]), atol=1e-3)
    from lhotse import CutSet

    files = [shard_files(folder, shard, audio=False) for shard in range(3)]
    cuts = CutSet.from_shar(fields={field: [f[field] for f in files] for field in files[0]})
    by_id = {u.id: f for u, f in zip(utts, feats)}
    got = {c.id: torch.from_numpy(c.load_custom("log_mel")).float() for c in cuts}
    assert sorted(got) == sorted(by_id)
    assert all(torch.equal(got[i], by_id[i]) for i in got)
    assert json.loads((folder / "index.json").read_text())["features"] == config.as_dict()


@pytest.mark.parametrize("args, message", [
    (["--data.storage", "disk"], "data.storage must be memory or shards"),
    (["--data.storage", "shards", "--data.shard_size", "0"], "data.shard_size must be at least 1"),
])
def test_wrong_storage_settings_are_refused(args, message, tmp_path, data_dir, capsys):
    assert main(train_argv("an4_rnn", tmp_path / "run", data_dir, *args)) == 2
    assert message in capsys.readouterr().err


def test_librispeech_recipe_trains_from_shards_and_evaluates_end_to_end(tmp_path, data_dir, capsys):
    """recipes/models/librispeech_lstm.yaml, shrunk, on a corpus in LibriSpeech's published layout that the test makes from
    real AN4 speech (FLAC): the training split streamed from shards through a DataLoader worker, then `asr evaluate`."""
    train, test = load_split("an4", "train", str(data_dir)), load_split("an4", "test", str(data_dir))
    for subset, utts in {"train-clean-100": train[:24], "dev-clean": test[:4], "test-clean": test[4:8]}.items():
        librispeech_layout(tmp_path / "data/LibriSpeech", subset, utts, speakers=3)
    run = tmp_path / "run"
    argv = train_argv("librispeech_lstm", run, tmp_path / "data", "--data.num_workers", "1", "--data.shard_size", "10",
                      "--trainer.precision", "32", "--trainer.devices", "1", utterances=24, hidden_size=16, epochs=2)
    assert main(argv) == 0
    (folder,) = (run / "cache").glob("shards-librispeech-*")
    assert [s["utterances"] for s in read_index(folder)["shards"]] == [10, 10, 4]
    assert torch.load(run / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 2 * (24 // 8)
    capsys.readouterr()
    assert main(["evaluate", str(run / "checkpoints/best.ckpt"), "--dataset", "librispeech", "--split", "test",
                 "--data-dir", str(tmp_path / "data"), "--output", str(tmp_path / "test.json")]) == 0
    assert "librispeech test: 4 utterances" in capsys.readouterr().out


def test_an_unreadable_file_stops_the_writing_and_leaves_no_half_written_shards(tmp_path, data_dir):
    utts = load_split("an4", "train", str(data_dir))[:6]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really")
    utts[3] = utts[3].__class__(**{**vars(utts[3]), "path": broken})
    extractor = FeatureExtractor(FeatureConfig())
    with pytest.raises(UserError, match="broken.wav .*data.bad_audio: skip"):
        write_shards(utts, extractor, CharTokenizer(), tmp_path / "shards", 4)
    assert not list(tmp_path.glob("shards*"))
    index = write_shards(utts, extractor, CharTokenizer(), tmp_path / "shards", 4, bad_audio="skip")
    assert index["utterances"] == 5 and [s["utterances"] for s in index["shards"]] == [4, 1]
