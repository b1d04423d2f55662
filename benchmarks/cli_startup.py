"""Wall time of `asr --help` and `asr transcribe CKPT one.wav`, median of repeats, for the code checked out
now and (optionally) an older commit, measured in the same run on the same machine.

    .venv/bin/python benchmarks/cli_startup.py CKPT AUDIO.wav [--old-commit REV] [--repeats 5] [--output F.json]

The older commit is checked out into a temporary git worktree and run with the same virtual environment
(PYTHONPATH puts its asr/ first). Run it when nothing else uses the CPU.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def wall(cmd: list[str], env: dict, repeats: int, cwd: Path) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def measure(source: Path, ckpt: str, audio: str, repeats: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(source)}  # and cwd=source: `python -c` puts the cwd first on sys.path
    asr = [sys.executable, "-c", "import sys; from asr.cli import main; sys.exit(main())"]
    results = {}
    ckpt, audio = str(Path(ckpt).resolve()), str(Path(audio).resolve())
    for name, args in (("asr --help", ["--help"]), ("asr transcribe CKPT one.wav", ["transcribe", ckpt, audio])):
        wall(asr + args, env, 1, source)  # warm the file cache
        times = wall(asr + args, env, repeats, source)
        results[name] = {"median_s": statistics.median(times), "runs_s": times}
        print(f"{source.name:>12}  {name:<28} median {statistics.median(times):.2f} s  ({', '.join(f'{t:.2f}' for t in times)})",
              flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("audio")
    parser.add_argument("--old-commit")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}",
              "python": platform.python_version(), "repeats": args.repeats,
              "now": {"commit": commit, **measure(REPO, args.checkpoint, args.audio, args.repeats)}}
    if args.old_commit:
        with tempfile.TemporaryDirectory() as tmp:
            worktree = Path(tmp) / "old"
            subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.old_commit], cwd=REPO, check=True,
                           capture_output=True)
            try:
                report["old"] = {"commit": args.old_commit, **measure(worktree, args.checkpoint, args.audio, args.repeats)}
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=REPO, check=True)
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
