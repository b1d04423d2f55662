"""Live transcription's speed, measured in one run on this machine on one thread: each streaming model through PyTorch
(asr/deploy/streaming.py) and its step graph through onnxruntime, float32 and int8 (asr/deploy/onnx_stream.py,
`asr export CKPT NAME.step.onnx --stream [--quantize int8]`), with the endpoint rules on, as users stream:

- latency: for every chunk of every AN4 test file fed as a microphone would (chunks of --chunk-ms), the time from
  the chunk's arrival to its partial transcript (features, network, greedy decoding of everything so far);
  median and 95th percentile over all chunks, per model and chunk size;
- real-time factor: seconds of that work per second of audio.

    .venv/bin/python benchmarks/streaming.py [--models checkpoints/an4_lstm_stream.ckpt ...]
        [--chunk-ms 100 160 320] [--output benchmarks/streaming_cpu.json]

The chunks are fed as fast as they are processed (no waiting for the audio's own time): the latency of one
chunk does not depend on when it arrives. A model with a lookahead (asr/model/acoustic.py) names a frame's characters only
once the frames after it have arrived: its partial transcript trails the audio by `lookahead_ms` on top of the chunk
and the latency measured here. Run it when nothing else uses the CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODELS = ("checkpoints/an4_lstm_stream.ckpt", "checkpoints/an4_tanh_rnn_clipped_stream.ckpt")


def measure(new_stream, waveforms: list[np.ndarray], rate: int, chunk_ms: float) -> dict:
    from asr.deploy.live import chunks

    latencies, busy = [], 0.0
    for waveform in waveforms:
        stream = new_stream()
        for chunk in chunks(waveform, rate, chunk_ms):
            start = time.perf_counter()
            stream.accept(chunk)
            latencies.append(time.perf_counter() - start)
        start = time.perf_counter()
        stream.finish()
        busy += time.perf_counter() - start
    busy += sum(latencies)
    ms = 1000 * np.array(latencies)
    audio = sum(len(w) for w in waveforms) / rate
    return {"chunk_ms": chunk_ms, "chunks": len(latencies), "latency_ms_p50": round(float(np.percentile(ms, 50)), 2),
            "latency_ms_p95": round(float(np.percentile(ms, 95)), 2), "latency_ms_max": round(float(ms.max()), 2),
            "real_time_factor": round(busy / audio, 4), "audio_seconds": round(audio, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=[str(REPO / m) for m in MODELS])
    parser.add_argument("--chunk-ms", type=float, nargs="+", default=[100, 160, 320])
    parser.add_argument("--files", type=int, help="only the first N test files (default: all)")
    parser.add_argument("--data-dir", default=os.environ.get("ASR_DATA_DIR", "data"))
    parser.add_argument("--output", default=str(REPO / "benchmarks/streaming_cpu.json"))
    args = parser.parse_args()

    import tempfile

    import torch

    from asr.data.audio import load_audio
    from asr.data.corpora import load_split
    from asr.deploy.export_onnx import export_onnx
    from asr.deploy.inference import Recognizer
    from asr.deploy.live import Endpoint
    from asr.deploy.onnx_stream import OnnxStream, StepModel
    from asr.deploy.streaming import Stream

    torch.set_num_threads(1)
    results = []
    work = Path(tempfile.mkdtemp(prefix="streaming-bench-"))
    for path in args.models:
        recognizer = Recognizer.from_checkpoint(path)
        rate = recognizer.extractor.config.sample_rate
        utterances = load_split("an4", "test", args.data_dir)[: args.files]
        waveforms = [load_audio(u.path, rate).numpy() for u in utterances]
        streams = {"torch": lambda: Stream(recognizer, endpoint=Endpoint())}
        for name, quantize in (("onnx", None), ("onnx_int8", "int8")):
            step = work / f"{Path(path).stem}.{name}.step.onnx"
            export_onnx(path, step, overwrite=True, quantize=quantize, stream=True)
            model = StepModel(step, threads=1)
            streams[name] = lambda model=model: OnnxStream(model, Endpoint())
        lookahead_ms = recognizer.model.config.lookahead * recognizer.extractor.config.frame_ms
        for runtime, new_stream in streams.items():
            measure(new_stream, waveforms[:4], rate, 160)  # warm up (first calls allocate)
            for chunk_ms in args.chunk_ms:
                row = {"model": Path(path).stem, "runtime": runtime, "lookahead_ms": lookahead_ms,
                       **measure(new_stream, waveforms, rate, chunk_ms)}
                results.append(row)
                print(json.dumps(row), flush=True)
    report = {"machine": f"{platform.machine()} {platform.processor()}, {os.cpu_count()} cores",
              "torch": torch.__version__, "threads": torch.get_num_threads(), "command": " ".join(sys.argv),
              "results": results}
    Path(args.output).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
