"""`asr compare` end to end on a CPU-sized study, and the W_rec sweep's ordering."""
import json
from pathlib import Path

import matplotlib.figure
import numpy as np
import pytest
import torch
import yaml

from asr.cli import main
from asr.study.recipes import matched_hidden_size, model_hparams
from asr.data.datamodule import ASRDataModule
from asr.model.gradients import fixed_probe_batch, model_gradient_flow
from asr.deploy.inference import Recognizer
from asr.model.acoustic import CELLS, AcousticModel, ModelConfig, parameter_count
from asr.study.plots import PLOTS
from asr.train.runs import column, read_metrics
from asr.study.sweep import sweep
from asr.data.text import VOCABULARY
from helpers import LSTM, TANH_RNN_CLIPPED, tiny_study


@pytest.mark.parametrize("cell,bidirectional", [(c, b) for c in CELLS for b in (True, False) if not (c == "esn" and b)])
def test_parameter_count_on_the_meta_device_matches_a_real_model(cell, bidirectional):
    args = {"cell": cell, "hidden_size": 24, "num_layers": 3, "bidirectional": bidirectional}
    real = AcousticModel(ModelConfig(240, len(VOCABULARY), **args))
    assert parameter_count(model_hparams(args, 240)) == sum(p.numel() for p in real.parameters() if p.requires_grad)


def test_matched_hidden_size_is_the_closest_one():
    lstm = {"cell": "lstm", "hidden_size": 128, "num_layers": 2, "bidirectional": True}
    goal = parameter_count(model_hparams(lstm, 240))
    tanh = {**lstm, "cell": "rnn_tanh"}
    h = matched_hidden_size(tanh, goal, 240)

    def miss(size):
        return abs(AcousticModel(ModelConfig(240, len(VOCABULARY), **{**tanh,
                                             "hidden_size": size})).num_parameters() - goal)

    assert miss(h) <= miss(h - 1) and miss(h) <= miss(h + 1) and miss(h) / goal < 0.01


def test_compare_writes_the_whole_report(tmp_path, data_dir, capsys, monkeypatch):
    recipe = tiny_study("tiny", data_dir, tmp_path / "cache", {
        "tanh_rnn_clipped": TANH_RNN_CLIPPED, "lstm": LSTM,
        "tanh_rnn_wide": {"model": {"cell": "rnn_tanh"}, "match_parameters": "lstm"}})
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    report = tmp_path / "report"
    figures = {}  # every figure the report saves, to read its lines back
    savefig = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, out, *a, **k: (figures.__setitem__(Path(out).name, fig), savefig(fig, out, *a, **k)))
    assert main(["compare", "-c", str(path), "--runs-dir", str(tmp_path / "runs"), "--report-dir", str(report)]) == 0
    for name in ["summary.json", "report.md", *PLOTS.values()]:
        assert (report / name).is_file() and (report / name).stat().st_size > 0, name
    s = json.loads((report / "summary.json").read_text())
    # the plots show the runs' own records: each model's gradient across time on its selected weights, and its
    # dev WER per epoch as logged
    flow_lines = {line.get_label().split(" (")[0]: line.get_ydata() for line in figures[PLOTS["flow"]].axes[0].lines
                  if not line.get_label().startswith("_")}
    wer_lines = {line.get_label(): line.get_ydata() for line in figures[PLOTS["curves"]].axes[2].lines}
    assert set(flow_lines) == set(wer_lines) == set(s["models"])
    for name in s["models"]:
        selected = np.array(s["models"][name]["runs"][0]["gradient_flow_curve"])
        assert np.allclose(flow_lines[name], selected / selected[0], rtol=1e-12)
        run = tmp_path / "runs" / name / "seed0"
        assert list(wer_lines[name]) == [v for _, v in column(read_metrics(run), "dev/wer", by="epoch")]
    assert {"device", "versions", "git_commit", "recipe", "models", "relative_wer_reduction"} <= set(s)
    assert set(s["relative_wer_reduction"]) == {"lstm", "tanh_rnn_wide"}
    for name, m in s["models"].items():
        assert {"test_wer", "test_cer", "parameters", "train_seconds", "nonfinite_steps", "grad_norm_max"} <= set(m)
        assert {"per_seed", "mean", "sd", "min", "max"} <= set(m["test_wer"]) and len(m["test_wer"]["per_seed"]) == 1
        assert m["grad_norm_max"] > 0
        flow = json.loads((tmp_path / "runs" / name / "seed0/gradient_flow.json").read_text())
        assert [c["epoch"] for c in flow["curves"]] == [-1, 0, 1] and len(flow["curves"][0]["curve"]) == 30
        assert set(flow) == {"frames", "utterances", "cell", "bidirectional", "curves"}  # the monitor's file, its alone
        assert len(m["runs"][0]["gradient_flow_curve"]) == 30
        # each run leaves the `asr train` recipe that reproduces it
        assert yaml.safe_load((tmp_path / "runs" / name / "seed0/config.yaml").read_text())["seed_everything"] == 0
    wide, lstm = s["models"]["tanh_rnn_wide"], s["models"]["lstm"]
    assert wide["parameters"] == pytest.approx(lstm["parameters"], rel=0.05)
    base = s["models"]["tanh_rnn_clipped"]["test_wer"]["per_seed"][0]
    for name in ("lstm", "tanh_rnn_wide"):
        wer = s["models"][name]["test_wer"]["per_seed"][0]
        assert s["relative_wer_reduction"][name] == pytest.approx((base - wer) / base)

    # Every number of a row comes from the dev-selected weights: recompute them from best.ckpt.
    best = tmp_path / "runs/lstm/seed0/checkpoints/best.ckpt"
    run = lstm["runs"][0]
    assert run["selected_epoch"] == torch.load(best, weights_only=True)["epoch"]
    recognizer = Recognizer.from_checkpoint(best)
    assert run["spectral_radius"] == pytest.approx(recognizer.model.recurrent_spectral_radii(), rel=1e-6)
    assert lstm["parameters"] == recognizer.model.num_parameters()
    data = ASRDataModule(**recipe["base"]["data"])
    probe = fixed_probe_batch([data.extractor.stack(e.log_mel) for e in data.load("dev").examples], 30, 2)
    curve = model_gradient_flow(recognizer.model, probe)
    assert run["gradient_flow"]["10"] == pytest.approx(float(curve[10] / curve[0]), rel=1e-5)
    assert run["gradient_flow_curve"] == pytest.approx(curve.tolist(), rel=1e-5)
    # ... and the test WER is the one `asr evaluate` gives for that checkpoint, to the last digit
    evaluated = tmp_path / "evaluate.json"
    assert main(["evaluate", str(best), "--data-dir", str(data_dir), "--summary-json", str(evaluated),
                 "--output", str(tmp_path / "rows.csv")]) == 0
    assert json.loads(evaluated.read_text())["wer"] == run["test_wer"]

    report_text = (report / "report.md").read_text()
    assert f"| lstm | lstm | 16 | {lstm['parameters']:,} | {lstm['test_wer']['mean']:.2f} |" in report_text
    assert "37.6" in report_text
    assert f"runs trained at git {s['git_commit'][:12]}" in report_text  # the code these runs ran
    # the same command again: every run finished earlier, is read back, and gives the same report numbers
    capsys.readouterr()
    assert main(["compare", "-c", str(path), "--runs-dir", str(tmp_path / "runs"), "--report-dir", str(report)]) == 0
    assert capsys.readouterr().out.count("finished earlier, read from") == 3
    again = json.loads((report / "summary.json").read_text())
    assert again["models"] == s["models"] and again["relative_wer_reduction"] == s["relative_wer_reduction"]
    # the record of each finished run beside the report (what a study continues from where the runs are gone)
    records = sorted(p.relative_to(report) for p in (report / "runs").rglob("result.json"))
    assert [str(r) for r in records] == [f"runs/{n}/seed0/result.json" for n in sorted(s["models"])]
    moved = tmp_path / "runs-elsewhere"
    (tmp_path / "runs").rename(moved)
    capsys.readouterr()
    assert main(["compare", "-c", str(path), "--runs-dir", str(tmp_path / "runs"), "--report-dir", str(report)]) == 0
    assert capsys.readouterr().out.count(f"finished earlier, read from {report}/runs/") == 3
    assert json.loads((report / "summary.json").read_text())["models"] == s["models"]
    moved.rename(tmp_path / "runs")
    # another recipe is never trained on top of these runs
    recipe["base"]["model"]["hidden_size"] = 12
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(recipe))
    assert main(["compare", "-c", str(other), "--runs-dir", str(tmp_path / "runs"), "--report-dir", str(report)]) == 2
    assert "holds a run of a different recipe (see its config.yaml); nothing was overwritten" in capsys.readouterr().err


def test_wrec_sweep_vanishes_below_one_and_grows_above(data_dir, tmp_path):
    result = sweep({"data_dir": str(data_dir), "cache_dir": str(tmp_path), "radii": [0.5, 1.0, 1.5],
                    "frames": 60, "utterances": 4, "hidden_size": 128, "frames_back": [10, 40]})
    c = result["curves"]
    assert c["tanh rho=0.5"][40] < c["tanh rho=1"][40] < 1 < c["tanh rho=1.5"][40]
    assert c["tanh rho=0.5"][10] < 1e-2
    assert "lstm (default init)" in c


def test_remedies_study_runs_every_remedy_a_few_steps(tmp_path, data_dir):
    """recipes/studies/an4_remedies_cpu.yaml, shrunk to a few steps: every remedy trains and lands in the report."""
    recipe = yaml.safe_load(open("recipes/studies/an4_remedies_cpu.yaml"))
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
    assert list(s["models"]) == ["lstm", "tanh_rnn", "tanh_rnn_clipped", "tanh_rnn_tbptt", "tanh_rnn_penalty",
                                 "tanh_rnn_orthogonal", "irnn", "esn"]
    text = (report / "report.md").read_text()
    assert "| esn | " in text and "gradient 10 frames (300 ms) back" in text
    assert "One seed for every model: each of those WERs is a single draw" in text
    assert s["models"]["esn"]["parameters"] == 32 * 29 + 29  # only the readout is trained


def test_parallel_jobs_give_the_numbers_of_a_sequential_study(tmp_path, data_dir):
    """`asr compare --jobs 2`: the runs in two processes of one torch thread each, the same results as one
    after the other with one thread."""
    recipe = tiny_study("jobs", data_dir, tmp_path / "cache", {
        "tanh": {"model": {"cell": "rnn_tanh"}}, "gru": {"model": {"cell": "gru"}, "seeds": [1]}},
        seeds=[0, 1], model={"hidden_size": 8})
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["compare", "-c", str(path), "--runs-dir", str(tmp_path / "one"), "--report-dir", str(tmp_path / "r1")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert main(["compare", "-c", str(path), "--runs-dir", str(tmp_path / "two"), "--report-dir", str(tmp_path / "r2"),
                 "--jobs", "2"]) == 0
    one, two = (json.loads((tmp_path / f"r{i}/summary.json").read_text()) for i in (1, 2))
    # a model's own `seeds` replaces the study's: gru trained once, with seed 1; the config keeps no `seeds`
    assert [r["seed"] for r in one["models"]["tanh"]["runs"]] == [0, 1]
    assert [r["seed"] for r in one["models"]["gru"]["runs"]] == [1] == [r["seed"] for r in two["models"]["gru"]["runs"]]
    assert "seeds" not in one["models"]["gru"]["config"] and not (tmp_path / "one/gru/seed0").exists()
    assert "One seed for gru: each of those WERs is a single draw" in (tmp_path / "r1/report.md").read_text()
    # a finished study moved to another folder is read back from there, its report made from the moved runs
    (tmp_path / "one").rename(tmp_path / "moved")
    assert main(["compare", "-c", str(path), "--runs-dir", str(tmp_path / "moved"), "--report-dir", str(tmp_path / "r3")]) == 0
    three = json.loads((tmp_path / "r3/summary.json").read_text())
    assert three["models"]["tanh"]["test_wer"] == one["models"]["tanh"]["test_wer"]
    assert all(r["run_dir"].startswith(str(tmp_path / "moved")) for m in three["models"].values() for r in m["runs"])
    for name in ("tanh", "gru"):
        assert one["models"][name]["test_wer"] == two["models"][name]["test_wer"]
        for a, b in zip(one["models"][name]["runs"], two["models"][name]["runs"]):
            assert (a["seed"], a["gradient_flow"], a["grad_norm"]) == (b["seed"], b["gradient_flow"], b["grad_norm"])


def test_a_killed_study_leaves_no_training_worker_behind(tmp_path):
    """`asr compare --jobs N` trains in worker processes; killing the study (kill -9, a session that ends) must end
    them too. Orphaned workers went on training into the run folders of a study that had been restarted."""
    import os
    import signal
    import subprocess
    import sys
    import time

    code = ("import os, time\n"
            "from asr.study.workers import worker_pool\n"
            "with worker_pool(1) as pool:\n"
            "    pid = pool.submit(os.getpid).result()\n"
            "    pool.submit(time.sleep, 600)\n"  # the worker is busy, as one training a model is
            "    print(pid, flush=True)\n"
            "    time.sleep(600)\n")
    study = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    worker = int(study.stdout.readline())
    os.kill(worker, 0)  # alive
    study.send_signal(signal.SIGKILL)
    study.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    raise AssertionError(f"worker {worker} still running 10 s after its study was killed")
