"""bfloat16 autocast against float32 for the training step of the demo's LSTM on CPU, on real AN4 batches,
in one run: forward + CTC + backward + AdamW, median seconds per step over the same batches.

    .venv/bin/python benchmarks/bf16_cpu.py [--steps 20] [--output benchmarks/bf16_cpu.json]

Run it when nothing else uses the CPU. (Whether dev WER holds under bf16 is a second question, asked only
if it is faster.)
"""
import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from asr.data.datamodule import ASRDataModule
from asr.train.module import ASRModule


def step_seconds(module, batches, bf16: bool) -> list[float]:
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    times = []
    for batch in batches:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = module.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times[2:]  # the first steps warm up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--output")
    args = parser.parse_args()
    data = ASRDataModule(dataset="an4", batch_size=16, stack=3, stride=3, spec_augment=False)
    batches = [b for _, b in zip(range(args.steps), data.train_dataloader())]
    result = {"machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads", "steps": len(batches)}
    for name, bf16 in (("float32", False), ("bfloat16 autocast", True)):
        torch.manual_seed(0)
        module = ASRModule(input_dim=data.feature_dim, cell="lstm", hidden_size=128, num_layers=2, dropout=0.1)
        times = step_seconds(module, batches, bf16)
        result[name] = statistics.median(times)
        print(f"{name}: median {result[name] * 1000:.0f} ms per step", flush=True)
    result["bf16_over_fp32"] = result["bfloat16 autocast"] / result["float32"]
    print(f"bf16 / fp32 step time: {result['bf16_over_fp32']:.2f}")
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
