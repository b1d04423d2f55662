#!/usr/bin/env python3
"""A live model on minutes of speech: AN4's test utterances joined into one long recording, a pause between each two
(asr/data/conditions.py's joined_recording), streamed as `asr transcribe --stream` streams it, with the endpoint rules
(a new segment, its state from zero, after each pause) and without them (one state carried through the whole
recording); against the same model streaming each utterance as its own file. WER over the whole recording: its
transcript against the utterances' transcripts in order.

    .venv/bin/python scripts/long_recording.py [--model checkpoints/an4_lstm_stream.ckpt] [--pause 1.0] \\
        [--output reports/shipped/an4_lstm_stream.long_recording.json]

Needs $ASR_DATA_DIR or ./data. About 2 minutes for the shipped live LSTM on one thread.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asr.data.audio import load_audio  # noqa: E402
from asr.data.conditions import joined_recording  # noqa: E402
from asr.data.corpora import load_split  # noqa: E402
from asr.decode.metrics import error_rates  # noqa: E402
from asr.deploy.inference import Recognizer  # noqa: E402
from asr.deploy.streaming import Endpoint, Stream, chunks  # noqa: E402

CHUNK_MS = 160  # `asr transcribe --stream`'s default


def streamed(recognizer, waveform, endpoint) -> str:
    stream = Stream(recognizer, endpoint=endpoint)
    for chunk in chunks(waveform, recognizer.extractor.config.sample_rate, CHUNK_MS):
        stream.accept(chunk)
    return stream.finish().text


def long_recording(model: str, dataset: str = "an4", pause: float = 1.0, limit: int | None = None,
                   data_dir: str | None = None) -> dict:
    recognizer = Recognizer.from_checkpoint(model)
    rate = recognizer.extractor.config.sample_rate
    utterances = load_split(dataset, "test", data_dir)[:limit]
    waveforms = [load_audio(u.path, rate).numpy() for u in utterances]
    recording, _ = joined_recording(waveforms, rate, pause)
    reference = " ".join(u.text for u in utterances)
    each = [streamed(recognizer, w, Endpoint()) for w in waveforms]
    result = {"model": model, "dataset": dataset, "utterances": len(utterances), "pause_seconds": pause,
              "recording_seconds": round(len(recording) / rate, 1), "chunk_ms": CHUNK_MS,
              "endpoint": vars(Endpoint()),
              "per_utterance": error_rates([u.text for u in utterances], each),
              "joined_with_endpoints": error_rates([reference], [streamed(recognizer, recording, Endpoint())]),
              "joined_one_segment": error_rates([reference], [streamed(recognizer, recording, None)])}
    result["joined_over_per_utterance"] = round(result["joined_with_endpoints"]["wer"] / result["per_utterance"]["wer"], 3)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "checkpoints/an4_lstm_stream.ckpt"))
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between two utterances")
    parser.add_argument("--utterances", type=int, help="only the first N test utterances")
    parser.add_argument("--output", help="write the result here as JSON")
    args = parser.parse_args()
    result = long_recording(args.model, pause=args.pause, limit=args.utterances)
    print(json.dumps(result, indent=1))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
