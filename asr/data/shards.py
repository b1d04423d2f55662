"""Training data streamed from disk in shards, so that memory stays flat in corpus size (data.storage: shards).

The training split is written once, on first use, as Lhotse Shar shards (lhotse-speech/lhotse): per shard of
`shard_size` utterances a gzipped JSONL manifest (id, duration, transcript), a tar of their log-mels (un-normalised,
float16) and, when training augments the waveform, a tar of their audio (16-bit WAV: FLAC, half the disk, cost
0.7 ms per utterance to decode, 4 % of an AN4 epoch on 2 cores). `index.json`, written last, lists the shards, their sizes and the statistics of global normalisation. Lhotse rather than WebDataset: it is
speech-aware (cuts, transcripts, durations, audio codecs; icefall and NeMo train on it), where WebDataset stores
files in tars and leaves the rest to us.

An epoch reads only its own shards, in an order drawn from (seed, epoch) like everything else in training:

    shards shuffled -> DDP rank r takes every world_size-th -> utterances gathered in a buffer of `buffer_size`,
    sorted by length and cut into batches of `batch_size` (the in-memory sampler's rule, on a bounded window),
    the batches shuffled; the last short batch of each buffer carried into the next

Memory holds that buffer, whatever the corpus size; its batches are full, and padded about as much as the in-memory
sampler's (AN4 training frames: 12 % padding, 11 % in memory). (Lhotse's DynamicBucketingSampler, tried first,
fills batches from fixed duration buckets: it ended every bucket in a short batch.) Every rank runs the same number of steps (DDP needs it): the fewest utterances a rank can
draw, over batch_size; a rank's last few utterances past it wait for another epoch's order.
A resumed run redraws its epoch's order and skips the batches already trained, as the in-memory path does.
Dev and test stay in memory (asr/data/dataset.py): their size does not grow with the training corpus.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from asr.data.audio import load_audio
from asr.data.corpora import Utterance
from asr.data.dataset import Example
from asr.base.errors import UserError
from asr.data.features import FEATURES_VERSION, FeatureExtractor
from asr.data.text import CharTokenizer, ctc_min_frames

log = logging.getLogger(__name__)

SHARDS_VERSION = 2
BUFFER_SIZE = 500  # utterances held at once (with their features), sorted into batches: the streamed path's memory


def shards_dir(cache_dir: str | Path, dataset: str, utts: list[Utterance], extractor: FeatureExtractor,
               shard_size: int, audio: bool, words: Optional[list[str]] = None) -> Path:
    """Where a training split's shards live: keyed, like the feature cache, by what they hold (`words`: a word
    vocabulary, whose labels let CTC emit utterances that characters cannot)."""
    key = json.dumps([SHARDS_VERSION, FEATURES_VERSION, extractor.config.as_dict(), shard_size, audio,
                      [(u.id, u.text) for u in utts]] + ([words] if words else []))
    return Path(cache_dir) / f"shards-{dataset}-{hashlib.sha1(key.encode()).hexdigest()[:16]}"


class RunningStats:
    """Per mel band mean and standard deviation over frames seen one utterance at a time (feature_stats's numbers,
    without holding the frames)."""

    def __init__(self, bands: int):
        self.count, self.sum, self.squares = 0, torch.zeros(bands, dtype=torch.float64), torch.zeros(bands, dtype=torch.float64)

    def add(self, log_mel: torch.Tensor) -> None:
        frames = log_mel.double()
        self.count += len(frames)
        self.sum += frames.sum(0)
        self.squares += (frames * frames).sum(0)

    def result(self) -> dict[str, list[float]]:
        mean = self.sum / self.count
        var = (self.squares - self.count * mean * mean) / max(1, self.count - 1)
        return {"mean": mean.tolist(), "std": var.clamp_min(0).sqrt().tolist()}


def write_shards(utts: list[Utterance], extractor: FeatureExtractor, tokenizer: CharTokenizer, target: Path,
                 shard_size: int = 1000, audio: bool = False, bad_audio: str = "stop") -> dict:
    """Writes a corpus' training split as shards into `target` and returns its index (`write_records`): each
    utterance's audio read at the features' rate, its log-mels computed as in memory."""
    rate = extractor.config.sample_rate
    skipped: list[str] = []

    def records() -> Iterator[tuple]:
        for u in utts:
            try:
                waveform = load_audio(u.path, rate)
                yield u.id, u.text, extractor.utterance_log_mel(waveform), waveform
            except ValueError as e:  # unreadable, empty, corrupt or too short for one frame
                if bad_audio == "stop":
                    raise UserError(f"{u.path} (utterance {u.id}): {e}. Replace or remove the file, or set "
                                    "data.bad_audio: skip to go on without it (the skipped files are listed).") from None
                skipped.append(f"{u.path} ({e})")

    index = write_records(records(), extractor, tokenizer, target, shard_size, audio)
    if skipped:
        log.warning("%d audio file(s) skipped (data.bad_audio: skip): %s", len(skipped), "; ".join(skipped))
    return index


def write_records(records: Iterable[tuple], extractor: FeatureExtractor, tokenizer: CharTokenizer, target: Path,
                  shard_size: int = 1000, audio: bool = False) -> dict:
    """Writes (id, transcript, log-mel, waveform) records as shards into `target`, one at a time (a new folder,
    renamed into place when complete, so that a killed writer or several processes writing at once never leave a
    half-written one); returns the index. Utterances whose transcript CTC cannot emit from their frames are left
    out and named, as in memory."""
    from lhotse import MonoCut, Recording, SupervisionSegment
    from lhotse.shar import SharWriter

    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    rate = extractor.config.sample_rate
    stats, shards, durations, unemittable = RunningStats(extractor.config.n_mels), [], [], []
    fields = {"log_mel": "numpy", **({"recording": "wav"} if audio else {})}
    try:
        with SharWriter(str(partial), fields=fields, shard_size=shard_size) as writer:
            for utterance_id, text, log_mel, waveform in records:
                labels = tokenizer.encode(text)
                if len(labels) == 0 or extractor.stacked_length(log_mel.shape[0]) < ctc_min_frames(labels):
                    unemittable.append(utterance_id)
                    continue
                stats.add(log_mel)
                hop = extractor.config.hop_ms / 1000
                duration = len(waveform) / rate if waveform is not None else len(log_mel) * hop
                # the audio as the model hears it (at the features' rate), 16-bit as the corpora distribute it
                recording = Recording.from_bytes(wav_bytes(waveform.numpy(), rate), recording_id=utterance_id) if audio else None
                cut = MonoCut(id=utterance_id, start=0.0, duration=duration, channel=0, recording=recording,
                              supervisions=[SupervisionSegment(id=utterance_id, recording_id=utterance_id, start=0.0,
                                                               duration=duration, text=text)])
                writer.write(cut.attach_tensor("log_mel", log_mel.numpy().astype(np.float16), frame_shift=hop, temporal_dim=0))
                if not shards or shards[-1]["utterances"] == shard_size:
                    shards.append({"utterances": 0, "seconds": 0.0})
                shards[-1]["utterances"] += 1
                shards[-1]["seconds"] += duration
                durations.append(duration)
    except BaseException:  # a bad file, a kill: no half-written folder stays behind
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if unemittable:
        log.warning("%d utterance(s) left out of training (transcript empty or longer than their %g ms frames "
                    "allow): %s", len(unemittable), extractor.config.frame_ms, ", ".join(unemittable))
    if len(durations) < 2:
        raise UserError(f"{len(durations)} training utterance(s) left to write into {target}: too few to train on")
    index = {"version": SHARDS_VERSION, "features": extractor.config.as_dict(), "audio": audio, "shards": shards,
             "utterances": len(durations), "seconds": sum(durations), "stats": stats.result(),
             "unemittable": unemittable}
    (partial / "index.json").write_text(json.dumps(index))
    try:
        partial.rename(target)
    except OSError:  # another process finished first: its shards are the same
        shutil.rmtree(partial, ignore_errors=True)
    return read_index(target)


def wav_bytes(waveform: np.ndarray, rate: int) -> bytes:
    import io

    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, waveform, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def read_index(folder: Path) -> dict:
    path = Path(folder) / "index.json"
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path} cannot be read ({e}): delete {folder} and it is written again") from None
    if index.get("version") != SHARDS_VERSION:
        raise UserError(f"{folder} holds shards of another version: delete it and it is written again")
    return index


def shard_files(folder: Path, shard: int, audio: bool) -> dict[str, str]:
    names = {"cuts": f"cuts.{shard:06d}.jsonl.gz", "log_mel": f"log_mel.{shard:06d}.tar"}
    if audio:
        names["recording"] = f"recording.{shard:06d}.tar"
    return {field: str(Path(folder) / name) for field, name in names.items()}


def length_batches(cuts, batch_size: int, buffer_size: int, rng: random.Random) -> Iterator[list]:
    """Batches of `batch_size` cuts of similar duration from a stream, holding at most `buffer_size` at a time: each
    full buffer is shuffled (random ties), sorted by duration, cut into batches, and its full batches leave in random
    order; its short last batch stays for the next buffer. At the end of the stream, what is left."""
    buffer: list = []
    buffer_size = max(buffer_size, batch_size)

    def batches(final: bool) -> Iterator[list]:
        rng.shuffle(buffer)
        buffer.sort(key=lambda cut: cut.duration)
        cut_up = [buffer[i : i + batch_size] for i in range(0, len(buffer), batch_size)]
        keep = [] if final or len(cut_up[-1]) == batch_size else cut_up.pop()
        rng.shuffle(cut_up)
        buffer[:] = keep
        yield from cut_up

    for cut in cuts:
        buffer.append(cut)
        if len(buffer) >= buffer_size:
            yield from batches(final=False)
    if buffer:
        yield from batches(final=True)


class ShardedBatches(Sampler):
    """A DDP rank's training batches for the epoch Lightning sets (`set_epoch`): lists of (cut, augment seed), read
    from its shards as they are needed. See the module docstring for the order and the number of steps."""

    def __init__(self, folder: Path, batch_size: int, seed: int = 0, num_replicas: int = 1, rank: int = 0,
                 audio: bool = False, buffer_size: int = BUFFER_SIZE):
        self.folder, self.index = Path(folder), read_index(folder)
        self.batch_size, self.seed, self.num_replicas, self.rank = batch_size, seed, num_replicas, rank
        self.audio, self.buffer_size, self.epoch = audio, buffer_size, 0
        self.resume_at: Optional[tuple[int, int]] = None  # (epoch, batches already trained): skip those, once
        count = len(self.index["shards"])
        if count < num_replicas:
            raise UserError(f"{self.folder} has {count} shard(s) for {num_replicas} processes: every process needs one "
                            f"at least (a smaller data.shard_size, or fewer devices)")
        # the fewest utterances any rank can draw: the smallest shards, as many as the rank with fewest shards gets
        smallest = sorted(s["utterances"] for s in self.index["shards"])[: count // num_replicas]
        self.steps = sum(smallest) // batch_size
        if self.steps == 0:
            raise UserError(f"{sum(smallest)} training utterances per process is less than one batch of "
                            f"{batch_size}: a smaller data.batch_size, or fewer devices")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def shards(self) -> list[int]:
        """This rank's shards in this epoch, in the order it reads them."""
        order = list(range(len(self.index["shards"])))
        random.Random(f"{self.seed}/{self.epoch}").shuffle(order)
        return order[self.rank :: self.num_replicas]

    def augment_seed(self, utterance_id: str) -> int:
        """As the in-memory sampler's: a function of (seed, epoch, utterance) only."""
        return int(hashlib.sha1(f"{self.seed}/{self.epoch}/{utterance_id}".encode()).hexdigest()[:15], 16)

    def __iter__(self) -> Iterator[list]:
        from lhotse import CutSet

        skip = 0
        if self.resume_at is not None and self.resume_at[0] == self.epoch:
            skip, self.resume_at = self.resume_at[1], None
        files = [shard_files(self.folder, s, self.audio) for s in self.shards()]
        cuts = CutSet.from_shar(fields={field: [f[field] for f in files] for field in files[0]})
        rng = random.Random(f"{self.seed}/{self.epoch}/batches")
        for step, batch in enumerate(islice(length_batches(cuts, self.batch_size, self.buffer_size, rng), self.steps)):
            if step >= skip:
                yield [(cut, self.augment_seed(cut.id)) for cut in batch]

    def __len__(self) -> int:
        return self.steps


class ShardedExamples(Dataset):
    """A batch of (cut, augment seed) -> Examples, as the in-memory dataset holds them (normalised log-mels, label
    ids, the waveform when it is augmented). Runs in the DataLoader's workers."""

    def __init__(self, extractor: FeatureExtractor, tokenizer: CharTokenizer):
        self.extractor, self.tokenizer = extractor, tokenizer

    def __getitem__(self, batch: list) -> list[Example]:
        examples = []
        for cut, seed in batch:
            log_mel = torch.from_numpy(cut.load_custom("log_mel")).float()
            if self.extractor.config.uses_training_stats:
                log_mel = self.extractor.normalize_frames(log_mel)
            text = cut.supervisions[0].text
            waveform = torch.from_numpy(cut.load_audio()[0]) if cut.has_recording else None
            examples.append(Example(cut.id, text, log_mel, self.tokenizer.encode(text), seed, waveform))
        return examples
