"""Decoders on hand-made CTC posteriors, where the right answer is known."""
import pytest
import torch

from asr.decode.decoders import BeamSearchDecoder, GreedyDecoder, make_decoder
from asr.decode.lm import build
from asr.data.text import VOCABULARY


def posteriors(frames: str, confusions: dict | None = None) -> torch.Tensor:
    """One frame per character of `frames` ('_' blank, ' ' space), 0.9 on that symbol; confusions maps a frame
    index to (symbol, probability) for a runner-up that takes that share instead."""
    index = {c: i for i, c in enumerate(VOCABULARY)}
    probs = torch.full((len(frames), len(VOCABULARY)), 0.1 / (len(VOCABULARY) - 1))
    for t, c in enumerate(frames):
        probs[t, index[c]] = 0.9
        if confusions and t in confusions:
            other, p = confusions[t]
            probs[t, index[c]], probs[t, index[other]] = 0.9 - p, p
    return probs.log()


def test_greedy_words_times_and_confidences():
    t = GreedyDecoder(VOCABULARY)(posteriors("_HH_I__ __T_HE_RE__"), frame_seconds=0.02, offset=1.0)
    assert t.text == "HI THERE"
    (hi, there) = t.words
    assert (hi.word, hi.start, hi.end) == ("HI", 1.02, 1.1)
    assert there.start >= hi.end and there.end <= 1.0 + 19 * 0.02
    assert 0.85 < hi.confidence <= 0.9


def test_beam_search_without_lexicon_finds_the_best_path():
    t = BeamSearchDecoder(VOCABULARY, beam_size=10)(posteriors("_C_A_T_ _D_O_G_"), frame_seconds=0.02)
    assert t.text == "CAT DOG"
    starts = [w.start for w in t.words]
    assert starts == sorted(starts) and all(w.end <= 15 * 0.02 for w in t.words)


def test_lexicon_keeps_the_output_to_known_words(tmp_path):
    # the T frame leans to X (0.5 vs 0.4): greedy spells CAX, a lexicon that only knows CAT cannot
    emissions = posteriors("_C_A_T_", {5: ("X", 0.5)})
    assert GreedyDecoder(VOCABULARY)(emissions, 0.02).text == "CAX"
    arpa, lexicon = build(["CAT", "DOG", "CAT DOG"], tmp_path, order=2)
    assert BeamSearchDecoder(VOCABULARY, beam_size=20, lexicon=str(lexicon))(emissions, 0.02).text == "CAT"


def test_the_language_model_overrules_a_weak_acoustic_preference(tmp_path):
    # CAT D?G where the vowel frame leans to I (0.5) over O (0.4): both DIG and DOG are words; the LM has seen
    # "CAT DOG" many times and "CAT DIG" never, so with it the decoder says DOG, without it DIG.
    emissions = posteriors("_C_A_T_ _D_O_G_", {11: ("I", 0.5)})
    arpa, lexicon = build(["CAT DOG"] * 20 + ["DIG", "CAT"], tmp_path, order=2)
    without = BeamSearchDecoder(VOCABULARY, beam_size=20, lexicon=str(lexicon))
    with_lm = BeamSearchDecoder(VOCABULARY, beam_size=20, lexicon=str(lexicon), lm=str(arpa), lm_weight=2.0)
    assert GreedyDecoder(VOCABULARY)(emissions, 0.02).text == "CAT DIG"
    assert without(emissions, 0.02).text == "CAT DIG"
    assert with_lm(emissions, 0.02).text == "CAT DOG"


def test_bad_decoder_options_say_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match=r"^beam width must be at least 1, got 0$"):
        BeamSearchDecoder(VOCABULARY, beam_size=0)
    with pytest.raises(ValueError, match=r"^language model file .*missing.arpa not found \(build both with `asr lm build`\)$"):
        BeamSearchDecoder(VOCABULARY, lm=str(tmp_path / "missing.arpa"), lexicon=None)
    arpa, _ = build(["CAT"], tmp_path)
    with pytest.raises(ValueError, match=r"^a word language model needs a lexicon: pass --lexicon"):
        BeamSearchDecoder(VOCABULARY, lm=str(arpa))
    with pytest.raises(ValueError, match=r"^--lexicon and --lm need --decoder beam$"):
        make_decoder(VOCABULARY, "greedy", lm=str(arpa), lexicon=None)



@pytest.mark.parametrize("lexicon", [False, True])
def test_beam_search_word_times_are_the_frames_where_the_words_are(lexicon, tmp_path):
    """flashlight's token list holds one entry per frame plus the decoder's start and end: read as one per frame,
    every word sat one frame late (CAT at 2-7 where its letters are at frames 1-5). On an unambiguous path the
    beam's words, times and confidences are the greedy decoder's."""
    emissions = posteriors("_C_A_T_ _D_O_G_")
    options = {}
    if lexicon:
        (tmp_path / "lexicon.txt").write_text("CAT C A T |\nDOG D O G |\n")
        options["lexicon"] = str(tmp_path / "lexicon.txt")
    beam = BeamSearchDecoder(VOCABULARY, beam_size=10, **options)(emissions, 0.02, offset=1.0)
    greedy = GreedyDecoder(VOCABULARY)(emissions, 0.02, 1.0)
    assert [(w.word, w.start, w.end, w.confidence) for w in beam.words] == \
           [(w.word, w.start, w.end, w.confidence) for w in greedy.words] == \
           [("CAT", 1.02, 1.12, 0.9), ("DOG", 1.18, 1.28, 0.9)]
