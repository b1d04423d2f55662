"""Test conditions for the robustness evaluation (`asr evaluate CKPT --condition NAME`): fixed, seeded
distortions of a split's audio, the same on every run and every machine.

Written apart from the training augmentation (asr/data/augment.py) and with other tools (numpy, scipy's filters
and resampler, pyroomacoustics' image-source room), with settings of their own, so that a model is not
scored on the very transforms its training drew from. The noise of each utterance is seeded by the
condition's name and the utterance's id alone.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

from asr.base.errors import UserError

CONDITIONS_VERSION = 1  # part of the feature cache's key: raise it when a condition's audio changes


def utterance_rng(condition: str, utterance_id: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{condition}/{utterance_id}".encode()).hexdigest()
    return np.random.default_rng(int(digest[:16], 16))


def white_noise(snr_db: float):
    def distort(x: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
        noise = rng.standard_normal(x.size)
        power = max(float(np.mean(x.astype(np.float64) ** 2)), 1e-12)  # over the whole utterance, pauses included
        return x + noise * np.sqrt(power / 10 ** (snr_db / 10))
    return distort


def speed(factor: float):
    """Tempo and pitch together (sox's `speed`): 1/factor as many samples at the same rate."""
    def distort(x: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
        from scipy.signal import resample_poly

        up, down = 100, round(100 * factor)
        g = np.gcd(up, down)
        return resample_poly(x, up // g, down // g)
    return distort


def telephone(x: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """The narrow-band telephone channel: 300-3400 Hz (8th-order Butterworth band-pass), sampled at 8 kHz, and
    back to the model's rate (nothing above 4 kHz survives)."""
    from scipy.signal import butter, resample_poly, sosfilt

    narrow = resample_poly(x, 8000, rate) if rate != 8000 else x
    band = sosfilt(butter(4, [300, 3400], btype="bandpass", fs=8000, output="sos"), narrow)
    return resample_poly(band, rate, 8000) if rate != 8000 else band


@lru_cache(maxsize=4)
def small_room_response(rate: int) -> np.ndarray:
    """One fixed room: 4 x 3.5 x 2.7 m, walls absorbing 20 % of the energy (RT60 about 0.3 s), talker 1.9 m
    from the microphone; image sources up to order 17 (pyroomacoustics)."""
    import pyroomacoustics as pra

    room = pra.ShoeBox([4.0, 3.5, 2.7], fs=rate, materials=pra.Material(0.2), max_order=17)
    room.add_source([1.1, 1.4, 1.6])
    room.add_microphone([2.9, 2.0, 1.2])
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)
    return rir / np.abs(rir).max()


def reverb(x: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.signal import fftconvolve

    wet = fftconvolve(x, small_room_response(rate))[: x.size]
    return wet * np.sqrt(np.mean(x ** 2) / max(np.mean(wet ** 2), 1e-20))  # the clean utterance's level


def gain(db: float):
    """The whole recording louder or quieter, as a microphone set to another level records it."""
    def distort(x: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
        return x * 10 ** (db / 20)
    return distort


def clipped(over: float):
    """Recorded too hot: the gain that puts the utterance's peak `over` times above full scale, then clipped at
    full scale (+-1), as an overdriven microphone input clips."""
    def distort(x: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
        peak = max(float(np.abs(x).max()), 1e-12)
        return np.clip(x * (over / peak), -1.0, 1.0)
    return distort


@dataclass(frozen=True)
class Condition:
    name: str
    describe: str
    distort: Callable[[np.ndarray, int, np.random.Generator], np.ndarray]

    def __call__(self, waveform: np.ndarray, rate: int, utterance_id: str) -> np.ndarray:
        """The distorted waveform (float32), a function of the audio, the rate and the utterance's id only."""
        out = self.distort(np.asarray(waveform, dtype=np.float64), rate, utterance_rng(self.name, utterance_id))
        return out.astype(np.float32)


CONDITIONS = {c.name: c for c in (
    Condition("noise_20db", "white noise, 20 dB SNR", white_noise(20.0)),
    Condition("noise_10db", "white noise, 10 dB SNR", white_noise(10.0)),
    Condition("speed_0.9", "speed 0.9 (slower, lower)", speed(0.9)),
    Condition("speed_1.1", "speed 1.1 (faster, higher)", speed(1.1)),
    Condition("telephone", "telephone band (300-3400 Hz, 8 kHz)", telephone),
    Condition("reverb", "small-room reverb (RT60 about 0.3 s)", reverb),
    Condition("quiet_20db", "20 dB quieter", gain(-20.0)),
    Condition("clipped", "too loud, clipped (peak 4x full scale)", clipped(4.0)),
)}
CLEAN = "clean"


def condition(name: str | None) -> Condition | None:
    """The condition of that name; None for clean audio."""
    if name in (None, CLEAN):
        return None
    if name not in CONDITIONS:
        raise UserError(f"unknown condition {name!r}: choose one of {CLEAN}, {', '.join(CONDITIONS)}")
    return CONDITIONS[name]


def background_like(waveform: np.ndarray, seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """`seconds` of noise with the spectrum and level of a recording's background: the mean power spectrum of its
    quietest tenth of 32 ms frames, given random phases."""
    window = 512
    frames = waveform[: len(waveform) // window * window].reshape(-1, window).astype(np.float64)
    quiet = frames[np.sqrt((frames ** 2).mean(1)) <= np.percentile(np.sqrt((frames ** 2).mean(1)), 10)]
    spectrum = (np.abs(np.fft.rfft(quiet, axis=1)) ** 2).mean(0)
    n = round(seconds * rate)
    shape = np.sqrt(np.interp(np.fft.rfftfreq(n), np.fft.rfftfreq(window), spectrum))
    noise = np.fft.irfft(shape * (rng.standard_normal(len(shape)) + 1j * rng.standard_normal(len(shape))), n)
    return noise * np.sqrt((quiet ** 2).mean() / max((noise ** 2).mean(), 1e-30))


def joined_recording(waveforms: list[np.ndarray], rate: int, pause_seconds: float = 1.0,
                     seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """A long recording made of utterances one after another, a pause between each two, as a live recogniser
    hears a person who says one thing after another: each pause the background of the utterance before it
    (`background_like`), so that the recording never falls to digital silence or to another room's noise.
    Returns the recording (float32) and each utterance's start in seconds."""
    rng = np.random.default_rng(seed)
    parts, starts, at = [], [], 0
    for i, w in enumerate(waveforms):
        w = np.asarray(w, dtype=np.float32)
        starts.append(at / rate)
        parts.append(w)
        at += len(w)
        if i < len(waveforms) - 1:
            pause = background_like(w, pause_seconds, rate, rng).astype(np.float32)
            parts.append(pause)
            at += len(pause)
    return np.concatenate(parts), starts
