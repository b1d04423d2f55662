"""Reading audio files of any common format and rate into mono float waveforms at the model's rate.

`read_audio` needs numpy and soundfile only (the ONNX path, asr/deploy/onnx_recognizer.py, runs without torch);
`load_audio` resamples with torchaudio and gives a tensor, for everything that runs the PyTorch model."""
from __future__ import annotations

import contextlib
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
            import librosa

            # librosa's fallback warnings and the decoders' own output: the AudioError below says it all
            with warnings.catch_warnings(), native_stderr_silenced():
                warnings.simplefilter("ignore")
                data, rate = librosa.load(str(path), sr=None, mono=True)
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
