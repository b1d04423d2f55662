"""Waveform augmentation of training utterances (asr/data/augment.py): each step does what it says, every draw comes
from the utterance's own seed for the epoch, and only training batches are augmented."""
import math

import numpy as np
import pytest
import torch

from asr.data.augment import (AugmentConfig, add_noise, augment, change_speed, coloured_noise, saturate,
                               synthetic_room)
from asr.data.datamodule import ASRDataModule
from asr.base.errors import UserError

RATE = 16000


def tone(freq: float, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(seconds * RATE)) / RATE
    return torch.sin(2 * math.pi * freq * t)


def peak_hz(x: torch.Tensor) -> float:
    spectrum = torch.fft.rfft(x).abs()
    return float(spectrum.argmax()) * RATE / x.numel()


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_tempo_and_pitch_together(factor):
    x = change_speed(tone(1000.0), factor)
    assert x.numel() == pytest.approx(RATE / factor, abs=2)
    assert peak_hz(x) == pytest.approx(1000.0 * factor, abs=2)


def test_noise_is_added_at_the_snr_asked_for():
    x = tone(440.0)
    noise = coloured_noise(torch.Generator().manual_seed(0), x.numel(), 0)
    for snr in (5.0, 20.0):
        noisy = add_noise(x, noise, snr)
        measured = 10 * math.log10(x.pow(2).mean() / (noisy - x).pow(2).mean())
        assert measured == pytest.approx(snr, abs=1e-3)


def test_coloured_noise_falls_with_frequency():
    n = 1 << 16
    power = [torch.fft.rfft(coloured_noise(torch.Generator().manual_seed(1), n, c)).abs().pow(2) for c in range(3)]
    low, high = slice(100, 1000), slice(10000, 20000)  # bins: about 25-250 Hz against 2.5-5 kHz
    slopes = [float(p[low].mean() / p[high].mean()) for p in power]
    assert slopes[0] == pytest.approx(1.0, rel=0.2)  # white: flat
    assert 10 < slopes[1] < slopes[2]  # pink falls, brown falls faster


def test_synthetic_room_decays_by_60_db_in_its_rt60():
    rir = synthetic_room(torch.Generator().manual_seed(2), 0.4, RATE)
    energy = rir[1:].pow(2).flip(0).cumsum(0).flip(0)  # Schroeder's backward integral of the tail
    level = 10 * torch.log10(energy / energy[0])
    at = int(0.2 * RATE)  # half the RT60: about -30 dB
    assert float(level[at]) == pytest.approx(-30.0, abs=4.0)
    assert float(rir[0]) == rir.abs().max()  # the direct sound comes first and loudest


def test_every_draw_comes_from_the_generator():
    x = tone(300.0) * 0.1
    config = AugmentConfig(reverb=1.0, band=1.0, noise=1.0)
    a = augment(x, RATE, config, torch.Generator().manual_seed(5))
    b = augment(x, RATE, config, torch.Generator().manual_seed(5))
    c = augment(x, RATE, config, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(0)  # the global generator plays no part
    assert torch.equal(augment(x, RATE, config, torch.Generator().manual_seed(5)), a)


def test_saturation_drives_the_peak_past_full_scale_and_clips_it_softly():
    x = tone(300.0) * 0.05
    y = saturate(x, 12.0)
    assert float(y.abs().max()) == pytest.approx(math.tanh(10 ** (12 / 20)), abs=1e-6) and float(y.abs().max()) < 1
    assert float((y.abs() > 0.9).float().mean()) > 0.3  # the louder half of each period is flattened
    config = AugmentConfig(reverb=0.0, band=0.0, noise=0.0, gain_db=(0.0, 0.0))
    plain = augment(x, RATE, config, torch.Generator().manual_seed(7))
    assert torch.equal(augment(x, RATE, AugmentConfig(reverb=0.0, band=0.0, noise=0.0, gain_db=(0.0, 0.0), saturate=0.0),
                               torch.Generator().manual_seed(7)), plain)  # off by default: the same draws as before
    hot = augment(x, RATE, AugmentConfig(reverb=0.0, band=0.0, noise=0.0, gain_db=(0.0, 0.0), saturate=1.0),
                  torch.Generator().manual_seed(7))
    assert float(hot.abs().max()) > 0.9 > 10 * float(plain.abs().max())
    # hard clipping (a converter's): flat tops at exactly full scale; off (hard_clip 0), the draws stay as before
    flat = saturate(x, 12.0, hard=True)
    assert float(flat.abs().max()) == 1.0 and float((flat.abs() == 1.0).float().mean()) > 0.3
    assert torch.equal(augment(x, RATE, AugmentConfig(reverb=0.0, band=0.0, noise=0.0, gain_db=(0.0, 0.0), saturate=1.0,
                                                       hard_clip=0.0), torch.Generator().manual_seed(7)), hot)
    cut = augment(x, RATE, AugmentConfig(reverb=0.0, band=0.0, noise=0.0, gain_db=(0.0, 0.0), saturate=1.0,
                                         hard_clip=1.0), torch.Generator().manual_seed(7))
    assert float(cut.abs().max()) == 1.0 and float((cut.abs() == 1.0).float().mean()) > 0.1


def test_recipe_settings_are_read_and_unknown_ones_refused():
    assert AugmentConfig.of(None) is None and AugmentConfig.of(False) is None
    assert AugmentConfig.of(True) == AugmentConfig()
    assert AugmentConfig.of({"noise": 0.0, "snr_db": [10, 20]}) == AugmentConfig(noise=0.0, snr_db=(10, 20))
    with pytest.raises(UserError, match="unknown setting.*reverbb"):
        AugmentConfig.of({"reverbb": 0.5})


def test_training_batches_are_augmented_by_seed_and_epoch_and_dev_never(data_dir, tmp_path):
    def batches(epoch: int, augment=True):
        data = ASRDataModule(dataset="an4", data_dir=str(data_dir), batch_size=4, max_utterances=8, spec_augment=False,
                             augment=augment, cache_dir=str(tmp_path / "cache"), seed=3)
        data.setup("fit")
        loader = data.train_dataloader()
        loader.batch_sampler.sampler.set_epoch(epoch)  # what Lightning does at the start of every epoch
        by_id = {i: f[:n] for b in loader for i, f, n in zip(b.ids, b.features, b.feature_lengths)}
        dev = [b.features for b in data.val_dataloader()]
        return by_id, dev

    clean, clean_dev = batches(0, augment=None)
    first, dev = batches(0)
    again, _ = batches(0)  # a fresh data module (another worker, rank or a resumed run): the same draws
    second, _ = batches(1)
    assert set(first) == set(clean)
    assert all(torch.equal(first[i], again[i]) for i in first)
    assert all(not torch.equal(first[i], second[i]) for i in first)  # a new draw every epoch
    changed = [i for i in first if first[i].shape != clean[i].shape or not torch.equal(first[i], clean[i])]
    assert len(changed) == len(first)  # the gain alone moves every utterance's features
    lengths = sorted(first[i].shape[0] / clean[i].shape[0] for i in first)
    assert lengths[0] < 0.95 or lengths[-1] > 1.05  # some utterance was sped up or slowed down
    assert all(torch.equal(a, b) for a, b in zip(dev, clean_dev))  # dev is never augmented
    assert np.isfinite(np.concatenate([f.numpy().ravel() for f in first.values()])).all()
