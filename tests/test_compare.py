"""`asr compare` end to end on a CPU-sized study, and the W_rec sweep's ordering."""
import json

import pytest
import yaml

from asr.cli import main
from asr.compare import matched_hidden_size, parameter_count
from asr.model import CELLS, AcousticModel
from asr.report import PLOTS
from asr.sweep import sweep


@pytest.mark.parametrize("cell,bidirectional", [(c, b) for c in CELLS for b in (True, False) if not (c == "esn" and b)])
def test_parameter_count_matches_the_model(cell, bidirectional):
    args = {"cell": cell, "hidden_size": 24, "num_layers": 3, "bidirectional": bidirectional}
    assert parameter_count(args, 240) == AcousticModel(240, 29, **args).num_parameters()


def test_matched_parameter_count():
    lstm = {"cell": "lstm", "hidden_size": 128, "num_layers": 2, "bidirectional": True}
    h = matched_hidden_size({**lstm, "cell": "rnn_tanh"}, parameter_count(lstm, 240), 240)
    assert h > 128
    assert parameter_count({**lstm, "cell": "rnn_tanh", "hidden_size": h}, 240) == pytest.approx(parameter_count(lstm, 240), rel=0.02)


def test_compare_writes_the_whole_report(tmp_path, data_dir, capsys):
    recipe = {
        "study": "tiny", "seeds": [0], "baseline": "tanh_rnn_clipped",
        "gradient_flow": {"frames": 30, "utterances": 2, "every_n_epochs": 1},
        "base": {"model": {"hidden_size": 16, "num_layers": 1, "bidirectional": True},
                 "data": {"dataset": "an4", "data_dir": str(data_dir), "batch_size": 8, "max_utterances": 16,
                          "cache_dir": str(tmp_path / "cache")},
                 "trainer": {"max_epochs": 2, "accelerator": "cpu", "enable_progress_bar": False}},
        "models": {"tanh_rnn_clipped": {"model": {"cell": "rnn_tanh"}, "trainer": {"gradient_clip_val": 1.0}},
                   "lstm": {"model": {"cell": "lstm"}},
                   "tanh_rnn_wide": {"model": {"cell": "rnn_tanh"}, "match_parameters": "lstm"}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    report = tmp_path / "report"
    assert main(["compare", "-c", str(path), "--runs-dir", str(tmp_path / "runs"), "--report-dir", str(report)]) == 0
    for name in ["summary.json", "report.md", *PLOTS.values()]:
        assert (report / name).is_file() and (report / name).stat().st_size > 0, name
    s = json.loads((report / "summary.json").read_text())
    assert {"device", "versions", "git_commit", "recipe", "models", "relative_wer_reduction"} <= set(s)
    assert set(s["relative_wer_reduction"]) == {"lstm", "tanh_rnn_wide"}
    for name, m in s["models"].items():
        assert {"test_wer", "test_cer", "parameters", "train_seconds", "nonfinite_steps", "grad_norm_max"} <= set(m)
        assert {"per_seed", "mean", "std", "min", "max"} <= set(m["test_wer"]) and len(m["test_wer"]["per_seed"]) == 1
        assert m["grad_norm_max"] > 0
        flow = json.loads((tmp_path / "runs" / name / "seed0/gradient_flow.json").read_text())
        assert [c["epoch"] for c in flow["curves"]] == [-1, 0, 1] and len(flow["curves"][0]["curve"]) == 30
        # each run leaves the `asr train` recipe that reproduces it
        assert yaml.safe_load((tmp_path / "runs" / name / "seed0/config.yaml").read_text())["seed_everything"] == 0
    wide, lstm = s["models"]["tanh_rnn_wide"], s["models"]["lstm"]
    assert wide["parameters"] == pytest.approx(lstm["parameters"], rel=0.05)
    report_text = (report / "report.md").read_text()
    assert "| lstm | lstm | 16 |" in report_text and "37.6" in report_text
    # a second run must not overwrite the first one's checkpoints
    assert main(["compare", "-c", str(path), "--runs-dir", str(tmp_path / "runs"), "--report-dir", str(report)]) == 2
    assert "already holds runs of this study" in capsys.readouterr().err


def test_wrec_sweep_vanishes_below_one_and_grows_above(data_dir, tmp_path):
    result = sweep({"data_dir": str(data_dir), "cache_dir": str(tmp_path), "radii": [0.5, 1.0, 1.5],
                    "frames": 60, "utterances": 4, "hidden_size": 128, "report_at": [10, 40]})
    c = result["curves"]
    assert c["tanh rho=0.5"][40] < c["tanh rho=1"][40] < 1 < c["tanh rho=1.5"][40]
    assert c["tanh rho=0.5"][10] < 1e-2
    assert "lstm (default init)" in c


def test_remedies_study_runs_every_remedy_a_few_steps(tmp_path, data_dir):
    """recipes/an4_remedies_cpu.yaml, shrunk to a few steps: every remedy trains and lands in the report."""
    recipe = yaml.safe_load(open("recipes/an4_remedies_cpu.yaml"))
    recipe["gradient_flow"] = {"frames": 30, "utterances": 2, "every_n_epochs": 1}
    recipe["base"]["model"]["hidden_size"] = 16
    recipe["base"]["data"].update(data_dir=str(data_dir), max_utterances=16, cache_dir=str(tmp_path / "cache"))
    recipe["base"]["trainer"].update(max_epochs=1, accelerator="cpu", enable_progress_bar=False)
    recipe["models"]["esn"]["model"]["hidden_size"] = 32
    path = tmp_path / "remedies.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    report = tmp_path / "report"
    assert main(["compare", "-c", str(path), "--runs-dir", str(tmp_path / "runs"), "--report-dir", str(report)]) == 0
    s = json.loads((report / "summary.json").read_text())
    assert list(s["models"]) == ["tanh_rnn", "tanh_rnn_clipped", "tanh_rnn_tbptt", "tanh_rnn_penalty",
                                 "tanh_rnn_orthogonal", "irnn", "esn", "lstm"]
    text = (report / "report.md").read_text()
    assert "| esn | " in text and "gradient 10 frames (300 ms) back" in text
    assert s["models"]["esn"]["parameters"] == 32 * 29 + 29  # only the readout is trained
