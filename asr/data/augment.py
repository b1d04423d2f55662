"""Waveform augmentation of training utterances: the conditions a model meets outside its corpus, drawn anew
for every utterance in every epoch.

Each training utterance, every epoch, goes through (each step drawn from the generator it is given, which the
data module seeds from (seed, epoch, utterance), so that workers, DDP ranks and resumed runs all draw the same):
  1. speed perturbation: resampled by 0.9, 1.0 or 1.1 (tempo and pitch together, as Kaldi's and ESPnet's AN4
     recipes do with sox);
  2. reverberation (probability `reverb`): convolved with a synthetic room impulse response, exponentially
     decaying Gaussian noise with a reverberation time RT60 drawn from `rt60` seconds;
  3. channel band-limiting (probability `band`): a high-pass at 100-400 Hz and a low-pass at 2.5-4 kHz, as a
     telephone or a cheap microphone passes;
  4. additive noise (probability `noise`): generated white, pink (1/f) or brown (1/f^2) noise at an SNR drawn
     from `snr_db` (no noise corpus is reachable offline; generated colours stand in for one);
  5. gain drawn from `gain_db` (the features are normalised per utterance, so gain alone changes little; it
     moves the level against the log's floor; for global or online normalisation it is the microphone's level);
  6. saturation (probability `saturate`, off by default): an input driven `drive_db` past full scale and soft-
     clipped, as a microphone's analogue stage set too hot records; or (probability `hard_clip` of those) cut flat
     at full scale, as its converter does.
Dev and test audio is never augmented. The distortions of the robustness evaluation (asr/data/conditions.py) are
separate code with fixed settings, so the evaluation does not test the training code against itself.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torchaudio.functional as F

from asr.base.errors import UserError

SPEEDS = (0.9, 1.0, 1.1)


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of each step (a recipe's `data.augment` mapping sets any of them)."""
    speeds: tuple = SPEEDS
    reverb: float = 0.3
    rt60: tuple = (0.1, 0.6)
    band: float = 0.2
    noise: float = 0.5
    snr_db: tuple = (5.0, 30.0)
    gain_db: tuple = (-6.0, 6.0)
    saturate: float = 0.0  # off unless a recipe sets it (then drive_db above full scale, tanh's soft clipping)
    drive_db: tuple = (3.0, 15.0)
    hard_clip: float = 0.0  # of the saturated inputs, the share clipped hard at +-1 rather than by tanh

    @classmethod
    def of(cls, setting) -> "AugmentConfig | None":
        """From a recipe's `data.augment`: false/None (off), true (these defaults) or a mapping of fields."""
        if not setting:
            return None
        if setting is True:
            return cls()
        unknown = set(setting) - set(cls.__dataclass_fields__)
        if unknown:
            raise UserError(f"data.augment: unknown setting(s) {', '.join(sorted(unknown))}; known: "
                            f"{', '.join(cls.__dataclass_fields__)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in setting.items()})

    def as_dict(self) -> dict:
        return asdict(self)


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def chance(generator: torch.Generator, p: float) -> bool:
    return float(torch.rand((), generator=generator)) < p


def change_speed(waveform: torch.Tensor, factor: float) -> torch.Tensor:
    """Played `factor` times faster: 1/factor as many samples at the same rate (pitch moves with tempo)."""
    if factor == 1.0:
        return waveform
    faster, slower = round(factor * 100), 100
    g = math.gcd(faster, slower)
    return F.resample(waveform, faster // g, slower // g)


def synthetic_room(generator: torch.Generator, rt60: float, sample_rate: int) -> torch.Tensor:
    """An impulse response: the direct sound, then Gaussian noise whose energy falls by 60 dB in rt60 seconds."""
    n = max(2, int(rt60 * sample_rate))
    t = torch.arange(n) / sample_rate
    tail = torch.randn(n, generator=generator) * torch.exp(-6.9078 * t / rt60)  # ln(1000): 60 dB in amplitude
    tail[0] = 0.0
    rir = tail / tail.norm() * 0.7
    rir[0] = 1.0
    return rir / rir.norm()


def coloured_noise(generator: torch.Generator, n: int, colour: int) -> torch.Tensor:
    """White (0), pink (1) or brown (2) noise: white noise with its power spectrum shaped by 1/f^colour."""
    white = torch.randn(n, generator=generator)
    if colour == 0:
        return white
    spectrum = torch.fft.rfft(white)
    f = torch.arange(spectrum.numel(), dtype=torch.float32).clamp(min=1.0)
    return torch.fft.irfft(spectrum / f ** (colour / 2), n=n)


def reverberate(waveform: torch.Tensor, rir: torch.Tensor) -> torch.Tensor:
    """The waveform convolved with an impulse response, cut to its own length. By FFT at a power-of-two size:
    torchaudio's fftconvolve takes the exact length, which for most utterances has large prime factors (8x
    slower, benchmarks/augment_cost.py)."""
    n = waveform.numel() + rir.numel() - 1
    size = 1 << (n - 1).bit_length()
    return torch.fft.irfft(torch.fft.rfft(waveform, size) * torch.fft.rfft(rir, size), size)[: waveform.numel()]


def add_noise(waveform: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    power = waveform.pow(2).mean().clamp(min=1e-12)
    scale = torch.sqrt(power / (noise.pow(2).mean().clamp(min=1e-12) * 10 ** (snr_db / 10)))
    return waveform + scale * noise


def augment(waveform: torch.Tensor, sample_rate: int, config: AugmentConfig,
            generator: torch.Generator) -> torch.Tensor:
    """One draw of every step above for a (samples,) waveform; every number comes from `generator`."""
    factor = config.speeds[int(torch.randint(len(config.speeds), (), generator=generator))]
    x = change_speed(waveform, factor)
    if chance(generator, config.reverb):
        rir = synthetic_room(generator, uniform(generator, *config.rt60), sample_rate)
        x = reverberate(x, rir)
    if chance(generator, config.band):
        x = F.highpass_biquad(x, sample_rate, uniform(generator, 100.0, 400.0))
        x = F.lowpass_biquad(x, sample_rate, min(uniform(generator, 2500.0, 4000.0), 0.45 * sample_rate))
    if chance(generator, config.noise):
        colour = int(torch.randint(3, (), generator=generator))
        x = add_noise(x, coloured_noise(generator, x.numel(), colour), uniform(generator, *config.snr_db))
    x = x * 10 ** (uniform(generator, *config.gain_db) / 20)
    if config.saturate > 0 and chance(generator, config.saturate):  # no draw when off: older recipes draw as before
        drive_db = uniform(generator, *config.drive_db)
        hard = config.hard_clip > 0 and chance(generator, config.hard_clip)
        x = saturate(x, drive_db, hard)
    return x


def saturate(waveform: torch.Tensor, drive_db: float, hard: bool = False) -> torch.Tensor:
    """An input stage driven past full scale: the peak raised to `drive_db` above full scale, then tanh's soft
    clipping at +-1, or (`hard`) cut flat there (the test condition `clipped` is its own code: asr/data/conditions.py)."""
    peak = waveform.abs().max().clamp(min=1e-12)
    driven = waveform * (10 ** (drive_db / 20) / peak)
    return driven.clamp(-1.0, 1.0) if hard else torch.tanh(driven)
