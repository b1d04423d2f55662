import numpy as np
import pytest
import torch
import yaml

from asr.base.errors import UserError
from asr.data.datamodule import Collate, Example
from asr.data.features import FeatureConfig, FeatureExtractor, SpecAugment


def test_log_mel_shape_normalisation_and_stacking():
    ex = FeatureExtractor(FeatureConfig())
    wave = torch.randn(16000)  # 1 s at 16 kHz: (16000 - 400) // 160 + 1 = 98 frames of 10 ms
    feats = ex.log_mel(wave)
    assert feats.shape == (98, 80)
    assert torch.allclose(feats.mean(0), torch.zeros(80), atol=1e-4)
    assert torch.allclose(feats.std(0), torch.ones(80), atol=1e-3)
    stacked = ex.stack(feats)
    assert stacked.shape == (ex.stacked_length(98), 240) == (48, 240)
    # stacked frame i holds frames 2i, 2i+1, 2i+2 side by side
    assert torch.equal(stacked[5], torch.cat([feats[10], feats[11], feats[12]]))


def test_too_short_audio_is_refused():
    ex = FeatureExtractor()
    try:
        ex.log_mel(torch.randn(300))
    except ValueError as e:
        assert "too short" in str(e)
    else:
        raise AssertionError("no error for 300 samples")


def zeros_on_valid_frames(batch) -> int:
    """Exact zeros inside each utterance's own frames (padding is zero anyway; normalised log-mels never are)."""
    valid = torch.arange(batch.features.shape[1])[None] < batch.feature_lengths[:, None]
    return int((batch.features[valid] == 0).sum())


def test_the_data_module_masks_training_batches_and_never_dev_ones(data_dir, tmp_path):
    """SpecAugment through the loaders Lightning calls: on (spec_augment: true), training batches carry masks and
    dev batches none; off, neither does."""
    from asr.data.datamodule import ASRDataModule

    def batches(spec_augment):
        data = ASRDataModule(dataset="an4", data_dir=str(data_dir), batch_size=4, max_utterances=8,
                             spec_augment=spec_augment, cache_dir=str(tmp_path / "cache"))
        data.setup("fit")
        return list(data.train_dataloader()), list(data.val_dataloader())

    train, dev = batches(True)
    assert all(zeros_on_valid_frames(b) > 0 for b in train)
    assert sum(zeros_on_valid_frames(b) for b in dev) == 0
    train, dev = batches(False)
    assert sum(zeros_on_valid_frames(b) for b in train + dev) == 0


def test_spec_augment_takes_its_mask_settings_from_the_recipe(data_dir, tmp_path, capsys):
    """data.spec_augment as a mapping: time masks alone zero whole log-mel frames (blocks of 80 in a stacked
    frame), where the default's frequency bands cut across frames; an unknown or negative setting is refused."""
    from asr.cli import main
    from asr.data.datamodule import ASRDataModule

    from helpers import REPO

    def zero_counts(spec_augment):
        data = ASRDataModule(dataset="an4", data_dir=str(data_dir), batch_size=4, max_utterances=8,
                             spec_augment=spec_augment, cache_dir=str(tmp_path / "cache"))
        data.setup("fit")
        return [int(n) for b in data.train_dataloader() for n in (b.features == 0).sum(-1).flatten()]

    frames_only = zero_counts({"freq_masks": 0, "time_masks": 2, "time_width": 30})
    assert sum(frames_only) > 0 and all(n % 80 == 0 for n in frames_only)
    assert any(n % 80 for n in zero_counts(True))
    for bad, named in (({"time_widht": 5}, r"unknown setting\(s\) time_widht"), ({"freq_width": -1}, "freq_width=-1")):
        with pytest.raises(UserError, match=named):
            ASRDataModule(dataset="an4", data_dir=str(data_dir), spec_augment=bad)
    with pytest.raises(SystemExit):
        main(["train", "-c", str(REPO / "recipes/models/an4_lstm.yaml"), "--data.spec_augment", "{time_width: 5}",
              "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out)["data"]["spec_augment"] == {"time_width": 5}


def test_spec_augment_masks_training_batches_only():
    torch.manual_seed(0)
    ex = FeatureExtractor()
    example = Example("u", "A", torch.randn(200, 80) + 5.0, torch.tensor([3]), augment_seed=7)
    plain = Collate(ex)([example]).features
    augmented = Collate(ex, SpecAugment(freq_width=20, time_width=20))([example]).features
    # without augmentation the batch holds the stacked frames themselves: frame i = frames 2i, 2i+1, 2i+2
    frames = example.log_mel
    assert plain.shape == (1, 99, 240)
    assert all(torch.equal(plain[0, i], torch.cat([frames[2 * i], frames[2 * i + 1], frames[2 * i + 2]])) for i in range(99))
    assert (augmented == 0).sum() > 0 and (plain == 0).sum() == 0
    # an utterance without a seed for this epoch is an evaluation one: never masked
    unseeded = Example("u", "A", example.log_mel, example.labels)
    assert torch.equal(Collate(ex, SpecAugment(freq_width=20, time_width=20))([unseeded]).features, plain)


def test_global_normalisation_uses_the_training_splits_statistics_everywhere(data_dir, tmp_path):
    """data.normalize: global. The statistics are those of the training split's log-mels; dev is normalised with
    them (not with its own); the data module keeps them in its hyper-parameters (every checkpoint carries them);
    statistics given are used as given."""
    from asr.data.datamodule import ASRDataModule
    from asr.data.dataset import CorpusFeatures
    from asr.data.features import feature_stats

    data = ASRDataModule(dataset="an4", data_dir=str(data_dir), batch_size=4, max_utterances=8, normalize="global",
                         spec_augment=False, cache_dir=str(tmp_path / "cache"))
    data.setup("fit")
    raw = CorpusFeatures("an4", str(data_dir), FeatureConfig(normalize="global"), str(tmp_path / "cache"),
                         max_utterances=8)
    train_raw = [f for f in raw.utterance_features("train")[1]]
    stats = feature_stats(train_raw)
    assert data.hparams.feature_stats == stats and len(stats["mean"]) == 80
    normalised = torch.cat([e.log_mel for e in data.load("train").examples])
    assert normalised.mean(0).abs().max() < 0.15 and (normalised.std(0) - 1).abs().max() < 0.15  # most frames kept
    dev_raw = raw.utterance_features("dev")[1][0]
    mean, std = torch.tensor(stats["mean"]).float(), torch.tensor(stats["std"]).float()
    assert torch.allclose(data.load("dev").examples[0].log_mel, (dev_raw - mean) / (std + 1e-5))
    assert data.load("dev").examples[0].log_mel.mean(0).abs().max() > 0.2  # not its own statistics

    given = {"mean": [0.0] * 80, "std": [1.0] * 80}
    fixed = CorpusFeatures("an4", str(data_dir), FeatureConfig(normalize="global"), str(tmp_path / "cache"),
                           max_utterances=8, feature_stats=given)
    assert torch.allclose(fixed.load("dev").examples[0].log_mel, dev_raw / (1 + 1e-5))


def test_online_normalisation_forgets_a_level_offset_as_the_frames_come():
    """RunningMean: a recording 20 dB quieter (every log-mel band lower by the same amount) is normalised to the same
    features but for a remainder that shrinks as prior / (prior + frames seen); chunked or whole, the same."""
    from asr.data.features import ONLINE_PRIOR_FRAMES, FeatureConfig, FeatureExtractor, RunningMean

    torch.manual_seed(0)
    stats = {"mean": torch.randn(80).tolist(), "std": (torch.rand(80) + 0.5).tolist()}
    extractor = FeatureExtractor(FeatureConfig(normalize="online"), stats)
    frames = torch.randn(400, 80) + torch.tensor(stats["mean"])
    offset = float(np.log(0.01))  # 20 dB quieter: the power, hence the mel energies, times 0.01
    clean, quiet = extractor.normalize_frames(frames), extractor.normalize_frames(frames + offset)
    t = torch.arange(1, 401, dtype=torch.float64)[:, None]
    remainder = offset * ONLINE_PRIOR_FRAMES / (ONLINE_PRIOR_FRAMES + t) / (torch.tensor(stats["std"]) + 1e-5)
    torch.testing.assert_close((quiet - clean).double(), remainder, atol=1e-4, rtol=1e-4)
    assert bool(((quiet - clean)[-1].abs() < 0.1 * (quiet - clean)[0].abs()).all())  # after 4 s, 93 % of it gone
    running = RunningMean(torch.tensor(stats["mean"]))
    chunked = torch.cat([running(frames[a:b]) for a, b in ((0, 1), (1, 1), (1, 170), (170, 400))])
    torch.testing.assert_close(chunked, RunningMean(torch.tensor(stats["mean"]))(frames))
    with pytest.raises(UserError, match="online feature normalisation needs the training split's statistics"):
        FeatureExtractor(FeatureConfig(normalize="online")).normalize_frames(frames)


def test_level_matched_normalisation_removes_a_gain_from_the_first_frame_and_a_tilt_as_frames_come():
    """LevelMatchedMean (data.normalize: online_level): a recording 20 dB quieter or 30 dB louder (every band moved by
    the same amount) gives the training level's normalised frames from frame 0, where RunningMean is still off there;
    a spectral tilt (bands moved by different amounts) is forgotten as frames come; chunked or whole, the same; a
    restart keeps the level it has heard."""
    from asr.data.features import FeatureConfig, FeatureExtractor, LevelMatchedMean

    torch.manual_seed(0)
    stats = {"mean": torch.randn(80).tolist(), "std": (torch.rand(80) + 0.5).tolist()}
    level, online = (FeatureExtractor(FeatureConfig(normalize=n), stats) for n in ("online_level", "online"))
    frames = torch.randn(400, 80) + torch.tensor(stats["mean"])
    for gain_db in (-20.0, 30.0):
        offset = float(np.log(10 ** (gain_db / 10)))  # the power, hence the mel energies, times 10^(dB/10)
        moved = level.normalize_frames(frames + offset) - level.normalize_frames(frames)
        assert moved.abs().max() < 1e-4, (gain_db, moved.abs().max())
        plain = online.normalize_frames(frames + offset) - online.normalize_frames(frames)
        assert plain[0].abs().min() > 0.5  # online normalisation carries the gain through its first frames
    tilt = torch.linspace(-3, 3, 80)
    moved = (level.normalize_frames(frames + tilt) - level.normalize_frames(frames)).abs().mean(1)
    assert moved[0] > 1.0 and moved[-1] < 0.1 * moved[0]
    mean = torch.tensor(stats["mean"])
    chunked = LevelMatchedMean(mean)
    got = torch.cat([chunked(frames[a:b]) for a, b in ((0, 1), (1, 1), (1, 170), (170, 400))])
    torch.testing.assert_close(got, LevelMatchedMean(mean)(frames))
    assert torch.allclose(LevelMatchedMean(mean).current(), mean)  # nothing heard: the prior
    quiet, loud = level.frame_normalizer(), level.frame_normalizer()
    quiet(frames[:200] - 5.0), loud(frames[:200])
    quiet.restart(), loud.restart()  # a new segment (after an endpoint) starts from the mean heard so far ...
    torch.testing.assert_close(quiet(frames[200:] - 5.0), loud(frames[200:]), atol=1e-4, rtol=0)  # ... gain-free
    fresh = level.normalize_frames(frames[200:])
    assert (loud(frames[200:210]) - fresh[:10]).abs().max() > 1e-3  # not the training mean's start again
