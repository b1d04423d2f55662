"""`asr evaluate`: WER, CER and error counts of a model (a checkpoint, or an .onnx file through onnxruntime) over
every utterance of a corpus split, clean or under a test condition; per-utterance rows to a CSV or JSON file."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from asr.data.conditions import CLEAN, CONDITIONS
from asr.deploy.transcription import decoder_from_args, recognizer_for


def command(args) -> int:
    """`asr evaluate CKPT [--dataset --split --condition --decoder ...]`."""
    from asr.deploy.inference import write_rows

    recognizer = recognizer_for(args.checkpoint, args.device)
    trained_on = recognizer.dataset
    if trained_on and trained_on != args.dataset:
        print(f"warning: {args.checkpoint} was trained on {trained_on}, and is evaluated on {args.dataset}: other "
              "speakers, words and recording conditions than it learned, expect a high WER", file=sys.stderr)
    decoder = decoder_from_args(args, recognizer.vocabulary)
    summary, rows = recognizer.evaluate(args.dataset, args.split, args.data_dir, args.batch_size, decoder,
                                        args.condition)
    suffix = "" if args.condition == CLEAN else f"-{args.condition}"
    out = Path(args.output) if args.output else Path(args.checkpoint).with_suffix(
        f".{args.dataset}-{args.split}{suffix}.csv")
    write_rows(rows, out)
    print(f"{args.dataset} {args.split}{f' ({CONDITIONS[args.condition].describe})' if suffix else ''}: "
          f"{summary['utterances']} utterances, {summary['reference_words']} words, {args.decoder} decoding")
    print(f"WER {summary['wer']:.2f} %  CER {summary['cer']:.2f} %  "
          f"(substitutions {summary['substitutions']}, deletions {summary['deletions']}, "
          f"insertions {summary['insertions']})")
    if summary["no_hypothesis"]:
        print(f"no hypothesis (scored as all deletions): {', '.join(summary['no_hypothesis'])}")
    if summary["ctc_cannot_emit"]:
        print(f"scored, although CTC cannot emit their transcript at {recognizer.frame_seconds * 1000:g} ms "
              f"frames: {', '.join(summary['ctc_cannot_emit'])}")
    print(f"per-utterance results: {out}")
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=1))
    return 0
