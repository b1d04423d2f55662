"""The study's report: plots (matplotlib) and report.md, from summary.json and each run's logs.

Every number in a model's row comes from the weights chosen on dev (the checkpoint the test WER is
measured on); the gradient-norm columns describe the whole training run and say so."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .runs import column, read_metrics  # noqa: E402

PLOTS = {
    "wer": "wer_by_model.png",
    "grad_norm": "gradient_norm_per_step.png",
    "flow": "gradient_flow_across_time.png",
    "radius": "spectral_radius.png",
    "curves": "training_curves.png",
}
# Graves, Mohamed & Hinton 2013, TIMIT phone error rate with CTC-trained bidirectional networks.
GRAVES_2013 = {"tanh": 37.6, "lstm": 18.6}


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
        init, trained = np.array(flow["curves"][0]["curve"]), np.array(flow["selected"]["curve"])
        ax.plot(init / init[0], ls="--", lw=1, color=f"C{i}", alpha=0.7)
        ax.plot(trained / trained[0], lw=1.6, color=f"C{i}",
                label=f"{name} ({direction}, epoch {flow['selected']['epoch']} weights)")
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
        keys = sorted({k for r in rows for k in r if k.startswith("spectral_radius/") and r[k]})
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


def selected_radius(model: dict) -> float:
    """Largest spectral radius of any W_hh on the dev-selected weights, over the seeds."""
    return max(max(r["spectral_radius"].values()) for r in model["runs"])


def flow_ratio(model: dict, k: int) -> float | None:
    """Gradient k frames back relative to the last frame's own, on the dev-selected weights: geometric
    mean over the seeds (the values span orders of magnitude). None where the probe is shorter."""
    values = [r["gradient_across_time"].get(str(k)) for r in model["runs"]]
    if any(v is None for v in values) or not values:
        return None
    if any(v <= 0 for v in values):
        return float(np.mean(values))
    return float(np.exp(np.mean(np.log(values))))


def sentences(summary: dict) -> list[str]:
    """A few plain statements computed from the numbers, never written in advance."""
    models, baseline = summary["models"], summary.get("baseline")
    out = []
    single = [n for n, m in models.items() if len(m["runs"]) == 1]
    if single:
        out.append(f"One seed for {'every model' if len(single) == len(models) else ', '.join(single)}: each of "
                   "those WERs is a single draw, and another seed can move it by several points, so close "
                   "values do not rank those models.")
    if baseline in models:
        base = models[baseline]["test_wer"]["mean"]
        for name, reduction in summary.get("relative_wer_reduction", {}).items():
            if reduction is None:
                continue
            wer = models[name]["test_wer"]["mean"]
            verb = "fewer" if reduction > 0 else "more"
            out.append(f"**{name}** reached {wer:.1f} % test WER against {base:.1f} % for **{baseline}**: "
                       f"{abs(reduction) * 100:.0f} % {verb} word errors.")
        ranges = {n: (m["test_wer"]["min"], m["test_wer"]["max"]) for n, m in models.items()}
        if len(models[baseline]["runs"]) > 1:  # a range needs seeds on both sides
            for name in models:
                if name != baseline and len(models[name]["runs"]) > 1:
                    lo, hi = ranges[name]
                    overlap = not (hi < ranges[baseline][0] or lo > ranges[baseline][1])
                    out.append(f"Seed ranges of {name} ({lo:.1f}-{hi:.1f} %) and {baseline} "
                               f"({ranges[baseline][0]:.1f}-{ranges[baseline][1]:.1f} %) "
                               f"{'overlap' if overlap else 'do not overlap'}.")
    if baseline in models:
        ratios = {n: flow_ratio(m, 40) for n, m in models.items()}
        best = max((n for n in ratios if ratios[n] is not None), key=lambda n: ratios[n], default=None)
        if best and best != baseline and ratios.get(baseline) is not None:
            out.append(f"40 frames back, {best} keeps {ratios[best]:.1e} of the last frame's gradient against "
                       f"{ratios[baseline]:.1e} for {baseline} (table above).")
        radius = selected_radius(models[baseline])
        flow = flow_ratio(models[baseline], 40)
        if radius and radius > 1 and flow is not None and flow < 1e-3:
            out.append(f"On its selected weights {baseline}'s W_hh has spectral radius above 1 (largest layer "
                       f"{radius:.2f}), yet its gradient 40 frames back is {flow:.1e} of the last frame's: the "
                       "spectral radius alone does not decide vanishing, each backward step also multiplies by "
                       "the tanh derivative 1 - h^2.")
    exploded = {n: m["nonfinite_steps"] for n, m in models.items() if m["nonfinite_steps"]}
    if exploded:
        out.append("Steps skipped because the loss or gradient was not finite: "
                   + ", ".join(f"{n} {c}" for n, c in exploded.items()) + ".")
    return out


def mean_sd(stats: dict) -> str:
    return f"{stats['mean']:.2f}" + (f" ± {stats['sd']:.2f}" if stats.get("sd") is not None else "")


def summary_table(summary: dict) -> list[str]:
    """The side-by-side table (markdown), one row per model."""
    rows = ["| model | cell | hidden | parameters | test WER % (mean ± sample sd) | per seed | test CER % | "
            "selected epoch | train s | max grad norm (training) | non-finite steps (training) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, m in summary["models"].items():
        cfg = m["config"]["model"]
        seeds = ", ".join(f"{w:.1f}" for w in m["test_wer"]["per_seed"])
        epochs = ", ".join(str(r["selected_epoch"]) for r in m["runs"])
        clip = m["config"].get("trainer", {}).get("gradient_clip_val")
        rows.append(f"| {name} | {cfg.get('cell')}{f' (clip {clip})' if clip else ''} | {cfg.get('hidden_size')} | "
                    f"{m['parameters']:,} | {mean_sd(m['test_wer'])} | {seeds} | {mean_sd(m['test_cer'])} | "
                    f"{epochs} | {m['train_seconds']:.0f} | "
                    f"{m['grad_norm_max'] if m['grad_norm_max'] is None else format(m['grad_norm_max'], '.3g')} | "
                    f"{m['nonfinite_steps']} |")
    return rows


def gradient_table(summary: dict, ks=(10, 40, 80)) -> list[str]:
    """Per model, on the dev-selected weights: test WER, the gradient reaching k frames back, the largest
    spectral radius of W_hh; then the training run's largest gradient norm and skipped steps."""
    ms = summary["frame_ms"]
    rows = ["| model | test WER % | " + " | ".join(f"gradient {k} frames ({k * ms:g} ms) back" for k in ks)
            + " | spectral radius | max grad norm (training) | non-finite steps (training) |", "|---" * (len(ks) + 5) + "|"]
    for name, m in summary["models"].items():
        ratios = [flow_ratio(m, k) for k in ks]
        cells = " | ".join("n/a" if r is None else f"{r:.1e}" for r in ratios)
        norm = "n/a" if m["grad_norm_max"] is None else f"{m['grad_norm_max']:.3g}"
        rows.append(f"| {name} | {m['test_wer']['mean']:.2f} | {cells} | {selected_radius(m):.2f} | {norm} | "
                    f"{m['nonfinite_steps']} |")
    return rows


def run_commits(summary: dict) -> list[str]:
    """The commits the runs were trained at (a study resumed across commits names each)."""
    commits = [r.get("git_commit") or summary.get("git_commit") for m in summary["models"].values() for r in m["runs"]]
    return sorted({str(c)[:12] for c in commits})


def write_report(summary: dict, report_dir: Path) -> None:
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    plot_wer(summary, report_dir / PLOTS["wer"])
    logs = {name: read_metrics(first_run(m)) for name, m in summary["models"].items()}  # each run's log read once
    plot_grad_norm(summary, logs, report_dir / PLOTS["grad_norm"])
    plot_flow(summary, report_dir / PLOTS["flow"])
    plot_radius(summary, logs, report_dir / PLOTS["radius"])
    plot_curves(summary, logs, report_dir / PLOTS["curves"])

    rows = summary_table(summary)
    base = summary["recipe"]["base"]
    text = [
        f"# Study `{summary['study']}`: vanilla RNN vs gated cells on {summary['dataset']}",
        "",
        f"Device: {summary['device']}; torch {summary['versions']['torch']}, lightning {summary['versions']['lightning']}; "
        f"runs trained at git {', '.join(run_commits(summary))}"
        f"{' (uncommitted changes)' if summary['git_dirty'] else ''}. "
        f"Recipe: `{summary.get('recipe_path')}` ({base.get('trainer', {}).get('max_epochs')} epochs, "
        f"{base['model'].get('num_layers')} layers, {'bi' if base['model'].get('bidirectional', True) else 'uni'}directional). "
        "Each run's checkpoint is chosen on the dev split (speakers held out of training); the test split is "
        "evaluated once on those weights, every utterance scored, with greedy CTC decoding; sd is the sample "
        "standard deviation over seeds. Every column comes from the selected weights except those marked "
        "(training), which cover all training steps. Reproduce with `asr compare -c "
        f"{summary.get('recipe_path')}{' --jobs %d' % summary['recipe']['jobs'] if summary.get('recipe', {}).get('jobs') else ''}`.",
        "",
        *rows,
        "",
        "Gradient across time on the selected weights (relative to the last frame's own, mean over fixed dev "
        "utterances, geometric mean over seeds; n/a where the probe is shorter), largest spectral radius of "
        "W_hh on the selected weights (candidate-state block for gated cells), and, over all training steps, "
        "the largest total gradient norm and the skipped steps:",
        "",
        *gradient_table(summary),
        "",
        "## What the numbers show",
        "",
        *[f"- {s}" for s in sentences(summary)],
        "",
        "Backpropagation through time multiplies the error signal by the recurrent weight matrix (times the "
        "tanh derivative) once per frame, so in a tanh RNN the share of the gradient that reaches frames far "
        "back shrinks geometrically when that product's gain is below one and blows up when it is above. The "
        "LSTM's memory cell is updated by addition, gated by a forget gate, which gives the error a path back "
        "in time that is not squashed at every step. Graves, Mohamed & Hinton (2013) measured the consequence "
        f"on TIMIT with CTC: {GRAVES_2013['tanh']} % phone errors for a tanh RNN against {GRAVES_2013['lstm']} % "
        "for an LSTM. The plots below show the same mechanism on this data.",
        "",
        f"![WER by model]({PLOTS['wer']})",
        "",
        "**Gradient norm per step** (total, before clipping, log scale): spikes are the exploding side of the problem.",
        "",
        f"![gradient norm]({PLOTS['grad_norm']})",
        "",
        "**Gradient across time**: how strongly the output at the last frame still depends on the input k frames "
        "earlier, on fixed dev utterances, normalised to k = 0. For bidirectional models the long-range path is "
        "the forward direction.",
        "",
        f"![gradient flow]({PLOTS['flow']})",
        "",
        "**Spectral radius of W_hh** per layer and direction (for LSTM and GRU: the candidate-state block) over "
        "training (dashed line: the selected epoch); 1 is the border between vanishing and exploding for a "
        "linear recurrence.",
        "",
        f"![spectral radius]({PLOTS['radius']})",
        "",
        f"![training curves]({PLOTS['curves']})",
        "",
    ]
    (report_dir / "report.md").write_text("\n".join(text))
