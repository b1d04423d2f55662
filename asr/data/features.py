"""Acoustic features: waveform -> normalised log-mel frames -> stacked, subsampled frames.

80 log-mel energies every 10 ms over 25 ms windows is the standard input of CTC acoustic models.
They are normalised to zero mean / unit variance per mel band, in one of four ways (`normalize`):
- utterance: by the utterance's own statistics. Removes channel and level differences between speakers,
  but needs the whole recording before the first frame can be normalised.
- global: by statistics of the whole training split (computed once, carried in the checkpoint), as ESPnet's
  GlobalMVN does. Each frame is normalised on its own, the moment it exists: what a streaming model needs
  (asr/deploy/streaming.py), at the price of keeping the channel and level differences that per-utterance
  statistics remove: a microphone 20 dB quieter than the training audio shifts every feature by the same amount.
- online: causal mean normalisation, as streaming recognisers do it (Kaldi's online CMN): each frame minus the
  mean of the frames so far, that mean starting from the training mean as if it had been seen for ONLINE_PRIOR_FRAMES
  frames (`RunningMean`), then divided by the training standard deviation. A level or channel offset is gone once a
  few seconds have been heard, and a frame still needs only the frames before it: it streams.
- online_level: online, with the training mean moved to the level heard so far (`LevelMatchedMean`): a gain, which
  shifts every band by the same amount, is gone from the first frame on, where online normalisation carries it through
  the first second. The spectral shape (one band against another) is still forgotten only as frames come.
Then `stack` neighbouring frames are concatenated and only every `stride`-th kept: the recurrence then runs
over 20 ms steps, which halves the number of times the gradient must pass through W_rec on its way back in time.
"""
from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass
from typing import Mapping, Optional

import torch
import torchaudio

from asr.base.errors import UserError

# Part of every feature cache's key: raise it whenever a change to this file changes the features a
# configuration yields, so that no run reads features made by older code.
FEATURES_VERSION = 1
NORMALIZATIONS = ("utterance", "global", "online", "online_level")
ONLINE_PRIOR_FRAMES = 30  # online normalisation: the weight of the training mean, in frames (0.3 s at 10 ms)


def feature_stats(log_mels: list[torch.Tensor]) -> dict[str, list[float]]:
    """Per mel band mean and standard deviation over every frame of `log_mels` (un-normalised), the statistics
    of global normalisation: plain lists, so that they travel in a checkpoint's hyper-parameters."""
    frames = torch.cat(log_mels).double()
    return {"mean": frames.mean(0).tolist(), "std": frames.std(0).tolist()}


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = 16000
    n_mels: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0
    stack: int = 3
    stride: int = 2
    normalize: str = "utterance"  # or "global", "online", "online_level" (module docstring)

    def __post_init__(self):
        if self.normalize not in NORMALIZATIONS:
            raise UserError(f"data.normalize must be one of {', '.join(NORMALIZATIONS)}, got {self.normalize!r}")

    @property
    def uses_training_stats(self) -> bool:
        """Whether frames are normalised with the training split's statistics (carried in the checkpoint): global
        and the online ones. Such features stream; per-utterance ones do not."""
        return self.normalize == "global" or self.normalize in RUNNING_MEANS

    @property
    def frame_ms(self) -> float:
        """Duration of one stacked frame, i.e. one step of the recurrence and one model output."""
        return self.hop_ms * self.stride

    @property
    def output_dim(self) -> int:
        return self.n_mels * self.stack

    def as_dict(self) -> dict:
        return asdict(self)


class FeatureExtractor:
    """Waveform -> stacked features. With global normalisation it needs the training split's statistics
    (`feature_stats`): given here, or set once computed (`set_stats`)."""

    def __init__(self, config: FeatureConfig = FeatureConfig(), stats: Optional[Mapping] = None):
        self.config = config
        self.stats: Optional[dict] = None
        if stats is not None:
            self.set_stats(stats)
        win = round(config.sample_rate * config.win_ms / 1000)
        self.hop = round(config.sample_rate * config.hop_ms / 1000)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate,
            n_fft=win,  # one 25 ms window per FFT, no zero padding
            win_length=win,
            hop_length=self.hop,
            n_mels=config.n_mels,
            center=False,
        )

    def min_samples(self) -> int:
        """Shortest waveform that still yields one stacked frame."""
        return self.mel.win_length + self.hop * (self.config.stack - 1)

    def set_stats(self, stats: Mapping) -> None:
        if len(stats["mean"]) != self.config.n_mels or len(stats["std"]) != self.config.n_mels:
            raise UserError(f"feature statistics for {len(stats['mean'])} mel bands, the features have {self.config.n_mels}")
        self.stats = {"mean": list(stats["mean"]), "std": list(stats["std"])}
        self.mean, self.std = torch.tensor(stats["mean"]).float(), torch.tensor(stats["std"]).float()

    def raw_log_mel(self, samples: torch.Tensor) -> torch.Tensor:
        """Un-normalised log-mel energies of every whole window in `samples`: (frames, n_mels)."""
        return torch.log(self.mel(samples.float()) + 1e-6).T

    def utterance_log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """(samples,) float waveform at config.sample_rate -> (frames, n_mels): as far as the utterance alone
        decides (what the feature cache holds): normalised per utterance, or not yet normalised (global)."""
        if waveform.numel() < self.min_samples():
            raise UserError(f"audio too short: {waveform.numel()} samples, need at least {self.min_samples()}")
        feats = self.raw_log_mel(waveform)
        if self.config.normalize == "utterance":
            return (feats - feats.mean(0)) / (feats.std(0) + 1e-5)
        return feats

    def frame_normalizer(self) -> "FrameNormalizer":
        """Normalises the next raw log-mel frames of one recording (global or online normalisation), keeping what it
        needs between calls: a stream calls it chunk by chunk and gets what one call on the whole recording gives."""
        if self.stats is None:
            raise UserError(f"{self.config.normalize} feature normalisation needs the training split's statistics, "
                            "and none were given")
        return FrameNormalizer(self.mean, self.std, self.config.normalize)

    def normalize_frames(self, feats: torch.Tensor) -> torch.Tensor:
        """utterance_log_mel's output -> normalised features (global or online normalisation, from the recording's
        first frame on; already normalised per utterance: unchanged)."""
        if self.config.normalize == "utterance":
            return feats
        return self.frame_normalizer()(feats)

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """(samples,) float waveform at config.sample_rate -> (frames, n_mels), normalised."""
        return self.normalize_frames(self.utterance_log_mel(waveform))

    def stack(self, feats: torch.Tensor) -> torch.Tensor:
        """(frames, n_mels) -> (stacked_frames, n_mels * stack), keeping every `stride`-th frame."""
        k, s = self.config.stack, self.config.stride
        n_out = (feats.shape[0] - k) // s + 1
        return torch.cat([feats[i : i + s * n_out : s] for i in range(k)], dim=1)

    def stacked_length(self, frames: int) -> int:
        return (frames - self.config.stack) // self.config.stride + 1

    def __call__(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.stack(self.log_mel(waveform))


def running_means(prior: torch.Tensor, prior_frames: int, sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """RunningMean's formula, on float64 running sums of the frames seen (..., frames, bands) and their counts
    (frames, 1): the mean of the prior, weighted as `prior_frames` frames, and the frames so far."""
    return (prior_frames * prior + sums) / (prior_frames + counts)


def level_matched_means(prior: torch.Tensor, prior_frames: int, sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """LevelMatchedMean's formula, as running_means's, with the prior moved by the level heard so far (the mean over
    bands of the frames so far less the prior's)."""
    level = (sums / counts).mean(-1, keepdim=True) - prior.mean()
    return running_means(prior + level, prior_frames, sums, counts)


class RunningMean:
    """The causal mean of a recording's raw log-mel frames, per band: after frame t,
    (prior_frames * prior + sum of frames 0..t) / (prior_frames + t + 1), in float64. Called on consecutive blocks
    of frames, it returns each frame's mean (the frame itself included) and carries the sum and count on."""

    formula = staticmethod(running_means)

    def __init__(self, prior: torch.Tensor, prior_frames: int = ONLINE_PRIOR_FRAMES):
        self.prior, self.prior_frames = prior.double(), prior_frames
        self.total, self.count = torch.zeros_like(self.prior), 0  # the frames seen, not the prior

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        sums = self.total + torch.cumsum(feats.double(), dim=0)
        counts = self.count + torch.arange(1, len(feats) + 1, dtype=torch.float64)[:, None]
        if len(feats):
            self.total, self.count = sums[-1], self.count + len(feats)
        return self.formula(self.prior, self.prior_frames, sums, counts).to(feats.dtype)

    def current(self) -> torch.Tensor:
        """The mean after the frames seen so far (the prior before any)."""
        if not self.count:
            return self.prior.float()
        return self.formula(self.prior, self.prior_frames, self.total, torch.tensor(float(self.count))).float()


class LevelMatchedMean(RunningMean):
    """RunningMean with its prior moved to the recording's level: after frame t, the mean of
    prior_frames * (prior + level_t) and frames 0..t, where level_t is the mean over bands of frames 0..t less the
    prior's. A gain adds the same amount c to every band of every frame: it adds c to level_t and so to the mean,
    from frame 0 on, and the normalised frames are those of the recording at the training level."""

    formula = staticmethod(level_matched_means)


RUNNING_MEANS = {"online": RunningMean, "online_level": LevelMatchedMean}  # data.normalize -> its running mean


class FrameNormalizer:
    """Raw log-mel frames -> normalised ones: minus the training mean (global) or a running mean (online, online_level),
    over the training standard deviation."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, normalize: str):
        self.mean, self.std = mean, std
        self.means = RUNNING_MEANS.get(normalize)
        self.running = self.means(mean) if self.means is not None else None

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        centre = self.running(feats) if self.running is not None else self.mean
        return (feats - centre) / (self.std + 1e-5)

    def restart(self) -> None:
        """A new segment of the same recording (after an endpoint, asr/deploy/streaming.py): the running mean starts
        again at the prior's weight, from where it stands rather than from the training mean (the microphone's level
        stays what it was)."""
        if self.running is not None:
            self.running = self.means(self.running.current())


class SpecAugment(torch.nn.Module):
    """Masks random bands of mel channels and spans of frames (Park et al. 2019), training data only.

    Mask widths are uniform in [0, width), starts uniform over the positions where the mask fits, as in
    torchaudio's FrequencyMasking / TimeMasking; written out here because those draw from the global random
    generator, and these draw from the one they are given (seeded per utterance and epoch by the data module),
    so that an epoch's masks are the same in every worker, on every rank and in a resumed run."""

    def __init__(self, freq_masks: int = 2, freq_width: int = 27, time_masks: int = 2, time_width: int = 10):
        super().__init__()
        self.freq_masks, self.freq_width, self.time_masks, self.time_width = freq_masks, freq_width, time_masks, time_width

    @classmethod
    def of(cls, setting) -> "SpecAugment | None":
        """From a recipe's `data.spec_augment`: false (off), true (these defaults, LibriSpeech's policy: 2 bands
        of up to 27 of 80 mel channels, 2 spans of up to 10 frames) or a mapping of these arguments (milder
        masks for a small corpus, e.g. {freq_width: 10, time_width: 5})."""
        if not setting:
            return None
        if setting is True:
            return cls()
        names = tuple(inspect.signature(cls).parameters)  # the arguments of __init__
        unknown = set(setting) - set(names)
        if unknown:
            raise UserError(f"data.spec_augment: unknown setting(s) {', '.join(sorted(unknown))}; known: "
                            f"{', '.join(names)}")
        bad = [f"{k}={v!r}" for k, v in setting.items() if not isinstance(v, int) or isinstance(v, bool) or v < 0]
        if bad:
            raise UserError(f"data.spec_augment: {', '.join(bad)}: each must be a whole number, 0 or more")
        return cls(**setting)

    @staticmethod
    def mask(x: torch.Tensor, axis: int, max_width: int, generator) -> None:
        width = int(torch.randint(0, max(1, max_width), (), generator=generator))
        start = int(torch.randint(0, max(1, x.shape[axis] - width + 1), (), generator=generator))
        x.narrow(axis, start, min(width, x.shape[axis] - start)).zero_()

    def forward(self, feats: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(frames, n_mels) -> a masked copy (0 is each band's mean after normalisation)."""
        x = feats.clone()
        for _ in range(self.freq_masks):
            self.mask(x, 1, self.freq_width, generator)
        for _ in range(self.time_masks):
            self.mask(x, 0, self.time_width, generator)
        return x
