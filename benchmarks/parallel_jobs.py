"""Independent study runs side by side: `asr compare --jobs 2` (two processes of one torch thread each)
against `--jobs 1` (one process, two torch threads), on the same two-run study, in one go.

    .venv/bin/python benchmarks/parallel_jobs.py [--epochs 2] [--output benchmarks/parallel_jobs_cpu.json]

The study: two seeds of the demo's LSTM (2x128 bidirectional, 30 ms frames, batch 16) on AN4, `--epochs`
epochs each. Wall time includes process start, feature loading (cached), validation and the test
evaluation of each run. Run it when nothing else uses the CPU.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--output")
    args = parser.parse_args()
    recipe = yaml.safe_load((REPO / "recipes/studies/an4_quick.yaml").read_text())
    recipe.update(study="parallel_jobs_bench", seeds=[0, 1], baseline=None, gradient_flow={"frames": 100, "utterances": 8,
                                                                                            "every_n_epochs": 100})
    recipe["models"] = {"lstm": recipe["models"]["lstm"]}
    recipe["base"]["trainer"].update(max_epochs=args.epochs, enable_progress_bar=False)
    asr = str(Path(sys.executable).with_name("asr"))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "study.yaml"
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        for name, jobs, threads in (("1 job x 2 threads", 1, 2), ("2 jobs x 1 thread", 2, 1)):
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            start = time.perf_counter()
            subprocess.run([asr, "compare", "-c", str(path), "--jobs", str(jobs), "--runs-dir", f"{tmp}/runs-{jobs}",
                            "--report-dir", f"{tmp}/report-{jobs}"], env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            results[name] = time.perf_counter() - start
            print(f"{name}: {results[name]:.0f} s for 2 runs of {args.epochs} epochs", flush=True)
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "epochs": args.epochs, "wall_s": results,
              "speedup_2_jobs": results["1 job x 2 threads"] / results["2 jobs x 1 thread"]}
    print(f"2 jobs x 1 thread: {report['speedup_2_jobs']:.2f}x the runs per hour of 1 job x 2 threads")
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
