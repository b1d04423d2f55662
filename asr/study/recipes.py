"""A study recipe resolved into the `asr train` recipe of each of its runs (asr/study/compare.py trains them).

A study recipe has a `base` training configuration (the same sections as an `asr train` recipe: model,
data, trainer) and a list of `models`, each overriding only what makes it different, usually the cell:

    study: an4_quick
    seeds: [0]
    baseline: tanh_rnn_clipped          # relative WER reductions are against this model
    base: {model: {...}, data: {...}, trainer: {...}}
    models:
      tanh_rnn_clipped: {model: {cell: rnn_tanh}, trainer: {gradient_clip_val: 1.0}}
      lstm: {model: {cell: lstm}}
      tanh_rnn_wide: {model: {cell: rnn_tanh}, match_parameters: lstm}   # widened to the LSTM's size
      tanh_rnn: {model: {cell: rnn_tanh}, seeds: [0]}   # fewer seeds than the study's, where time is short

A staged recipe (icefall's numbered stages) is a list of such studies run in order, `stages: [{study: ...}, ...]`;
a later stage starts from an earlier one's output, `model.init_from: stage1`: the best.ckpt of stage 1's run of
the same model (`stage1/lstm`: of that model) with the lowest dev WER, read from that stage's summary.json.
Outside stages, `model.init_from` names a checkpoint file; a `{seed}` in it is each run's own seed, so that seed
N of a second study starts from seed N of the first:

    base: {model: {init_from: runs/an4_stream_wide_cpu/lstm/seed{seed}/checkpoints/best.ckpt, ...}, ...}

Every run also writes the `asr train` recipe that reproduces it (runs/<study>/<model>/seed<N>/config.yaml).
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

from asr.base.errors import UserError
from asr.model.acoustic import parameter_count
from asr.data.text import VOCABULARY

GRADIENT_FLOW_KEYS = ("frames", "utterances", "every_n_epochs")  # GradientFlowMonitor's arguments
MODEL_STUDY_KEYS = ("match_parameters", "seeds")  # what a model entry says about the study, not about training
STAGE_OUTPUT = re.compile(r"stage(\d+)(?:/(\w+))?")  # model.init_from naming an earlier stage's output


def study_dirs(recipe: dict) -> tuple[Path, Path]:
    """Where a study's runs train and where its report (and the runs' records) go."""
    study = recipe["study"]
    return Path(recipe.get("runs_dir", f"runs/{study}")), Path(recipe.get("report_dir", f"reports/{study}"))


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def model_hparams(model_args: dict, input_dim: int) -> dict:
    """A study's model section as the training module's hyper-parameters (what build_model reads)."""
    return {"input_dim": input_dim, "vocabulary": VOCABULARY, **model_args}


def matched_hidden_size(model_args: dict, target_params: int, input_dim: int) -> int:
    """The hidden size at which `model_args`' cell has the parameter count closest to target_params
    (the count grows with the hidden size: bisection, each count on a model built on the meta device)."""
    def count(h: int) -> int:
        return parameter_count(model_hparams({**model_args, "hidden_size": h}, input_dim))

    low, high = 1, 8192
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if count(mid) < target_params else (low, mid)
    return min((low, high), key=lambda h: abs(count(h) - target_params))


def resolve_models(recipe: dict, input_dim: int) -> dict[str, dict]:
    """Each model's full training configuration (base + its overrides), widened where asked."""
    configs = {name: deep_merge(recipe["base"], {k: v for k, v in (spec or {}).items() if k not in MODEL_STUDY_KEYS})
               for name, spec in recipe["models"].items()}
    for name, spec in recipe["models"].items():
        target = (spec or {}).get("match_parameters")
        if target:
            if target not in configs:
                raise UserError(f"model {name}: match_parameters names {target!r}, which is not in the study")
            goal = parameter_count(model_hparams(configs[target]["model"], input_dim))
            configs[name]["model"]["hidden_size"] = matched_hidden_size(configs[name]["model"], goal, input_dim)
    return configs


def run_recipe(config: dict, seed: int, run_dir: Path, flow: dict) -> dict:
    """The `asr train` recipe of one run (written beside it as config.yaml): the model's configuration, its
    folder, the gradient-across-time settings and the seed, which seeds both the weights and dropout
    (seed_everything) and the batch order (data.seed). The run is trained from this and nothing else."""
    recipe = {"run_dir": str(run_dir), "seed_everything": seed, **copy.deepcopy(config), "gradient_flow": dict(flow)}
    recipe["data"]["seed"] = seed
    model = recipe.get("model") or {}
    if isinstance(model.get("init_from"), str):  # seed N of a second stage starts from seed N of the first
        model["init_from"] = model["init_from"].replace("{seed}", str(seed))
    return recipe


def pipeline_stage(stages: list[dict], number: int) -> dict:
    """Stage `number` (from 1) of a staged recipe as a study recipe: every `init_from: stageK[/MODEL]` (in the base
    or a model's own section) replaced by the checkpoint that stage K's output names (stage_output)."""
    stage = {**copy.deepcopy(stages[number - 1]), "stage": number}
    base_from = (stage["base"].get("model") or {}).get("init_from")
    for name in stage["models"]:
        spec = stage["models"][name] = dict(stage["models"][name] or {})
        source = (spec.get("model") or {}).get("init_from", base_from)
        found = STAGE_OUTPUT.fullmatch(source) if isinstance(source, str) else None
        if found:
            path = stage_output(stages, number, int(found[1]), found[2] or name)
            spec["model"] = {**(spec.get("model") or {}), "init_from": str(path)}
    return stage


def stage_output(stages: list[dict], number: int, earlier: int, model: str) -> Path:
    """The best.ckpt of stage `earlier`'s run of `model` with the lowest dev WER, from that stage's summary.json."""
    if not 1 <= earlier < number:
        raise UserError(f"stage {number}: init_from names stage {earlier}; a stage starts only from one before it")
    runs_dir, report_dir = study_dirs(stages[earlier - 1])
    summary = report_dir / "summary.json"
    if not summary.is_file():
        raise UserError(f"stage {number} starts from stage {earlier}, which has not finished ({summary} not found): "
                        f"run it first (--stage {earlier})")
    runs = json.loads(summary.read_text())["models"].get(model, {}).get("runs")
    if not runs:
        raise UserError(f"stage {number}: stage {earlier} ({stages[earlier - 1]['study']}) has no model {model!r}; "
                        f"name one in init_from as stage{earlier}/MODEL")
    best = min(runs, key=lambda run: run["best_dev_wer"])
    return runs_dir / model / f"seed{best['seed']}" / "checkpoints" / "best.ckpt"
