"""From per-frame symbol log-probabilities to words with times and confidences.

- Greedy (best path): the most likely symbol in every frame, repeats merged, blanks dropped. Fast, no
  knowledge of words.
- Beam search (torchaudio's ctc_decoder, flashlight-text): keeps the `beam_size` best prefixes; with a
  lexicon it may only spell known words, with an n-gram language model (ARPA) it prefers likely word
  sequences: score = acoustic + lm_weight * LM + word_score * words.

Times come from the CTC alignment: a symbol is placed at the frame where it is emitted; a word spans
its first to its last symbol. Confidence is the mean posterior of the word's symbols at those frames.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from asr.base.errors import UserError
from asr.decode.lm import WORD_SEPARATOR
from asr.data.text import BLANK, is_word_vocabulary

if TYPE_CHECKING:  # tensors only pass through here: `asr --help` reads the defaults below without torch
    import torch

# Beam search defaults, here and nowhere else (the command line shows and passes these)
BEAM_SIZE, LM_WEIGHT, WORD_SCORE = 50, 1.0, 0.0


@dataclass
class Word:
    word: str
    start: float
    end: float
    confidence: float


@dataclass
class Transcript:
    text: str
    words: list[Word] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"text": self.text, "words": [asdict(w) for w in self.words]}


def words_from_symbols(symbols: list[tuple[str, int, float]], frame_seconds: float, offset: float) -> list[Word]:
    """[(char, frame, posterior), ...] in time order, spaces included -> words with times and confidences."""
    words, current = [], []

    def flush():
        if current:
            text = "".join(c for c, _, _ in current)
            start, end = current[0][1] * frame_seconds + offset, (current[-1][1] + 1) * frame_seconds + offset
            words.append(Word(text, round(start, 3), round(end, 3), round(sum(p for _, _, p in current) / len(current), 4)))
            current.clear()

    for char, frame, prob in symbols:
        if char == " ":
            flush()
        else:
            current.append((char, frame, prob))
    flush()
    return words


def as_float32(log_probs) -> np.ndarray:
    """(frames, vocab) log-probabilities as a float32 array, from a numpy array or a CPU tensor of any float dtype
    (bfloat16 included, which numpy lacks)."""
    if hasattr(log_probs, "float"):
        log_probs = log_probs.float()
    return np.asarray(log_probs, dtype=np.float32)


class GreedyDecoder:
    def __init__(self, vocabulary: list[str]):
        self.vocabulary = vocabulary
        self.words = is_word_vocabulary(vocabulary)  # each symbol a whole word: a space follows every one

    def __call__(self, log_probs, frame_seconds: float, offset: float = 0.0) -> Transcript:
        """log_probs: (frames, vocab) of one utterance (no padding), a CPU tensor or a numpy array."""
        scores = as_float32(log_probs)
        best, probs = scores.argmax(axis=-1), np.exp(scores.max(axis=-1))
        symbols, previous = [], 0
        for t, (index, p) in enumerate(zip(best.tolist(), probs.tolist())):
            if index != 0 and index != previous:
                symbols.append((self.vocabulary[index], t, p))
                if self.words:
                    symbols.append((" ", t, p))
            previous = index
        words = words_from_symbols(symbols, frame_seconds, offset)
        return Transcript(" ".join(w.word for w in words), words)


class BeamSearchDecoder:
    """Beam search over CTC outputs with an optional lexicon and word n-gram LM (ARPA), by flashlight-text's
    decoders, set up as torchaudio's `ctc_decoder` sets them up (without torchaudio, so that the ONNX path runs
    without torch)."""

    def __init__(self, vocabulary: list[str], beam_size: int = BEAM_SIZE, lexicon: Optional[str] = None,
                 lm: Optional[str] = None, lm_weight: float = LM_WEIGHT, word_score: float = WORD_SCORE,
                 beam_threshold: float = 25.0):
        if is_word_vocabulary(vocabulary):
            raise UserError("beam search spells words from characters; this model's symbols are whole words "
                            "(data.units: words): decode it with --decoder greedy")
        if beam_size < 1:
            raise UserError(f"beam width must be at least 1, got {beam_size}")
        for name, path in (("lexicon", lexicon), ("language model", lm)):
            if path is not None and not Path(path).is_file():
                raise UserError(f"{name} file {path} not found (build both with `asr lm build`)")
        if lm is not None and lexicon is None:
            raise UserError("a word language model needs a lexicon: pass --lexicon (both come from `asr lm build`)")
        from flashlight.lib.text import decoder as fl
        from flashlight.lib.text.dictionary import Dictionary, create_word_dict, load_words

        self.vocabulary, self.lexicon = vocabulary, lexicon
        # The decoder names the word separator '|'; column i of the log-probs stays symbol i.
        tokens = Dictionary([WORD_SEPARATOR if c == " " else c for c in vocabulary])
        self.blank, silence = tokens.get_index(BLANK), tokens.get_index(WORD_SEPARATOR)
        options = dict(beam_size=beam_size, beam_size_token=tokens.index_size(), beam_threshold=beam_threshold,
                       lm_weight=lm_weight, sil_score=0.0, log_add=False, criterion_type=fl.CriterionType.CTC)
        if lexicon is None:
            self.lm = fl.ZeroLM()
            self.decoder = fl.LexiconFreeDecoder(fl.LexiconFreeDecoderOptions(**options), self.lm, silence,
                                                 self.blank, [])
            return
        spellings = load_words(lexicon)
        words = create_word_dict(spellings)
        self.lm = kenlm(lm, words) if lm is not None else fl.ZeroLM()  # kept: the decoder holds a reference only
        # every word's spellings in a trie, each scored by the LM as a first word, smeared to its prefixes
        trie, start = fl.Trie(tokens.index_size(), silence), self.lm.start(False)
        for word, spelled in spellings.items():
            index = words.get_index(word)
            _, first_word_score = self.lm.score(start, index)
            for spelling in spelled:
                trie.insert([tokens.get_index(t) for t in spelling], index, first_word_score)
        trie.smear(fl.SmearingMode.MAX)
        self.decoder = fl.LexiconDecoder(
            fl.LexiconDecoderOptions(**options, word_score=word_score, unk_score=float("-inf")), trie, self.lm,
            silence, self.blank, words.get_index("<unk>"), [], False)

    def __call__(self, log_probs, frame_seconds: float, offset: float = 0.0) -> Transcript:
        """log_probs: (frames, vocab) of one utterance (no padding), a CPU tensor or a numpy array."""
        emissions = np.ascontiguousarray(as_float32(log_probs))
        frames, symbols_count = emissions.shape
        results = self.decoder.decode(emissions.ctypes.data, frames, symbols_count)
        if not results:
            return Transcript("")
        hyp = results[0]
        # flashlight's tokens: the decoder's start, one per frame, then its end; token t + 1 is frame t's
        tokens = list(hyp.tokens)[1 : frames + 1]
        symbols = []
        for t, token in enumerate(tokens):  # each run of a symbol, placed at the frame where it starts
            if token == self.blank or (t > 0 and token == tokens[t - 1]):
                continue
            symbols.append((self.vocabulary[token], t, math.exp(float(emissions[t, token]))))
        words = words_from_symbols(symbols, frame_seconds, offset)
        if self.lexicon is not None:
            # A hypothesis may end inside a word the lexicon is still spelling ("... SEVEN R"): only the words
            # the decoder completed count, and they come first, in order.
            words = words[: sum(1 for w in hyp.words if w >= 0)]
        return Transcript(" ".join(w.word for w in words), words)


def kenlm(path: str, words):
    try:
        from flashlight.lib.text.decoder.kenlm import KenLM
    except ImportError:
        from flashlight.lib.text.decoder import KenLM
    return KenLM(path, words)


def make_decoder(vocabulary: list[str], decoder: str = "greedy", **beam_options):
    if decoder == "greedy":
        if beam_options.get("lm") or beam_options.get("lexicon"):
            raise UserError("--lexicon and --lm need --decoder beam")
        return GreedyDecoder(vocabulary)
    if decoder == "beam":
        return BeamSearchDecoder(vocabulary, **beam_options)
    raise UserError(f"unknown decoder {decoder!r}: choose greedy or beam")
