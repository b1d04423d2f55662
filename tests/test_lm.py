"""The n-gram language model builder: a proper distribution, written as a readable ARPA file."""
import pytest

from asr.lm import BOS, EOS, UNK, WittenBellLM, build, read_arpa_probability

SENTENCES = ["ENTER SIX TWO FOUR", "ENTER SEVEN", "ERASE SIX", "RUBOUT SIX TWO", "SIX SIX TWO FOUR EIGHT"]


@pytest.mark.parametrize("order", [1, 2, 3])
def test_every_distribution_sums_to_one(order):
    lm = WittenBellLM([s.split() for s in SENTENCES], order)
    words = lm.vocab  # every word seen, </s> and <unk>; <s> is never predicted
    assert EOS in words and UNK in words and BOS not in words
    for history in [(), (BOS,), ("SIX",), ("SIX", "TWO"), ("ENTER", "SIX"), ("NEVER", "SEEN")]:
        assert sum(lm.prob(w, history) for w in words) == pytest.approx(1.0, abs=1e-9), history


def test_arpa_file_gives_back_the_model_probabilities(tmp_path):
    arpa, lexicon = build(SENTENCES, tmp_path, order=3, name="tiny")
    lm = WittenBellLM([s.split() for s in SENTENCES], 3)
    prob = read_arpa_probability(arpa)
    for word, history in [("TWO", ("SIX",)), ("FOUR", ("SIX", "TWO")), ("SEVEN", ("SIX",)), ("EIGHT", (BOS,)),
                          (EOS, ("TWO", "FOUR")), (UNK, ("ERASE",))]:
        assert prob(word, history) == pytest.approx(lm.prob(word, history), rel=1e-5), (word, history)
    text = arpa.read_text()
    assert text.startswith("\\data\\\nngram 1=") and text.rstrip().endswith("\\end\\")
    assert "ENTER E N T E R |" in lexicon.read_text().splitlines()


def test_seen_continuations_are_more_likely_than_unseen():
    lm = WittenBellLM([s.split() for s in SENTENCES], 2)
    assert lm.prob("TWO", ("SIX",)) > lm.prob("ERASE", ("SIX",)) > 0


def test_no_transcripts_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no transcripts"):
        build(["", "  "], tmp_path)
