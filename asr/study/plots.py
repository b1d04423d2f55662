"""The study's figures (matplotlib, no display), each drawn from the typed study result alone
(asr/study/results.py); asr/study/report.py writes them beside report.md."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from asr.model.acoustic import ModelConfig  # noqa: E402
from asr.study.results import StudyResult  # noqa: E402

PLOTS = {
    "wer": "wer_by_model.png",
    "grad_norm": "gradient_norm_per_step.png",
    "flow": "gradient_flow_across_time.png",
    "radius": "spectral_radius.png",
    "curves": "training_curves.png",
}


def save(fig, out: Path) -> None:
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_wer(study: StudyResult, out: Path) -> None:
    names = list(study.models)
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 3.6))
    for i, name in enumerate(names):
        wer = study.models[name].test_wer
        ax.bar(i, wer.mean, color="C0" if "rnn" in name or "tanh" in name else "C2", alpha=0.7)
        ax.errorbar(i, wer.mean, yerr=[[wer.mean - wer.min], [wer.max - wer.mean]], color="k", capsize=4)
        ax.scatter([i] * len(wer.per_seed), wer.per_seed, color="k", s=12, zorder=3)
        ax.text(i, wer.mean + 1, f"{wer.mean:.1f}", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel("test WER % (mean, seed range)")
    counts = sorted({len(m.runs) for m in study.models.values()})
    ax.set_title(f"{study.dataset} test WER, {'-'.join(map(str, counts))} seed(s) per model, greedy decoding")
    save(fig, out)


def plot_grad_norm(study: StudyResult, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for i, (name, model) in enumerate(study.models.items()):
        points = model.runs[0].history.grad_norm
        if points:
            steps, norms = zip(*points)
            ax.plot(steps, norms, lw=0.8, color=f"C{i}", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("total gradient norm (before clipping)")
    ax.set_title("Gradient norm per step (each model's first seed)")
    ax.legend(fontsize=8)
    save(fig, out)


def plot_flow(study: StudyResult, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (name, model) in enumerate(study.models.items()):
        run = model.runs[0]
        direction = "bi" if model.config["model"].get("bidirectional", ModelConfig.bidirectional) else "uni"
        if run.history.initial_gradient_flow:
            init = np.array(run.history.initial_gradient_flow)
            ax.plot(init / init[0], ls="--", lw=1, color=f"C{i}", alpha=0.7)
        trained = np.array(run.gradient_flow_curve)
        ax.plot(trained / trained[0], lw=1.6, color=f"C{i}",
                label=f"{name} ({direction}, epoch {run.selected_epoch} weights)")
    ax.set_yscale("log")
    ax.set_xlabel(f"frames back from the last frame ({study.frame_ms:g} ms each)")
    ax.set_ylabel("‖∂ output_T / ∂ input_t‖, relative to k = 0")
    ax.set_title("Gradient across time (dashed: initialisation; solid: dev-selected weights)", fontsize=10)
    ax.legend(fontsize=8)
    save(fig, out)


def plot_radius(study: StudyResult, out: Path) -> None:
    models = study.models
    fig, axes = plt.subplots(1, len(models), figsize=(3.2 * len(models), 3.2), squeeze=False, sharey=True)
    for ax, (name, model) in zip(axes[0], models.items()):
        run = model.runs[0]
        for layer, points in run.history.spectral_radius.items():
            ax.plot([e + 1 for e, _ in points], [v for _, v in points], marker=".", label=layer)
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        ax.axvline(run.selected_epoch + 1, color="k", lw=0.8, ls="--")  # the selected weights
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("spectral radius of W_hh")
    axes[0][-1].legend(fontsize=7)
    save(fig, out)


def plot_curves(study: StudyResult, out: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for i, (name, model) in enumerate(study.models.items()):
        history = model.runs[0].history
        for ax, points in zip(axes, (history.train_loss, history.dev_loss, history.dev_wer)):
            ax.plot([e + 1 for e, _ in points], [v for _, v in points], marker=".", color=f"C{i}", label=name)
    for ax, title in zip(axes, ("training CTC loss", "dev CTC loss", "dev WER %")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    axes[2].legend(fontsize=8)
    save(fig, out)
