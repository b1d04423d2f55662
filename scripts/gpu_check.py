#!/usr/bin/env python3
"""The GPU path end to end, in a few minutes: what a user with a GPU runs first, checked once on real hardware.

    python scripts/gpu_check.py --out gpu_check.json                  # on a CUDA machine (about 3-5 min)
    python scripts/gpu_check.py --device cpu --out /tmp/check.json    # the same checks on a CPU (tests run this)

Needs AN4 under $ASR_DATA_DIR (or --data-dir). Each check is a command a user would type, run in this process
through `asr`'s own entry point, on the chosen device:

1. a few training steps of each cell (tanh RNN, LSTM, GRU) in float32 and in bf16-mixed: the loss is finite,
   and every recurrent call saw float32 inputs (AcousticModel.recur keeps the recurrence out of autocast);
2. exact resume: 2 epochs straight against 1 epoch, then `--ckpt_path last.ckpt` to 2; the largest weight
   difference (0 on a CPU; on a GPU cuDNN's RNN backward adds in a varying order, so it is measured, not assumed);
3. `asr evaluate --device` of that checkpoint on dev against the same on the CPU (WER);
4. `asr transcribe --stream --device` with the shipped live LSTM against the CPU stream (transcripts);
5. `asr export` to ONNX and onnxruntime's transcripts against the checkpoint's.

Writes one JSON (device, versions, every check's numbers and seconds, and `ok`) for a later session to commit.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from asr.cli import main  # noqa: E402

CELLS = ("rnn_tanh", "lstm", "gru")


def asr(*argv: str) -> str:
    """Runs `asr ARGV` here; its standard output, or an exception with what it printed on failure."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    if status != 0:
        raise RuntimeError(f"asr {' '.join(argv)} exited {status}: {err.getvalue()[-2000:]}")
    return out.getvalue()


def train_argv(run: Path, args, *extra: str) -> list[str]:
    return ["train", "-c", str(REPO / "recipes/models/an4_lstm.yaml"), "--run_dir", str(run),
            "--data.data_dir", str(args.data_dir), "--data.cache_dir", str(args.work / "cache"),
            "--data.max_utterances", str(args.utterances), "--data.batch_size", "8", "--data.augment", "false",
            "--model.hidden_size", str(args.hidden), "--trainer.accelerator", args.accelerator,
            "--trainer.enable_progress_bar", "false", "--gradient_flow.frames", "30",
            "--gradient_flow.utterances", "2", *extra]


def last_loss(run: Path) -> float:
    rows = [json.loads(line) for f in sorted((run / "metrics").glob("*.jsonl")) for line in f.read_text().splitlines()]
    return [r["train/loss"] for r in rows if "train/loss" in r][-1]


def check_cells(args) -> dict:
    seen: list = []
    forwards = {kind: kind.forward for kind in (torch.nn.RNN, torch.nn.LSTM, torch.nn.GRU)}

    def recording(forward):
        def recorded(self, inputs, *rest, **kwargs):
            seen.append(str((inputs if isinstance(inputs, torch.Tensor) else inputs.data).dtype))  # or packed
            return forward(self, inputs, *rest, **kwargs)
        return recorded

    results = {}
    for kind, forward in forwards.items():
        kind.forward = recording(forward)
    try:
        for cell in CELLS:
            for precision in ("32-true", "bf16-mixed"):
                seen.clear()
                run, start = args.work / f"{cell}-{precision}", time.perf_counter()
                asr(*train_argv(run, args, "--model.cell", cell, "--trainer.precision", precision,
                                "--trainer.max_epochs", "1"))
                loss = last_loss(run)
                results[f"{cell} {precision}"] = {
                    "seconds": round(time.perf_counter() - start, 1), "last_train_loss": loss,
                    "recurrent_input_dtypes": sorted(set(seen)),
                    "ok": bool(torch.isfinite(torch.tensor(loss))) and set(seen) == {"torch.float32"}}
    finally:
        for kind, forward in forwards.items():
            kind.forward = forward
    return {"runs": results, "ok": all(r["ok"] for r in results.values())}


def check_resume(args) -> dict:
    start = time.perf_counter()
    straight, resumed = args.work / "straight", args.work / "resumed"
    # the plateau schedule without warm-up: its learning rate does not depend on the run's planned length
    plateau = ("--model.schedule", "plateau", "--model.warmup_fraction", "0")
    asr(*train_argv(straight, args, *plateau, "--trainer.max_epochs", "2"))
    asr(*train_argv(resumed, args, *plateau, "--trainer.max_epochs", "1"))
    asr(*train_argv(resumed, args, *plateau, "--trainer.max_epochs", "2",
                    "--ckpt_path", str(resumed / "checkpoints/last.ckpt")))
    a = torch.load(straight / "checkpoints/last.ckpt", weights_only=True, map_location="cpu")["state_dict"]
    b = torch.load(resumed / "checkpoints/last.ckpt", weights_only=True, map_location="cpu")["state_dict"]
    largest = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    exact_expected = args.accelerator == "cpu"
    return {"seconds": round(time.perf_counter() - start, 1), "largest_weight_difference": largest,
            "ok": largest == 0.0 if exact_expected else largest < 1e-2}


def wer_of(checkpoint: Path, device: str, args) -> float:
    summary = args.work / f"evaluate-{device}.json"
    asr("evaluate", str(checkpoint), "--split", "dev", "--data-dir", str(args.data_dir), "--device", device,
        "--output", str(args.work / f"evaluate-{device}.csv"), "--summary-json", str(summary))
    return json.loads(summary.read_text())["wer"]


def test_files(args, count: int) -> list[str]:
    from asr.data.corpora import load_split

    return [str(u.path) for u in load_split("an4", "test", str(args.data_dir))[:count]]


def check_evaluate(args) -> dict:
    start, checkpoint = time.perf_counter(), args.work / "straight/checkpoints/last.ckpt"
    here, cpu = wer_of(checkpoint, args.device, args), wer_of(checkpoint, "cpu", args)
    return {"seconds": round(time.perf_counter() - start, 1), "dev_wer": here, "dev_wer_cpu": cpu,
            "ok": abs(here - cpu) <= 1.0}


def check_stream(args) -> dict:
    start, files = time.perf_counter(), test_files(args, args.files)
    model = str(REPO / "checkpoints/an4_lstm_stream.ckpt")
    here = asr("transcribe", "--stream", "--device", args.device, model, *files).splitlines()
    cpu = asr("transcribe", "--stream", model, *files).splitlines()
    same = sum(a == b for a, b in zip(here, cpu))
    return {"seconds": round(time.perf_counter() - start, 1), "files": len(files), "same_transcripts": same,
            "ok": same == len(files) == len(here)}


def check_onnx(args) -> dict:
    start, files = time.perf_counter(), test_files(args, args.files)
    checkpoint, onnx = args.work / "straight/checkpoints/last.ckpt", args.work / "model.onnx"
    asr("export", str(checkpoint), str(onnx), "--force")
    torch_lines = asr("transcribe", str(checkpoint), *files, "--device", args.device).splitlines()
    onnx_lines = asr("transcribe", str(onnx), *files).splitlines()
    same = sum(a == b for a, b in zip(torch_lines, onnx_lines))
    return {"seconds": round(time.perf_counter() - start, 1), "files": len(files), "same_transcripts": same,
            "ok": same == len(files)}


def run_checks(args) -> dict:
    report = {"device": torch.cuda.get_device_name() if args.device == "cuda" else f"cpu ({platform.machine()})",
              "versions": {"python": platform.python_version(), "torch": torch.__version__},
              "cudnn_deterministic": torch.backends.cudnn.deterministic, "checks": {}}
    for name, check in (("cells", check_cells), ("resume", check_resume), ("evaluate", check_evaluate),
                        ("stream", check_stream), ("onnx", check_onnx)):
        try:
            report["checks"][name] = check(args)
        except Exception as e:  # noqa: BLE001 - a failed check is a result to record, the others still run
            report["checks"][name] = {"ok": False, "error": f"{type(e).__name__}: {e}"[-3000:]}
        print(f"{name}: {json.dumps(report['checks'][name])[:300]}", flush=True)
    report["ok"] = all(check["ok"] for check in report["checks"].values())
    return report


def main_cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--out", required=True, help="the JSON to write")
    parser.add_argument("--data-dir", default=os.environ.get("ASR_DATA_DIR", "data"))
    parser.add_argument("--utterances", type=int, default=64, help="training utterances per run")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--files", type=int, default=8, help="test files for the stream and ONNX checks")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here: pass --device cpu to run the checks on the CPU")
    args.accelerator = "gpu" if args.device == "cuda" else "cpu"
    args.data_dir = Path(args.data_dir)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        args.work = Path(work)
        started = time.perf_counter()
        report = run_checks(args)
    report["seconds"] = round(time.perf_counter() - started, 1)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"{'all checks passed' if report['ok'] else 'SOME CHECKS FAILED'} in {report['seconds']} s: {args.out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main_cli())
