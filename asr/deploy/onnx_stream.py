"""Live transcription through onnxruntime, without torch: `asr transcribe --stream MODEL.step.onnx FILES`.

`asr export CKPT MODEL.step.onnx --stream` writes a streaming model's step graph (asr/deploy/export_onnx.py's
StepGraph: stacked features and the recurrent state in, log-probs and the next state out). Everything around it is
numpy, stage for stage as asr/deploy/streaming.py does it with torch:

    samples -> a 25 ms window every 10 ms -> log-mel (numpy's FFT, torchaudio's mel filterbank, rebuilt here)
    -> normalised (the running mean, or the training statistics, from the file's metadata) -> stacked frames
    -> the step graph, its state carried from chunk to chunk -> greedy CTC, a segment per pause (asr/deploy/live.py)

so the transcripts are the torch stream's (tests/test_onnx_stream.py: every AN4 test file, the shipped live model).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from asr.base.errors import UserError
from asr.decode.decoders import GreedyDecoder, Transcript
from asr.data.audio import StreamingResampler
from asr.deploy.live import Endpoint, chunks, joined


def mel_filterbank(n_freqs: int, n_mels: int, sample_rate: int) -> np.ndarray:
    """torchaudio.functional.melscale_fbanks(n_freqs, 0, sample_rate / 2, n_mels, sample_rate), HTK's mel scale, no
    normalisation: (n_freqs, n_mels) triangles."""
    def mel(hz):
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    all_freqs = np.linspace(0, sample_rate // 2, n_freqs)
    points = 700.0 * (10 ** (np.linspace(mel(0.0), mel(sample_rate / 2), n_mels + 2) / 2595.0) - 1.0)
    gaps = np.diff(points)
    slopes = points[None, :] - all_freqs[:, None]
    down, up = -slopes[:, :-2] / gaps[:-1], slopes[:, 2:] / gaps[1:]
    return np.maximum(0.0, np.minimum(down, up))


class StepModel:
    """A step graph and what its metadata says: the features, their statistics, the symbols, the state's shapes."""

    def __init__(self, path: str | Path, threads: Optional[int] = None):
        from asr.deploy.onnx_recognizer import onnx_session

        path = Path(path)
        self.session = onnx_session(path, threads)
        self.outputs = [o.name for o in self.session.get_outputs()]  # log_probs, then next_h[, next_c][, next_waiting]
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("graph") != "stream_step":
            raise UserError(f"{path} transcribes whole recordings; to stream through onnxruntime export the model's "
                            "step graph: asr export CKPT NAME.step.onnx --stream")
        self.vocabulary = json.loads(meta["vocabulary"])
        self.features = json.loads(meta["features"])
        stats = json.loads(meta["feature_stats"])
        self.mean, self.std = np.array(stats["mean"], np.float32), np.array(stats["std"], np.float32)
        self.online_prior = int(meta.get("online_prior_frames", 0))
        self.frame_seconds = float(meta["frame_ms"]) / 1000
        self.sample_rate = int(self.features["sample_rate"])
        self.min_samples = int(meta["min_samples"])
        self.layers, self.hidden, self.lookahead = int(meta["layers"]), int(meta["hidden"]), int(meta["lookahead"])
        self.lstm = meta["cell"] == "lstm"
        self.window = round(self.sample_rate * self.features["win_ms"] / 1000)
        self.hop = round(self.sample_rate * self.features["hop_ms"] / 1000)
        n = np.arange(self.window)
        self.hann = (0.5 - 0.5 * np.cos(2 * np.pi * n / self.window))  # torch.hann_window: periodic
        self.filterbank = mel_filterbank(self.window // 2 + 1, self.features["n_mels"], self.sample_rate)

    def log_mel(self, samples: np.ndarray, windows: int) -> np.ndarray:
        """Un-normalised log-mel energies of the first `windows` windows of `samples`: (windows, n_mels), float32."""
        frames = np.lib.stride_tricks.sliding_window_view(samples, self.window)[: (windows - 1) * self.hop + 1 : self.hop]
        power = np.abs(np.fft.rfft(frames.astype(np.float64) * self.hann, axis=1)) ** 2
        return np.log((power @ self.filterbank).astype(np.float32) + np.float32(1e-6))

    def read(self, path: str | Path) -> np.ndarray:
        from asr.deploy.onnx_recognizer import read_at

        return read_at(path, self.sample_rate)

    def zero_state(self) -> dict:
        state = {"h": np.zeros((self.layers, 1, self.hidden), np.float32)}
        if self.lstm:
            state["c"] = np.zeros((self.layers, 1, self.hidden), np.float32)
        if self.lookahead:
            state["waiting"] = np.zeros((1, self.lookahead, self.hidden), np.float32)
        return state

    def step(self, stacked: np.ndarray, state: dict, appended: int = 0) -> tuple[np.ndarray, dict]:
        feeds = {"features": stacked[None].astype(np.float32), **state}
        if self.lookahead:
            feeds["appended"] = np.zeros((1, appended, self.hidden), np.float32)
        log_probs, *following = self.session.run(self.outputs, feeds)
        return log_probs[0], {name.removeprefix("next_"): value for name, value in zip(self.outputs[1:], following)}


class OnnxStream:
    """asr/deploy/streaming.py's Stream on a step graph: `accept(samples)` -> the transcript so far, `finish()` -> the
    final one; samples at `sample_rate` (default: the model's; any other is resampled on the way, as the torch
    stream resamples it)."""

    def __init__(self, model: StepModel, endpoint: Endpoint | None = None, sample_rate: int | None = None):
        self.model, self.endpoint = model, endpoint
        rate = model.sample_rate
        self.resampler = StreamingResampler(sample_rate, rate) if sample_rate and sample_rate != rate else None
        self.decoder = GreedyDecoder(model.vocabulary)
        self.stack, self.stride = model.features["stack"], model.features["stride"]
        self.samples = np.zeros(0, np.float32)
        self.log_mels = np.zeros((0, model.features["n_mels"]), np.float32)
        self.skip = 0
        self.prior = model.mean.astype(np.float64)  # online normalisation: the running mean's prior,
        self.total, self.count = np.zeros_like(self.prior), 0  # ... and the sum and count of the segment's frames
        self.log_probs: list[np.ndarray] = []  # every frame's, in order
        self.segments: list[Transcript] = []
        self.segment_start = 0
        self.ended = False
        self.start_segment()

    def start_segment(self) -> None:
        self.state, self.segment = self.model.zero_state(), []
        self.phantoms = self.model.lookahead  # the outputs of the zero frames the lookahead starts from, dropped
        if self.model.online_prior and self.count:  # the running mean starts again from where it stands
            self.prior = self.means(self.total, np.float64(self.count))  # (FrameNormalizer.restart)
            self.total, self.count = np.zeros_like(self.prior), 0

    def means(self, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """The running mean after each frame, from the segment's running sums and counts: RunningMean's, or with
        online_level LevelMatchedMean's (asr/data/features.py), whose prior moves to the level heard so far."""
        weight, prior = self.model.online_prior, self.prior
        if self.model.features["normalize"] == "online_level":
            prior = prior + ((sums / counts).mean(-1, keepdims=True) - self.prior.mean())
        return (weight * prior + sums) / (weight + counts)

    def normalize(self, feats: np.ndarray) -> np.ndarray:
        if not self.model.online_prior:
            return (feats - self.model.mean) / (self.model.std + np.float32(1e-5))
        sums = self.total + np.cumsum(feats.astype(np.float64), axis=0)
        counts = self.count + np.arange(1, len(feats) + 1, dtype=np.float64)[:, None]
        if len(feats):
            self.total, self.count = sums[-1], self.count + len(feats)
        return (feats - self.means(sums, counts).astype(np.float32)) / (self.model.std + np.float32(1e-5))

    def emit(self, log_probs: np.ndarray) -> None:
        dropped = min(self.phantoms, len(log_probs))
        self.phantoms -= dropped
        if len(log_probs) > dropped:
            self.log_probs.append(log_probs[dropped:])
            self.segment.append(log_probs[dropped:])

    def run(self, samples: np.ndarray) -> None:
        model = self.model
        self.samples = np.concatenate([self.samples, samples.astype(np.float32)])
        windows = (len(self.samples) - model.window) // model.hop + 1 if len(self.samples) >= model.window else 0
        if windows > 0:
            new = self.normalize(model.log_mel(self.samples, windows))
            self.samples = self.samples[windows * model.hop :]
            dropped = min(self.skip, len(new))
            self.skip -= dropped
            self.log_mels = np.concatenate([self.log_mels, new[dropped:]])
        if len(self.log_mels) >= self.stack:
            n_out = (len(self.log_mels) - self.stack) // self.stride + 1
            stacked = np.concatenate([self.log_mels[i : i + self.stride * n_out : self.stride]
                                      for i in range(self.stack)], axis=1)
            consumed = n_out * self.stride
            self.skip = max(0, consumed - len(self.log_mels))
            self.log_mels = self.log_mels[consumed:]
            log_probs, self.state = model.step(stacked, self.state)
            self.emit(log_probs)

    def accept(self, samples) -> Transcript:
        samples = np.asarray(samples, dtype=np.float32)
        self.run(self.resampler(samples) if self.resampler is not None else samples)
        if self.endpoint is not None and self.segment:
            if self.endpoint.reached(np.concatenate(self.segment).argmax(-1), self.model.frame_seconds):
                self.end_segment()
        return self.transcript()

    def finish(self) -> Transcript:
        if not self.ended:
            self.ended = True
            if self.resampler is not None:
                self.run(self.resampler.finish())
            self.end_segment()
        return self.transcript()

    def end_segment(self) -> None:
        if self.model.lookahead:  # the frames still waiting, with zeros after them
            empty = np.zeros((0, self.model.features["n_mels"] * self.stack), np.float32)
            log_probs, _ = self.model.step(empty, self.state, appended=self.model.lookahead)
            self.emit(log_probs)
        if self.segment:
            scores = np.concatenate(self.segment)
            self.segments.append(self.decoder(scores, self.model.frame_seconds,
                                              self.segment_start * self.model.frame_seconds))
            self.segment_start += len(scores)
        self.start_segment()

    def transcript(self) -> Transcript:
        current = [self.decoder(np.concatenate(self.segment), self.model.frame_seconds,
                                self.segment_start * self.model.frame_seconds)] if self.segment else []
        return joined([*self.segments, *current])


def stream_file(model: StepModel, path, chunk_ms: float, on_partial=None,
                endpoint: Endpoint | None = None) -> Transcript:
    """A file read as the ONNX path reads it, fed chunk by chunk as asr/deploy/streaming.py's stream_file feeds it."""
    if chunk_ms <= 0:
        raise UserError(f"--chunk-ms must be positive, got {chunk_ms}")
    stream = OnnxStream(model, endpoint)
    for chunk in chunks(model.read(path), model.sample_rate, chunk_ms):
        partial = stream.accept(chunk)
        if on_partial is not None:
            on_partial(partial)
    return stream.finish()
