"""A corpus split as features: utterances -> (cached) log-mel features -> examples with label ids.

What training, evaluation and the study all read, without Lightning: the data module (asr/data/datamodule.py)
batches these examples for training; `asr evaluate` scores them directly.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import Dataset

from asr.data.audio import load_audio
from asr.base.files import save_atomically
from asr.data.conditions import CONDITIONS_VERSION, Condition
from asr.data.conditions import condition as distortion_of
from asr.data.corpora import Utterance, load_split
from asr.base.errors import UserError
from asr.data.features import FEATURES_VERSION, FeatureConfig, FeatureExtractor, feature_stats
from asr.data.text import CharTokenizer, ctc_min_frames, tokenizer_for

log = logging.getLogger(__name__)


@dataclass
class Example:
    id: str
    text: str
    log_mel: torch.Tensor  # (frames, n_mels), normalised, not yet stacked
    labels: torch.Tensor
    augment_seed: Optional[int] = None  # seeds this utterance's augmentation (and SpecAugment masks) in this epoch
    waveform: Optional[torch.Tensor] = None  # kept for training utterances when waveforms are augmented


class FeatureDataset(Dataset):
    """Examples by index; an (index, augment_seed) key, as the training sampler gives, also hands the
    example the seed of its augmentation for this epoch."""

    def __init__(self, examples: list[Example]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, key) -> Example:
        if isinstance(key, tuple):
            index, seed = key
            return replace(self.examples[index], augment_seed=seed)
        return self.examples[key]

    def lengths(self) -> list[int]:
        return [e.log_mel.shape[0] for e in self.examples]


def extract_features(utts: list[Utterance], extractor: FeatureExtractor, cache_dir: Optional[Path],
                     cache_dtype: str = "float32", bad_audio: str = "stop",
                     distortion: Optional[Condition] = None) -> list[Optional[torch.Tensor]]:
    """Log-mel features of every utterance (as far as each utterance alone decides them:
    FeatureExtractor.utterance_log_mel), read from / written to a cache keyed by config and transcripts.
    A cache hit reads no audio at all, so a cache can stand in for the corpus' WAV files (see
    scripts/prepare_gpu_carry.sh); float16 halves its size. A damaged cache file is named and rebuilt.

    A file that cannot be read stops everything with its name (bad_audio="stop"), or is skipped, named in a
    warning, its entry None (bad_audio="skip"; the cache is then not written). `distortion`: a test condition
    (asr/data/conditions.py) applied to every waveform first."""
    cache = None
    if cache_dir is not None:
        # Keyed by what the features depend on, not by where the corpus lies: the same cache serves any
        # copy of the corpus (downloads are checked file by file against asr/data/manifests/).
        key = [FEATURES_VERSION, extractor.config.as_dict(), cache_dtype, [(u.id, u.text) for u in utts]]
        if distortion is not None:
            key += [distortion.name, CONDITIONS_VERSION]
        key = json.dumps(key)
        cache = Path(cache_dir) / f"features-{hashlib.sha1(key.encode()).hexdigest()[:16]}.pt"
        if cache.exists():
            try:
                stored = torch.load(cache, weights_only=True)
                if len(stored) != len(utts):
                    raise RuntimeError(f"{len(stored)} entries for {len(utts)} utterances")
                return [f.float() for f in stored]
            except Exception as e:  # noqa: BLE001 - truncated, corrupt or foreign: the audio is the truth
                reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
                log.warning("feature cache %s is damaged (%s): rebuilding it from the audio", cache, reason)
                cache.unlink(missing_ok=True)
    feats: list[Optional[torch.Tensor]] = []
    skipped = []
    for u in utts:
        try:
            waveform = load_audio(u.path, extractor.config.sample_rate)
            if distortion is not None:
                waveform = torch.from_numpy(distortion(waveform.numpy(), extractor.config.sample_rate, u.id))
            feats.append(extractor.utterance_log_mel(waveform))
        except ValueError as e:  # AudioError (unreadable, empty, corrupt) or too short for one frame
            if bad_audio == "stop":
                raise UserError(f"{u.path} (utterance {u.id}): {e}. Replace or remove the file, or set "
                                 "data.bad_audio: skip to go on without it (the skipped files are listed).") from None
            skipped.append(f"{u.path} ({e})")
            feats.append(None)
    if skipped:
        log.warning("%d audio file(s) skipped (data.bad_audio: skip): %s", len(skipped), "; ".join(skipped))
    elif cache is not None:
        stored = [f.to(getattr(torch, cache_dtype)) for f in feats]
        save_atomically(stored, cache)  # DDP ranks may write it at once: each renames a whole file into place
        feats = [f.float() for f in stored]  # the same values a cache hit gives
    return feats


class CorpusFeatures:
    """The examples of each split of one corpus, at one feature configuration (arguments as ASRDataModule's).
    Global normalisation (asr/data/features.py) uses `feature_stats` if given (a trained model's), else the statistics
    of this corpus' training split; labels are of `vocabulary`'s symbols (a trained model's; None: characters)."""

    def __init__(self, dataset: str = "an4", data_dir: Optional[str] = None, feature_config: FeatureConfig = FeatureConfig(),
                 cache_dir: Optional[str] = "data/cache", cache_dtype: str = "float32",
                 max_utterances: Optional[int] = None, bad_audio: str = "stop", condition: Optional[str] = None,
                 feature_stats: Optional[dict] = None, vocabulary: Optional[list[str]] = None):
        if cache_dtype not in ("float32", "float16"):
            raise UserError(f"data.cache_dtype must be float32 or float16, got {cache_dtype!r}")
        if bad_audio not in ("stop", "skip"):
            raise UserError(f"data.bad_audio must be stop or skip, got {bad_audio!r}")
        c = feature_config
        for name, value, low in (("sample_rate", c.sample_rate, 1), ("n_mels", c.n_mels, 1), ("win_ms", c.win_ms, 1e-9),
                                 ("hop_ms", c.hop_ms, 1e-9), ("stack", c.stack, 1), ("stride", c.stride, 1),
                                 ("max_utterances", max_utterances if max_utterances is not None else 1, 1)):
            if value < low:
                raise UserError(f"data.{name} must be {'positive' if low == 1e-9 else f'at least {low}'}, got {value}")
        self.dataset, self.data_dir, self.cache_dir, self.cache_dtype = dataset, data_dir, cache_dir, cache_dtype
        self.max_utterances, self.bad_audio = max_utterances, bad_audio
        self.distortion = distortion_of(condition)  # a test condition: every split's audio distorted by it
        if self.distortion and feature_config.uses_training_stats and feature_stats is None:
            # the statistics would come from the distorted training split: the model was trained on clean ones
            raise UserError(f"condition {condition!r} with global normalisation needs the trained model's feature "
                             "statistics (feature_stats): they must come from the clean training audio")
        self.feature_config = feature_config
        self.extractor = FeatureExtractor(feature_config, feature_stats)
        self.tokenizer = tokenizer_for(vocabulary) if vocabulary else CharTokenizer()
        self.datasets: dict[str, FeatureDataset] = {}
        self.utterances: dict[str, list[Utterance]] = {}  # per split: every utterance read, kept or not
        self.unemittable: dict[str, list[str]] = {}  # per split: ids whose transcript CTC cannot emit

    def load(self, split: str) -> FeatureDataset:
        """Features of one split. Training leaves out utterances whose transcript is empty or longer than CTC
        can emit from their frames (their loss is infinite), and says which; dev and test keep every
        utterance, so that the WER is always over the whole split (a model that cannot emit a transcript
        pays for it in deletions)."""
        if split in self.datasets:
            return self.datasets[split]
        utts, feats = self.utterance_features(split)
        if self.feature_config.uses_training_stats:
            if self.extractor.stats is None:
                train = feats if split == "train" else self.utterance_features("train")[1]
                self.extractor.set_stats(feature_stats([f for f in train if f is not None]))
            feats = [None if f is None else self.extractor.normalize_frames(f) for f in feats]
        examples, unemittable = [], []
        for u, f in zip(utts, feats):
            if f is None:  # skipped unreadable file (bad_audio: skip), already reported
                continue
            labels = self.tokenizer.encode(u.text)
            if not self.ctc_can_emit(f, labels):
                unemittable.append(u.id)
                if split == "train":
                    continue
            examples.append(Example(u.id, u.text, f, labels))
        if unemittable:
            what = "left out of training" if split == "train" else "kept, but CTC cannot emit their transcript"
            log.warning("%s %s: %d utterance(s) %s (transcript empty or longer than their %g ms frames allow): %s",
                        self.dataset, split, len(unemittable), what, self.feature_config.frame_ms,
                        ", ".join(unemittable))
        self.unemittable[split] = unemittable
        self.utterances[split] = utts
        self.datasets[split] = FeatureDataset(examples)
        return self.datasets[split]

    def training_utterances(self) -> list[Utterance]:
        """The training split's utterances, as many as max_utterances keeps."""
        utts = load_split(self.dataset, "train", self.data_dir)
        return utts[: self.max_utterances] if self.max_utterances else utts

    def utterance_features(self, split: str) -> tuple[list[Utterance], list[Optional[torch.Tensor]]]:
        """A split's utterances and their (cached) features before global normalisation; None for a skipped file."""
        utts = load_split(self.dataset, split, self.data_dir)
        if self.max_utterances:
            utts = utts[: self.max_utterances]
        if not utts:
            raise UserError(f"{self.dataset} {split} split is empty under {self.data_dir}")
        cache_dir = Path(self.cache_dir) if self.cache_dir else None
        return utts, extract_features(utts, self.extractor, cache_dir, self.cache_dtype, self.bad_audio, self.distortion)

    def keep_waveforms(self, split: str) -> None:
        """Holds each example's waveform beside its features (for waveform augmentation, asr/data/augment.py):
        read once, at the features' sample rate."""
        paths = {u.id: u.path for u in self.utterances[split]}
        for e in self.load(split).examples:
            if e.waveform is None:
                e.waveform = load_audio(paths[e.id], self.feature_config.sample_rate)

    def ctc_can_emit(self, log_mel: torch.Tensor, labels: torch.Tensor) -> bool:
        """Whether CTC can emit `labels` from this utterance's stacked frames (else its CTC loss is infinite)."""
        return len(labels) > 0 and self.extractor.stacked_length(log_mel.shape[0]) >= ctc_min_frames(labels)

