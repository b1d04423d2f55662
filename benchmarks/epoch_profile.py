"""Where an epoch of the CPU study goes: training steps, fetching and collating batches, dev decoding, the
gradient-across-time probe, checkpointing. Lightning's SimpleProfiler times every hook of the real
loop (the study's own Trainer settings, callbacks and loggers), so nothing here is timed by hand.

    .venv/bin/python benchmarks/epoch_profile.py [--model lstm] [--epochs 2] [--threads 2] \
        [--recurrence packed] [--storage memory shards shards memory] [--output benchmarks/epoch_profile_cpu.json]

The model is one of recipes/studies/an4_cpu.yaml's, trained `--epochs` epochs on the Trainer every run gets
(asr/train/runs.py), with the gradient probe run after every epoch (the study runs it every 5th: its share there is
a fifth of the one measured here). `--recurrence packed` routes the model's recurrence through PackedSequence, the path training took before asr/model/recurrence.py
(see benchmarks/rnn_kernel.py). `--storage memory shards shards memory` trains the same model once per name, in that order, the training
split held in memory or streamed from shards (asr/data/shards.py; the shards are written before the clock starts, and
that time is reported apart); `by_storage` averages each storage's fits, so that the order (later fits here ran
up to 10 % slower or faster) cancels out. Run it when nothing else uses the CPU.
"""
import argparse
import contextlib
import json
import platform
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Lightning's names for the parts of the loop (SimpleProfiler's recorded actions)
PARTS = {
    "training steps (forward, CTC, backward, optimizer)": ("run_training_batch",),
    "fetching and collating batches (SpecAugment included)": ("[_TrainingEpochLoop].train_dataloader_next",),
    "dev decoding (validation)": ("[_EvaluationLoop].val_next", "[Strategy]SingleDeviceStrategy.validation_step",
                                  "[LightningModule]ASRModule.on_validation_epoch_end"),
    "gradient-across-time probe": ("[Callback]GradientFlowMonitor.on_fit_start",
                                   "[Callback]GradientFlowMonitor.on_train_epoch_end"),
    "checkpoints (best.ckpt, last.ckpt)": ("save_checkpoint",),
    "features loaded from the cache": ("[LightningDataModule]ASRDataModule.setup",),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lstm")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-utterances", type=int, default=None, help="train on fewer utterances (a quick check)")
    parser.add_argument("--recurrence", choices=("auto", "packed", "padded"), default="auto",
                        help="auto: what training uses on this device (asr/model/recurrence.py); else force one path")
    parser.add_argument("--storage", nargs="+", choices=("memory", "shards"), default=["memory"],
                        help="where the training split lives (data.storage); several: one fit each, in this order")
    parser.add_argument("--output")
    args = parser.parse_args()
    results = [profile(args, storage) for storage in args.storage]
    result = results[0] if len(results) == 1 else {
        "runs": results, "command": results[0]["command"],
        "epoch_seconds_vs_first": [r["train_epoch_seconds"] / results[0]["train_epoch_seconds"] for r in results],
        # a storage named twice (memory shards shards memory): its mean, so the order of the fits cancels out
        "by_storage": {storage: {key: sum(r[key] for r in runs) / len(runs)
                                 for key in ("train_epoch_seconds", "train_utterances_per_second")}
                       for storage in dict.fromkeys(args.storage)
                       for runs in [[r for r in results if r["storage"] == storage]]}}
    print(json.dumps(result, indent=1))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1) + "\n")


def profile(args, storage: str) -> dict:
    """One fit of the model, the training split held as `storage` says; the profile of its parts."""

    import lightning as L
    import torch
    from lightning.pytorch.profilers import SimpleProfiler

    from asr.study.recipes import resolve_models
    from asr.data.datamodule import ASRDataModule
    from asr.train.module import ASRModule
    from asr.train.runs import build_trainer
    from rnn_kernel import recurrence_path

    class CountUtterances(L.Callback):
        utterances = 0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.utterances += len(batch.ids)

    torch.set_num_threads(args.threads)
    recipe = yaml.safe_load((REPO / "recipes/studies/an4_cpu.yaml").read_text())
    data_args = {**recipe["base"]["data"], "max_utterances": args.max_utterances, "storage": storage}
    data = ASRDataModule(**data_args)
    import time

    started = time.perf_counter()
    data.prepare_data()  # shards written (once: later runs find them), outside the profile
    prepare_seconds = time.perf_counter() - started
    config = resolve_models(recipe, data.feature_dim)[args.model]
    L.seed_everything(0, verbose=False)
    module = ASRModule(input_dim=data.feature_dim, **config["model"])
    profiler = SimpleProfiler(dirpath=tempfile.mkdtemp(), filename="profile")  # its table to a file, not stdout

    with tempfile.TemporaryDirectory() as run_dir:
        flow = {**recipe["gradient_flow"], "every_n_epochs": 1}
        counter = CountUtterances()
        trainer = build_trainer(Path(run_dir), config["trainer"], flow, enable_model_summary=False, profiler=profiler,
                                max_epochs=args.epochs, enable_progress_bar=False)
        trainer.callbacks.append(counter)
        path = recurrence_path(args.recurrence) if args.recurrence != "auto" else contextlib.nullcontext()
        start = time.perf_counter()
        with path:
            trainer.fit(module, datamodule=data)
        total = time.perf_counter() - start  # the whole fit: every part below is a share of it
    durations = profiler.recorded_durations
    parts = {}
    for part, actions in PARTS.items():
        found = [a for a in actions if a in durations]
        if not found:
            continue
        seconds = sum(sum(durations[a]) for a in found)
        parts[part] = {"seconds": seconds, "share_of_fit": seconds / total}
    training = [a for part in list(PARTS.values())[:2] for a in part if a in durations]  # steps + batches
    return {
        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads",
        "model": args.model, "recurrence": args.recurrence, "config": config["model"], "epochs": args.epochs, "max_utterances": args.max_utterances,
        "storage": storage, "prepare_data_seconds": prepare_seconds,
        "fit_seconds": total, "parts": parts,
        "train_epoch_seconds": sum(sum(durations[a]) for a in training) / args.epochs,
        "train_utterances_per_epoch": counter.utterances / args.epochs,
        "train_utterances_per_second": counter.utterances / sum(sum(durations[a]) for a in training),
        "command": "python benchmarks/epoch_profile.py " + " ".join(sys.argv[1:]),
    }


if __name__ == "__main__":
    main()
