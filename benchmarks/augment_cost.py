"""What waveform augmentation (asr/data/augment.py) costs against the training step it feeds, measured in one run,
to decide between making variants on the fly and caching them.

    .venv/bin/python benchmarks/augment_cost.py [--batches 12] [--threads 1] [--output benchmarks/augment_cost_cpu.json]

On AN4's training split with the CPU study's data settings (batch 16, 30 ms frames): per batch, putting it
together from cached clean features (stacking only), from augmented waveforms (augmentation + log-mel + stacking,
what training with `data.augment` does), and one training step of the study's LSTM (2 x 256 bidirectional:
model, CTC, backward, AdamW) on the augmented batch. Alternating batch by batch; medians reported. At 1 thread,
as each of the study's `--jobs 2` runs has. Run it when nothing else uses the CPU.
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

from asr.data.datamodule import ASRDataModule  # noqa: E402
from asr.train.module import ASRModule  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--output", default=str(REPO / "benchmarks/augment_cost_cpu.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = ASRDataModule(dataset="an4", data_dir=args.data_dir, batch_size=16, stack=3, stride=3, spec_augment=False,
                         augment=True)
    data.setup("fit")
    loader = data.train_dataloader()
    keys = list(loader.batch_sampler)[: args.batches]
    dataset, augmented_collate = loader.dataset, loader.collate_fn
    clean_loader = data.dataloader("train")  # the same data without augmentation
    clean_collate = clean_loader.collate_fn
    module = ASRModule(input_dim=data.feature_dim, cell="lstm", hidden_size=256, num_layers=2, bidirectional=True,
                       dropout=0.2)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    times = {"clean batch (cached features)": [], "augmented batch (waveforms)": [], "training step (LSTM 2x256 bi)": []}
    for key in keys:
        examples = [dataset[k] for k in key]
        t = time.perf_counter()
        clean_collate([dataset[i] for i, _ in key])
        times["clean batch (cached features)"].append(time.perf_counter() - t)
        t = time.perf_counter()
        batch = augmented_collate(examples)
        times["augmented batch (waveforms)"].append(time.perf_counter() - t)
        t = time.perf_counter()
        loss, _ = module.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times["training step (LSTM 2x256 bi)"].append(time.perf_counter() - t)
    medians = {k: statistics.median(v) * 1000 for k, v in times.items()}
    step = medians["training step (LSTM 2x256 bi)"]
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {args.threads} torch thread(s)",
        "command": f"python benchmarks/augment_cost.py --batches {args.batches} --threads {args.threads}",
        "median_ms": medians,
        "augmentation_share_of_step": (medians["augmented batch (waveforms)"] - medians["clean batch (cached features)"]) / step,
    }
    Path(args.output).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
