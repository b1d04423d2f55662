"""ONNX export (asr/deploy/export_onnx.py) and the torch-free transcription path (asr/deploy/onnx_recognizer.py): every cell
exports and matches PyTorch, the shipped .onnx files match their checkpoints on the test sets, transcription
through onnxruntime never imports torch, and a fresh environment without torch installs and transcribes."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from asr.data.audio import load_audio
from asr.base.files import sha256
from asr.cli import main
from asr.data.corpora import load_split
from asr.base.errors import UserError
from asr.decode.metrics import error_rates
from asr.deploy.export_onnx import projection_folded, write_onnx
from asr.data.features import FeatureConfig, FeatureExtractor
from asr.deploy.inference import Recognizer
from asr.model.acoustic import AcousticModel, ModelConfig
from asr.deploy.onnx_recognizer import OnnxRecognizer
from asr.data.text import VOCABULARY, CharTokenizer

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "checkpoints"
WAV = "an4/wav/an4test_clstk/fcaw/an406-fcaw-b.wav"


def tiny_recognizer(cell: str, bidirectional: bool, stride: int = 2, n_mels: int = 80) -> Recognizer:
    torch.manual_seed(0)
    model = AcousticModel(ModelConfig(input_dim=n_mels * 3, cell=cell, hidden_size=12, num_layers=2,
                                      bidirectional=bidirectional, dropout=0.1)).eval()
    extractor = FeatureExtractor(FeatureConfig(stride=stride, n_mels=n_mels))
    return Recognizer(model, CharTokenizer(VOCABULARY), extractor, {"dataset": "an4"}, torch.device("cpu"))


@pytest.mark.parametrize("bidirectional", [True, False], ids=["bi", "uni"])
@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_every_cell_exports_and_gives_pytorchs_log_probs(cell, bidirectional, tmp_path):
    # 4 mel bands stacked 3 times: fewer inputs than hidden units, so the graph folds the input projection into the
    # first layer (projection_folded), as for every shipped model; the lookahead test below keeps it
    recognizer = tiny_recognizer(cell, bidirectional, n_mels=4)
    assert isinstance(projection_folded(recognizer.model)[0], torch.nn.Identity)
    write_onnx(recognizer, tmp_path / "m.onnx")
    onnx = OnnxRecognizer(tmp_path / "m.onnx")
    rng = np.random.default_rng(1)
    # three utterances of different lengths in one batch (the right-to-left pass starts at each one's own end),
    # then each alone: the batch axis and the time axis are both dynamic
    waveforms = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (16000, 9000, 4321)]
    expected = recognizer.log_probs([recognizer.extractor(torch.from_numpy(w)) for w in waveforms])
    for got in (onnx.log_probs(waveforms, batch_size=3), [onnx.log_probs([w])[0] for w in waveforms]):
        for g, e in zip(got, expected):
            assert g.shape == tuple(e.shape)
            assert np.abs(g - e.numpy()).max() < 1e-4
    assert onnx.vocabulary == VOCABULARY and onnx.frame_seconds == 0.02 and onnx.sample_rate == 16000


def test_a_model_that_looks_ahead_exports_with_its_row_convolution(tmp_path):
    """The lookahead reads zeros after each utterance's end in the batched graph too, as in PyTorch."""
    torch.manual_seed(0)
    model = AcousticModel(ModelConfig(input_dim=80 * 3, cell="lstm", hidden_size=12, num_layers=2, bidirectional=False,
                                      lookahead=3)).eval()
    with torch.no_grad():
        model.lookahead.conv.weight.normal_()
    recognizer = Recognizer(model, CharTokenizer(VOCABULARY), FeatureExtractor(FeatureConfig()), {"dataset": "an4"},
                            torch.device("cpu"))
    assert not isinstance(projection_folded(model)[0], torch.nn.Identity)  # 240 inputs, 12 hidden units
    write_onnx(recognizer, tmp_path / "m.onnx")
    onnx = OnnxRecognizer(tmp_path / "m.onnx")
    rng = np.random.default_rng(2)
    waveforms = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (16000, 5000)]
    expected = recognizer.log_probs([recognizer.extractor(torch.from_numpy(w)) for w in waveforms])
    for g, e in zip(onnx.log_probs(waveforms, batch_size=2), expected):
        assert g.shape == tuple(e.shape)
        assert np.abs(g - e.numpy()).max() < 1e-4


def test_a_globally_normalised_streaming_model_exports_with_its_statistics(overfit, tmp_path):
    """The training statistics are constants of the graph: onnxruntime gives the checkpoint's log-probs."""
    recognizer = Recognizer.from_checkpoint(overfit.checkpoint)
    assert recognizer.extractor.config.normalize == "global"
    assert main(["export", str(overfit.checkpoint), str(tmp_path / "m.onnx")]) == 0
    onnx = OnnxRecognizer(tmp_path / "m.onnx")
    waveforms = [load_audio(u.path, 16000).numpy() for u in overfit.utterances[:3]]
    expected = recognizer.log_probs([recognizer.extractor(torch.from_numpy(w)) for w in waveforms])
    for got, e in zip(onnx.log_probs(waveforms, batch_size=3), expected):
        assert got.shape == tuple(e.shape)
        assert np.allclose(got, e.numpy(), rtol=2e-5, atol=1e-4), np.abs(got - e.numpy()).max()


@pytest.mark.parametrize("normalize", ["online", "online_level"])
def test_an_online_normalised_model_exports_with_its_running_mean(normalize, overfit, tmp_path):
    from dataclasses import replace

    saved = Recognizer.from_checkpoint(overfit.checkpoint)
    extractor = FeatureExtractor(replace(saved.extractor.config, normalize=normalize), saved.extractor.stats)
    recognizer = Recognizer(saved.model, saved.tokenizer, extractor, saved.data_hparams, saved.device)
    write_onnx(recognizer, tmp_path / "m.onnx")
    onnx = OnnxRecognizer(tmp_path / "m.onnx")
    waveforms = [load_audio(u.path, 16000).numpy() for u in overfit.utterances[:3]]
    expected = recognizer.log_probs([recognizer.extractor(torch.from_numpy(w)) for w in waveforms])
    for got, e in zip(onnx.log_probs(waveforms, batch_size=3), expected):  # padded in a batch: no matter
        assert got.shape == tuple(e.shape)
        assert np.allclose(got, e.numpy(), rtol=2e-5, atol=1e-4), np.abs(got - e.numpy()).max()


def test_what_cannot_be_exported_or_loaded_is_refused(tmp_path, capsys):
    esn = Recognizer(AcousticModel(ModelConfig(cell="esn", bidirectional=False, num_layers=1, hidden_size=8)),
                     CharTokenizer(VOCABULARY), FeatureExtractor(), {}, torch.device("cpu"))
    with pytest.raises(UserError, match="ONNX export covers the rnn_tanh, rnn_relu, lstm and gru cells"):
        write_onnx(esn, tmp_path / "esn.onnx")
    assert not list(tmp_path.iterdir())
    kept = tmp_path / "mine.onnx"
    kept.write_text("a file of mine")
    assert main(["export", str(SHIPPED / "an4_lstm.ckpt"), str(kept)]) == 2
    assert kept.read_text() == "a file of mine" and "exists; nothing was written" in capsys.readouterr().err
    assert main(["transcribe", str(kept), str(kept)]) == 2  # not an ONNX file at all
    assert "is not a model onnxruntime can load" in capsys.readouterr().err
    assert main(["transcribe", str(tmp_path / "missing.onnx"), str(kept)]) == 2
    assert "missing.onnx not found" in capsys.readouterr().err


def test_int8_export_quantizes_the_acoustic_model_through_asr_export(overfit, tmp_path):
    """`asr export CKPT OUT.onnx --quantize int8`: the LSTM and the matrix products in int8 (onnxruntime's integer
    kernels), the file says so, and the memorised utterances still come out word for word."""
    import onnx as onnx_format

    float32, int8 = tmp_path / "m.onnx", tmp_path / "m.int8.onnx"
    assert main(["export", str(overfit.checkpoint), str(float32)]) == 0
    assert main(["export", str(overfit.checkpoint), str(int8), "--quantize", "int8"]) == 0
    ops = {n.op_type for n in onnx_format.load(str(int8)).graph.node}
    assert {"DynamicQuantizeLSTM", "MatMulInteger"} <= ops and "LSTM" not in ops
    assert int8.stat().st_size < float32.stat().st_size / 2
    exact, quantized = OnnxRecognizer(float32, threads=1), OnnxRecognizer(int8, threads=1)
    assert (exact.quantized, quantized.quantized) == (None, "int8")
    waveforms = [exact.read(u.path) for u in overfit.utterances]
    # int8 transcripts can lose a word where float32 has none (and which one moves with the CPU's integer kernels
    # and the thread count): the memorised words still come out, nearly all of them
    references = [u.text for u in overfit.utterances]
    texts = [t.text for _, t, _ in quantized.transcribe_files([u.path for u in overfit.utterances])]
    assert error_rates(references, texts)["wer"] <= 10.0, texts
    a, b = np.concatenate(exact.log_probs(waveforms)), np.concatenate(quantized.log_probs(waveforms))
    assert np.mean(a.argmax(-1) == b.argmax(-1)) > 0.97 and np.abs(a - b).max() > 0  # close, and really other weights
    assert main(["export", str(overfit.checkpoint), str(tmp_path / "m.ckpt"), "--quantize", "int8"]) == 2


@pytest.mark.parametrize("cell", ["rnn_tanh", "gru"])
def test_int8_stores_gru_and_rnn_weights_in_8_bits(cell, tmp_path):
    """onnxruntime has no integer GRU kernel: its weights are kept in int8 and dequantised in the graph. A tanh RNN
    layer is a Scan (export_onnx.rnn_nodes_as_scan): its input product becomes an integer MatMul, its step's
    recurrent matrix is kept in int8."""
    import onnx as onnx_format

    from asr.deploy.quantize import quantize_int8

    recognizer = tiny_recognizer(cell, bidirectional=True)
    write_onnx(recognizer, tmp_path / "m.onnx")
    quantize_int8(tmp_path / "m.onnx", tmp_path / "q.onnx")
    graph = onnx_format.load(str(tmp_path / "q.onnx")).graph
    floats = {i.name for i in graph.initializer if i.data_type == onnx_format.TensorProto.FLOAT}
    if cell == "gru":
        recurrent = [n for n in graph.node if n.op_type == "GRU"]
        assert len(recurrent) == 4 and all(n.input[1] not in floats and n.input[2] not in floats for n in recurrent)
    else:
        scans = [n for n in graph.node if n.op_type == "Scan"]
        steps = [m for n in scans for m in n.attribute[0].g.node if m.op_type == "MatMul"]
        assert len(scans) == 4 and len(steps) == 4 and not any(m.input[1] in floats for m in steps)
        assert sum(n.op_type == "MatMulInteger" and "/acoustic/layers." in n.name for n in graph.node) == 4
    assert sum(i.data_type == onnx_format.TensorProto.INT8 for i in graph.initializer) >= 8
    rng = np.random.default_rng(3)
    waveforms = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (16000, 7000)]
    a = np.concatenate(OnnxRecognizer(tmp_path / "m.onnx").log_probs(waveforms))
    b = np.concatenate(OnnxRecognizer(tmp_path / "q.onnx").log_probs(waveforms))
    assert 0 < np.abs(a - b).max() < 0.05


def test_onnxruntime_takes_its_thread_count_from_omp_num_threads_as_torch_does(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert OnnxRecognizer(SHIPPED / "fsdd_lstm.onnx").session.get_session_options().intra_op_num_threads == 1
    assert OnnxRecognizer(SHIPPED / "fsdd_lstm.onnx", threads=2).session.get_session_options().intra_op_num_threads == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert OnnxRecognizer(SHIPPED / "fsdd_lstm.onnx").session.get_session_options().intra_op_num_threads == 0  # all


def shipped_models() -> list[dict]:
    return [m for m in json.loads((SHIPPED / "models.json").read_text())["models"] if m.get("onnx")]


@pytest.mark.parametrize("model", shipped_models(), ids=lambda m: m["name"])
def test_shipped_onnx_models_match_their_checkpoints(model, data_dir):
    path = SHIPPED / model["onnx"]["file"]
    assert sha256(path) == model["onnx"]["sha256"]
    onnx, torch_path = OnnxRecognizer(path), Recognizer.from_checkpoint(SHIPPED / model["file"])
    utterances = load_split(model["dataset"], "test", str(data_dir))
    waveforms = [onnx.read(u.path) for u in utterances]
    expected = torch_path.log_probs([torch_path.extractor(torch.from_numpy(w)) for w in waveforms])
    # every frame of every test utterance: float32 rounding (features in float64 here, float32 in torch), amplified
    # by the network; the streaming tanh RNN amplifies it most, by how much depends on the CPU's kernels (its
    # worst frame of the test set: 8e-4 off on one x86 machine, 1.02e-3 on another; the 99.9 % quantile 7e-7 here)
    excess = np.concatenate([(np.abs(g - e.numpy()) - 2e-5 * np.abs(e.numpy())).ravel()
                             for g, e in zip(onnx.log_probs(waveforms), expected)])
    assert excess.max() < 2e-3 and np.quantile(excess, 0.999) < 1e-4, (excess.max(), np.quantile(excess, 0.999))
    summary, _ = onnx.evaluate(model["dataset"], "test", str(data_dir))
    for key in ("wer", "cer", "substitutions", "deletions", "insertions"):
        assert summary[key] == model["test_greedy"][key], key  # the recorded greedy WER, to the last digit


@pytest.mark.parametrize("model", [m for m in shipped_models() if m.get("int8")], ids=lambda m: m["name"])
def test_shipped_int8_models_are_a_third_of_the_size_and_reproduce_their_records(model, data_dir):
    """Every shipped model also ships in int8 (scripts/ship_checkpoints.py): at most a third of the float32 file, its
    recorded test WERs reproduced, and within half a point of the float32 model's greedy WER (1.5 under a condition)."""
    q = model["int8"]
    path = SHIPPED / q["file"]
    assert path.stat().st_size == q["bytes"] and sha256(path) == q["sha256"]
    assert q["bytes"] <= model["onnx"]["bytes"] / 3
    recognizer = OnnxRecognizer(path, threads=1)  # as recorded: int8 results can move with the thread count
    summary, _ = recognizer.evaluate(model["dataset"], "test", str(data_dir))
    for key in ("wer", "cer", "substitutions", "deletions", "insertions"):
        assert summary[key] == q["test_greedy"][key], key
    assert q["test_greedy"]["wer"] <= model["test_greedy"]["wer"] + 0.5
    for condition, rates in q.get("test_conditions", {}).items():
        assert abs(rates["wer"] - model["test_conditions"][condition]["wer"]) <= 1.5, condition


def run_isolated(python: str, args: list[str], env_extra: dict | None = None) -> dict:
    """Runs `asr ARGS` in a fresh interpreter and returns its exit status, output and the modules it imported."""
    code = ("import json, sys; from asr.cli import main; status = main(sys.argv[1:]); "
            "print(json.dumps({'status': status, 'modules': sorted(sys.modules)}), file=sys.stderr)")
    done = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env_extra or {})}, cwd="/")
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return {"status": report["status"], "out": done.stdout, "torch": [m for m in report["modules"]
                                                                      if m.split(".")[0] in ("torch", "lightning")]}


def test_onnx_transcription_imports_neither_torch_nor_lightning(data_dir, tmp_path):
    from asr.decode.decoders import BeamSearchDecoder

    wav = data_dir / WAV
    lm = json.loads((SHIPPED / "models.json").read_text())["lm"]
    lexicon, arpa = str(SHIPPED / lm["lexicon"]), str(SHIPPED / lm["arpa"])
    torch_path = Recognizer.from_checkpoint(SHIPPED / "an4_lstm.ckpt")
    for options, decoder in (([], None),
                             (["--decoder", "beam", "--lexicon", lexicon, "--lm", arpa],
                              BeamSearchDecoder(VOCABULARY, lexicon=lexicon, lm=arpa))):
        onnx = run_isolated(sys.executable, ["transcribe", str(SHIPPED / "an4_lstm.onnx"), str(wav), "--format",
                                             "json", *options])
        assert onnx["status"] == 0 and onnx["torch"] == []
        got = json.loads(onnx["out"])[0]
        expected = torch_path.transcribe_files([wav], decoder)[0][1]  # the same file through the PyTorch path
        assert got["text"] == expected.text and got["text"]
        assert [(w["word"], w["start"], w["end"]) for w in got["words"]] == [(w.word, w.start, w.end)
                                                                            for w in expected.words]
    # the instrument sees torch where it is imported
    assert run_isolated(sys.executable, ["transcribe", str(SHIPPED / "an4_gru.ckpt"), str(wav)])["torch"]


def test_an_environment_without_torch_installs_the_package_and_transcribes(data_dir, tmp_path):
    """`make onnx-venv`'s steps, into a fresh folder: requirements-onnx.lock and the project with --no-deps."""
    uv = Path(sys.executable).with_name("uv")
    venv = tmp_path / "deploy"
    subprocess.run([str(uv), "venv", "-q", str(venv)], check=True, timeout=120)
    python = str(venv / "bin/python")
    subprocess.run([str(uv), "pip", "install", "-q", "--python", python, "-r", str(REPO / "requirements-onnx.lock")],
                   check=True, timeout=600)
    source = tmp_path / "source"  # a copy: building the package writes build/ beside its sources
    shutil.copytree(REPO / "asr", source / "asr", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run([str(uv), "pip", "install", "-q", "--python", python, "--no-deps", str(source)], check=True,
                   timeout=600)
    has_torch = subprocess.run([python, "-c", "import torch"], capture_output=True)
    assert has_torch.returncode != 0  # the environment really has no torch
    done = subprocess.run([str(venv / "bin/asr"), "transcribe", str(SHIPPED / "an4_lstm.onnx"), str(data_dir / WAV)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = Recognizer.from_checkpoint(SHIPPED / "an4_lstm.ckpt").transcribe_files([data_dir / WAV])[0][1].text
    assert done.stdout.strip() == expected
    done = subprocess.run([str(venv / "bin/asr"), "transcribe", str(SHIPPED / "an4_lstm.int8.onnx"), str(data_dir / WAV)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)  # int8 needs nothing more
    assert done.returncode == 0 and done.stdout.strip() == expected, done.stderr[-2000:]
    done = subprocess.run([str(venv / "bin/asr"), "transcribe", "--stream", str(SHIPPED / "an4_lstm_stream.step.onnx"),
                           str(data_dir / WAV)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip(), done.stderr[-2000:]  # live, without torch
