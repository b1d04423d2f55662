"""Test conditions of the robustness evaluation (asr/data/conditions.py): each distorts as described, the same way on
every run, and `asr evaluate --condition` scores the split under it."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asr.data.audio import load_audio
from asr.data.conditions import CONDITIONS, condition, small_room_response
from asr.data.corpora import load_split
from asr.base.errors import UserError

RATE = 16000


@pytest.fixture(scope="module")
def speech(data_dir):
    utterance = load_split("an4", "test", str(data_dir))[0]
    return utterance.id, load_audio(utterance.path, RATE).numpy()


def band_power(x: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / RATE)
    return float(spectrum[(f >= low) & (f < high)].sum())


def test_every_condition_is_the_same_on_every_run(speech, tmp_path):
    """Another process (another run, another machine) makes the very same samples."""
    uid, x = speech
    here = {name: c(x, RATE, uid) for name, c in CONDITIONS.items()}
    np.save(tmp_path / "x.npy", x)
    code = (f"import numpy as np; from asr.data.conditions import CONDITIONS; x = np.load({str(tmp_path / 'x.npy')!r}); "
            f"np.savez({str(tmp_path / 'there.npz')!r}, **{{n: c(x, {RATE}, {uid!r}) for n, c in CONDITIONS.items()}})")
    subprocess.run([sys.executable, "-c", code], check=True)
    there = np.load(tmp_path / "there.npz")
    assert set(there.files) == set(here) == {"noise_20db", "noise_10db", "speed_0.9", "speed_1.1", "telephone", "reverb",
                                             "quiet_20db", "clipped"}
    for name in here:
        assert np.array_equal(here[name], there[name]), name
    # the noise is seeded by condition and utterance: another utterance gets other noise
    other = CONDITIONS["noise_20db"](x, RATE, uid + "x")
    assert not np.array_equal(other, here["noise_20db"])


@pytest.mark.parametrize("name,snr", [("noise_20db", 20.0), ("noise_10db", 10.0)])
def test_noise_conditions_have_their_snr(speech, name, snr):
    uid, x = speech
    noise = CONDITIONS[name](x, RATE, uid).astype(np.float64) - x
    assert 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(noise ** 2)) == pytest.approx(snr, abs=0.1)


@pytest.mark.parametrize("name,factor", [("speed_0.9", 0.9), ("speed_1.1", 1.1)])
def test_speed_conditions_change_the_duration(speech, name, factor):
    uid, x = speech
    assert CONDITIONS[name](x, RATE, uid).size == pytest.approx(x.size / factor, abs=2)


def test_telephone_keeps_only_the_telephone_band(speech):
    uid, x = speech
    y = CONDITIONS["telephone"](x, RATE, uid)
    assert y.size == x.size
    assert band_power(y, 4100, 8000) < 1e-4 * band_power(y, 300, 3400)  # nothing above the 8 kHz channel's band
    assert band_power(y, 0, 150) < 0.05 * band_power(x, 0, 150)  # the low end cut


def test_level_conditions_are_a_quieter_and_a_clipped_recording(speech):
    uid, x = speech
    quiet = CONDITIONS["quiet_20db"](x, RATE, uid).astype(np.float64)
    assert 10 * np.log10(np.mean(quiet ** 2) / np.mean(x.astype(np.float64) ** 2)) == pytest.approx(-20.0, abs=0.01)
    hot = CONDITIONS["clipped"](x, RATE, uid)
    assert np.abs(hot).max() == 1.0
    clipped_share = np.mean(np.abs(hot) == 1.0)
    assert 0.001 < clipped_share < 0.2  # the loud parts clipped, not the whole recording
    assert np.mean(hot.astype(np.float64) ** 2) > 10 * np.mean(x.astype(np.float64) ** 2)


def test_reverb_is_a_small_room(speech):
    rir = small_room_response(RATE)
    energy = np.cumsum((rir ** 2)[::-1])[::-1]
    decay = 10 * np.log10(energy / energy[0])
    t20 = np.argmax(decay < -25) - np.argmax(decay < -5)  # samples from -5 to -25 dB
    rt60 = 3 * t20 / RATE
    assert 0.15 < rt60 < 0.5
    uid, x = speech
    y = CONDITIONS["reverb"](x, RATE, uid)
    assert y.size == x.size and np.mean(y ** 2) == pytest.approx(np.mean(x ** 2), rel=1e-3)  # the clean level


def test_unknown_condition_is_refused_by_name():
    assert condition("clean") is None and condition(None) is None
    with pytest.raises(UserError, match="unknown condition 'noisy'.*clean, noise_20db"):
        condition("noisy")


def test_a_condition_never_takes_its_normalisation_from_distorted_training_audio(tmp_path):
    """Global statistics of a distorted training split would normalise test audio as no trained model saw it."""
    from asr.data.dataset import CorpusFeatures
    from asr.data.features import FeatureConfig

    with pytest.raises(UserError, match="needs the trained model's feature statistics"):
        CorpusFeatures("an4", str(tmp_path), FeatureConfig(normalize="global"), condition="noise_10db")
    stats = {"mean": [0.0] * 80, "std": [1.0] * 80}
    data = CorpusFeatures("an4", str(tmp_path), FeatureConfig(normalize="global"), condition="noise_10db",
                          feature_stats=stats)
    assert data.extractor.stats == stats


def test_evaluate_scores_the_split_under_a_condition(data_dir, tmp_path):
    from asr.cli import main
    from asr.deploy.inference import Recognizer

    shipped_lstm = Path(__file__).parents[1] / "checkpoints/an4_lstm.ckpt"
    recognizer = Recognizer.from_checkpoint(shipped_lstm)
    clean, _ = recognizer.evaluate("an4", "test", str(data_dir))
    out = tmp_path / "noise.json"
    assert main(["evaluate", str(shipped_lstm), "--data-dir", str(data_dir), "--condition", "noise_10db",
                 "--summary-json", str(out), "--output", str(tmp_path / "rows.csv")]) == 0
    noisy = json.loads(out.read_text())
    assert noisy["condition"] == "noise_10db" and noisy["utterances"] == clean["utterances"] == 130
    assert noisy["wer"] > clean["wer"] + 5  # 10 dB of white noise costs the clean-trained model words
    again, _ = recognizer.evaluate("an4", "test", str(data_dir), condition="noise_10db")
    assert again["wer"] == noisy["wer"]
