"""Every shipped model three ways, in one run on this machine: PyTorch (`NAME.ckpt`), ONNX float32 (`NAME.onnx`) and
ONNX int8 (`NAME.int8.onnx`, `asr export --quantize int8`), each at 1 and 2 threads:

- real-time factor on the model's test set (seconds of compute per second of audio: reading the audio, features,
  network and greedy decoding, `transcribe_files` with the model loaded), median of --repeats passes after a warm-up;
- peak resident memory of the process that loads the model and transcribes the test set (ru_maxrss);
- wall time of `asr transcribe MODEL one.wav`, the whole command in a fresh process (interpreter, imports, loading,
  reading, features, network, decoding), median of --repeats runs;
- file size.

    .venv/bin/python benchmarks/deployment.py [--repeats 3] [--output benchmarks/deployment_cpu.json]

Each measurement runs in a process of its own, with the thread count set the way a user sets it (OMP_NUM_THREADS,
which torch and onnxruntime both read through the project's code: torch.set_num_threads / intra-op threads), the
three paths one after the other for each model. Run it when nothing else uses the CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "checkpoints"
ONE_FILE = {"an4": "an4/wav/an4test_clstk/fcaw/an406-fcaw-b.wav", "fsdd": None}  # fsdd: its first test file
PATHS = {"torch": "{name}.ckpt", "onnx_float32": "{name}.onnx", "onnx_int8": "{name}.int8.onnx"}

# One measurement in a fresh process: load the model, read the test set, a warm-up pass, then the timed passes.
MEASURE = r"""
import json, resource, statistics, sys, time
sys.path.insert(0, {repo!r})
from asr.data.corpora import load_split
from asr.deploy.transcription import recognizer_for
import soundfile
paths = [u.path for u in load_split({dataset!r}, "test", {data!r})]
audio = sum(soundfile.info(str(p)).duration for p in paths)
recognizer = recognizer_for({model!r})
if {model!r}.endswith(".ckpt"):
    import torch
    torch.set_num_threads({threads})
recognizer.transcribe_files(paths)  # warm-up: first calls allocate
seconds = []
for _ in range({repeats}):
    start = time.perf_counter()
    recognizer.transcribe_files(paths)
    seconds.append(time.perf_counter() - start)
print(json.dumps({{"real_time_factor": statistics.median(seconds) / audio, "seconds": seconds, "audio_seconds": audio,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def measure(model: Path, dataset: str, data: Path, threads: int, repeats: int) -> dict:
    code = MEASURE.format(repo=str(REPO), dataset=dataset, data=str(data), model=str(model), threads=threads,
                          repeats=repeats)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return json.loads(done.stdout.strip().splitlines()[-1])


def command_seconds(model: Path, wav: Path, threads: int, repeats: int) -> dict:
    asr = Path(sys.executable).with_name("asr")
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([str(asr), "transcribe", str(model), str(wav)], check=True, capture_output=True,
                       env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        runs.append(time.perf_counter() - start)
    return {"median": statistics.median(runs), "runs": runs}


def summarize(rows: list[dict]) -> dict:
    """Per model and thread count, the ratios the targets are about: ONNX float32 against torch, int8 against ONNX
    float32 (real-time factor, file size)."""
    at = {(r["model"], r["threads"], r["path"]): r for r in rows}
    out: dict = {}
    for model, threads, _ in at:
        torch_row, exact, int8 = (at.get((model, threads, p)) for p in PATHS)
        if torch_row and exact and int8:
            out.setdefault(model, {})[str(threads)] = {
                "onnx_float32_over_torch_rtf": round(exact["real_time_factor"] / torch_row["real_time_factor"], 2),
                "int8_over_float32_rtf": round(int8["real_time_factor"] / exact["real_time_factor"], 2),
                "int8_over_float32_size": round(int8["megabytes"] / exact["megabytes"], 2)}
    return out


def table(result: dict) -> str:
    """The Markdown table of benchmarks/README.md."""
    lines = ["| model | threads | real-time factor: torch / ONNX float32 / ONNX int8 | ONNX / torch | int8 / float32 | "
             "peak MB: torch / ONNX / int8 | one file, s: torch / ONNX / int8 | MB: torch / ONNX / int8 |",
             "|---|---|---|---|---|---|---|---|"]
    at = {(r["model"], r["threads"], r["path"]): r for r in result["rows"]}
    for model, by_threads in result["summary"].items():
        for threads, ratios in by_threads.items():
            rows = [at[(model, int(threads), p)] for p in PATHS]

            def three(value, digits: int) -> str:
                return " / ".join(f"{value(r):.{digits}f}" for r in rows)

            lines.append(" | ".join([
                f"| `{model}`", threads, three(lambda r: r["real_time_factor"], 5),
                f"{ratios['onnx_float32_over_torch_rtf']:.2f}", f"{ratios['int8_over_float32_rtf']:.2f}",
                three(lambda r: r["peak_rss_mb"], 0), three(lambda r: r["one_file_command_seconds"]["median"], 2),
                three(lambda r: r["megabytes"], 1)]) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--models", nargs="+", help="shipped model names (default: every one with an int8 file)")
    parser.add_argument("--data-dir", default=os.environ.get("ASR_DATA_DIR", "data"))
    parser.add_argument("--output", default=str(REPO / "benchmarks/deployment_cpu.json"))
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from asr.data.corpora import load_split

    data = Path(args.data_dir)
    shipped = [m for m in json.loads((SHIPPED / "models.json").read_text())["models"] if m.get("int8")]
    shipped = [m for m in shipped if not args.models or m["name"] in args.models]
    rows = []
    for m in shipped:
        wav = data / ONE_FILE[m["dataset"]] if ONE_FILE[m["dataset"]] else load_split(m["dataset"], "test", str(data))[0].path
        for threads in args.threads:
            for path, pattern in PATHS.items():
                model = SHIPPED / pattern.format(name=m["name"])
                row = {"model": m["name"], "path": path, "threads": threads, "file": model.name,
                       "megabytes": model.stat().st_size / 1e6,
                       **measure(model, m["dataset"], data, threads, args.repeats),
                       "one_file_command_seconds": command_seconds(model, wav, threads, args.repeats)}
                rows.append(row)
                print(f"{m['name']:28s} {path:13s} {threads} thread(s): RTF {row['real_time_factor']:.5f}, "
                      f"peak {row['peak_rss_mb']:.0f} MB, one file {row['one_file_command_seconds']['median']:.2f} s, "
                      f"{row['megabytes']:.1f} MB", flush=True)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "command": "python benchmarks/deployment.py " + " ".join(sys.argv[1:]),
        "rows": rows,
        "summary": summarize(rows),
    }
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
