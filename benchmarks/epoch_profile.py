"""Where an epoch of the CPU study goes: training steps, fetching and collating batches, dev decoding, the
gradient-across-time probe, checkpointing. Lightning's SimpleProfiler times every hook of the real
loop (the study's own Trainer settings, callbacks and loggers), so nothing here is timed by hand.

    .venv/bin/python benchmarks/epoch_profile.py [--model lstm] [--epochs 2] [--threads 2] \
        [--recurrence packed] [--output benchmarks/epoch_profile_cpu.json]

The model is one of recipes/an4_cpu.yaml's, trained `--epochs` epochs on the Trainer every run gets
(asr/runs.py), with the gradient probe run after every epoch (the study runs it every 5th: its share there is
a fifth of the one measured here). `--recurrence packed` routes the model's recurrence through PackedSequence, the path training took before asr/recurrence.py
(see benchmarks/rnn_kernel.py). Run it when nothing else uses the CPU.
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
                        help="auto: what training uses on this device (asr/recurrence.py); else force one path")
    parser.add_argument("--output")
    args = parser.parse_args()

    import lightning as L
    import torch
    from lightning.pytorch.profilers import SimpleProfiler

    from asr.recipes import resolve_models
    from asr.datamodule import ASRDataModule
    from asr.module import ASRModule
    from asr.runs import build_trainer
    from rnn_kernel import recurrence_path

    torch.set_num_threads(args.threads)
    recipe = yaml.safe_load((REPO / "recipes/an4_cpu.yaml").read_text())
    data_args = {**recipe["base"]["data"], "max_utterances": args.max_utterances}
    data = ASRDataModule(**data_args)
    config = resolve_models(recipe, data.feature_dim)[args.model]
    L.seed_everything(0, verbose=False)
    module = ASRModule(input_dim=data.feature_dim, **config["model"])
    profiler = SimpleProfiler(dirpath=tempfile.mkdtemp(), filename="profile")  # its table to a file, not stdout
    import time

    with tempfile.TemporaryDirectory() as run_dir:
        flow = {**recipe["gradient_flow"], "every_n_epochs": 1}
        trainer = build_trainer(Path(run_dir), config["trainer"], flow, enable_model_summary=False, profiler=profiler,
                                max_epochs=args.epochs, enable_progress_bar=False)
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
    result = {
        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads",
        "model": args.model, "recurrence": args.recurrence, "config": config["model"], "epochs": args.epochs, "max_utterances": args.max_utterances,
        "fit_seconds": total, "parts": parts,
        "command": "python benchmarks/epoch_profile.py " + " ".join(sys.argv[1:]),
    }
    print(json.dumps(result, indent=1))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
