"""The ONNX path (`asr transcribe model.onnx`, onnxruntime, no torch) against the PyTorch path (`asr transcribe
model.ckpt`), measured in one run on this machine:

- wall time of transcribing one file, the whole command (a fresh process: interpreter start, imports, loading
  the model, reading, features, network, decoding), median of --repeats runs, the two paths alternating;
- real-time factor on the AN4 test set (seconds of compute per second of audio; reading the audio, features,
  network and greedy decoding, models already loaded), in-process.

    .venv/bin/python benchmarks/onnx_cli.py [--repeats 5] [--threads 2] [--output benchmarks/onnx_cli_cpu.json]

Both paths get the same number of threads (torch.set_num_threads / onnxruntime's intra-op threads, through
OMP_NUM_THREADS for the commands). Run it when nothing else uses the CPU.
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
sys.path.insert(0, str(REPO))

MODEL = "an4_lstm"
WAV = "an4/wav/an4test_clstk/fcaw/an406-fcaw-b.wav"


def command_seconds(model: Path, wav: Path, threads: int) -> float:
    asr = Path(sys.executable).with_name("asr")
    start = time.perf_counter()
    subprocess.run([str(asr), "transcribe", str(model), str(wav)], check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return time.perf_counter() - start


def real_time_factor(recognizer, paths: list[Path], audio_seconds: float) -> float:
    start = time.perf_counter()
    recognizer.transcribe_files(paths)
    return (time.perf_counter() - start) / audio_seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=os.environ.get("ASR_DATA_DIR", "data"))
    parser.add_argument("--output", default=str(REPO / "benchmarks/onnx_cli_cpu.json"))
    args = parser.parse_args()
    data = Path(args.data_dir)
    ckpt, onnx = REPO / f"checkpoints/{MODEL}.ckpt", REPO / f"checkpoints/{MODEL}.onnx"
    wav = data / WAV

    times: dict[str, list[float]] = {"torch": [], "onnx": []}
    for _ in range(args.repeats):
        times["torch"].append(command_seconds(ckpt, wav, args.threads))
        times["onnx"].append(command_seconds(onnx, wav, args.threads))
    one_file = {k: statistics.median(v) for k, v in times.items()}

    import soundfile
    import torch

    from asr.data.corpora import load_split
    from asr.deploy.inference import Recognizer
    from asr.deploy.onnx_recognizer import OnnxRecognizer

    torch.set_num_threads(args.threads)
    paths = [u.path for u in load_split("an4", "test", str(data))]
    audio = sum(soundfile.info(str(p)).duration for p in paths)
    torch_path, onnx_path = Recognizer.from_checkpoint(ckpt), OnnxRecognizer(onnx, threads=args.threads)
    real_time_factor(onnx_path, paths[:8], 1.0)  # warm both (first calls allocate)
    real_time_factor(torch_path, paths[:8], 1.0)
    rtf = {"torch": [], "onnx": []}
    for _ in range(3):
        rtf["torch"].append(real_time_factor(torch_path, paths, audio))
        rtf["onnx"].append(real_time_factor(onnx_path, paths, audio))
    rtf = {k: statistics.median(v) for k, v in rtf.items()}
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} threads",
        "command": f"python benchmarks/onnx_cli.py --repeats {args.repeats} --threads {args.threads}",
        "model": MODEL,
        "one_file_command_seconds": {"torch": one_file["torch"], "onnx": one_file["onnx"],
                                     "onnx_over_torch": one_file["onnx"] / one_file["torch"],
                                     "runs": times},
        "test_set": {"utterances": len(paths), "audio_seconds": audio, "real_time_factor": rtf,
                     "onnx_over_torch": rtf["onnx"] / rtf["torch"]},
    }
    Path(args.output).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
