"""Live transcription (asr/deploy/streaming.py): audio fed in chunks of any size gives the offline log-probs and the
offline transcript; `asr transcribe --stream` prints what `asr transcribe` prints; models that cannot stream are
refused with a message that says why."""
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torchaudio

from asr.data.audio import load_audio
from asr.cli import main
from asr.deploy.inference import Recognizer
from asr.data.audio import StreamingResampler
from asr.deploy.streaming import Endpoint, Stream, chunks

REPO = Path(__file__).resolve().parents[1]


def streamed(recognizer, waveform: np.ndarray, sizes, rate=None) -> Stream:
    """A stream fed `waveform` in chunks of the given sizes (samples), cycling through them."""
    stream, start, i = Stream(recognizer, rate), 0, 0
    while start < len(waveform):
        stream.accept(waveform[start : start + sizes[i % len(sizes)]])
        start += sizes[i % len(sizes)]
        i += 1
    stream.finish()
    return stream


def test_a_stream_gives_the_offline_log_probs_and_transcript_at_any_chunk_size(overfit, an4_test_wav):
    recognizer = Recognizer.from_checkpoint(overfit.checkpoint)
    paths = [u.path for u in overfit.utterances[:4]] + [an4_test_wav]
    offline = recognizer.transcribe_files(paths)
    assert sum(len(t.words) for _, t, _ in offline) >= 12  # a model that says words, not a blank one
    rng = np.random.default_rng(0)
    for path, (_, transcript, _) in zip(paths, offline):
        waveform = load_audio(path, 16000).numpy()
        expected = recognizer.log_probs([recognizer.extractor(torch.from_numpy(waveform))])[0].numpy()
        # 10 ms (less than a window), 100 / 160 / 320 ms, and ragged chunks of 1 to 9000 samples
        for sizes in ([160], [1600], [2560], [5120], list(rng.integers(1, 9000, 20))):
            stream = streamed(recognizer, waveform, sizes)
            got = np.concatenate(stream.log_probs)
            assert got.shape == expected.shape
            assert np.abs(got - expected).max() < 1e-4
            assert stream.finish().text == transcript.text
            assert [(w.word, w.start, w.end) for w in stream.finish().words] == \
                   [(w.word, w.start, w.end) for w in transcript.words]


def online(recognizer, normalize: str = "online") -> Recognizer:
    """The recogniser with its features normalised online (data.normalize: online or online_level) from the same
    statistics."""
    from dataclasses import replace

    from asr.data.features import FeatureExtractor

    extractor = FeatureExtractor(replace(recognizer.extractor.config, normalize=normalize), recognizer.extractor.stats)
    return Recognizer(recognizer.model, recognizer.tokenizer, extractor, recognizer.data_hparams, recognizer.device)


@pytest.mark.parametrize("normalize", ["online", "online_level"])
def test_online_normalisation_streams_to_the_offline_log_probs(normalize, overfit, an4_test_wav):
    """The running mean carried from chunk to chunk gives what normalising the whole recording at once gives."""
    recognizer = online(Recognizer.from_checkpoint(overfit.checkpoint), normalize)
    for path in [overfit.utterances[0].path, an4_test_wav]:
        waveform = load_audio(path, 16000).numpy()
        expected = recognizer.log_probs([recognizer.extractor(torch.from_numpy(waveform))])[0].numpy()
        for sizes in ([160], [2560], list(np.random.default_rng(1).integers(1, 9000, 20))):
            got = np.concatenate(streamed(recognizer, waveform, sizes).log_probs)
            assert got.shape == expected.shape and np.abs(got - expected).max() < 1e-4


def looking_ahead(recognizer, context: int) -> Recognizer:
    """The recogniser's model with a lookahead of `context` frames added: the trained weights, and a row convolution
    that mixes in the frames ahead (mostly the frame itself, so that it still says words)."""
    from dataclasses import replace

    from asr.model.acoustic import AcousticModel

    model = AcousticModel(replace(recognizer.model.config, lookahead=context))
    model.load_state_dict(recognizer.model.state_dict(), strict=False)
    with torch.no_grad():
        torch.manual_seed(0)
        model.lookahead.conv.weight[:, 0, 1:].normal_(0, 0.3)
    return Recognizer(model.eval(), recognizer.tokenizer, recognizer.extractor, recognizer.data_hparams, recognizer.device)


def test_a_model_that_looks_ahead_streams_to_its_offline_result_its_partials_that_many_frames_behind(overfit):
    plain = Recognizer.from_checkpoint(overfit.checkpoint)
    recognizer = looking_ahead(plain, 4)
    paths = [u.path for u in overfit.utterances[:3]]
    offline = recognizer.transcribe_files(paths)
    assert sum(len(t.words) for _, t, _ in offline) >= 9
    for path, (_, transcript, _) in zip(paths, offline):
        waveform = load_audio(path, 16000).numpy()
        features = recognizer.extractor(torch.from_numpy(waveform))
        expected = recognizer.log_probs([features])[0].numpy()
        assert np.abs(expected - plain.log_probs([features])[0].numpy()).max() > 0.1  # the lookahead changes them
        k, s = recognizer.extractor.config.stack, recognizer.extractor.config.stride
        for sizes in ([160], [480], [2560], [7, 1000, 30]):
            stream = Stream(recognizer)
            start, i = 0, 0
            while start < len(waveform):
                stream.accept(waveform[start : start + sizes[i % len(sizes)]])
                start, i = start + sizes[i % len(sizes)], i + 1
                heard = max(0, (min(start, len(waveform)) - stream.window) // stream.hop + 1)  # log-mel windows
                ready = (heard - k) // s + 1 if heard >= k else 0  # stacked frames through the recurrence
                assert stream.frames == max(0, ready - 4)
            stream.finish()
            got = np.concatenate(stream.log_probs)
            assert got.shape == expected.shape
            assert np.abs(got - expected).max() < 1e-4
            assert stream.finish().text == transcript.text  # a second finish changes nothing


def test_audio_at_another_rate_is_resampled_on_the_way_as_a_file_would_be(overfit, tmp_path):
    """A microphone at 48 kHz: the stream resamples chunk by chunk and ends where `asr transcribe` of the same
    48 kHz file ends (which resamples the whole file at once)."""
    recognizer = Recognizer.from_checkpoint(overfit.checkpoint)
    path = overfit.utterances[1].path
    high = torchaudio.functional.resample(load_audio(path, 16000), 16000, 48000).numpy()
    wav = tmp_path / "48k.wav"
    soundfile.write(wav, high, 48000, subtype="FLOAT")
    ((_, expected, _),) = recognizer.transcribe_files([wav])
    assert expected.text
    for ms in (20, 160, 500):
        stream = Stream(recognizer, 48000)
        partials = [stream.accept(c).text for c in chunks(high, 48000, ms)]
        assert stream.finish().text == expected.text
        if ms == 20:  # the transcript grows as the audio comes (20 ms is less than one stacked frame)
            assert partials[0] == "" and len(set(partials)) > 2

    rng = np.random.default_rng(1)
    signal = rng.standard_normal(44100 * 2 + 7).astype(np.float32) * 0.1
    resampler = StreamingResampler(44100, 16000)
    pieces = [resampler(c) for c in np.array_split(signal, 37)] + [resampler.finish()]
    whole = torchaudio.functional.resample(torch.from_numpy(signal), 44100, 16000).numpy()
    assert np.concatenate(pieces).shape == whole.shape
    assert np.abs(np.concatenate(pieces) - whole).max() < 1e-5


def test_transcribe_stream_prints_what_transcribe_prints(overfit, capsys):
    paths = [str(u.path) for u in overfit.utterances]
    assert main(["transcribe", "--with-names", str(overfit.checkpoint), *paths]) == 0
    offline = capsys.readouterr().out
    assert main(["transcribe", "--stream", "--chunk-ms", "100", "--with-names", str(overfit.checkpoint), *paths]) == 0
    live = capsys.readouterr().out
    assert live == offline
    assert len(live.split()) > 3 * len(paths)  # names and words


def test_what_cannot_stream_is_refused_with_the_reason(checkpoint, overfit, tmp_path, capsys):
    wav = str(overfit.utterances[0].path)
    for argv, message in (
        ([str(checkpoint), wav], "cannot transcribe live: streaming needs a unidirectional"),  # bidirectional
        ([str(overfit.checkpoint), wav, "--decoder", "beam"], "--stream decodes greedily"),
        ([str(overfit.checkpoint), wav, "--chunk-ms", "0"], "--chunk-ms must be positive"),
        ([str(tmp_path / "model.onnx"), wav], "model.onnx not found"),  # a step graph streams; this one is missing
    ):
        assert main(["transcribe", "--stream", *argv]) == 2
        assert message in capsys.readouterr().err
    # unidirectional, but each utterance normalised by its own statistics: the first frame needs the last
    recognizer = Recognizer.from_checkpoint(overfit.checkpoint)
    recognizer.extractor.config = type(recognizer.extractor.config)(normalize="utterance")
    with pytest.raises(ValueError, match="data.normalize: online, online_level or global"):
        Stream(recognizer)


def test_every_an4_test_file_streams_to_its_offline_transcript(overfit, data_dir):
    """All 130 AN4 test recordings, at 100, 160 and 320 ms chunks: the streamed final transcript is the offline one,
    word for word (`asr transcribe`'s path: files read, cut at pauses if long, batched by length)."""
    from asr.data.corpora import load_split

    recognizer = Recognizer.from_checkpoint(overfit.checkpoint)
    paths = [u.path for u in load_split("an4", "test", str(data_dir))]
    assert len(paths) == 130
    offline = [t.text for _, t, _ in recognizer.transcribe_files(paths)]
    assert sum(len(t.split()) for t in offline) > 130  # not blank
    for ms in (100, 160, 320):
        for path, expected in zip(paths, offline):
            waveform = load_audio(path, 16000, min_seconds=0.1).numpy()
            stream = Stream(recognizer)
            for chunk in chunks(waveform, 16000, ms):
                stream.accept(chunk)
            assert stream.finish().text == expected, (path, ms)


@pytest.mark.parametrize("name", ["an4_lstm_stream", "an4_tanh_rnn_clipped_stream"])
def test_the_shipped_streaming_models_stream_every_test_file_to_their_offline_transcript(name, data_dir):
    """The shipped live models (checkpoints/*_stream.ckpt) on all 130 AN4 test files in 160 ms chunks: the final
    transcript of the stream is the offline one, and the offline WER is the one their card records."""
    import json
    from pathlib import Path

    from asr.data.corpora import load_split
    from asr.decode.metrics import error_rates

    shipped = Path(__file__).resolve().parents[1] / "checkpoints"
    record = next(m for m in json.loads((shipped / "models.json").read_text())["models"] if m["name"] == name)
    recognizer = Recognizer.from_checkpoint(shipped / record["file"])
    utterances = load_split("an4", "test", str(data_dir))
    offline = [t.text for _, t, _ in recognizer.transcribe_files([u.path for u in utterances])]
    live = []
    for u in utterances:
        stream = Stream(recognizer)
        for chunk in chunks(load_audio(u.path, 16000, min_seconds=0.1).numpy(), 16000, 160):
            stream.accept(chunk)
        live.append(stream.finish().text)
    assert live == offline
    assert error_rates([u.text for u in utterances], live)["wer"] == pytest.approx(record["test_greedy"]["wer"])


def test_a_stride_longer_than_the_stack_streams_to_the_offline_log_probs(overfit):
    """stride > stack leaves log-mel frames that no stacked frame covers: offline skips them; a stream must skip
    them too, also when they have not arrived yet (before, it dropped frames that came later in their place)."""
    from dataclasses import replace

    from asr.data.features import FeatureExtractor
    from asr.model.acoustic import AcousticModel

    trained = Recognizer.from_checkpoint(overfit.checkpoint)
    config = replace(trained.extractor.config, stack=2, stride=3)
    extractor = FeatureExtractor(config, trained.extractor.stats)
    torch.manual_seed(0)
    model = AcousticModel(replace(trained.model.config, input_dim=config.n_mels * config.stack)).eval()
    recognizer = Recognizer(model, trained.tokenizer, extractor, trained.data_hparams, trained.device)
    waveform = load_audio(overfit.utterances[0].path, 16000).numpy()
    expected = recognizer.log_probs([extractor(torch.from_numpy(waveform))])[0].numpy()
    for sizes in ([160], [480], [1600], [7, 1000, 30]):
        got = np.concatenate(streamed(recognizer, waveform, sizes).log_probs)
        assert got.shape == expected.shape, sizes
        assert np.abs(got - expected).max() < 1e-4, sizes


def test_a_stream_feeds_the_model_on_its_own_device_and_brings_results_back(overfit, monkeypatch):
    """`asr transcribe --stream --device cuda` fed CPU features to a moved model and called .numpy() on its output
    without .cpu(). Checked without a GPU on the meta device (shapes, no values): every step gets its features on
    the model's device, and what comes back is copied to the CPU before numpy reads it (numpy cannot read a
    tensor that is elsewhere; here .cpu() of a meta tensor gives zeros of its shape, so the stream can run on)."""
    recognizer = Recognizer.from_checkpoint(overfit.checkpoint)
    waveform = load_audio(overfit.utterances[0].path, 16000).numpy()
    frames = len(np.concatenate(streamed(recognizer, waveform, [1600]).log_probs))
    recognizer.model.to("meta")
    seen, step = [], type(recognizer.model).step

    def recorded(model, features, state=None):
        seen.append(features.device.type)
        return step(model, features, state)

    cpu = torch.Tensor.cpu
    monkeypatch.setattr(type(recognizer.model), "step", recorded)
    monkeypatch.setattr(torch.Tensor, "cpu", lambda t: torch.zeros(t.shape, dtype=t.dtype) if t.is_meta else cpu(t))
    stream = streamed(recognizer, waveform, [1600])
    assert seen and set(seen) == {"meta"}, set(seen)
    assert sum(len(p) for p in stream.log_probs) == frames


def test_endpoint_rules_read_the_models_own_silence():
    frame = 0.03
    rules = Endpoint(after_words=1.2, before_words=2.4, longest=20.0)
    said = np.array([0, 0, 5, 5, 0, 7] + [0] * 39)  # a word, then 39 blank frames: 1.17 s
    assert not rules.reached(said, frame) and rules.reached(np.append(said, 0), frame)  # 1.2 s
    assert not rules.reached(np.zeros(79, int), frame) and rules.reached(np.zeros(80, int), frame)  # nothing said
    assert rules.reached(np.ones(667, int), frame) and not rules.reached(np.ones(666, int), frame)  # 20 s


def test_a_long_recording_streams_in_segments_cut_at_its_pauses(data_dir):
    """Thirty AN4 test utterances one after another, a second's pause between each two, through the shipped live
    model: with the endpoint rules every pause ends a segment (its state from zero), the words come out in order,
    each inside its utterance's span of the recording, and the WER stays near the model's on the utterances one by
    one (scripts/long_recording.py measures the whole test set)."""
    from asr.data.conditions import joined_recording
    from asr.data.corpora import load_split
    from asr.decode.metrics import error_rates

    recognizer = Recognizer.from_checkpoint(REPO / "checkpoints/an4_lstm_stream.ckpt")
    utterances = load_split("an4", "test", str(data_dir))[:30]
    waveforms = [load_audio(u.path, 16000).numpy() for u in utterances]
    recording, starts = joined_recording(waveforms, 16000, pause_seconds=1.0)

    def streamed_text(waveform, endpoint):
        stream = Stream(recognizer, endpoint=endpoint)
        for chunk in chunks(waveform, 16000, 160):
            stream.accept(chunk)
        return stream, stream.finish()

    stream, final = streamed_text(recording, Endpoint())
    assert len(stream.segments) >= len(utterances)
    spans = [(s - 0.1, s + len(w) / 16000 + 0.3) for s, w in zip(starts, waveforms)]
    assert all(any(a <= w.start < w.end <= b for a, b in spans) for w in final.words)
    assert [w.start for w in final.words] == sorted(w.start for w in final.words)
    one_by_one = error_rates([u.text for u in utterances], [streamed_text(w, Endpoint())[1].text for w in waveforms])
    joined = error_rates([" ".join(u.text for u in utterances)], [final.text])
    assert joined["wer"] <= one_by_one["wer"] + 3.0, (joined["wer"], one_by_one["wer"])
