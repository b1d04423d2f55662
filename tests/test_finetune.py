"""`model.init_from`: a run that starts from another run's weights (a fine-tune), through `asr train`."""
import pytest
import torch
import yaml

from asr.train.checkpoint import read_checkpoint
from asr.cli import main
from helpers import tiny_study, train_argv


def model_weights(path) -> dict:
    return {k: v for k, v in read_checkpoint(path)["state_dict"].items() if k.startswith("model.")}


def test_a_run_given_init_from_starts_from_that_checkpoints_weights(checkpoint, data_dir, tmp_path):
    """At a learning rate of 1e-10 one epoch leaves the weights where they started: the source's with init_from,
    a fresh initialisation's without (the control that shows the comparison can tell them apart; another seed
    than the source's, whose one step left its weights about where seed 0 initialised them)."""
    source = model_weights(checkpoint)
    still = ["--model.learning_rate", "1e-10", "--model.weight_decay", "0", "--seed_everything", "1"]
    for name, extra, same in (("tuned", ["--model.init_from", str(checkpoint)], True), ("fresh", [], False)):
        run = tmp_path / name
        assert main(train_argv("an4_lstm", run, data_dir, *still, *extra, utterances=16, batch_size=None)) == 0
        weights = model_weights(run / "checkpoints/last.ckpt")
        assert weights.keys() == source.keys()
        assert all(torch.allclose(weights[k], source[k], atol=1e-6) for k in source) is same, name


@pytest.mark.parametrize("change, named", [(["--model.hidden_size", "24"], "its weights do not fit"),
                                           (["--data.stack", "2"], "data.stack 3 there, 2 here")])
def test_init_from_a_checkpoint_of_another_shape_or_features_is_refused_in_one_line(
        checkpoint, data_dir, tmp_path, capsys, change, named):
    argv = train_argv("an4_lstm", tmp_path / "run", data_dir, "--model.init_from", str(checkpoint), *change,
                      utterances=16, batch_size=None)
    assert main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: model.init_from") and named in error, error


def test_a_second_stage_study_starts_each_seed_from_that_seed_of_the_first(data_dir, tmp_path):
    """`asr compare` of a second stage whose init_from holds `{seed}`: seed N starts from the first stage's seed N
    (at a learning rate of 1e-10 its weights stay those, not the other seed's), and its config.yaml names that
    checkpoint, the path the ship script follows back to the stage before."""
    lstm, still = {"model": {"cell": "lstm"}}, {"learning_rate": 1e-10, "weight_decay": 0.0}
    first = tiny_study("first", data_dir, tmp_path / "cache", {"lstm": lstm}, seeds=[0, 1],
                       data={"max_utterances": 8}, trainer={"max_epochs": 1})
    (tmp_path / "first.yaml").write_text(yaml.safe_dump(first))
    assert main(["compare", "-c", str(tmp_path / "first.yaml"), "--runs-dir", str(tmp_path / "runs1"),
                 "--report-dir", str(tmp_path / "report1")]) == 0
    source = str(tmp_path / "runs1/lstm/seed{seed}/checkpoints/best.ckpt")
    second = tiny_study("second", data_dir, tmp_path / "cache", {"lstm": lstm}, seeds=[0, 1],
                        model={**still, "init_from": source}, data={"max_utterances": 8}, trainer={"max_epochs": 1})
    (tmp_path / "second.yaml").write_text(yaml.safe_dump(second))
    assert main(["compare", "-c", str(tmp_path / "second.yaml"), "--runs-dir", str(tmp_path / "runs2"),
                 "--report-dir", str(tmp_path / "report2")]) == 0
    starts = {seed: model_weights(tmp_path / f"runs1/lstm/seed{seed}/checkpoints/best.ckpt") for seed in (0, 1)}
    for seed in (0, 1):
        run = tmp_path / f"runs2/lstm/seed{seed}"
        assert yaml.safe_load((run / "config.yaml").read_text())["model"]["init_from"] == source.format(seed=seed)
        weights = model_weights(run / "checkpoints/last.ckpt")
        for other, start in starts.items():
            assert all(torch.allclose(weights[k], start[k], atol=1e-6) for k in start) is (other == seed), (seed, other)
