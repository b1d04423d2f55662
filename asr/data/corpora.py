"""Speech corpora as lists of utterances: AN4, the Free Spoken Digit Dataset and LibriSpeech.

Each reader knows its corpus' published layout and its official train/test split. Model selection
needs a third split that the test set never touches, so a *dev* split is carved out of the training
data deterministically, by speaker where the corpus has enough speakers: a model must not be chosen
on voices it was trained on.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from asr.base.errors import UserError
from asr.data.text import normalize_transcript

CORPORA = ("an4", "fsdd", "librispeech")
SPLITS = ("train", "dev", "test")
FSDD_WORDS = ["ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"]


@dataclass(frozen=True)
class Utterance:
    id: str
    path: Path
    text: str
    speaker: str


class DataNotFoundError(UserError, FileNotFoundError):
    pass


def default_data_dir() -> Path:
    """--data-dir wins; else $ASR_DATA_DIR; else ./data (where `asr download` puts corpora)."""
    return Path(os.environ.get("ASR_DATA_DIR") or "data")


def corpus_root(name: str, data_dir: str | Path | None) -> Path:
    """The folder of corpus `name` inside data_dir, with a message saying how to get it when absent."""
    if name not in CORPORA:
        raise UserError(f"unknown dataset {name!r}: choose one of {', '.join(CORPORA)}")
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    folder = {"an4": "an4", "fsdd": "fsdd", "librispeech": "LibriSpeech"}[name]
    marker = {"an4": "etc/an4_train.transcription", "fsdd": "recordings", "librispeech": ""}[name]
    for root in (data_dir / folder, data_dir):
        if (root / marker).exists() and (marker or root.name == folder):
            return root
    hint = f"run `asr download {name} --data-dir {data_dir}`"
    raise DataNotFoundError(
        f"{name} not found under {data_dir}: {hint}, or point --data-dir / ASR_DATA_DIR at a folder holding {folder}/"
    )


def load_split(name: str, split: str, data_dir: str | Path | None = None, **options) -> list[Utterance]:
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    root = corpus_root(name, data_dir)
    return {"an4": an4, "fsdd": fsdd, "librispeech": librispeech}[name](root, split, **options)


# --- AN4 ------------------------------------------------------------------------------------------
_AN4_LINE = re.compile(r"^(?P<text>.*)\((?P<id>[^()\s]+)\)\s*$")


def _an4_list(root: Path, official: str) -> list[Utterance]:
    folder = "an4_clstk" if official == "train" else "an4test_clstk"
    utts = []
    for line in (root / f"etc/an4_{official}.transcription").read_text().splitlines():
        m = _AN4_LINE.match(line.strip())
        if not m:
            continue
        uid = m["id"]
        speaker = uid.split("-")[1]
        utts.append(Utterance(uid, root / "wav" / folder / speaker / f"{uid}.wav", normalize_transcript(m["text"]), speaker))
    return utts


def an4_dev_speakers(train: list[Utterance], every: int = 10) -> set[str]:
    """Every `every`-th speaker of the sorted training speakers: deterministic, about 10 % of them."""
    return set(sorted({u.speaker for u in train})[::every])


def an4(root: Path, split: str) -> list[Utterance]:
    if split == "test":
        return _an4_list(root, "test")
    train = _an4_list(root, "train")
    dev = an4_dev_speakers(train)
    return [u for u in train if (u.speaker in dev) == (split == "dev")]


# --- Free Spoken Digit Dataset ---------------------------------------------------------------------
def fsdd(root: Path, split: str) -> list[Utterance]:
    """Official split: takes 0-4 of every speaker and digit are test. Dev: takes 5-9 (6 speakers only,
    too few to hold one out); train: takes 10-49."""
    utts = []
    for path in sorted((root / "recordings").glob("*.wav")):
        digit, speaker, take = path.stem.split("_")
        take = int(take)
        part = "test" if take < 5 else "dev" if take < 10 else "train"
        if part == split:
            utts.append(Utterance(path.stem, path, FSDD_WORDS[int(digit)], speaker))
    return utts


# --- LibriSpeech ------------------------------------------------------------------------------------
LIBRISPEECH_SUBSETS = {"train": ("train-clean-100",), "dev": ("dev-clean",), "test": ("test-clean",)}


def librispeech(root: Path, split: str, subsets: dict | None = None) -> list[Utterance]:
    """Published layout: <subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt beside the .flac files."""
    utts = []
    for subset in (subsets or LIBRISPEECH_SUBSETS)[split]:
        if not (root / subset).is_dir():
            raise DataNotFoundError(f"LibriSpeech subset {subset} not found under {root}: run `asr download librispeech "
                                    f"--subset {subset} --data-dir {root.parent}`")
        for trans in sorted((root / subset).glob("*/*/*.trans.txt")):
            for line in trans.read_text().splitlines():
                uid, _, text = line.partition(" ")
                utts.append(Utterance(uid, trans.parent / f"{uid}.flac", normalize_transcript(text), uid.split("-")[0]))
    return utts
