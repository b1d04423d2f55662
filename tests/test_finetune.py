"""`model.init_from`: a run that starts from another run's weights (a fine-tune), through `asr train`."""
import pytest
import torch

from asr.checkpoint import read_checkpoint
from asr.cli import main
from helpers import train_argv


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
