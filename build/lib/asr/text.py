"""Text side of CTC: the character vocabulary and transcript normalisation.

CTC predicts one symbol per output frame from the vocabulary plus a special *blank*; the
transcript is read off by merging repeated symbols and then dropping blanks ("AA_AB" -> "AB"),
see asr/decoding.py.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Sequence

from .errors import UserError

if TYPE_CHECKING:  # torch is imported where a tensor is made: `asr --help` imports this file
    import torch

BLANK = "_"
# Index 0 is the CTC blank (nn.CTCLoss's default), then space, apostrophe and A-Z.
VOCABULARY: list[str] = [BLANK, " ", "'"] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]

_NOT_IN_VOCAB = re.compile(r"[^A-Z' ]+")


def normalize_transcript(text: str) -> str:
    """Upper-case, drop sentence markers and punctuation, collapse spaces: 'Hello, <s>world!' -> 'HELLO WORLD'."""
    text = re.sub(r"</?s>", " ", text).upper().replace("-", " ")
    text = _NOT_IN_VOCAB.sub(" ", text)
    return " ".join(text.split())


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


def ctc_min_frames(labels: "torch.Tensor") -> int:
    """Fewest output frames that can emit `labels` under CTC: one per label plus a blank between repeats."""
    repeats = int((labels[1:] == labels[:-1]).sum()) if len(labels) > 1 else 0
    return len(labels) + repeats
