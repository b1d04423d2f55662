"""The LightningDataModule: corpus features (asr/data/dataset.py) -> length-bucketed, padded batches.

Features are computed once per split (and optionally cached on disk, so a second run starts at
once); SpecAugment and frame stacking happen when a batch is put together, so every epoch sees
fresh masks on the training split and none on dev/test. The training split is held in memory
(data.storage: memory, the default) or streamed from shards on disk (data.storage: shards,
asr/data/shards.py), for corpora larger than memory.
"""
from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import lightning as L
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Sampler

from asr.data.augment import AugmentConfig, augment
from asr.data.dataset import CorpusFeatures, Example, FeatureDataset
from asr.base.errors import UserError
from asr.data.features import FeatureConfig, FeatureExtractor, SpecAugment
from asr.data.text import UNITS, WordTokenizer, ctc_min_frames, word_vocabulary


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
        self.lengths, self.batch_size, self.shuffle = lengths, batch_size, shuffle
        self.num_replicas, self.rank = num_replicas, rank
        self.sampler = EpochPermutation(len(lengths), shuffle, seed)
        self.resume_at: Optional[tuple[int, int]] = None  # (epoch, batches already trained): skip those, once

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
        skip = 0
        if self.resume_at is not None and self.resume_at[0] == self.sampler.epoch:
            skip, self.resume_at = self.resume_at[1], None
        for batch in self.batches()[skip:]:
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
    """Examples -> a padded Batch. For training, each utterance's augmentation is drawn from its own seed for the
    epoch: the waveform's (asr/data/augment.py, its features then computed again) and SpecAugment's masks."""

    def __init__(self, extractor: FeatureExtractor, spec_augment: Optional[SpecAugment] = None,
                 waveform_augment: Optional[AugmentConfig] = None):
        self.extractor, self.spec_augment, self.waveform_augment = extractor, spec_augment, waveform_augment

    def features(self, e: Example) -> torch.Tensor:
        if e.augment_seed is None:  # evaluation
            return e.log_mel
        generator = torch.Generator().manual_seed(e.augment_seed)
        x = e.log_mel
        if self.waveform_augment is not None and e.waveform is not None:
            distorted = augment(e.waveform, self.extractor.config.sample_rate, self.waveform_augment, generator)
            if distorted.numel() >= self.extractor.min_samples():
                distorted = self.extractor.log_mel(distorted)
                # sped up past what CTC can emit (a long transcript in few frames): the clean features instead
                if self.extractor.stacked_length(distorted.shape[0]) >= ctc_min_frames(e.labels):
                    x = distorted
        return self.spec_augment(x, generator) if self.spec_augment is not None else x

    def __call__(self, examples: list[Example]) -> Batch:
        feats = [self.extractor.stack(self.features(e)) for e in examples]
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
        sample_rate, n_mels, win_ms, hop_ms, stack, stride, normalize: the features (see asr/data/features.py).
        feature_stats: the statistics of global and online normalisation (normalize: global|online|online_level); None: computed from the
            training split at setup, then kept here, so that every checkpoint carries them to inference.
        spec_augment: mask frequency bands and time spans of training batches: true for asr/data/features.py's
            SpecAugment defaults, or a mapping of its arguments (freq_masks, freq_width, time_masks, time_width).
        augment: waveform augmentation of training utterances (asr/data/augment.py): true for its defaults, or a
            mapping of AugmentConfig fields; off by default. Needs the training audio (not only cached features).
        cache_dir: where extracted features are kept between runs (None: not cached).
        cache_dtype: float32 or float16 (half the disk; the values a run sees are the cached ones either way).
        max_utterances: use only the first N utterances of each split (quick experiments, tests).
        num_workers: DataLoader worker processes.
        seed: seed of the batch order.
        bad_audio: what an unreadable audio file does: stop (the default: the error names the file) or skip
            (train without it; a warning lists every skipped file; in dev/test it counts as all deletions).
        storage: memory (the training split's features held in memory) or shards (written once into cache_dir,
            then streamed: memory flat in corpus size, asr/data/shards.py).
        shard_size: utterances per shard (storage: shards); every DDP process needs one shard at least.
        units: the model's output symbols (asr/data/text.py): chars, or words (every word of the training
            transcripts one symbol); the model gets this vocabulary (`vocabulary`).
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
        normalize: str = "utterance",
        feature_stats: Optional[dict] = None,
        spec_augment: bool | dict = True,
        augment: Optional[dict | bool] = None,
        cache_dir: Optional[str] = "data/cache",
        cache_dtype: str = "float32",
        max_utterances: Optional[int] = None,
        num_workers: int = 0,
        seed: int = 0,
        bad_audio: str = "stop",
        storage: str = "memory",
        shard_size: int = 1000,
        units: str = "chars",
    ):
        super().__init__()
        for name, value, low in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
                                 ("shard_size", shard_size, 1)):
            if value < low:
                raise UserError(f"data.{name} must be at least {low}, got {value}")
        if storage not in ("memory", "shards"):
            raise UserError(f"data.storage must be memory or shards, got {storage!r}")
        if units not in UNITS:
            raise UserError(f"data.units must be one of {', '.join(UNITS)}, got {units!r}")
        if storage == "shards" and not cache_dir:
            raise UserError("data.storage: shards writes the training shards into data.cache_dir: set one")
        self.save_hyperparameters()
        self.waveform_augment = AugmentConfig.of(augment)
        self.spec_augment = SpecAugment.of(spec_augment)
        features = FeatureConfig(sample_rate, n_mels, win_ms, hop_ms, stack, stride, normalize)
        self.corpus = CorpusFeatures(dataset, data_dir, features, cache_dir, cache_dtype, max_utterances, bad_audio,
                                     feature_stats=feature_stats)
        if units == "words":
            transcripts = [u.text for u in self.corpus.training_utterances()]
            self.corpus.tokenizer = WordTokenizer(word_vocabulary(transcripts))
        # the corpus' objects, under the names the training code and the tests use
        self.feature_config, self.extractor, self.tokenizer = (self.corpus.feature_config, self.corpus.extractor,
                                                               self.corpus.tokenizer)
        self.datasets, self.unemittable = self.corpus.datasets, self.corpus.unemittable
        self.resume_at: Optional[tuple[int, int]] = None  # see state_dict()

    @property
    def feature_dim(self) -> int:
        return self.feature_config.output_dim

    @property
    def vocabulary(self) -> list[str]:
        return self.tokenizer.vocabulary

    def load(self, split: str) -> FeatureDataset:
        """The examples of one split (see CorpusFeatures.load)."""
        return self.corpus.load(split)

    def shards(self) -> Path:
        """The training split's shard folder (storage: shards), written first if it is not there yet."""
        from asr.data.shards import shards_dir, write_shards

        corpus = self.corpus
        utts = corpus.training_utterances()
        folder = shards_dir(corpus.cache_dir, corpus.dataset, utts, self.extractor, self.hparams.shard_size,
                            self.waveform_augment is not None,
                            self.vocabulary if self.hparams.units == "words" else None)
        if not (folder / "index.json").exists():
            write_shards(utts, self.extractor, self.tokenizer, folder, self.hparams.shard_size,
                         self.waveform_augment is not None, corpus.bad_audio)
        return folder

    def prepare_data(self) -> None:
        # Lightning calls this on one process per machine, before setup on every process: shards are written once
        if self.hparams.storage == "shards":
            self.shards()

    def setup(self, stage: Optional[str] = None) -> None:
        splits = {"fit": ("train", "dev"), "validate": ("dev",), "test": ("test",)}.get(stage, ("train", "dev", "test"))
        if self.hparams.storage == "shards" and "train" in splits:
            from asr.data.shards import read_index

            index = read_index(self.shards())
            self.unemittable["train"] = index["unemittable"]
            if self.feature_config.uses_training_stats and self.extractor.stats is None:
                self.extractor.set_stats(index["stats"])  # before dev is read: its normalisation needs them
            splits = tuple(s for s in splits if s != "train")
        for split in splits:
            self.load(split)
        if self.extractor.stats is not None:  # saved with the hyper-parameters in every checkpoint
            self.hparams.feature_stats = self.extractor.stats
        if self.waveform_augment is not None and "train" in splits:
            self.corpus.keep_waveforms("train")

    def dataloader(self, split: str, shuffle: bool = False, augment: bool = False) -> DataLoader:
        data = self.load(split)
        world = self.trainer.world_size if self.trainer is not None else 1
        rank = self.trainer.global_rank if self.trainer is not None else 0
        if not shuffle:  # evaluation: every rank sees everything, so metrics need no gathering
            world, rank = 1, 0
        sampler = BucketBatchSampler(data.lengths(), self.hparams.batch_size, shuffle, self.hparams.seed, world, rank)
        collate = Collate(self.extractor, self.spec_augment if augment else None,
                          self.waveform_augment if augment else None)
        # The loader's own generator: making an iterator draws a number from it, which would otherwise come
        # from the global one and shift every dropout mask after it (and resumed runs from uninterrupted ones).
        return DataLoader(data, batch_sampler=sampler, collate_fn=collate, num_workers=self.hparams.num_workers,
                          persistent_workers=self.hparams.num_workers > 0,
                          generator=torch.Generator().manual_seed(self.hparams.seed))

    def train_dataloader(self) -> DataLoader:
        if self.hparams.storage == "shards":
            return self.sharded_dataloader()
        loader = self.dataloader("train", shuffle=True, augment=True)
        loader.batch_sampler.resume_at = self.resume_at  # (epoch, batches) of a checkpoint written in mid-epoch
        return loader

    def sharded_dataloader(self) -> DataLoader:
        """Training batches streamed from the shards (asr/data/shards.py): the sampler reads this process' shards and
        groups the utterances; the workers turn them into examples and batches, augmented as in memory."""
        from asr.data.shards import ShardedBatches, ShardedExamples

        world = self.trainer.world_size if self.trainer is not None else 1
        rank = self.trainer.global_rank if self.trainer is not None else 0
        sampler = ShardedBatches(self.shards(), self.hparams.batch_size, self.hparams.seed, world, rank,
                                 audio=self.waveform_augment is not None)
        sampler.resume_at = self.resume_at
        collate = Collate(self.extractor, self.spec_augment, self.waveform_augment)
        return DataLoader(ShardedExamples(self.extractor, self.tokenizer), sampler=sampler, batch_size=None,
                          collate_fn=collate, num_workers=self.hparams.num_workers,
                          persistent_workers=self.hparams.num_workers > 0,
                          generator=torch.Generator().manual_seed(self.hparams.seed))

    # Where the data order stood, in every checkpoint: the epoch comes back through Lightning's set_epoch; the
    # batches of that epoch already trained on are skipped when a run resumes from a checkpoint written
    # inside an epoch (`last_every_n_steps`), so it goes on exactly where the killed run was.
    def state_dict(self) -> dict:
        if self.trainer is None:
            return {}
        trained = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"epoch": self.trainer.current_epoch, "batches_trained": trained}

    def load_state_dict(self, state_dict: dict) -> None:
        if state_dict:
            self.resume_at = (state_dict["epoch"], state_dict["batches_trained"])

    def val_dataloader(self) -> DataLoader:
        return self.dataloader("dev")
