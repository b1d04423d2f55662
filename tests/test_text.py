import pytest
import torch

from asr.decode.decoders import GreedyDecoder
from asr.data.text import VOCABULARY, CharTokenizer, ctc_min_frames, normalize_transcript


def test_normalize_strips_markers_punctuation_and_case():
    assert normalize_transcript("<s> Hello,  world! </s>") == "HELLO WORLD"
    assert normalize_transcript("it's a well-known fact") == "IT'S A WELL KNOWN FACT"


def test_vocabulary_has_blank_first_space_apostrophe_and_letters():
    assert VOCABULARY[:3] == ["_", " ", "'"] and len(VOCABULARY) == 29


def test_encode_gives_the_vocabulary_indices():
    tok = CharTokenizer()
    # blank 0, space 1, apostrophe 2, A 3 ... Z 28
    assert tok.encode("a b'z").tolist() == [3, 1, 4, 2, 28]
    assert tok.encode("Seven, o'clock!").tolist() == [21, 7, 24, 7, 16, 1, 17, 2, 5, 14, 17, 5, 13]


def test_greedy_decode_merges_repeats_and_drops_blanks():
    tok = CharTokenizer()
    # frames: A A _ A B B _ _  -> "AAB" (the decoder gets one utterance's own frames: Recognizer.log_probs and
    # the validation step cut each row of a padded batch to its length, tests/test_model.py)
    seq = [tok.index[c] for c in "AA_ABB__"]
    log_probs = torch.nn.functional.one_hot(torch.tensor(seq), len(tok)).float()
    assert GreedyDecoder(VOCABULARY)(log_probs.log(), frame_seconds=0.02).text == "AAB"


def test_ctc_min_frames_counts_blanks_between_repeats():
    tok = CharTokenizer()
    assert ctc_min_frames(tok.encode("AB")) == 2
    assert ctc_min_frames(tok.encode("HELLO")) == 6  # LL needs a blank between


def test_a_reference_without_a_hypothesis_counts_as_all_deletions_and_is_named():
    from asr.data.corpora import Utterance
    from asr.decode.metrics import score

    utts = [Utterance("a", None, "ONE TWO", "s"), Utterance("b", None, "THREE FOUR FIVE", "s")]
    summary, rows = score(utts, {"a": "ONE TWO"})
    assert summary["no_hypothesis"] == ["b"]
    assert (summary["deletions"], summary["reference_words"]) == (3, 5) and summary["wer"] == pytest.approx(60.0)
    assert [r["hypothesis"] for r in rows] == ["ONE TWO", ""] and rows[1]["deletions"] == 3
