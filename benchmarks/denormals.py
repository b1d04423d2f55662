"""Subnormal floats and training speed on the CPU: a training step (forward, CTC loss, backward) of trained models
on real AN4 batches, and their forward pass alone (inference), with subnormals kept (IEEE) and flushed to zero
(`torch.set_flush_denormal`, what training does since asr/train/module.py's on_fit_start), and the same for each model
freshly initialised, as the control.

    .venv/bin/python benchmarks/denormals.py checkpoints/an4_lstm_stream.ckpt ... [--output benchmarks/denormals_cpu.json]

Values below float32's smallest normal number (1.2e-38) take x86 CPUs a slow path, many times slower per
operation. A trained recurrence makes them: the gradient that vanishes across time, saturated gates. The two
settings alternate on the same batches, one torch thread; the median of the repeats is reported. Run it when
nothing else uses the CPU. Needs $ASR_DATA_DIR or ./data.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from asr.train.checkpoint import read_checkpoint  # noqa: E402
from asr.data.datamodule import ASRDataModule  # noqa: E402
from asr.train.module import ASRModule  # noqa: E402


def step_seconds(module: ASRModule, batches: list, flush: bool, training: bool) -> float:
    """Seconds per batch: a training step (forward, CTC loss, backward), or the forward pass alone (inference)."""
    torch.set_flush_denormal(flush)
    module.train(training)
    start = time.perf_counter()
    with torch.set_grad_enabled(training):
        for batch in batches:
            module.zero_grad()
            loss, _ = module.loss(batch)
            if training:
                loss.backward()
    torch.set_flush_denormal(False)
    return (time.perf_counter() - start) / len(batches)


def measure(module: ASRModule, batches: list, repeats: int) -> dict:
    out = {}
    for what, training in (("training_step", True), ("inference", False)):
        for flush in (False, True):  # warm-up: oneDNN builds its kernels, one per batch shape
            step_seconds(module, batches, flush, training)
        kept, flushed = [], []
        for _ in range(repeats):
            kept.append(step_seconds(module, batches, False, training))
            flushed.append(step_seconds(module, batches, True, training))
        k, f = statistics.median(kept), statistics.median(flushed)
        out[what] = {"s_subnormals_kept": k, "s_flushed": f, "kept_vs_flushed": k / f, "repeats_kept": kept,
                     "repeats_flushed": flushed}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--batches", type=int, default=3, help="training batches per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for path in args.checkpoints:
        saved = read_checkpoint(path)
        data_args = {**saved["datamodule_hyper_parameters"], "augment": False, "spec_augment": False}
        data_args.pop("data_dir", None)  # where the corpus lay when it trained: ASR_DATA_DIR or ./data here
        data = ASRDataModule(**data_args)
        data.setup("fit")
        batches = [b for _, b in zip(range(args.batches), data.train_dataloader())]
        torch.manual_seed(0)
        module = ASRModule(**saved["hyper_parameters"])
        fresh = measure(module, batches, args.repeats)
        module.load_state_dict(saved["state_dict"])
        trained = measure(module, batches, args.repeats)
        rows.append({"checkpoint": path, "trained": trained, "freshly_initialised": fresh,
                     "batch_frames": [int(b.feature_lengths.max()) for b in batches]})
        t, i = trained["training_step"], trained["inference"]
        print(f"{path}: training step {t['s_subnormals_kept']:.2f} s with subnormals, {t['s_flushed']:.2f} s flushed "
              f"({t['kept_vs_flushed']:.1f}x; freshly initialised {fresh['training_step']['kept_vs_flushed']:.2f}x); "
              f"inference {i['kept_vs_flushed']:.2f}x", flush=True)
    result = {"machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread", "torch": torch.__version__,
              "command": "benchmarks/denormals.py " + " ".join(sys.argv[1:]), "rows": rows}
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
