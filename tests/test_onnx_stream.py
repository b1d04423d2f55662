"""Live transcription through onnxruntime (asr/deploy/onnx_stream.py): a streaming model's step graph
(`asr export CKPT NAME.step.onnx --stream`) with numpy features streams every AN4 test file to the torch stream's
transcript, and `asr transcribe --stream NAME.step.onnx` imports no torch."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torchaudio

from asr.base.files import sha256
from asr.cli import main
from asr.data.audio import load_audio
from asr.data.corpora import load_split
from asr.deploy.inference import Recognizer
from asr.deploy.live import Endpoint, chunks
from asr.deploy.onnx_stream import OnnxStream, StepModel, mel_filterbank
from asr.deploy.streaming import Stream

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "checkpoints"


@pytest.mark.parametrize("rate, n_mels", [(16000, 80), (8000, 40)])
def test_the_numpy_mel_filterbank_is_torchaudios(rate, n_mels):
    n_freqs = round(rate * 0.025) // 2 + 1
    theirs = torchaudio.functional.melscale_fbanks(n_freqs, 0.0, rate / 2, n_mels, rate).numpy()
    assert np.abs(mel_filterbank(n_freqs, n_mels, rate) - theirs).max() < 1e-5  # theirs in float32


def both_streams(recognizer, model, waveform, endpoint):
    torch_stream, onnx_stream = Stream(recognizer, endpoint=endpoint), OnnxStream(model, endpoint)
    for chunk in chunks(waveform, 16000, 160):
        torch_stream.accept(chunk)
        onnx_stream.accept(chunk)
    return torch_stream, torch_stream.finish(), onnx_stream, onnx_stream.finish()


def shipped(name: str) -> dict:
    return next(m for m in json.loads((SHIPPED / "models.json").read_text())["models"] if m["name"] == name)


@pytest.mark.parametrize("name", ["an4_lstm_stream", "an4_tanh_rnn_clipped_stream"])
def test_the_step_graph_streams_every_test_file_to_the_torch_streams_transcript(name, data_dir, tmp_path):
    """Transcript for transcript, times included, on all 130 AN4 test files, with the endpoint rules on: the shipped
    step graph where there is one (its file the one the card names), else one exported here."""
    record = shipped(name).get("step_onnx")
    if record:
        step = SHIPPED / record["file"]
        assert sha256(step) == record["sha256"]
    else:
        step = tmp_path / "m.step.onnx"
        assert main(["export", str(SHIPPED / f"{name}.ckpt"), str(step), "--stream"]) == 0
    recognizer, model = Recognizer.from_checkpoint(SHIPPED / f"{name}.ckpt"), StepModel(step)
    utterances = load_split("an4", "test", str(data_dir))
    for u in utterances:
        waveform = load_audio(u.path, 16000).numpy()
        torch_stream, expected, onnx_stream, got = both_streams(recognizer, model, waveform, Endpoint())
        assert got.text == expected.text, u.id
        assert [(w.word, w.start, w.end) for w in got.words] == [(w.word, w.start, w.end) for w in expected.words]
        a, b = np.concatenate(onnx_stream.log_probs), np.concatenate(torch_stream.log_probs)
        assert a.shape == b.shape and np.abs(a - b).max() < 2e-3, (u.id, np.abs(a - b).max())


def test_a_whole_recording_graph_or_a_checkpoint_of_another_kind_is_refused_for_streaming(tmp_path, capsys):
    wav = str(tmp_path / "x.wav")
    assert main(["transcribe", "--stream", str(SHIPPED / "an4_lstm_stream.onnx"), wav]) == 2
    assert "transcribes whole recordings; to stream through onnxruntime export" in capsys.readouterr().err
    # and the other way round: a step graph without --stream says how to use it (it failed inside onnxruntime)
    assert main(["transcribe", str(SHIPPED / "an4_lstm_stream.step.onnx"), wav]) == 2
    assert "step graph: transcribe with it live, `asr transcribe --stream" in capsys.readouterr().err
    assert main(["export", str(SHIPPED / "an4_lstm.ckpt"), str(tmp_path / "bi.step.onnx"), "--stream"]) == 2
    assert "exports the step graph of a model that streams" in capsys.readouterr().err
    assert not (tmp_path / "bi.step.onnx").exists()


def test_streaming_through_onnxruntime_imports_no_torch(data_dir, tmp_path):
    from test_onnx import run_isolated

    assert main(["export", str(SHIPPED / "an4_lstm_stream.ckpt"), str(tmp_path / "m.step.onnx"), "--stream"]) == 0
    wav = data_dir / "an4/wav/an4test_clstk/fcaw/an406-fcaw-b.wav"
    done = run_isolated(sys.executable, ["transcribe", "--stream", str(tmp_path / "m.step.onnx"), str(wav)])
    assert done["status"] == 0 and done["torch"] == []
    expected = Stream(Recognizer.from_checkpoint(SHIPPED / "an4_lstm_stream.ckpt"), endpoint=Endpoint())
    for chunk in chunks(load_audio(wav, 16000).numpy(), 16000, 160):
        expected.accept(chunk)
    assert done["out"].strip() == expected.finish().text


def test_a_microphone_at_48_khz_streams_through_the_step_graph_as_through_torch(data_dir, tmp_path):
    """A browser's microphone runs at 48 kHz: the step graph's stream resamples chunk by chunk (numpy) and gives the
    torch stream's transcripts; and a 48 kHz file reads, without torch, as load_audio reads it (torchaudio's
    filter: the ONNX path used scipy's, a different filter)."""
    import soundfile

    from asr.deploy.onnx_recognizer import read_at

    model = StepModel(SHIPPED / "an4_lstm_stream.step.onnx")
    recognizer = Recognizer.from_checkpoint(SHIPPED / "an4_lstm_stream.ckpt")
    for u in load_split("an4", "test", data_dir)[:6]:
        high = torchaudio.functional.resample(load_audio(u.path, 16000), 16000, 48000).numpy()
        onnx_stream, torch_stream = OnnxStream(model, Endpoint(), 48000), Stream(recognizer, 48000, Endpoint())
        for chunk in chunks(high, 48000, 100):
            assert onnx_stream.accept(chunk).text == torch_stream.accept(chunk).text, u.id
        assert onnx_stream.finish().text == torch_stream.finish().text, u.id
        a, b = np.concatenate(onnx_stream.log_probs), np.concatenate(torch_stream.log_probs)
        assert a.shape == b.shape and np.abs(a - b).max() < 2e-3, (u.id, np.abs(a - b).max())
    wav = tmp_path / "48k.wav"
    soundfile.write(wav, high, 48000, subtype="FLOAT")
    assert np.abs(read_at(wav, 16000) - load_audio(wav, 16000).numpy()).max() < 1e-5


def test_a_level_matched_step_graph_streams_as_torch_across_segments_at_three_levels(data_dir, tmp_path):
    """data.normalize: online_level in numpy (OnnxStream) as in torch (LevelMatchedMean): three test utterances at
    -20, 0 and +10 dB, joined with pauses, streamed with the endpoint rules on: the same segments, words and times,
    and log-probs within float error, each segment's running mean restarting where the last one stood."""
    from dataclasses import replace

    from asr.data.features import FeatureExtractor
    from asr.deploy.export_onnx import write_step_onnx

    saved = Recognizer.from_checkpoint(SHIPPED / "an4_lstm_stream.ckpt")
    extractor = FeatureExtractor(replace(saved.extractor.config, normalize="online_level"), saved.extractor.stats)
    recognizer = Recognizer(saved.model, saved.tokenizer, extractor, saved.data_hparams, saved.device)
    write_step_onnx(recognizer, tmp_path / "level.step.onnx")
    model = StepModel(tmp_path / "level.step.onnx")
    pause = np.zeros(16000, np.float32)
    parts = [load_audio(u.path, 16000).numpy() * 10 ** (db / 20)
             for u, db in zip(load_split("an4", "test", data_dir)[:3], (-20.0, 0.0, 10.0))]
    waveform = np.concatenate([p for part in parts for p in (part, pause)])
    torch_stream, expected, onnx_stream, got = both_streams(recognizer, model, waveform, Endpoint())
    assert len(torch_stream.segments) >= 3
    assert [(w.word, w.start, w.end) for w in got.words] == [(w.word, w.start, w.end) for w in expected.words]
    a, b = np.concatenate(onnx_stream.log_probs), np.concatenate(torch_stream.log_probs)
    assert a.shape == b.shape and np.abs(a - b).max() < 2e-3, np.abs(a - b).max()
