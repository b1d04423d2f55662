"""One way to build a run (asr/train/runs.py): `asr compare` and `asr train` on the recipe the study writes beside
each run train the same run: identical weights, identical gradient-across-time records, identical logs."""
import json

import torch
import yaml

from asr.cli import main
from asr.train.runs import column, read_metrics
from helpers import LSTM, tiny_study


def test_a_study_run_and_asr_train_on_its_recipe_are_the_same_run(tmp_path, data_dir):
    recipe = tiny_study("one", data_dir, tmp_path / "cache", {"lstm": LSTM}, seeds=[1],
                        model={"num_layers": 2, "dropout": 0.3}, data={"spec_augment": True})
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["compare", "-c", str(tmp_path / "one.yaml"), "--runs-dir", str(tmp_path / "runs"),
                 "--report-dir", str(tmp_path / "report")]) == 0
    study_run = tmp_path / "runs/lstm/seed1"
    config = yaml.safe_load((study_run / "config.yaml").read_text())
    assert config["gradient_flow"] == recipe["gradient_flow"] and config["seed_everything"] == 1

    again = tmp_path / "again"
    assert main(["train", "-c", str(study_run / "config.yaml"), "--run_dir", str(again)]) == 0

    for name in ("best.ckpt", "last.ckpt"):
        a = torch.load(study_run / "checkpoints" / name, weights_only=True)
        b = torch.load(again / "checkpoints" / name, weights_only=True)
        assert a["epoch"] == b["epoch"] and a["state_dict"].keys() == b["state_dict"].keys()
        for key, value in a["state_dict"].items():
            assert torch.equal(value, b["state_dict"][key]), (name, key)
    curves = [json.loads((run / "gradient_flow.json").read_text())["curves"] for run in (study_run, again)]
    assert [c["epoch"] for c in curves[0]] == [-1, 0, 1]
    assert curves[0] == curves[1]
    for key in ("train/loss", "grad_norm/total", "dev/wer", "gradient_flow/k10"):
        assert column(read_metrics(study_run), key) == column(read_metrics(again), key), key
