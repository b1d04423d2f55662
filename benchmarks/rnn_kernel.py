"""The recurrence on packed sequences (PyTorch's generic CPU loop) against padded batches (asr/model/recurrence.py,
oneDNN's LSTM kernel), measured in one run: a training step per cell and size at 1 and 2 threads, its FLOP
count and share of this machine's measured fp32 matmul peak, and (--inference) `asr evaluate` on AN4 test and
`asr transcribe` of a 10-minute recording with each path.

    .venv/bin/python benchmarks/rnn_kernel.py [--steps 8] [--inference] [--output benchmarks/rnn_kernel_cpu.json]

A training step is the real AcousticModel (input projection, recurrence, output layer, log-softmax), CTC loss,
backward and AdamW, on one synthetic batch of the CPU study's shape: 16 utterances of 96-120 frames (ragged,
as the length-bucketed sampler makes them) x 240 stacked log-mel inputs. The two paths alternate step by step,
so that drift on a shared machine hits both alike; the median step is reported. Run it when nothing else
uses the CPU.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from asr.model import acoustic as model_file  # noqa: E402
from asr.model.acoustic import GATES, AcousticModel, ModelConfig  # noqa: E402
from asr.model.recurrence import packed_recurrence, padded_recurrence, recurrence  # noqa: E402
from asr.data.text import VOCABULARY  # noqa: E402

SIZES = {"demo (2x128 bi)": 128, "CPU study (2x256 bi)": 256}  # recipes/studies/an4_quick.yaml, recipes/studies/an4_cpu.yaml
CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
BATCH, FRAMES, INPUTS, LAYERS = 16, 120, 240, 2
PATHS = {"packed": packed_recurrence, "padded": padded_recurrence}


@contextlib.contextmanager
def recurrence_path(name: str):
    """The model code as it is, with its recurrence over padded batches routed to one path (without lengths,
    as the gradient probe calls it, both paths are the same plain call)."""
    def route(rnn, inputs, lengths=None):
        return recurrence(rnn, inputs) if lengths is None else PATHS[name](rnn, inputs, lengths)

    with mock.patch.object(model_file, "recurrence", route):
        yield


def step_flop(cell: str, hidden: int, frames: int) -> float:
    """Multiply-adds x 2 of one training step over `frames` valid frames: every matrix product of the forward
    pass (input projection, each layer and direction's input and recurrent products, output layer), x 3 for
    forward + backward (the backward pass takes a product for the input gradient and one for the weight's)."""
    gates = GATES[cell] * hidden
    forward = INPUTS * hidden + len(VOCABULARY) * 2 * hidden  # projection, output layer
    for layer in range(LAYERS):
        layer_in = hidden if layer == 0 else 2 * hidden
        forward += 2 * gates * (layer_in + hidden)  # two directions
    return 3 * 2 * forward * frames


def matmul_peak(threads: int, n: int = 2048, repeats: int = 8) -> float:
    """fp32 GFLOP/s of a large square matmul: the most this machine's cores do with one call, best of repeats."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def training_steps(cell: str, hidden: int, steps: int) -> tuple[dict[str, float], int]:
    """Median seconds of a training step on each path (the paths alternating step by step), and the batch's
    valid frames."""
    torch.manual_seed(0)
    model = AcousticModel(ModelConfig(INPUTS, len(VOCABULARY), cell=cell, hidden_size=hidden, num_layers=LAYERS,
                                      bidirectional=True, dropout=0.2)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    features = torch.randn(BATCH, FRAMES, INPUTS)
    lengths = torch.linspace(FRAMES * 0.8, FRAMES, BATCH).round().long()
    labels = torch.randint(1, len(VOCABULARY), (BATCH, 20))
    label_lengths = torch.full((BATCH,), 20)

    def step():
        log_probs = model(features, lengths)
        loss = torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), labels, lengths, label_lengths)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    times = {name: [] for name in PATHS}
    for i in range(steps + 2):
        for name in PATHS:
            with recurrence_path(name):
                seconds = timed(step)
            if i >= 2:  # two warm-up steps each
                times[name].append(seconds)
    return {name: statistics.median(t) for name, t in times.items()}, int(lengths.sum())


def ten_minute_recording(data_dir: Path, out: Path) -> Path:
    """AN4 test utterances end to end with half a second of silence between them, cut at 10 minutes."""
    import soundfile

    pieces, total, rate = [], 0, 16000
    wavs = sorted((data_dir / "an4/wav/an4test_clstk").rglob("*.wav"))
    while total < 600 * rate:
        for wav in wavs:
            audio, _ = soundfile.read(wav, dtype="float32")
            pieces += [audio, np.zeros(rate // 2, dtype="float32")]
            total += len(audio) + rate // 2
    soundfile.write(out, np.concatenate(pieces)[: 600 * rate], rate)
    return out


def inference(threads: int) -> dict:
    """Wall seconds of `asr evaluate` (AN4 test) and `asr transcribe` (10 minutes) with the shipped LSTM, each path,
    in this process (start-up and imports excluded: they do not depend on the path)."""
    from asr.cli import main

    torch.set_num_threads(threads)
    data_dir = Path(os.environ.get("ASR_DATA_DIR") or REPO / "data")
    checkpoint = str(REPO / "checkpoints/an4_lstm.ckpt")
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        long_wav = ten_minute_recording(data_dir, Path(tmp) / "ten_minutes.wav")
        commands = {
            "asr evaluate checkpoints/an4_lstm.ckpt (AN4 test, 130 utterances)":
                ["evaluate", checkpoint, "--data-dir", str(data_dir), "--output", f"{tmp}/per_utt.csv"],
            "asr transcribe checkpoints/an4_lstm.ckpt ten_minutes.wav": ["transcribe", checkpoint, str(long_wav)],
        }
        for label, argv in commands.items():
            with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
                main(argv)  # warm-up: feature cache, first-call allocations
                seconds = {name: [] for name in PATHS}
                for _ in range(2):
                    for name in PATHS:
                        with recurrence_path(name):
                            seconds[name].append(timed(lambda: main(argv)))
            result[label] = {name: min(t) for name, t in seconds.items()}
            result[label]["speed-up"] = result[label]["packed"] / result[label]["padded"]
            print(f"{label}: packed {result[label]['packed']:.2f} s, padded {result[label]['padded']:.2f} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per path and setting")
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=CELLS)
    parser.add_argument("--inference", action="store_true", help="also time asr evaluate / asr transcribe")
    parser.add_argument("--output")
    args = parser.parse_args()

    result = {"machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}",
              "batch": f"{BATCH} utterances x {FRAMES} frames (ragged, 96-{FRAMES}) x {INPUTS} inputs",
              "command": "python benchmarks/rnn_kernel.py " + " ".join(sys.argv[1:]),
              "peak_gflops": {}, "training_step": []}
    for threads in (1, 2):
        result["peak_gflops"][threads] = matmul_peak(threads)
        print(f"{threads} thread(s): fp32 matmul peak {result['peak_gflops'][threads]:.0f} GFLOP/s", flush=True)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for size, hidden in SIZES.items():
            for cell in args.cells:
                seconds, frames = training_steps(cell, hidden, args.steps)
                flop = step_flop(cell, hidden, frames)
                row = {"cell": cell, "size": size, "threads": threads, "gflop_per_step": flop / 1e9,
                       "ms_packed": seconds["packed"] * 1000, "ms_padded": seconds["padded"] * 1000,
                       "speed_up": seconds["packed"] / seconds["padded"]}
                for name in PATHS:
                    gflops = flop / seconds[name] / 1e9
                    row[f"gflops_{name}"] = gflops
                    row[f"peak_fraction_{name}"] = gflops / result["peak_gflops"][threads]
                result["training_step"].append(row)
                print(f"{threads}t {size:22s} {cell:8s} packed {row['ms_packed']:6.0f} ms  padded "
                      f"{row['ms_padded']:6.0f} ms  x{row['speed_up']:.2f}  padded at "
                      f"{row['peak_fraction_padded']:.0%} of peak", flush=True)
    if args.inference:
        result["inference_seconds"] = {threads: inference(threads) for threads in (2,)}
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
