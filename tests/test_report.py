"""The study's report is a pure function of the typed study result: made here from numbers written in the test,
with no run folder, no checkpoint and no corpus."""
import json
import statistics
from pathlib import Path

import matplotlib.figure
import numpy as np
import pytest

from asr.study.plots import PLOTS
from asr.study.report import gradient_table, sentences, summary_table, write_report
from asr.study.results import ModelResult, RunHistory, RunResult, Spread, StudyResult


def run(seed: int, wer: float, flow40: float, radius: float, nonfinite: int = 0,
        converged: int | None = None) -> RunResult:
    rng = np.random.default_rng(seed)
    epochs = 4
    curve = [1.0] + [flow40 ** (k / 40) for k in range(1, 60)]
    return RunResult(
        seed=seed, test_wer=wer, test_cer=wer / 3, best_dev_wer=wer - 1, selected_epoch=epochs - 2,
        spectral_radius={"l0": radius, "l0_reverse": radius / 2}, gradient_flow={"10": curve[10], "40": curve[40]},
        gradient_flow_curve=curve, parameters=1000, train_seconds=60.0 + seed, nonfinite_steps=nonfinite,
        steps=40, epochs=epochs, grad_norm={"median": 1.0, "p99": 5.0, "max": 7.0 + seed},
        history=RunHistory(
            grad_norm=[(s, float(v)) for s, v in enumerate(rng.uniform(0.5, 8, 40))],
            train_loss=[(e, 100.0 / (e + 1)) for e in range(epochs)],
            dev_loss=[(e, 120.0 / (e + 1)) for e in range(epochs)],
            dev_wer=[(e, wer + 10 - 3 * e) for e in range(epochs)],
            spectral_radius={"l0": [(e, radius - 0.1 * e) for e in range(epochs)]},
            initial_gradient_flow=[1.0] + [0.5 ** k for k in range(1, 60)]),
        run_dir="/nowhere/runs/seed%d" % seed, git_commit="abc123def4567890", max_epochs=epochs,
        converged_epoch=converged, conditions={"noise_20db": {"wer": 1.5 * wer, "cer": wer},
                                               "reverb": {"wer": 2 * wer, "cer": wer}})


def study() -> StudyResult:
    lstm = ModelResult({"model": {"cell": "lstm", "hidden_size": 16}},
                       [run(0, 20.0, 1e-2, 0.9, converged=3), run(1, 22.0, 2e-2, 0.8, converged=2),
                        run(2, 24.0, 4e-2, 0.7)])
    tanh = ModelResult({"model": {"cell": "rnn_tanh", "hidden_size": 16}, "trainer": {"gradient_clip_val": 1.0}},
                       [run(0, 40.0, 1e-9, 1.2), run(1, 44.0, 1e-9, 1.3, nonfinite=2), run(2, 48.0, 1e-9, 1.1)])
    return StudyResult(study="synthetic", dataset="an4", seeds=[0, 1, 2], baseline="tanh_rnn_clipped", frame_ms=30,
                       models={"lstm": lstm, "tanh_rnn_clipped": tanh}, device="cpu (test)",
                       versions={"torch": "x", "lightning": "y"}, git_commit="abc123def4567890", git_dirty=False,
                       recipe={"base": {"model": {"num_layers": 1, "schedule": "plateau", "plateau_patience": 3},
                                        "trainer": {"max_epochs": 4}}, "jobs": 2},
                       recipe_path="recipes/synthetic.yaml")


def test_aggregates_come_from_the_runs():
    s = study()
    lstm, tanh = s.models["lstm"], s.models["tanh_rnn_clipped"]
    assert lstm.test_wer == Spread([20.0, 22.0, 24.0], 22.0, statistics.stdev([20.0, 22.0, 24.0]), 20.0, 24.0)
    assert Spread.of([4.0]).sd is None  # one seed: no spread to report
    assert tanh.nonfinite_steps == 2 and tanh.grad_norm_max == 9.0 and lstm.train_seconds == 61.0
    assert s.relative_wer_reduction == {"lstm": pytest.approx((44.0 - 22.0) / 44.0)}


def test_summary_json_round_trips_to_the_same_result():
    s = study()
    text = json.dumps(s.to_dict())
    again = StudyResult.from_dict(json.loads(text))
    assert again == s
    d = json.loads(text)  # readers of summary.json find the aggregates too
    assert d["models"]["lstm"]["test_wer"]["mean"] == 22.0 and d["relative_wer_reduction"]["lstm"] == 0.5


def test_report_is_made_from_the_result_alone(tmp_path, monkeypatch):
    figures = {}
    savefig = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, out, *a, **k: (figures.__setitem__(Path(out).name, fig), savefig(fig, out, *a, **k)))
    s = study()
    write_report(s, tmp_path)  # no run folder exists: everything drawn comes from `s`
    assert set(figures) == set(PLOTS.values())
    text = (tmp_path / "report.md").read_text()
    assert "| lstm | lstm | 16 | 1,000 | 22.00 ± 2.00 | 20.0, 22.0, 24.0 |" in text
    assert "| tanh_rnn_clipped | rnn_tanh (clip 1.0) | 16 |" in text
    assert "| 2, 2, 2 | 3, 2, no | 61 |" in text  # selected epochs; the epoch each seed met the rule, or not
    assert "3 epochs in a row without progress halve the learning rate" in text  # the recipe's rule, stated
    # robustness: WER per condition with its ratio to clean, and the errors fewer than the baseline's
    assert "| model | clean | white noise, 20 dB SNR | small-room reverb (RT60 about 0.3 s) |" in text
    assert "| lstm | 22.0 | 33.0 (1.5x) | 44.0 (2.0x) |" in text
    assert "| tanh_rnn_clipped | 44.0 | 66.0 (1.5x) | 88.0 (2.0x) |" in text
    assert "| lstm | 50 % | 50 % | 50 % |" in text
    assert "runs trained at git abc123def456." in text and "--jobs 2" in text
    assert "**lstm** reached 22.0 % test WER against 44.0 % for **tanh_rnn_clipped**: 50 % fewer word errors." in text
    assert "Seed ranges of lstm (20.0-24.0 %) and tanh_rnn_clipped (40.0-48.0 %) do not overlap." in text
    assert "Steps skipped because the loss or gradient was not finite: tanh_rnn_clipped 2." in text
    # 40 frames back: the geometric mean over seeds, 2e-2 for the LSTM
    assert "40 frames back, lstm keeps 2.0e-02 of the last frame's gradient against 1.0e-09" in text
    # gradient k frames back on the selected weights: geometric mean over seeds; n/a where not measured
    assert gradient_table(s)[2] == "| lstm | 22.00 | 3.8e-01 | 2.0e-02 | n/a | 0.90 | 9 | 0 |"

    # each figure draws the first seed's own records
    first = {name: m.runs[0] for name, m in s.models.items()}
    curves = figures[PLOTS["curves"]].axes
    for ax, series in zip(curves, ("train_loss", "dev_loss", "dev_wer")):
        drawn = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.lines}
        for name, r in first.items():
            points = getattr(r.history, series)
            assert drawn[name] == ([e + 1 for e, _ in points], [v for _, v in points])
    norms = {line.get_label(): list(line.get_ydata()) for line in figures[PLOTS["grad_norm"]].axes[0].lines}
    assert norms == {name: [v for _, v in r.history.grad_norm] for name, r in first.items()}
    flow = figures[PLOTS["flow"]].axes[0].lines
    solid = {line.get_label().split(" (")[0]: line.get_ydata() for line in flow if not line.get_label().startswith("_")}
    for name, r in first.items():
        assert np.allclose(solid[name], np.array(r.gradient_flow_curve) / r.gradient_flow_curve[0])
    assert sum(line.get_linestyle() == "--" for line in flow) == 2  # each model's curve at initialisation
    radius = figures[PLOTS["radius"]].axes
    drawn = radius[0].lines[0]
    assert (list(drawn.get_xdata()), list(drawn.get_ydata())) == ([e + 1 for e, _ in first["lstm"].history.spectral_radius["l0"]],
                                                                   [v for _, v in first["lstm"].history.spectral_radius["l0"]])


def test_single_seed_and_missing_baseline_are_said_plainly():
    s = study()
    s.models = {"lstm": ModelResult(s.models["lstm"].config, s.models["lstm"].runs[:1])}
    said = sentences(s)
    assert said[0].startswith("One seed for every model") and len(said) == 1
    assert s.relative_wer_reduction == {}
    assert summary_table(s)[2].startswith("| lstm | lstm | 16 | 1,000 | 20.00 | 20.0 |")
