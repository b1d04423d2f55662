"""The LightningDataModule: corpus -> cached features -> length-bucketed, padded batches.

Features are computed once per split (and optionally cached on disk, so a second run starts at
once); SpecAugment and frame stacking happen when a batch is put together, so every epoch sees
fresh masks on the training split and none on dev/test.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Optional

import lightning as L
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, Sampler

from .audio import load_audio
from .corpora import Utterance, load_split
from .features import FEATURES_VERSION, FeatureConfig, FeatureExtractor, SpecAugment
from .text import CharTokenizer, ctc_min_frames

log = logging.getLogger(__name__)


@dataclass
class Example:
    id: str
    text: str
    log_mel: torch.Tensor  # (frames, n_mels), normalised, not yet stacked
    labels: torch.Tensor
    augment_seed: Optional[int] = None  # seeds this utterance's SpecAugment masks in this epoch


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
                     cache_dtype: str = "float32", bad_audio: str = "stop") -> list[Optional[torch.Tensor]]:
    """Log-mel features of every utterance, read from / written to a cache keyed by config and transcripts.
    A cache hit reads no audio at all, so a cache can stand in for the corpus' WAV files (see
    scripts/prepare_gpu_carry.sh); float16 halves its size. A damaged cache file is named and rebuilt.

    A file that cannot be read stops everything with its name (bad_audio="stop"), or is skipped, named in a
    warning, its entry None (bad_audio="skip"; the cache is then not written)."""
    cache = None
    if cache_dir is not None:
        # Keyed by what the features depend on, not by where the corpus lies: the same cache serves any
        # copy of the corpus (downloads are checked file by file against asr/manifests/).
        key = json.dumps([FEATURES_VERSION, extractor.config.as_dict(), cache_dtype, [(u.id, u.text) for u in utts]])
        cache = Path(cache_dir) / f"features-{hashlib.sha1(key.encode()).hexdigest()[:16]}.pt"
        if cache.exists():
            try:
                stored = torch.load(cache, weights_only=True)
                if len(stored) != len(utts):
                    raise ValueError(f"{len(stored)} entries for {len(utts)} utterances")
                return [f.float() for f in stored]
            except Exception as e:  # noqa: BLE001 - truncated, corrupt or foreign: the audio is the truth
                reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
                log.warning("feature cache %s is damaged (%s): rebuilding it from the audio", cache, reason)
                cache.unlink(missing_ok=True)
    feats: list[Optional[torch.Tensor]] = []
    skipped = []
    for u in utts:
        try:
            feats.append(extractor.log_mel(load_audio(u.path, extractor.config.sample_rate)))
        except ValueError as e:  # AudioError (unreadable, empty, corrupt) or too short for one frame
            if bad_audio == "stop":
                raise ValueError(f"{u.path} (utterance {u.id}): {e}. Replace or remove the file, or set "
                                 "data.bad_audio: skip to go on without it (the skipped files are listed).") from None
            skipped.append(f"{u.path} ({e})")
            feats.append(None)
    if skipped:
        log.warning("%d audio file(s) skipped (data.bad_audio: skip): %s", len(skipped), "; ".join(skipped))
    elif cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")  # DDP ranks may write at once; replace() is atomic
        stored = [f.to(getattr(torch, cache_dtype)) for f in feats]
        torch.save(stored, tmp)
        tmp.replace(cache)
        feats = [f.float() for f in stored]  # the same values a cache hit gives
    return feats


class EpochPermutation(Sampler[int]):
    """A random permutation of the utterance indices, a new one every epoch and the same on every DDP rank.

    Lightning calls `set_epoch` at the start of every epoch on `dataloader.sampler` and on
    `dataloader.batch_sampler.sampler`, never on a batch sampler itself: this is the object it finds there
    (BucketBatchSampler.sampler), and the batch sampler reads the epoch's order from it.
    """

    def __init__(self, size: int, shuffle: bool, seed: int = 0):
        self.size, self.shuffle, self.seed, self.epoch = size, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self) -> random.Random:
        """The epoch's random numbers: a function of (seed, epoch) only, so ranks and resumed runs agree."""
        return random.Random(f"{self.seed}/{self.epoch}")

    def augment_seed(self, index: int) -> int:
        """Seed of utterance `index`'s augmentation in this epoch: like the order, a function of (seed, epoch)
        and nothing else, so no worker process, rank or resumed run draws different masks."""
        return int(hashlib.sha1(f"{self.seed}/{self.epoch}/{index}".encode()).hexdigest()[:15], 16)

    def __iter__(self) -> Iterator[int]:
        order = list(range(self.size))
        if self.shuffle:
            self.generator().shuffle(order)
        return iter(order)

    def __len__(self) -> int:
        return self.size


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length (little padding, so the RNN does little wasted work), in random order.

    Every epoch: the utterances in `sampler`'s order (random ties in length), sorted by length, cut into
    batches, the batches shuffled. Shards itself across DDP ranks: every rank builds the same batch list
    and takes every world_size-th batch; when the batches do not divide evenly the first ones are repeated
    so that all ranks run the same number of steps.
    """

    def __init__(self, lengths: list[int], batch_size: int, shuffle: bool, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0):
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be at least 1, got {batch_size}")
        self.lengths, self.batch_size, self.shuffle = lengths, batch_size, shuffle
        self.num_replicas, self.rank = num_replicas, rank
        self.sampler = EpochPermutation(len(lengths), shuffle, seed)

    def batches(self) -> list[list[int]]:
        """This rank's batches for the sampler's current epoch."""
        order = sorted(self.sampler, key=lambda i: self.lengths[i])  # stable: ties keep the random order
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.shuffle:
            self.sampler.generator().shuffle(batches)
        total = math.ceil(len(batches) / self.num_replicas) * self.num_replicas
        batches += batches[: total - len(batches)]
        return batches[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[list]:
        # A generator: the order is drawn at the first batch, not when the iterator is made. (A resumed run
        # makes its iterator before Lightning sets the epoch it resumes at.)
        for batch in self.batches():
            yield [(i, self.sampler.augment_seed(i)) for i in batch] if self.shuffle else batch

    def __len__(self) -> int:
        return math.ceil(math.ceil(len(self.lengths) / self.batch_size) / self.num_replicas)


@dataclass
class Batch:
    features: torch.Tensor  # (batch, frames, feature_dim), stacked and padded
    feature_lengths: torch.Tensor
    labels: torch.Tensor  # all label sequences concatenated (CTCLoss's packed form)
    label_lengths: torch.Tensor
    texts: list[str]
    ids: list[str]

    def to(self, device):
        self.features, self.labels = self.features.to(device), self.labels.to(device)
        return self


class Collate:
    def __init__(self, extractor: FeatureExtractor, augment: Optional[SpecAugment] = None):
        self.extractor, self.augment = extractor, augment

    def __call__(self, examples: list[Example]) -> Batch:
        feats = []
        for e in examples:
            if self.augment is not None:
                generator = torch.Generator().manual_seed(e.augment_seed) if e.augment_seed is not None else None
                x = self.augment(e.log_mel, generator)
            else:
                x = e.log_mel
            feats.append(self.extractor.stack(x))
        return Batch(
            features=pad_sequence(feats, batch_first=True),
            feature_lengths=torch.tensor([len(f) for f in feats]),
            labels=torch.cat([e.labels for e in examples]),
            label_lengths=torch.tensor([len(e.labels) for e in examples]),
            texts=[e.text for e in examples],
            ids=[e.id for e in examples],
        )


class ASRDataModule(L.LightningDataModule):
    """Args:
        dataset: an4, fsdd or librispeech.
        data_dir: folder holding the corpus (default: $ASR_DATA_DIR, else ./data).
        batch_size: utterances per batch, grouped by length.
        sample_rate, n_mels, win_ms, hop_ms, stack, stride: the features (see asr/features.py).
        spec_augment: mask frequency bands and time spans of training batches.
        cache_dir: where extracted features are kept between runs (None: not cached).
        cache_dtype: float32 or float16 (half the disk; the values a run sees are the cached ones either way).
        max_utterances: use only the first N utterances of each split (quick experiments, tests).
        num_workers: DataLoader worker processes.
        seed: seed of the batch order.
        bad_audio: what an unreadable audio file does: stop (the default: the error names the file) or skip
            (train without it; a warning lists every skipped file; in dev/test it counts as all deletions).
    """

    def __init__(
        self,
        dataset: str = "an4",
        data_dir: Optional[str] = None,
        batch_size: int = 32,
        sample_rate: int = 16000,
        n_mels: int = 80,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        stack: int = 3,
        stride: int = 2,
        spec_augment: bool = True,
        cache_dir: Optional[str] = "data/cache",
        cache_dtype: str = "float32",
        max_utterances: Optional[int] = None,
        num_workers: int = 0,
        seed: int = 0,
        bad_audio: str = "stop",
    ):
        super().__init__()
        if cache_dtype not in ("float32", "float16"):
            raise ValueError(f"data.cache_dtype must be float32 or float16, got {cache_dtype!r}")
        if bad_audio not in ("stop", "skip"):
            raise ValueError(f"data.bad_audio must be stop or skip, got {bad_audio!r}")
        for name, value, low in (("batch_size", batch_size, 1), ("sample_rate", sample_rate, 1), ("n_mels", n_mels, 1),
                                 ("win_ms", win_ms, 1e-9), ("hop_ms", hop_ms, 1e-9), ("stack", stack, 1),
                                 ("stride", stride, 1), ("num_workers", num_workers, 0),
                                 ("max_utterances", max_utterances if max_utterances is not None else 1, 1)):
            if value < low:
                raise ValueError(f"data.{name} must be {'positive' if low == 1e-9 else f'at least {low}'}, got {value}")
        self.save_hyperparameters()
        self.feature_config = FeatureConfig(sample_rate, n_mels, win_ms, hop_ms, stack, stride)
        self.extractor = FeatureExtractor(self.feature_config)
        self.tokenizer = CharTokenizer()
        self.datasets: dict[str, FeatureDataset] = {}
        self.unemittable: dict[str, list[str]] = {}  # per split: ids whose transcript CTC cannot emit

    @property
    def feature_dim(self) -> int:
        return self.feature_config.output_dim

    def load(self, split: str) -> FeatureDataset:
        """Features of one split. Training leaves out utterances whose transcript is empty or longer than CTC
        can emit from their frames (their loss is infinite), and says which; dev and test keep every
        utterance, so that the WER is always over the whole split (a model that cannot emit a transcript
        pays for it in deletions)."""
        if split in self.datasets:
            return self.datasets[split]
        utts = load_split(self.hparams.dataset, split, self.hparams.data_dir)
        if self.hparams.max_utterances:
            utts = utts[: self.hparams.max_utterances]
        if not utts:
            raise ValueError(f"{self.hparams.dataset} {split} split is empty under {self.hparams.data_dir}")
        cache_dir = Path(self.hparams.cache_dir) if self.hparams.cache_dir else None
        feats = extract_features(utts, self.extractor, cache_dir, self.hparams.cache_dtype, self.hparams.bad_audio)
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
                        self.hparams.dataset, split, len(unemittable), what, self.feature_config.frame_ms,
                        ", ".join(unemittable))
        self.unemittable[split] = unemittable
        self.datasets[split] = FeatureDataset(examples)
        return self.datasets[split]

    def ctc_can_emit(self, log_mel: torch.Tensor, labels: torch.Tensor) -> bool:
        """Whether CTC can emit `labels` from this utterance's stacked frames (else its CTC loss is infinite)."""
        return len(labels) > 0 and self.extractor.stacked_length(log_mel.shape[0]) >= ctc_min_frames(labels)

    def setup(self, stage: Optional[str] = None) -> None:
        splits = {"fit": ("train", "dev"), "validate": ("dev",), "test": ("test",)}.get(stage, ("train", "dev", "test"))
        for split in splits:
            self.load(split)

    def dataloader(self, split: str, shuffle: bool = False, augment: bool = False) -> DataLoader:
        data = self.load(split)
        world = self.trainer.world_size if self.trainer is not None else 1
        rank = self.trainer.global_rank if self.trainer is not None else 0
        if not shuffle:  # evaluation: every rank sees everything, so metrics need no gathering
            world, rank = 1, 0
        sampler = BucketBatchSampler(data.lengths(), self.hparams.batch_size, shuffle, self.hparams.seed, world, rank)
        collate = Collate(self.extractor, SpecAugment() if augment and self.hparams.spec_augment else None)
        # The loader's own generator: making an iterator draws a number from it, which would otherwise come
        # from the global one and shift every dropout mask after it (and resumed runs from uninterrupted ones).
        return DataLoader(data, batch_sampler=sampler, collate_fn=collate, num_workers=self.hparams.num_workers,
                          persistent_workers=self.hparams.num_workers > 0,
                          generator=torch.Generator().manual_seed(self.hparams.seed))

    def train_dataloader(self) -> DataLoader:
        return self.dataloader("train", shuffle=True, augment=True)

    def val_dataloader(self) -> DataLoader:
        return self.dataloader("dev")
