"""`asr transcribe`: a transcript per audio file (or directory of them) as text, JSON with word times, or subtitles;
with --stream, each file fed chunk by chunk as if live (asr/deploy/streaming.py)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from asr.base.errors import UserError
from asr.deploy.transcription import decoder_from_args, recognizer_for

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aiff", ".aif", ".au", ".opus"}


def expand_inputs(items: list[str]) -> tuple[list[Path], list[Path]]:
    """Files as given; a directory stands for the audio files in it (sorted). Also returns the directories
    that hold no audio file at all."""
    paths, empty = [], []
    for item in map(Path, items):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            paths += found
            if not found:
                empty.append(item)
        else:
            paths.append(item)
    return paths, empty


def srt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def to_srt(transcript, words_per_cue: int = 8) -> str:
    """Subtitles: consecutive words in cues of at most `words_per_cue`, timed from the CTC alignment."""
    cues = [transcript.words[i : i + words_per_cue] for i in range(0, len(transcript.words), words_per_cue)]
    return "".join(f"{n}\n{srt_time(c[0].start)} --> {srt_time(c[-1].end)}\n{' '.join(w.word for w in c)}\n\n"
                   for n, c in enumerate(cues, 1))


def command(args) -> int:
    """`asr transcribe MODEL FILES [--format text|json|srt] [--stream]`."""
    if args.stream:
        return transcribe_live(args)
    recognizer = recognizer_for(args.checkpoint, args.device)
    decoder = decoder_from_args(args, recognizer.vocabulary)
    paths, empty = expand_inputs(args.files)
    if args.format == "srt" and len(paths) > 1 and not args.output_dir:
        raise UserError("--format srt with several files needs --output-dir (one .srt per file)")
    for folder in empty:
        print(f"error: no audio files in {folder} (looked for {', '.join(sorted(AUDIO_SUFFIXES))})", file=sys.stderr)
    results = recognizer.transcribe_files(paths, decoder, batch_size=args.batch_size)
    failures, documents = len(empty), []
    for path, transcript, error in results:
        if error:
            failures += 1
            print(f"error: {path}: {error}", file=sys.stderr)
        elif args.format == "json":
            documents.append({"file": str(path), **transcript.as_dict()})
        elif args.format == "srt" and args.output_dir:
            out = Path(args.output_dir) / f"{path.stem}.srt"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(to_srt(transcript))
            print(out)
        elif args.format == "srt":
            print(to_srt(transcript), end="")
        else:
            print(f"{path}\t{transcript.text}" if args.with_names else transcript.text, flush=True)
    if args.format == "json":
        print(json.dumps(documents, indent=1))
    return 1 if failures else 0


def transcribe_live(args) -> int:
    """`asr transcribe --stream`: each file fed to the model chunk by chunk as if live (asr/deploy/streaming.py), a new
    segment after each pause unless --no-endpoint. On a terminal the partial transcript is rewritten in place after
    every chunk; otherwise one final line per file."""
    from asr.data.audio import AudioError
    from asr.deploy.live import Endpoint

    if args.decoder != "greedy" or args.format != "text":
        raise UserError("--stream decodes greedily and prints text: leave out --decoder/--lexicon/--lm and --format")
    endpoint = None if args.no_endpoint else Endpoint()
    if str(args.checkpoint).endswith(".onnx"):  # a step graph, through onnxruntime: no torch
        from asr.deploy import onnx_stream

        model = onnx_stream.StepModel(args.checkpoint)

        def stream(path, show):
            return onnx_stream.stream_file(model, path, args.chunk_ms, show, endpoint)
    else:
        from asr.deploy.inference import Recognizer
        from asr.deploy.streaming import stream_file

        recognizer = Recognizer.from_checkpoint(args.checkpoint, args.device)

        def stream(path, show):
            return stream_file(recognizer, path, args.chunk_ms, show, args.realtime, endpoint)[0]
    paths, empty = expand_inputs(args.files)
    for folder in empty:
        print(f"error: no audio files in {folder} (looked for {', '.join(sorted(AUDIO_SUFFIXES))})", file=sys.stderr)
    live = sys.stdout.isatty()
    failures = len(empty)
    for path in paths:
        prefix = f"{path}\t" if args.with_names else ""
        show = (lambda t: print(f"\r\033[K{prefix}{t.text}", end="", flush=True)) if live else None
        try:
            final = stream(path, show)
        except AudioError as e:
            failures += 1
            print(f"error: {path}: {e}", file=sys.stderr)
            continue
        print(f"\r\033[K{prefix}{final.text}" if live else f"{prefix}{final.text}", flush=True)
    return 1 if failures else 0
