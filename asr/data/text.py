"""Text side of CTC: the vocabularies (characters or words) and transcript normalisation.

CTC predicts one symbol per output frame from the vocabulary plus a special *blank*; the
transcript is read off by merging repeated symbols and then dropping blanks ("AA_AB" -> "AB"),
see asr/decode/decoders.py.

Two kinds of symbols (`data.units`):
- chars: A-Z, apostrophe and the space between words; any word can be spelled, and misspelled.
- words: every word of the training transcripts is one symbol (acoustic-to-word CTC, as Soltau et al. 2016
  trained LSTMs for it): for a closed vocabulary such as AN4's 99 words. Greedy decoding then can only output
  training words; a word the training split lacks is <unk> in labels and never recognised.
A word vocabulary is the one without a space symbol: the decoders tell the two apart by that.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Sequence

from asr.base.errors import UserError

if TYPE_CHECKING:  # torch is imported where a tensor is made: `asr --help` imports this file
    import torch

BLANK = "_"
UNKNOWN = "<unk>"  # a word vocabulary's symbol for words outside it (dev and test labels only)
UNITS = ("chars", "words")
# Index 0 is the CTC blank (nn.CTCLoss's default), then space, apostrophe and A-Z.
VOCABULARY: list[str] = [BLANK, " ", "'"] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]

_NOT_IN_VOCAB = re.compile(r"[^A-Z' ]+")


def normalize_transcript(text: str) -> str:
    """Upper-case, drop sentence markers and punctuation, collapse spaces: 'Hello, <s>world!' -> 'HELLO WORLD'."""
    text = re.sub(r"</?s>", " ", text).upper().replace("-", " ")
    text = _NOT_IN_VOCAB.sub(" ", text)
    return " ".join(text.split())


def is_word_vocabulary(vocabulary: Sequence[str]) -> bool:
    return " " not in vocabulary


def word_vocabulary(transcripts: Sequence[str]) -> list[str]:
    """Blank, <unk>, then every word of the (normalised) transcripts, sorted."""
    return [BLANK, UNKNOWN] + sorted({w for t in transcripts for w in normalize_transcript(t).split()})


class CharTokenizer:
    """Maps normalised transcripts to label ids and back."""

    def __init__(self, vocabulary: Sequence[str] = VOCABULARY):
        if vocabulary[0] != BLANK:
            raise UserError(f"the first vocabulary entry must be the CTC blank {BLANK!r}, got {vocabulary[0]!r}")
        self.vocabulary = list(vocabulary)
        self.index = {c: i for i, c in enumerate(self.vocabulary)}

    def __len__(self) -> int:
        return len(self.vocabulary)

    def encode(self, text: str) -> "torch.Tensor":
        import torch

        text = normalize_transcript(text)
        return torch.tensor([self.index[c] for c in text], dtype=torch.long)


class WordTokenizer(CharTokenizer):
    """Maps normalised transcripts to word ids (words outside the vocabulary to <unk>) and back."""

    def __init__(self, vocabulary: Sequence[str]):
        super().__init__(vocabulary)
        if UNKNOWN not in self.index:
            raise UserError(f"a word vocabulary needs the symbol {UNKNOWN!r}")

    def encode(self, text: str) -> "torch.Tensor":
        import torch

        unknown = self.index[UNKNOWN]
        return torch.tensor([self.index.get(w, unknown) for w in normalize_transcript(text).split()], dtype=torch.long)


def tokenizer_for(vocabulary: Sequence[str]) -> CharTokenizer:
    """The tokenizer of a model's vocabulary (a checkpoint carries it)."""
    return WordTokenizer(vocabulary) if is_word_vocabulary(vocabulary) else CharTokenizer(vocabulary)


def ctc_min_frames(labels: "torch.Tensor") -> int:
    """Fewest output frames that can emit `labels` under CTC: one per label plus a blank between repeats."""
    repeats = int((labels[1:] == labels[:-1]).sum()) if len(labels) > 1 else 0
    return len(labels) + repeats
