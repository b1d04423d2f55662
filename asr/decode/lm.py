"""A word n-gram language model and lexicon from training transcripts, for beam-search decoding.

KenLM's `lmplz` cannot be installed here (no binary wheel), so this writes the ARPA file itself with
Witten-Bell smoothing in backoff form: a history h that was followed by T(h) distinct words in c(h)
tokens keeps c(h, w) / (c(h) + T(h)) for the words it saw and gives the mass T(h) / (c(h) + T(h)) to
the shorter history, scaled (the backoff weight) so that every distribution sums to one. Small corpora
such as AN4 are exactly where Witten-Bell behaves well. The lexicon spells every word in the acoustic
model's characters, ending with the word separator, as flashlight-text's decoder reads it.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path

from asr.base.errors import UserError

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
WORD_SEPARATOR = "|"  # the space of our vocabulary, as the decoder's lexicon names it


class WittenBellLM:
    def __init__(self, sentences: list[list[str]], order: int = 3):
        if order < 1:
            raise UserError(f"n-gram order must be at least 1, got {order}")
        self.order = order
        self.counts: list[Counter] = [Counter() for _ in range(order + 1)]  # counts[n][ngram tuple]
        for words in sentences:
            padded = [BOS] + words + [EOS]
            for n in range(1, order + 1):
                for i in range(max(0, 1 if n == 1 else 0), len(padded) - n + 1):
                    gram = tuple(padded[i : i + n])
                    if gram == (BOS,):
                        continue  # <s> is never predicted
                    self.counts[n][gram] += 1
        self.vocab = sorted({g[0] for g in self.counts[1]} | {UNK})
        self.followers: list[dict] = [defaultdict(set) for _ in range(order + 1)]
        self.history_total: list[Counter] = [Counter() for _ in range(order + 1)]
        for n in range(2, order + 1):
            for gram, c in self.counts[n].items():
                self.followers[n][gram[:-1]].add(gram[-1])
                self.history_total[n][gram[:-1]] += c
        self._cache: dict = {}

    def prob(self, word: str, history: tuple[str, ...]) -> float:
        """P(word | history) under the backoff model (history: up to order-1 previous words)."""
        history = tuple(history[-(self.order - 1):]) if self.order > 1 else ()
        key = (word, history)
        if key not in self._cache:
            self._cache[key] = self._prob(word, history)
        return self._cache[key]

    def _unigram(self, word: str) -> float:
        total = sum(self.counts[1].values())
        distinct = len(self.counts[1])
        if word == UNK:  # the unseen-word mass, as Witten-Bell gives it
            return distinct / (total + distinct)
        return self.counts[1].get((word,), 0) / (total + distinct)

    def _prob(self, word: str, history: tuple[str, ...]) -> float:
        if not history:
            return self._unigram(word)
        n = len(history) + 1
        total = self.history_total[n].get(history, 0)
        if total == 0:
            return self._prob(word, history[1:])
        distinct = len(self.followers[n][history])
        seen = self.counts[n].get(history + (word,), 0)
        if seen:
            return seen / (total + distinct)
        return self.backoff(history) * self._prob(word, history[1:])

    def backoff(self, history: tuple[str, ...]) -> float:
        """alpha(h): the unseen mass of h divided by the lower-order mass of the words h did not see."""
        n = len(history) + 1
        total, followers = self.history_total[n][history], self.followers[n][history]
        unseen_mass = len(followers) / (total + len(followers))
        lower_seen = sum(self._prob(w, history[1:]) for w in followers)
        return unseen_mass / (1 - lower_seen) if lower_seen < 1 else 0.0

    def write_arpa(self, path: Path) -> None:
        lines_by_order = []
        for n in range(1, self.order + 1):
            entries = []
            grams = sorted(self.counts[n]) if n > 1 else sorted({(w,) for w in self.vocab} | {(BOS,)})
            for gram in grams:
                if gram == (BOS,):
                    logp = -99.0  # <s> starts sentences and is never predicted
                else:
                    p = self.prob(gram[-1], gram[:-1]) if n > 1 else self._unigram(gram[0])
                    logp = math.log10(p) if p > 0 else -99.0
                line = f"{arpa_number(logp)}\t{' '.join(gram)}"
                if n < self.order and gram in self.followers[n + 1]:
                    alpha = self.backoff(gram)
                    line += f"\t{arpa_number(math.log10(alpha) if alpha > 0 else -99.0)}"
                entries.append(line)
            lines_by_order.append(entries)
        out = ["\\data\\", *[f"ngram {n}={len(e)}" for n, e in enumerate(lines_by_order, 1)], ""]
        for n, entries in enumerate(lines_by_order, 1):
            out += [f"\\{n}-grams:", *entries, ""]
        out.append("\\end\\")
        Path(path).write_text("\n".join(out) + "\n")


def write_lexicon(words: set[str], path: Path) -> None:
    """'HELLO H E L L O |' per word: the spelling the decoder may emit for it."""
    Path(path).write_text("".join(f"{w} {' '.join(w)} {WORD_SEPARATOR}\n" for w in sorted(words)))


def arpa_number(x: float) -> str:
    """Six decimals, and never "-0.000000": sums over sets follow the hash seed, so a backoff weight of exactly 1 comes
    out as 1 +- 1e-16, and its log must print the same in every process (the shipped LM is rebuilt, not edited)."""
    return f"{round(x, 6) + 0.0:.6f}"


def build(sentences: list[str], out_dir: Path, order: int = 3, name: str = "lm") -> tuple[Path, Path]:
    """Writes <out_dir>/lexicon.txt and <out_dir>/<name>.arpa from transcripts (training split only)."""
    tokenized = [s.split() for s in sentences if s.strip()]
    if not tokenized:
        raise UserError("no transcripts to build a language model from")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lm = WittenBellLM(tokenized, order)
    arpa, lexicon = out_dir / f"{name}.arpa", out_dir / "lexicon.txt"
    lm.write_arpa(arpa)
    write_lexicon({w for s in tokenized for w in s}, lexicon)
    return arpa, lexicon


def command(args) -> int:
    """`asr lm build --dataset an4 [--order 3 --out data/lm/an4]`: from the training transcripts only."""
    from asr.data.corpora import load_split

    sentences = [u.text for u in load_split(args.dataset, "train", args.data_dir)]  # never dev or test
    arpa, lexicon = build(sentences, Path(args.out), order=args.order, name=f"{args.dataset}_{args.order}gram")
    print(f"{len(sentences)} training transcripts -> {arpa} and {lexicon}")
    return 0
