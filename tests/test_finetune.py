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


def test_init_from_may_move_a_model_to_another_normalisation(checkpoint, data_dir, tmp_path):
    """The same log-mel features normalised another way (here per utterance there, online here): a fine-tune that
    moves a model to level-proof features starts from its weights."""
    run = tmp_path / "online"
    still = ["--model.learning_rate", "1e-10", "--model.weight_decay", "0", "--data.normalize", "online"]
    assert main(train_argv("an4_lstm", run, data_dir, *still, "--model.init_from", str(checkpoint), utterances=16,
                           batch_size=None)) == 0
    source, weights = model_weights(checkpoint), model_weights(run / "checkpoints/last.ckpt")
    assert all(torch.allclose(weights[k], source[k], atol=1e-6) for k in source)


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


def test_a_staged_recipe_starts_a_later_stage_from_the_dev_best_run_of_the_earlier_one(data_dir, tmp_path, capsys):
    """`init_from: stage1` through `asr compare` of a staged recipe, run as a user would: stage 1 alone
    (--stop-stage 1), then stage 2 alone (--stage 2), which finds stage 1's output in its summary.json: the
    best.ckpt of its run with the lowest dev WER, named in the stage-2 run's config.yaml, whose weights (at a
    learning rate of 1e-10) are that checkpoint's. Before stage 1 has finished, stage 2 is refused in one line."""
    lstm, still = {"model": {"cell": "lstm"}}, {"learning_rate": 1e-10, "weight_decay": 0.0}
    first = tiny_study("first", data_dir, tmp_path / "cache", {"lstm": lstm}, seeds=[0, 1],
                       data={"max_utterances": 8}, trainer={"max_epochs": 1})
    second = tiny_study("second", data_dir, tmp_path / "cache", {"lstm": lstm}, seeds=[0],
                        model={**still, "init_from": "stage1"}, data={"max_utterances": 8}, trainer={"max_epochs": 1})
    for stage in (first, second):
        del stage["baseline"]
    recipe = tmp_path / "staged.yaml"
    recipe.write_text(yaml.safe_dump({"stages": [first, second]}))
    where = ["--runs-dir", str(tmp_path / "runs"), "--report-dir", str(tmp_path / "reports")]

    assert main(["compare", "-c", str(recipe), *where, "--stage", "2"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "stage 2 starts from stage 1, which has not finished" in error and "--stage 1" in error, error

    assert main(["compare", "-c", str(recipe), *where, "--stop-stage", "1"]) == 0
    assert not (tmp_path / "runs/second").exists()
    assert main(["compare", "-c", str(recipe), *where, "--stage", "2"]) == 0
    runs = yaml.safe_load((tmp_path / "reports/first/summary.json").read_text())["models"]["lstm"]["runs"]
    best = min(runs, key=lambda r: r["best_dev_wer"])["seed"]
    source = tmp_path / f"runs/first/lstm/seed{best}/checkpoints/best.ckpt"
    run = tmp_path / "runs/second/lstm/seed0"
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["init_from"] == str(source)
    weights, start = model_weights(run / "checkpoints/last.ckpt"), model_weights(source)
    assert all(torch.allclose(weights[k], start[k], atol=1e-6) for k in start)
    report = (tmp_path / "reports/second/report.md").read_text()
    assert f"asr compare -c {recipe} --stage 2 --stop-stage 2" in report


def test_the_output_of_a_stage_is_its_run_of_lowest_dev_wer(tmp_path):
    """stage_output picks by dev WER (seed 1 here), never by test WER or seed order; `stage1/gru` names another
    model's run; a stage may start only from one before it."""
    import json

    from asr.base.errors import UserError
    from asr.study.recipes import pipeline_stage

    runs = [{"seed": 0, "best_dev_wer": 30.0, "test_wer": 10.0}, {"seed": 1, "best_dev_wer": 20.0, "test_wer": 40.0}]
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1/summary.json").write_text(json.dumps({"models": {"lstm": {"runs": runs}, "gru": {"runs": runs[:1]}}}))
    first = {"study": "one", "runs_dir": str(tmp_path / "runs1"), "report_dir": str(tmp_path / "r1"),
             "base": {"model": {}}, "models": {"lstm": {}, "gru": {}}}
    second = {"study": "two", "base": {"model": {"init_from": "stage1"}},
              "models": {"lstm": {}, "other": {"model": {"init_from": "stage1/gru"}}, "file": {"model": {"init_from": "x.ckpt"}}}}
    stage = pipeline_stage([first, second], 2)
    assert stage["stage"] == 2
    assert stage["models"]["lstm"]["model"]["init_from"] == str(tmp_path / "runs1/lstm/seed1/checkpoints/best.ckpt")
    assert stage["models"]["other"]["model"]["init_from"] == str(tmp_path / "runs1/gru/seed0/checkpoints/best.ckpt")
    assert stage["models"]["file"]["model"]["init_from"] == "x.ckpt"
    with pytest.raises(UserError, match="starts only from one before it"):
        pipeline_stage([first, {**second, "base": {"model": {"init_from": "stage2"}}}], 2)


def test_stage_options_on_a_recipe_without_stages_or_outside_its_stages_are_refused(data_dir, tmp_path, capsys):
    plain = tiny_study("plain", data_dir, tmp_path / "cache", {"lstm": {"model": {"cell": "lstm"}}})
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump(plain))
    (tmp_path / "staged.yaml").write_text(yaml.safe_dump({"stages": [plain]}))
    for recipe, options, said in (("plain.yaml", ["--stage", "1"], "has no stages"),
                                  ("staged.yaml", ["--stage", "2"], "has stages 1 to 1")):
        assert main(["compare", "-c", str(tmp_path / recipe), *options]) == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert said in error, error
    assert not (tmp_path / "cache").exists()  # refused before anything was read or trained
