"""Reading audio files of any common format and rate into mono float waveforms at the model's rate.

`read_audio` needs numpy and soundfile only (the ONNX path, asr/deploy/onnx_recognizer.py, runs without torch);
`load_audio` resamples with torchaudio and gives a tensor, for everything that runs the PyTorch model."""
from __future__ import annotations

import contextlib
import math
import os
import threading
import warnings
from pathlib import Path
from typing import Iterator

from typing import TYPE_CHECKING

import numpy as np
import soundfile

from asr.base.errors import UserError

if TYPE_CHECKING:
    import torch


class AudioError(UserError):
    """A file that cannot be used, with a reason a user can act on."""


_silenced = {"count": 0, "saved": None}  # file descriptor 2 is the whole process's: one redirection for all threads
_silenced_lock = threading.Lock()


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Sends what C libraries write straight to file descriptor 2 to /dev/null for the duration. Threads overlap
    (the page's queue): the first to enter redirects, the last to leave restores what the first saved."""
    with _silenced_lock:
        if _silenced["count"] == 0:
            try:
                saved = os.dup(2)
            except OSError:  # no stderr at all
                saved = None
            if saved is not None:
                with open(os.devnull, "w") as devnull:
                    os.dup2(devnull.fileno(), 2)
            _silenced["saved"] = saved
        _silenced["count"] += 1
    try:
        yield
    finally:
        with _silenced_lock:
            _silenced["count"] -= 1
            saved = _silenced["saved"]
            if _silenced["count"] == 0 and saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
                _silenced["saved"] = None


def fallback_decoder():
    """librosa.load, which read_audio tries on what soundfile cannot read. Importing it costs about 170 MB (numba,
    scipy.signal, audioread): a server imports it at start (asr/app/serve.py), so that its memory does not step up at
    the first such upload."""
    import librosa.core.audio

    return librosa.core.audio.load


def read_audio(path: str | Path, min_seconds: float = 0.0) -> tuple[np.ndarray, int]:
    """Returns a (samples,) float32 array at the file's own rate, stereo mixed down to mono, and that rate.

    soundfile reads WAV/FLAC/OGG (any PCM width, float); anything else is handed to librosa, which
    falls back on audioread/FFmpeg where installed.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError("file not found")
    if path.is_dir():
        raise AudioError("is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError("empty file (0 bytes)")
    try:
        with native_stderr_silenced():  # libsndfile's decoders (mpg123) print their own complaints
            data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        data = data.mean(axis=1)
    except Exception as sf_error:  # noqa: BLE001 - any decoder failure becomes one clear message
        try:
            load = fallback_decoder()
            # librosa's fallback warnings and the decoders' own output: the AudioError below says it all
            with warnings.catch_warnings(), native_stderr_silenced():
                warnings.simplefilter("ignore")
                data, rate = load(str(path), sr=None, mono=True)
        except Exception:  # noqa: BLE001
            reason = str(sf_error).split(":")[-1].strip() or type(sf_error).__name__
            if "does not exist" in reason:  # libsndfile's words for a stream it cannot parse
                reason = f"no decoder could parse this {path.suffix or 'file'}"
            raise AudioError(f"unreadable or corrupt audio ({reason})") from None
    if data.size == 0:
        raise AudioError("no audio samples in file")
    if not np.isfinite(data).all():
        raise AudioError("audio contains NaN or infinite samples")
    duration = data.size / rate
    if duration < min_seconds:
        raise AudioError(f"too short: {duration * 1000:.0f} ms of audio, at least {min_seconds * 1000:.0f} ms needed")
    return np.ascontiguousarray(data, dtype=np.float32), rate


def load_audio(path: str | Path, sample_rate: int, min_seconds: float = 0.0) -> "torch.Tensor":
    """Returns a (samples,) float32 tensor at `sample_rate` (read_audio, then torchaudio's resampler)."""
    import torch
    import torchaudio

    data, rate = read_audio(path, min_seconds)
    waveform = torch.from_numpy(data)
    if rate != sample_rate:
        waveform = torchaudio.functional.resample(waveform, rate, sample_rate)
    return waveform


def sinc_kernel(step: int, block: int, lowpass_filter_width: int = 6, rolloff: float = 0.99) -> tuple[np.ndarray, int]:
    """torchaudio's resampling kernel (sinc_interp_hann, its defaults) from `step` input samples to `block` output
    samples (the rates divided by their gcd): (block, 2 * width + step) and width."""
    base = min(step, block) * rolloff
    width = math.ceil(lowpass_filter_width * step / base)
    t = (np.arange(0, -block, -1)[:, None] / block + np.arange(-width, width + step)[None] / step) * base
    t = np.clip(t, -lowpass_filter_width, lowpass_filter_width)
    window = np.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    kernel = np.where(t == 0, 1.0, np.sin(t) / np.where(t == 0, 1.0, t)) * window * base / step
    return kernel.astype(np.float32), width


class StreamingResampler:
    """torchaudio's resampling (what load_audio applies to a whole file) on a stream, in numpy: each output
    sample as soon as every input sample it depends on has arrived, the same values as resampling the whole recording
    at once (up to rounding). torchaudio computes output block b (new/gcd samples) from input samples
    [b*step - width, (b+1)*step + width), step = orig/gcd, zero-padded at both ends; so does this, block by block."""

    def __init__(self, orig_freq: int, new_freq: int):
        gcd = math.gcd(orig_freq, new_freq)
        self.step, self.block = orig_freq // gcd, new_freq // gcd
        self.kernel, self.width = sinc_kernel(self.step, self.block)
        self.pending = np.zeros(self.width, np.float32)  # input from the next block's first sample minus width
        self.received = 0

    def blocks(self) -> np.ndarray:
        span = 2 * self.width + self.step  # input samples one block reads
        count = (len(self.pending) - span) // self.step + 1 if len(self.pending) >= span else 0
        if count == 0:
            return np.zeros(0, np.float32)
        windows = np.lib.stride_tricks.sliding_window_view(self.pending, span)[: (count - 1) * self.step + 1 : self.step]
        # 4096 blocks at a time: the product copies its windows (span / step times the input), so a long file read at
        # once would need many times its own size
        out = np.concatenate([windows[i : i + 4096] @ self.kernel.T for i in range(0, count, 4096)]).reshape(-1)
        self.pending = self.pending[count * self.step :]
        return out

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """The next input samples -> the output samples they complete."""
        self.received += len(samples)
        self.pending = np.concatenate([self.pending, np.asarray(samples, np.float32)])
        return self.blocks()

    def finish(self) -> np.ndarray:
        """The rest of the output, the end zero-padded as torchaudio pads it, cut to its length."""
        produced = (self.received + self.width - len(self.pending)) // self.step * self.block
        self.pending = np.concatenate([self.pending, np.zeros(self.width + self.step, np.float32)])
        total = -(-self.block * self.received // self.step)  # ceil(new * length / orig), as torchaudio
        return self.blocks()[: max(0, total - produced)]


def resample(waveform: np.ndarray, rate: int, target: int) -> np.ndarray:
    """A whole waveform from `rate` to `target` as load_audio's torchaudio resamples it (up to rounding), in numpy:
    what the paths without torch use (asr/deploy/onnx_recognizer.py, onnx_stream.py)."""
    if rate == target:
        return waveform
    resampler = StreamingResampler(rate, target)
    return np.concatenate([resampler(waveform), resampler.finish()])
