"""`asr compare -c recipes/studies/an4_cpu.yaml`: the study. Trains every model of a recipe (asr/study/recipes.py
resolves it into one `asr train` recipe per run) for every seed under one budget, picks each run's checkpoint
on dev, evaluates it on test, aggregates the seeds, and writes the report (asr/study/report.py). A staged
recipe (`stages:`) runs its studies in order, `--stage N --stop-stage M` a part of them.

Every run also writes the `asr train` recipe that reproduces it (runs/<study>/<model>/seed<N>/config.yaml).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
import platform
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import torch
import yaml
from lightning.pytorch.callbacks import Timer

from asr.train.callbacks import GradientFlowMonitor
from asr.base.files import recipe_file, write_text_atomically
from asr.train.checkpoint import read_training_checkpoint
from asr.data.conditions import condition
from asr.data.datamodule import ASRDataModule
from asr.base.errors import UserError
from asr.model.gradients import FRAMES_BACK, model_gradient_flow
from asr.deploy.inference import Recognizer
from asr.train.module import ASRModule
from asr.study.recipes import GRADIENT_FLOW_KEYS, deep_merge, pipeline_stage, resolve_models, run_recipe, study_dirs
from asr.study.results import ModelResult, RunHistory, RunResult, StudyResult
from asr.train.runs import RunLock, build_trainer, callback_of, expected_warnings_silenced
from asr.study.workers import worker_pool


@dataclass(frozen=True)
class Job:
    """One run of the study: a model's `asr train` configuration and seed, the folder it trains in, and the folder
    beside the report that keeps its finished record (result.json and config.yaml, small enough to commit), so
    that a study can be continued from what is committed even where the runs folder is gone."""
    name: str
    config: dict
    seed: int
    run_dir: Path
    record_dir: Path


@dataclass(frozen=True)
class Measures:
    """What every run of the study measures besides its test WER, and the code that runs it."""
    gradient_flow: dict  # GradientFlowMonitor's settings
    conditions: tuple[str, ...] = ()  # test conditions (asr/data/conditions.py) each run is also scored under
    code_commit: str | None = None


def train_one(job: Job, data: ASRDataModule, measures: Measures) -> RunResult:
    """Trains one model for one seed and returns its measurements (kept in <run_dir>/result.json and in the record
    folder). A run that finished earlier is read back from either; an interrupted one resumes from its last.ckpt,
    exactly (see asr/train/runs.py), so a study killed at any point ends as an uninterrupted one."""
    run_dir = job.run_dir
    recipe = run_recipe(job.config, job.seed, run_dir, measures.gradient_flow)

    def same_recipe(folder: Path) -> bool:  # where the runs folder lies (it may have been moved) is not the recipe
        saved = yaml.safe_load((folder / "config.yaml").read_text())
        return {**saved, "run_dir": None} == {**recipe, "run_dir": None}

    if (run_dir / "config.yaml").exists() and not same_recipe(run_dir):
        raise UserError(f"{run_dir} holds a run of a different recipe (see its config.yaml); nothing was "
                         "overwritten. Move it away, or pass --runs-dir to run the study elsewhere.")
    for folder in (run_dir, job.record_dir):
        if (folder / "result.json").exists() and same_recipe(folder):
            print(f"{job.name} seed {job.seed}: finished earlier, read from {folder / 'result.json'}", flush=True)
            result = replace(RunResult.from_dict(json.loads((folder / "result.json").read_text())),
                             run_dir=str(run_dir))  # where it is (or was) trained
            break
    else:
        RunLock.acquire(run_dir)
        try:
            result = fit_and_measure(job, data, recipe, measures)
        finally:
            RunLock.release(run_dir)
        write_text_atomically(run_dir / "result.json", json.dumps(asdict(result), indent=1))
    record = job.record_dir
    if not ((record / "result.json").exists() and same_recipe(record)):  # the record beside the report, to commit
        record.mkdir(parents=True, exist_ok=True)
        write_text_atomically(record / "config.yaml", yaml.safe_dump(recipe, sort_keys=False))
        write_text_atomically(record / "result.json", json.dumps(asdict(result), indent=1))
    return result


def fit_and_measure(job: Job, data: ASRDataModule, recipe: dict, measures: Measures) -> RunResult:
    """Trains (or finishes) one run from its `asr train` recipe (run_recipe) and measures it, on the clean test
    split and under each test condition of `measures` (asr/data/conditions.py)."""
    name, seed, run_dir = job.name, job.seed, job.run_dir
    (run_dir / "config.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))  # the `asr train` recipe
    last = run_dir / "checkpoints/last.ckpt"
    resume = last if last.is_file() else None
    if resume:
        print(f"{name} seed {seed}: resuming from {resume}", flush=True)
    L.seed_everything(recipe["seed_everything"], verbose=False)
    module = ASRModule(input_dim=data.feature_dim, vocabulary=data.vocabulary, **recipe["model"])
    trainer = build_trainer(run_dir, recipe.get("trainer", {}), recipe["gradient_flow"], enable_model_summary=False)
    data.hparams.seed = recipe["data"]["seed"]
    with expected_warnings_silenced():
        trainer.fit(module, datamodule=data, ckpt_path=resume)
    seconds = callback_of(trainer, Timer).time_elapsed("train")  # every session of the run, resumed ones included

    # Every measurement of the row comes from the weights chosen on dev (best.ckpt), the weights the test
    # WER is measured on; only the gradient-norm statistics describe the whole training run.
    best = read_training_checkpoint(run_dir / "checkpoints/best.ckpt")
    selected_epoch = int(best["epoch"])
    recognizer = Recognizer.from_saved(best, "cuda" if torch.cuda.is_available() else "cpu")
    test, _ = recognizer.evaluate(data.hparams.dataset, "test", data.hparams.data_dir)
    robustness = {c: recognizer.evaluate(data.hparams.dataset, "test", data.hparams.data_dir, condition=c)[0]
                  for c in measures.conditions}
    probe = callback_of(trainer, GradientFlowMonitor).probe_batch(data)
    curve = model_gradient_flow(recognizer.model, probe.to(recognizer.device)).cpu()  # the monitor's probe
    radii = recognizer.model.recurrent_spectral_radii()

    history = RunHistory.of_run(run_dir)  # what the training module logged, not recomputed
    dev_wer = [v for _, v in history.dev_wer]
    norms = np.array([v for _, v in history.grad_norm])
    finite = norms[np.isfinite(norms)]
    print(f"{name} seed {seed}: test WER {test['wer']:.2f} %, CER {test['cer']:.2f} % (weights of epoch "
          f"{selected_epoch}), {seconds:.0f} s", flush=True)
    return RunResult(
        seed=seed, test_wer=test["wer"], test_cer=test["cer"], best_dev_wer=min(dev_wer) if dev_wer else None,
        selected_epoch=selected_epoch, spectral_radius=radii,
        gradient_flow={str(k): float(curve[k] / curve[0]) for k in FRAMES_BACK if k < len(curve)},
        gradient_flow_curve=curve.tolist(),  # on the selected weights (the monitor's file has training's)
        parameters=recognizer.model.num_parameters(), train_seconds=seconds,
        nonfinite_steps=module.nonfinite_steps, steps=trainer.global_step, epochs=trainer.current_epoch,
        grad_norm={"median": float(np.median(finite)), "p99": float(np.percentile(finite, 99)),
                   "max": float(finite.max())} if finite.size else None,
        history=history, run_dir=str(run_dir), git_commit=measures.code_commit, max_epochs=trainer.max_epochs,
        converged_epoch=module.plateau.converged_epoch,
        conditions={c: {"wer": r["wer"], "cer": r["cer"]} for c, r in robustness.items()})


def environment() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "asr", "recipes"], capture_output=True,
                                    text=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, None
    threads = torch.get_num_threads()
    cpu = f"cpu ({platform.processor() or platform.machine()}, {threads} torch thread{'s' if threads > 1 else ''})"
    return {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else cpu,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "lightning": L.__version__},
        "git_commit": commit, "git_dirty": dirty,
    }


def train_in_worker(job: Job, data_args: dict, measures: Measures) -> RunResult:
    data = ASRDataModule(**data_args)  # the feature cache makes this cheap
    data.setup("fit")
    quiet = deep_merge(job.config, {"trainer": {"enable_progress_bar": False}})  # bars of parallel jobs would interleave
    return train_one(replace(job, config=quiet), data, measures)


def run_in_parallel(jobs: list[Job], data_args: dict, measures: Measures, workers: int, study: str) -> list[RunResult]:
    """The study's runs in `workers` processes of one torch thread each (independent runs: on a 2-core CPU,
    2 jobs x 1 thread trained 1.24x the steps per second of 1 job x 2 threads; see benchmarks/README.md)."""
    with worker_pool(workers) as pool:
        futures = [pool.submit(train_in_worker, job, data_args, measures) for job in jobs]
        for done, (job, future) in enumerate(zip(jobs, futures), 1):
            future.result()
            print(f"[study {study}: {done}/{len(jobs)} runs done] {job.name} seed {job.seed}", file=sys.stderr,
                  flush=True)
        return [f.result() for f in futures]


def run_study(recipe: dict, recipe_path: str | None = None) -> Path:
    study = recipe["study"]
    started = environment()  # the code that trains is the code checked out now, not at the end
    runs_dir, report_dir = study_dirs(recipe)
    seeds = recipe.get("seeds", [0])
    flow = {k: v for k, v in recipe.get("gradient_flow", {}).items() if k in GRADIENT_FLOW_KEYS}
    conditions = tuple(recipe.get("conditions", ()))  # test conditions each run is also scored under
    for name in conditions:
        condition(name)  # an unknown name fails here, before any training
    data = ASRDataModule(**recipe["base"].get("data", {}))
    configs = resolve_models(recipe, data.feature_dim)
    data.setup("fit")

    for name, config in configs.items():
        if config.get("data", {}) != recipe["base"].get("data", {}):
            raise UserError(f"model {name} changes the data section: every model of a study must see the same data")
    model_seeds = {name: list((spec or {}).get("seeds", seeds)) for name, spec in recipe["models"].items()}
    jobs = [Job(name, config, seed, runs_dir / name / f"seed{seed}", report_dir / "runs" / name / f"seed{seed}")
            for name, config in configs.items() for seed in model_seeds[name]]
    measures = Measures(flow, conditions, started["git_commit"])
    workers = int(recipe.get("jobs", 1))
    if workers > 1 and not torch.cuda.is_available():  # each run had one thread, on a machine of several cores
        started["device"] = f"cpu ({platform.processor() or platform.machine()}, {workers} jobs side by side, " \
                            f"1 torch thread each)"
    if workers > 1:
        measured = run_in_parallel(jobs, recipe["base"].get("data", {}), measures, workers, study)
    else:
        measured = []
        for done, job in enumerate(jobs, 1):
            print(f"[study {study}: run {done}/{len(jobs)}] {job.name} seed {job.seed}", file=sys.stderr, flush=True)
            measured.append(train_one(job, data, measures))
    models = {name: ModelResult(config, [m for job, m in zip(jobs, measured) if job.name == name])
              for name, config in configs.items()}
    result = StudyResult(study=study, dataset=data.hparams.dataset, seeds=seeds, baseline=recipe.get("baseline"),
                         frame_ms=data.feature_config.frame_ms, models=models, recipe=recipe, recipe_path=recipe_path,
                         **started)
    report_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomically(report_dir / "summary.json", json.dumps(result.to_dict(), indent=1))

    from asr.study.report import summary_table, write_report

    write_report(result, report_dir)
    print("\n" + "\n".join(summary_table(result)))
    print(f"\nreport: {report_dir / 'report.md'} (plots beside it)")
    return report_dir


def command(args) -> int:
    """`asr compare -c RECIPE [--data-dir D --runs-dir R --report-dir P --jobs N --stage N --stop-stage M]`."""
    path = recipe_file(args.config)
    recipe = yaml.safe_load(path.read_text())
    stages = recipe.get("stages")
    if stages is None:
        if args.stage or args.stop_stage:
            raise UserError(f"{path} has no stages: --stage and --stop-stage apply to a staged recipe (`stages:`)")
        run_study(with_options(recipe, args), str(path))
        return 0
    first, last = args.stage or 1, args.stop_stage or len(stages)
    if not 1 <= first <= last <= len(stages):
        given = " ".join(f"--{name} {value}" for name, value in (("stage", args.stage), ("stop-stage", args.stop_stage))
                         if value is not None)
        raise UserError(f"{path} has stages 1 to {len(stages)}: {given} is outside them")
    stages = [with_options(stage, args, nested=True) for stage in stages]
    for number in range(first, last + 1):
        print(f"[{path}: stage {number} of {len(stages)}, {stages[number - 1]['study']}]", file=sys.stderr, flush=True)
        run_study(pipeline_stage(stages, number), str(path))
    return 0


def with_options(recipe: dict, args, nested: bool = False) -> dict:
    """The study recipe with the command line's choices in; for a stage of a staged recipe (`nested`), --runs-dir and
    --report-dir are folders that hold each stage's own."""
    recipe = dict(recipe)
    if args.data_dir:
        recipe["base"] = deep_merge(recipe["base"], {"data": {"data_dir": args.data_dir}})
    for key, value in (("runs_dir", args.runs_dir), ("report_dir", args.report_dir)):
        if value:
            recipe[key] = str(Path(value) / recipe["study"]) if nested else value
    if args.jobs:
        recipe["jobs"] = args.jobs
    return recipe
