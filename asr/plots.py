"""The study's figures (matplotlib, no display), from summary.json and each run's logs; asr/report.py writes
them beside report.md."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .runs import column  # noqa: E402

PLOTS = {
    "wer": "wer_by_model.png",
    "grad_norm": "gradient_norm_per_step.png",
    "flow": "gradient_flow_across_time.png",
    "radius": "spectral_radius.png",
    "curves": "training_curves.png",
}
def first_run(model: dict) -> Path:
    return Path(model["runs"][0]["run_dir"])


def plot_wer(summary: dict, out: Path) -> None:
    names = list(summary["models"])
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 3.6))
    for i, name in enumerate(names):
        wer = summary["models"][name]["test_wer"]
        ax.bar(i, wer["mean"], color="C0" if "rnn" in name or "tanh" in name else "C2", alpha=0.7)
        ax.errorbar(i, wer["mean"], yerr=[[wer["mean"] - wer["min"]], [wer["max"] - wer["mean"]]], color="k", capsize=4)
        ax.scatter([i] * len(wer["per_seed"]), wer["per_seed"], color="k", s=12, zorder=3)
        ax.text(i, wer["mean"] + 1, f"{wer['mean']:.1f}", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel("test WER % (mean, seed range)")
    counts = sorted({len(m["runs"]) for m in summary["models"].values()})
    ax.set_title(f"{summary['dataset']} test WER, {'-'.join(map(str, counts))} seed(s) per model, greedy decoding")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_grad_norm(summary: dict, logs: dict, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for i, name in enumerate(summary["models"]):
        points = column(logs[name], "grad_norm/total")
        if points:
            steps, norms = zip(*points)
            ax.plot(steps, norms, lw=0.8, color=f"C{i}", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("total gradient norm (before clipping)")
    ax.set_title("Gradient norm per step (each model's first seed)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def load_flow(model: dict) -> dict | None:
    path = first_run(model) / "gradient_flow.json"
    return json.loads(path.read_text()) if path.exists() else None


def plot_flow(summary: dict, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (name, model) in enumerate(summary["models"].items()):
        flow = load_flow(model)
        if not flow:
            continue
        direction = "bi" if flow["bidirectional"] else "uni"
        run = model["runs"][0]
        init, trained = np.array(flow["curves"][0]["curve"]), np.array(run["gradient_flow_curve"])
        ax.plot(init / init[0], ls="--", lw=1, color=f"C{i}", alpha=0.7)
        ax.plot(trained / trained[0], lw=1.6, color=f"C{i}",
                label=f"{name} ({direction}, epoch {run['selected_epoch']} weights)")
    ax.set_yscale("log")
    ax.set_xlabel(f"frames back from the last frame ({summary['frame_ms']:g} ms each)")
    ax.set_ylabel("‖∂ output_T / ∂ input_t‖, relative to k = 0")
    ax.set_title("Gradient across time (dashed: initialisation; solid: dev-selected weights)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_radius(summary: dict, logs: dict, out: Path) -> None:
    models = summary["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(3.2 * len(models), 3.2), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], models):
        rows = logs[name]
        keys = sorted({k for r in rows for k in r if k.startswith("spectral_radius/")})
        for key in keys:
            points = column(rows, key, by="epoch")
            ax.plot([e + 1 for e, _ in points], [v for _, v in points], marker=".", label=key.split("/")[1])
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        ax.axvline(models[name]["runs"][0]["selected_epoch"] + 1, color="k", lw=0.8, ls="--")  # the selected weights
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("spectral radius of W_hh")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def per_epoch_mean(points: list[tuple[int, float]]) -> tuple[list[int], list[float]]:
    by_epoch: dict[int, list[float]] = {}
    for epoch, value in points:
        by_epoch.setdefault(epoch, []).append(value)
    epochs = sorted(by_epoch)
    return [e + 1 for e in epochs], [float(np.mean(by_epoch[e])) for e in epochs]


def plot_curves(summary: dict, logs: dict, out: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for i, name in enumerate(summary["models"]):
        rows = logs[name]
        for ax, key in zip(axes, ("train/loss", "dev/loss", "dev/wer")):
            x, y = per_epoch_mean(column(rows, key, by="epoch"))
            ax.plot(x, y, marker=".", color=f"C{i}", label=name)
    for ax, title in zip(axes, ("training CTC loss", "dev CTC loss", "dev WER %")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
