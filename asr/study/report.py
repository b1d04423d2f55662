"""The study's report: report.md (tables and what the numbers show) and its figures (asr/study/plots.py), a pure
function of the typed study result (asr/study/results.py) that summary.json keeps.

Every number in a model's row comes from the weights chosen on dev (the checkpoint the test WER is
measured on); the gradient-norm columns describe the whole training run and say so."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from asr.model.gradients import FRAMES_BACK
from asr.study.plots import PLOTS, plot_curves, plot_flow, plot_grad_norm, plot_radius, plot_wer
from asr.data.conditions import CONDITIONS
from asr.study.results import ModelResult, Spread, StudyResult
from asr.train.schedule import Plateau

# Graves, Mohamed & Hinton 2013, TIMIT phone error rate with CTC-trained bidirectional networks.
GRAVES_2013 = {"tanh": 37.6, "lstm": 18.6}


def selected_radius(model: ModelResult) -> float:
    """Largest spectral radius of any W_hh on the dev-selected weights, over the seeds."""
    return max(max(r.spectral_radius.values()) for r in model.runs)


def flow_ratio(model: ModelResult, k: int) -> float | None:
    """Gradient k frames back relative to the last frame's own, on the dev-selected weights: geometric
    mean over the seeds (the values span orders of magnitude). None where the probe is shorter."""
    values = [r.gradient_flow.get(str(k)) for r in model.runs]
    if any(v is None for v in values) or not values:
        return None
    if any(v <= 0 for v in values):
        return float(np.mean(values))
    return float(np.exp(np.mean(np.log(values))))


def sentences(study: StudyResult) -> list[str]:
    """A few plain statements computed from the numbers, never written in advance."""
    models, baseline = study.models, study.baseline
    out = []
    single = [n for n, m in models.items() if len(m.runs) == 1]
    if single:
        out.append(f"One seed for {'every model' if len(single) == len(models) else ', '.join(single)}: each of "
                   "those WERs is a single draw, and another seed can move it by several points, so close "
                   "values do not rank those models.")
    if baseline in models:
        base = models[baseline].test_wer.mean
        for name, reduction in study.relative_wer_reduction.items():
            if reduction is None:
                continue
            wer = models[name].test_wer.mean
            verb = "fewer" if reduction > 0 else "more"
            out.append(f"**{name}** reached {wer:.1f} % test WER against {base:.1f} % for **{baseline}**: "
                       f"{abs(reduction) * 100:.0f} % {verb} word errors.")
        ranges = {n: (m.test_wer.min, m.test_wer.max) for n, m in models.items()}
        if len(models[baseline].runs) > 1:  # a range needs seeds on both sides
            for name in models:
                if name != baseline and len(models[name].runs) > 1:
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
    exploded = {n: m.nonfinite_steps for n, m in models.items() if m.nonfinite_steps}
    if exploded:
        out.append("Steps skipped because the loss or gradient was not finite: "
                   + ", ".join(f"{n} {c}" for n, c in exploded.items()) + ".")
    return out


def mean_sd(stats: Spread) -> str:
    return f"{stats.mean:.2f}" + (f" ± {stats.sd:.2f}" if stats.sd is not None else "")


def number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def summary_table(study: StudyResult) -> list[str]:
    """The side-by-side table (markdown), one row per model."""
    rows = ["| model | cell | hidden | parameters | test WER % (mean ± sample sd) | per seed | test CER % | "
            "selected epoch | converged (rule) at epoch | train s | max grad norm (training) | "
            "non-finite steps (training) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, m in study.models.items():
        cfg = m.config["model"]
        seeds = ", ".join(f"{w:.1f}" for w in m.test_wer.per_seed)
        epochs = ", ".join(str(r.selected_epoch) for r in m.runs)
        converged = ", ".join("no" if r.converged_epoch is None else str(r.converged_epoch) for r in m.runs)
        clip = m.config.get("trainer", {}).get("gradient_clip_val")
        rows.append(f"| {name} | {cfg.get('cell')}{f' (clip {clip})' if clip else ''} | {cfg.get('hidden_size')} | "
                    f"{m.parameters:,} | {mean_sd(m.test_wer)} | {seeds} | {mean_sd(m.test_cer)} | "
                    f"{epochs} | {converged} | {m.train_seconds:.0f} | {number(m.grad_norm_max)} | {m.nonfinite_steps} |")
    return rows


def convergence_rule(study: StudyResult) -> str:
    """The rule the runs were trained under, in words, from the recipe's settings."""
    model = study.recipe["base"].get("model", {})
    epochs = study.recipe["base"].get("trainer", {}).get("max_epochs")
    if model.get("schedule", "onecycle") != "plateau":
        return (f"Every run trains for {epochs} epochs under a one-cycle learning-rate schedule: no convergence rule "
                "ends a run early (the column says no).")
    rule = Plateau(model.get("plateau_patience", Plateau.patience), model.get("plateau_min_delta", Plateau.min_delta),
                   model.get("plateau_halvings", Plateau.halvings), model.get("plateau_below", Plateau.below))
    return (f"Convergence rule (asr/train/schedule.py): once dev WER is below {rule.below:g} %, a dev WER at least "
            f"{rule.min_delta:g} points below the best so far is progress; {rule.patience} epochs in a row without "
            f"progress halve the learning rate; after {rule.halvings} halvings, {rule.patience} more epochs without "
            f"progress end the run: it has converged. A run still improving at {epochs} epochs stops there without "
            "having met the rule (no).")


def robustness_table(study: StudyResult) -> list[str]:
    """Test WER under each test condition (asr/data/conditions.py) and its ratio to the clean WER, per model; then
    each model's word errors against the baseline's under the same condition."""
    measured = [c for c in CONDITIONS if any(c in r.conditions for m in study.models.values() for r in m.runs)]
    if not measured:
        return []
    head = "| model | clean | " + " | ".join(CONDITIONS[c].describe for c in measured) + " |"
    rows = [head, "|---" * (len(measured) + 2) + "|"]
    for name, m in study.models.items():
        clean = m.test_wer.mean
        cells = []
        for c in measured:
            wer = m.condition_wer(c)
            cells.append("n/a" if wer is None else f"{wer.mean:.1f} ({wer.mean / clean:.1f}x)" if clean else f"{wer.mean:.1f}")
        rows.append(f"| {name} | {clean:.1f} | " + " | ".join(cells) + " |")
    if study.baseline in study.models:
        base = study.models[study.baseline]
        rows += ["", f"Word errors fewer than {study.baseline}'s under the same condition (mean over seeds):", "",
                 head, "|---" * (len(measured) + 2) + "|"]
        for name, m in study.models.items():
            if name == study.baseline:
                continue
            cells = [reduction(m.test_wer.mean, base.test_wer.mean)]
            for c in measured:
                mine, theirs = m.condition_wer(c), base.condition_wer(c)
                cells.append("n/a" if mine is None or theirs is None else reduction(mine.mean, theirs.mean))
            rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


def robustness_section(study: StudyResult) -> list[str]:
    table = robustness_table(study)
    if not table:
        return []
    return ["## Robustness", "",
            "Test WER % (greedy, mean over seeds) on the same weights under fixed, seeded distortions of the test audio "
            "(`asr evaluate CKPT --condition NAME`; asr/data/conditions.py, code apart from the training augmentation), "
            "and in brackets its ratio to the clean WER:", "", *table, ""]


def reduction(wer: float, base: float) -> str:
    return "n/a" if not base else f"{(base - wer) / base * 100:.0f} %"


def gradient_table(study: StudyResult, frames_back=FRAMES_BACK[1:]) -> list[str]:
    """Per model, on the dev-selected weights: test WER, the gradient reaching k frames back, the largest
    spectral radius of W_hh; then the training run's largest gradient norm and skipped steps."""
    ms = study.frame_ms
    rows = ["| model | test WER % | " + " | ".join(f"gradient {k} frames ({k * ms:g} ms) back" for k in frames_back)
            + " | spectral radius | max grad norm (training) | non-finite steps (training) |",
            "|---" * (len(frames_back) + 5) + "|"]
    for name, m in study.models.items():
        ratios = [flow_ratio(m, k) for k in frames_back]
        cells = " | ".join("n/a" if r is None else f"{r:.1e}" for r in ratios)
        rows.append(f"| {name} | {m.test_wer.mean:.2f} | {cells} | {selected_radius(m):.2f} | "
                    f"{number(m.grad_norm_max)} | {m.nonfinite_steps} |")
    return rows


def run_commits(study: StudyResult) -> list[str]:
    """The commits the runs were trained at (a study resumed across commits names each)."""
    commits = [r.git_commit or study.git_commit for m in study.models.values() for r in m.runs]
    return sorted({str(c)[:12] for c in commits})


def write_report(study: StudyResult, report_dir: Path) -> None:
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    for name, plot in (("wer", plot_wer), ("grad_norm", plot_grad_norm), ("flow", plot_flow),
                       ("radius", plot_radius), ("curves", plot_curves)):
        plot(study, report_dir / PLOTS[name])

    rows = summary_table(study)
    base = study.recipe["base"]
    jobs = study.recipe.get("jobs")
    stage = study.recipe.get("stage")  # a stage of a staged recipe (asr/study/recipes.py: pipeline_stage)
    text = [
        f"# Study `{study.study}`: vanilla RNN vs gated cells on {study.dataset}",
        "",
        f"Device: {study.device}; torch {study.versions['torch']}, lightning {study.versions['lightning']}; "
        f"runs trained at git {', '.join(run_commits(study))}"
        f"{' (uncommitted changes)' if study.git_dirty else ''}. "
        f"Recipe: `{study.recipe_path}`{f', stage {stage}' if stage else ''} "
        f"({base.get('trainer', {}).get('max_epochs')} epochs, "
        f"{base['model'].get('num_layers')} layers, {'bi' if base['model'].get('bidirectional', True) else 'uni'}directional). "
        "Each run's checkpoint is chosen on the dev split (speakers held out of training); the test split is "
        "evaluated once on those weights, every utterance scored, with greedy CTC decoding; sd is the sample "
        "standard deviation over seeds. Every column comes from the selected weights except those marked "
        "(training), which cover all training steps. Reproduce with `asr compare -c "
        f"{study.recipe_path}{f' --stage {stage} --stop-stage {stage}' if stage else ''}"
        f"{f' --jobs {jobs}' if jobs else ''}`.",
        "",
        *rows,
        "",
        convergence_rule(study),
        "",
        *robustness_section(study),
        "Gradient across time on the selected weights (relative to the last frame's own, mean over fixed dev "
        "utterances, geometric mean over seeds; n/a where the probe is shorter), largest spectral radius of "
        "W_hh on the selected weights (candidate-state block for gated cells), and, over all training steps, "
        "the largest total gradient norm and the skipped steps:",
        "",
        *gradient_table(study),
        "",
        "## What the numbers show",
        "",
        *[f"- {s}" for s in sentences(study)],
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
