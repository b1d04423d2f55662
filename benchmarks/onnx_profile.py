"""Where an exported model's time goes: onnxruntime's own profiler over AN4 test, one thread, shares of the time in
its nodes grouped as the features (`/features/...`), the recurrences run as Scan (a tanh/ReLU layer's step by step
loop, asr/deploy/export_onnx.py) and the rest of the network (input and output products, LSTM/GRU nodes).

    .venv/bin/python benchmarks/onnx_profile.py checkpoints/an4_tanh_rnn_clipped.onnx checkpoints/an4_gru.onnx \\
        [--output benchmarks/onnx_profile_cpu.json]

A Scan's own time includes the nodes of its step, which the profiler also lists apart: those are left out of the sum.
Shares hold under other load better than seconds do; run it with nothing else running for the seconds too.
"""
from __future__ import annotations

import argparse
import collections
import json
import platform
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def profile(path: Path, passes: int = 2) -> dict:
    from asr.data.corpora import load_split
    from asr.deploy.onnx_recognizer import OnnxRecognizer, onnx_session

    recognizer = OnnxRecognizer(path, threads=1)
    with tempfile.TemporaryDirectory() as folder:  # the session the recogniser opens, with the profiler on
        recognizer.session = onnx_session(path, threads=1, profile_prefix=str(Path(folder) / "profile"))
        waveforms = [recognizer.read(u.path) for u in load_split(recognizer.dataset or "an4", "test", None)]
        for _ in range(passes):
            recognizer.log_probs(waveforms)
        events = json.loads(Path(recognizer.session.end_profiling()).read_text())
    nodes = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            nodes[event["name"].removesuffix("_kernel_time")] += event["dur"]
    top = {name: us for name, us in nodes.items() if "/step/" not in name}  # a Scan's step: inside its Scan's time
    total = sum(top.values())
    features = sum(us for name, us in top.items() if name.startswith("/features"))
    scans = sum(us for name, us in top.items() if name.endswith("/Scan"))
    return {"model": str(path.relative_to(REPO) if path.is_relative_to(REPO) else path), "passes": passes,
            "node_seconds": round(total / 1e6, 3), "features": round(features / total, 3),
            "scans": round(scans / total, 3), "rest_of_network": round((total - features - scans) / total, 3),
            "largest_nodes": {name: round(us / total, 3) for name, us in nodes.most_common(8)}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--output")
    args = parser.parse_args()
    rows = [profile(m.resolve()) for m in args.models]
    for r in rows:
        print(f"{r['model']}: features {r['features']:.0%}, Scans {r['scans']:.0%}, rest {r['rest_of_network']:.0%}")
    if args.output:
        Path(args.output).write_text(json.dumps({"machine": f"{platform.machine()}, 1 thread", "command": " ".join(
            ["python", *sys.argv]), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
