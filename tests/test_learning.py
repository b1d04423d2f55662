"""Learning is tested by learning: a small LSTM must memorise 8 real AN4 utterances (the `overfit` fixture,
trained by the real Trainer), and `asr transcribe` must read them back from their WAV files."""
from asr.cli import main
from asr.decode.metrics import error_rates


def test_small_lstm_overfits_eight_an4_utterances(overfit, capsys):
    assert main(["transcribe", str(overfit.checkpoint), *[str(u.path) for u in overfit.utterances]]) == 0
    hyps = capsys.readouterr().out.splitlines()
    refs = [u.text for u in overfit.utterances]
    assert len(hyps) == 8
    assert error_rates(refs, hyps)["cer"] < 10.0, list(zip(refs, hyps))
