"""Transcription and evaluation with an exported model (`asr export CKPT model.onnx`, asr/deploy/export_onnx.py) through
onnxruntime: numpy, soundfile and onnxruntime only. Nothing here imports torch or
Lightning (`pip install .[onnx]` is all a deployment needs).

The graph holds feature extraction and the acoustic model; the file's metadata holds the vocabulary, the sample
rate and the frame duration. Reading, cutting long recordings and decoding are the torch path's own code
(asr/data/audio.py, asr/deploy/transcription.py, asr/decode/decoders.py). Audio at another rate is resampled with
torchaudio's filter rebuilt in numpy (asr/data/audio.py's resample): what the torch path hears, up to rounding.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from asr.data.audio import read_audio, resample
from asr.data.conditions import CLEAN
from asr.data.conditions import condition as distortion_of
from asr.data.corpora import load_split
from asr.decode.decoders import GreedyDecoder, Transcript
from asr.base.errors import UserError
from asr.decode.metrics import score
from asr.base.progress import progress
from asr.deploy.transcription import MIN_SECONDS, length_batches, transcribe_files


def read_at(path: str | Path, sample_rate: int) -> np.ndarray:
    """An audio file as offline transcription reads it (asr/data/audio.py): at `sample_rate`, without torch."""
    waveform, rate = read_audio(path, MIN_SECONDS)
    return resample(waveform, rate, sample_rate)


def threads_from_environment() -> Optional[int]:
    """OMP_NUM_THREADS, which torch obeys, for onnxruntime too (it would otherwise take every core)."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def onnx_session(path: Path, threads: Optional[int] = None, profile_prefix: Optional[str] = None):
    """An onnxruntime session on the CPU for an `asr export` file, or the reason there can be none; with
    `profile_prefix`, onnxruntime's profiler on (benchmarks/onnx_profile.py), its file under that prefix."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError("running an .onnx model needs onnxruntime: pip install '.[onnx]'") from None
    if not path.is_file():
        raise UserError(f"model file {path} not found")
    options = ort.SessionOptions()
    threads = threads or threads_from_environment()
    if threads:
        options.intra_op_num_threads = threads
    # An int8 file's GRU/RNN weights are int8 behind DequantizeLinear nodes (asr/deploy/quantize.py); without
    # this, onnxruntime keeps those nodes for QDQ fusion and dequantises on every call (16 % slower, the GRU);
    # with it, it folds them into float32 weights once, at load. Graphs without such nodes are unaffected.
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    if profile_prefix:
        options.enable_profiling, options.profile_file_prefix = True, profile_prefix
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - not an ONNX file, or a damaged one
        raise UserError(f"{path} is not a model onnxruntime can load ({str(e).splitlines()[0][:200]})") from None


class OnnxRecognizer:
    """An exported recogniser: waveforms in, per-frame log-probabilities out, on onnxruntime's CPU provider."""

    def __init__(self, path: str | Path, threads: Optional[int] = None):
        path = Path(path)
        self.session = onnx_session(path, threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        if "vocabulary" not in meta:
            raise UserError(f"{path} is an ONNX file, but not one `asr export` made (no vocabulary in its metadata)")
        if meta.get("graph") == "stream_step":
            raise UserError(f"{path} is a streaming model's step graph: transcribe with it live, `asr transcribe --stream "
                            f"{path} FILES`, or export the whole-recording graph, `asr export CKPT NAME.onnx`")
        self.vocabulary = json.loads(meta["vocabulary"])
        self.sample_rate = int(json.loads(meta["features"])["sample_rate"])
        self.frame_seconds = float(meta["frame_ms"]) / 1000
        self.min_samples = int(meta["min_samples"])
        self.dataset = meta.get("dataset")
        self.quantized = meta.get("quantized")  # "int8" for `asr export --quantize int8`, None for float32

    def read(self, path: str | Path) -> np.ndarray:
        return read_at(path, self.sample_rate)

    def log_probs(self, waveforms: list[np.ndarray], batch_size: int = 16) -> list[np.ndarray]:
        """Per-frame log-probabilities of each waveform, batched by length."""
        out: list[np.ndarray] = [np.empty(0)] * len(waveforms)
        for chunk in length_batches(waveforms, batch_size):
            lengths = np.array([len(waveforms[i]) for i in chunk], dtype=np.int64)
            padded = np.zeros((len(chunk), lengths.max()), dtype=np.float32)
            for row, i in enumerate(chunk):
                padded[row, : lengths[row]] = waveforms[i]
            scores, frames = self.session.run(None, {"waveforms": padded, "lengths": lengths})
            for row, i in enumerate(chunk):
                out[i] = scores[row, : frames[row]]
        return out

    def transcribe_files(self, paths: list[str | Path], decoder=None, batch_size: int = 16,
                         max_segment_seconds: float = 15.0) -> list[tuple[Path, Optional[Transcript], Optional[str]]]:
        """As Recognizer.transcribe_files (asr/deploy/transcription.py)."""
        return transcribe_files(paths, self.read, self.log_probs, decoder or GreedyDecoder(self.vocabulary),
                                self.frame_seconds, self.sample_rate, self.min_samples, batch_size, max_segment_seconds)

    def evaluate(self, dataset: str, split: str, data_dir: Optional[str], batch_size: int = 32,
                 decoder=None, condition: Optional[str] = None) -> tuple[dict, list[dict]]:
        """WER/CER over every utterance of the split, under a test condition if one is named (asr/data/conditions.py),
        as Recognizer.evaluate scores it (an utterance too short for one frame counts as all deletions)."""
        utterances = load_split(dataset, split, data_dir)
        distortion = distortion_of(condition)
        waveforms = [self.read(u.path) for u in progress(utterances, len(utterances), "reading audio", "files", 50)]
        if distortion is not None:
            waveforms = [distortion(w, self.sample_rate, u.id) for u, w in zip(utterances, waveforms)]
        usable = [i for i, w in enumerate(waveforms) if len(w) >= self.min_samples]
        scores = self.log_probs([waveforms[i] for i in usable], batch_size)
        decoder = decoder or GreedyDecoder(self.vocabulary)
        hyps = {utterances[i].id: decoder(s, self.frame_seconds).text for i, s in zip(usable, scores)}
        summary, rows = score(utterances, hyps)
        summary.update(dataset=dataset, split=split, condition=condition or CLEAN, ctc_cannot_emit=[])
        return summary, rows
