"""Reading audio files of any common format and rate into mono float waveforms at the model's rate."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio


class AudioError(ValueError):
    """A file that cannot be used, with a reason a user can act on."""


def load_audio(path: str | Path, sample_rate: int, min_seconds: float = 0.0) -> torch.Tensor:
    """Returns a (samples,) float32 tensor at `sample_rate`, stereo mixed down to mono.

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
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        data = data.mean(axis=1)
    except Exception as sf_error:  # noqa: BLE001 - any decoder failure becomes one clear message
        try:
            import librosa

            data, rate = librosa.load(str(path), sr=None, mono=True)
        except Exception:  # noqa: BLE001
            reason = str(sf_error).split(":")[-1].strip() or type(sf_error).__name__
            raise AudioError(f"unreadable or corrupt audio ({reason})") from None
    if data.size == 0:
        raise AudioError("no audio samples in file")
    if not np.isfinite(data).all():
        raise AudioError("audio contains NaN or infinite samples")
    duration = data.size / rate
    if duration < min_seconds:
        raise AudioError(f"too short: {duration * 1000:.0f} ms of audio, at least {min_seconds * 1000:.0f} ms needed")
    waveform = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
    if rate != sample_rate:
        waveform = torchaudio.functional.resample(waveform, rate, sample_rate)
    return waveform
