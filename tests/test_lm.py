"""The n-gram language model builder: a proper distribution, written as a readable ARPA file."""
import math

import pytest

from asr.decode.lm import BOS, EOS, UNK, WittenBellLM, build

SENTENCES = ["ENTER SIX TWO FOUR", "ENTER SEVEN", "ERASE SIX", "RUBOUT SIX TWO", "SIX SIX TWO FOUR EIGHT"]


@pytest.mark.parametrize("order", [1, 2, 3])
def test_every_distribution_sums_to_one(order):
    lm = WittenBellLM([s.split() for s in SENTENCES], order)
    words = lm.vocab  # every word seen, </s> and <unk>; <s> is never predicted
    assert EOS in words and UNK in words and BOS not in words
    for history in [(), (BOS,), ("SIX",), ("SIX", "TWO"), ("ENTER", "SIX"), ("NEVER", "SEEN")]:
        assert sum(lm.prob(w, history) for w in words) == pytest.approx(1.0, abs=1e-9), history


def test_kenlm_reads_back_the_model_probabilities(tmp_path):
    """The ARPA file read by an independent reader: KenLM, through flashlight-text (what beam search uses)."""
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import Dictionary

    arpa, lexicon = build(SENTENCES, tmp_path, order=3, name="tiny")
    lm = WittenBellLM([s.split() for s in SENTENCES], 3)
    words = Dictionary()
    for word in sorted(set(lm.vocab) | {BOS}):
        words.add_entry(word)
    kenlm = KenLM(str(arpa), words)
    for sentence in ["ENTER SIX TWO FOUR", "SIX SEVEN EIGHT", "ERASE NEVERSEEN SIX"]:
        state, history = kenlm.start(False), (BOS,)
        for word in sentence.split():
            token = word if word in lm.vocab else UNK
            state, log10_prob = kenlm.score(state, words.get_index(token))
            assert log10_prob == pytest.approx(math.log10(lm.prob(token, history[-2:])), abs=1e-5), (sentence, word)
            history += (token,)
        _, log10_end = kenlm.finish(state)
        assert log10_end == pytest.approx(math.log10(lm.prob(EOS, history[-2:])), abs=1e-5), sentence
    text = arpa.read_text()
    assert text.startswith("\\data\\\nngram 1=") and text.rstrip().endswith("\\end\\")
    assert "ENTER E N T E R |" in lexicon.read_text().splitlines()


def test_seen_continuations_are_more_likely_than_unseen():
    lm = WittenBellLM([s.split() for s in SENTENCES], 2)
    assert lm.prob("TWO", ("SIX",)) > lm.prob("ERASE", ("SIX",)) > 0


def test_no_transcripts_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no transcripts"):
        build(["", "  "], tmp_path)


def test_the_arpa_file_is_the_same_bytes_whatever_the_hash_seed(tmp_path, data_dir):
    """Set iteration order follows PYTHONHASHSEED: a backoff weight summed in that order came out as 1 +- 1e-16 and
    was written "0.000000" in one process and "-0.000000" in another, so the shipped LM changed on every rebuild."""
    import subprocess
    import sys

    made = []
    for seed in ("1", "2"):
        code = ("import sys; from pathlib import Path; from asr.decode.lm import build; from asr.data.corpora import load_split; "
                "build([u.text for u in load_split('an4', 'train', sys.argv[1])], Path(sys.argv[2]), order=3)")
        subprocess.run([sys.executable, "-c", code, str(data_dir), str(tmp_path / seed)], check=True,
                       env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"})
        made.append(next((tmp_path / seed).glob("*.arpa")).read_bytes())
    assert made[0] == made[1]
