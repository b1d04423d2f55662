"""The plateau schedule's convergence rule (asr/train/schedule.py), epoch by epoch. Its use in a real training run,
resumed after a kill, is in tests/test_resume.py."""
import pytest

from asr.train.schedule import Plateau, warmup


def test_the_rule_halves_on_plateaus_and_ends_the_run_after_the_last_halving():
    rule = Plateau(patience=2, min_delta=0.5, halvings=1)
    # progress, progress, two epochs under 0.5 points of gain (halve), progress, two more without (converged)
    wers = [50.0, 40.0, 39.8, 39.6, 30.0, 29.9, 30.5]
    stops = [rule.update(epoch, wer) for epoch, wer in enumerate(wers)]
    assert stops == [False] * 6 + [True]
    assert rule.converged_epoch == 6 and rule.halved == 1 and rule.factor == 0.5 and rule.best == 30.0


def test_the_rule_waits_until_something_is_recognised():
    rule = Plateau(patience=1, halvings=0)
    assert not any(rule.update(e, 100.0) for e in range(10))  # blanks only: not a plateau
    assert rule.wait == 0 and rule.halved == 0
    assert not rule.update(10, 90.0) and rule.update(11, 90.0)  # from the first progress on, the rule counts


def test_gains_count_against_the_best_so_far():
    rule = Plateau(patience=3, min_delta=0.5, halvings=0)
    # 0.2 points an epoch: no single epoch gains 0.5, but three together do, against the best
    assert not any(rule.update(e, 20.0 - 0.2 * e) for e in range(10))
    assert rule.best == pytest.approx(18.2) and rule.wait == 0
    # 0.1 points an epoch: three epochs gain 0.3 < 0.5 and the run ends
    assert [rule.update(10 + e, 18.1 - 0.1 * e) for e in range(3)] == [False, False, True]


def test_the_state_travels_in_a_checkpoint():
    rule = Plateau(patience=1, halvings=3)
    for e, wer in enumerate([30.0, 31.0, 32.0]):
        rule.update(e, wer)
    again = Plateau()
    again.load_state_dict(rule.state_dict())
    assert again == rule and again.factor == 0.25


@pytest.mark.parametrize("steps", [0, 1, 10])
def test_warmup_reaches_the_peak_and_stays(steps):
    factors = [warmup(s, steps) for s in range(20)]
    assert factors[max(steps, 1) - 1:] == [1.0] * (21 - max(steps, 1))
    assert all(0 < f <= 1 for f in factors) and factors == sorted(factors)


@pytest.mark.corpora
def test_an_unbounded_run_is_refused_by_one_cycle_and_ended_by_the_convergence_rule(data_dir, tmp_path, capsys):
    """`trainer.max_epochs: -1` (no limit, which asr accepts) through `asr train`: one-cycle needs the run's length and
    says so in one line; a warm-up is a share of that length too; the plateau schedule without a warm-up trains until
    its convergence rule ends the run (here after 2 epochs: nothing gained in the second)."""
    from asr.cli import main
    from helpers import train_argv

    unbounded = ["--trainer.max_epochs", "-1"]
    argv = train_argv("an4_lstm", tmp_path / "onecycle", data_dir, *unbounded, "--model.schedule", "onecycle")
    assert main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: model.schedule onecycle") and "trainer.max_epochs" in error, error

    argv = train_argv("an4_lstm", tmp_path / "warmup", data_dir, *unbounded, "--model.schedule", "plateau",
                      "--model.warmup_fraction", "0.1")
    assert main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: model.warmup_fraction") and "warmup_fraction 0" in error, error

    run = tmp_path / "plateau"
    argv = train_argv("an4_lstm", run, data_dir, *unbounded, "--model.schedule", "plateau", "--model.warmup_fraction",
                      "0", "--model.plateau_patience", "1", "--model.plateau_halvings", "0", "--model.plateau_below", "1e9",
                      "--model.learning_rate", "1e-9")
    assert main(argv) == 0
    import torch

    assert torch.load(run / "checkpoints/last.ckpt", weights_only=True)["epoch"] == 1  # epochs 0 and 1, then converged


@pytest.mark.corpora
def test_resuming_a_one_cycle_run_with_more_epochs_is_refused_in_one_line(data_dir, tmp_path, capsys):
    """One-cycle plans its learning rate over the run's length when the run starts; resumed with a larger
    trainer.max_epochs it stepped past its plan and crashed as a bug in asr. It is the user's to choose: resume
    with the length the run started with, or start a new run from its weights."""
    from asr.cli import main
    from helpers import train_argv

    run = tmp_path / "run"
    assert main(train_argv("an4_lstm", run, data_dir, "--model.schedule", "onecycle", utterances=16)) == 0
    capsys.readouterr()
    resume = ["--trainer.max_epochs", "2", "--ckpt_path", str(run / "checkpoints/last.ckpt")]
    assert main(train_argv("an4_lstm", run, data_dir, "--model.schedule", "onecycle", *resume, utterances=16)) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: ") and "planned for 2 steps" in error and "--model.init_from" in error, error
