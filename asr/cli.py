"""The `asr` command: one argparse tree and the table of handlers, nothing else. The body of `asr X` is the
function `command(args)` of the module HANDLERS names for X, in the layer that does the job
(asr/deploy/transcribe.py for `asr transcribe`, asr/study/compare.py for `asr compare`, ...); it is imported
only when that command runs.

`asr train` hands its arguments to Lightning's own LightningCLI (asr/train/fit.py), so every value of a
YAML recipe can be overridden on the command line (`--model.cell gru`, `--trainer.max_epochs 5`) and
`--ckpt_path` resumes a run. A mistake the user can fix (asr/base/errors.py: UserError) is one `error: ...` line
(exit status 2; `asr --verbose ...` adds the traceback); any other exception is a bug in asr, printed with its
traceback (exit status 3).
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Optional

from asr.data.conditions import CLEAN, CONDITIONS
from asr.decode.decoders import BEAM_SIZE, LM_WEIGHT, WORD_SCORE
from asr.base.errors import UserError


def add_decoder_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--decoder", choices=("greedy", "beam"), default="greedy")
    p.add_argument("--beam-size", type=int, default=BEAM_SIZE, help="beam width (beam decoder; default %(default)s)")
    p.add_argument("--lexicon", help="lexicon file (from `asr lm build`): spell only these words")
    p.add_argument("--lm", help="word n-gram language model, ARPA (from `asr lm build`); needs --lexicon")
    p.add_argument("--lm-weight", type=float, default=LM_WEIGHT, help="weight of the LM score (default %(default)s)")
    p.add_argument("--word-score", type=float, default=WORD_SCORE, help="score added per word (default %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree. Building it imports no torch: `asr --help` answers at once."""
    from asr.data.corpora import CORPORA, SPLITS, default_data_dir

    parser = argparse.ArgumentParser(prog="asr", description="CTC speech recognition with tanh RNNs, LSTMs and GRUs, "
                                     "and the gradient instruments that show why the gated cells win.")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="on an error, print the full traceback as well as the one-line message")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # train's own parser is LightningCLI's: every argument after `train` goes to it (`asr train --help`).
    sub.add_parser("train", help="train a model from a YAML recipe (LightningCLI fit; see `asr train --help`)",
                   add_help=False)

    p = sub.add_parser("compare", help="the study: train every model of a recipe and write reports/<study>/")
    p.add_argument("-c", "--config", required=True, help="study recipe (YAML), e.g. recipes/studies/an4_quick.yaml")
    p.add_argument("--data-dir", help="override the recipe's data.data_dir")
    p.add_argument("--runs-dir", help="override where the runs go (default runs/<study>)")
    p.add_argument("--report-dir", help="override where the report goes (default reports/<study>)")
    p.add_argument("--jobs", type=int, help="runs trained side by side, one torch thread each (default: the "
                   "recipe's `jobs`, else 1); on a CPU, at most one job per core")
    p.add_argument("--stage", type=int, help="a staged recipe (`stages:`): start at this stage (default 1)")
    p.add_argument("--stop-stage", type=int, help="a staged recipe: stop after this stage (default: the last)")

    p = sub.add_parser("wrec-sweep", help="gradient across time of untrained tanh RNNs by spectral radius of W_hh")
    p.add_argument("-c", "--config", required=True, help="sweep recipe, e.g. recipes/studies/wrec_sweep.yaml")
    p.add_argument("--data-dir")
    p.add_argument("--report-dir")

    p = sub.add_parser("evaluate", help="WER/CER of a checkpoint on a corpus split")
    p.add_argument("checkpoint")
    p.add_argument("--dataset", choices=CORPORA, default="an4")
    p.add_argument("--split", choices=SPLITS, default="test")
    p.add_argument("--data-dir", default=None, help="folder holding the corpus (default: $ASR_DATA_DIR, else ./data)")
    p.add_argument("--output", help="per-utterance results, .csv or .json (default: beside the checkpoint)")
    p.add_argument("--summary-json", help="also write the summary as JSON here")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--condition", choices=(CLEAN, *CONDITIONS), default=CLEAN,
                   help="score the split's audio under a fixed, seeded distortion (asr/data/conditions.py): "
                        + "; ".join(f"{c.name}: {c.describe}" for c in CONDITIONS.values()))
    add_decoder_options(p)

    p = sub.add_parser("transcribe", help="print the transcript of each audio file (or directory), one line per file")
    p.add_argument("checkpoint")
    p.add_argument("files", nargs="+", help="audio files, or directories of them")
    p.add_argument("--format", choices=("text", "json", "srt"), default="text",
                   help="text: one line per file; json: words with start/end times and confidence; srt: subtitles")
    p.add_argument("--output-dir", help="with --format srt: write <name>.srt files here")
    p.add_argument("--with-names", action="store_true", help="text format: prefix each line with the file name and a tab")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--stream", action="store_true", help="feed each file to the model in chunks, as if live, "
                   "showing the partial transcript after each chunk on a terminal (unidirectional models trained "
                   "with data.normalize: online, online_level or global, e.g. checkpoints/an4_lstm_stream.ckpt)")
    p.add_argument("--chunk-ms", type=float, default=160, help="with --stream: audio per chunk (default %(default)s ms)")
    p.add_argument("--realtime", action="store_true", help="with --stream: no faster than the audio would be spoken")
    p.add_argument("--no-endpoint", action="store_true", help="with --stream: one segment for the whole file (by "
                   "default the stream starts a new segment, its state from zero, after a pause: 1.2 s of silence "
                   "after a word, asr/deploy/streaming.py's Endpoint)")
    add_decoder_options(p)

    p = sub.add_parser("serve", help="a web page that compares the models on your own recordings (Gradio, local)")
    p.add_argument("checkpoints", nargs="*", help="checkpoints to compare (default: the shipped ones in checkpoints/, "
                   "else the newest `make demo` run's), or exported .onnx files, served through onnxruntime without "
                   "torch (a step graph, NAME.step.onnx, also streams on the Live tab)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--reports", default="reports/an4_cpu", help="study report shown beside the results (default: the "
                   "CPU study, whose models are the shipped ones)")

    p = sub.add_parser("export", help="a checkpoint to ship: the weights and what rebuilds the model, no optimizer state;"
                       " or, to a .onnx file, the whole recogniser as one ONNX graph for onnxruntime")
    p.add_argument("checkpoint", nargs="+", help="a checkpoint of `asr train` or `asr compare`, e.g. "
                   "runs/NAME/checkpoints/best.ckpt; several, or a folder of them such as runs/NAME/checkpoints/top "
                   "(a run's epochs of lowest dev WER), are averaged")
    p.add_argument("output", help="where to write it, e.g. checkpoints/my_lstm.ckpt, or my_lstm.onnx (asr/deploy/export_onnx.py)")
    p.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--quantize", choices=["int8"], help="to a .onnx file: the acoustic model's weights in 8 bits, a "
                   "quarter of the size, LSTMs and matrix products computed in int8 (asr/deploy/quantize.py)")
    p.add_argument("--stream", action="store_true", help="to a .onnx file: the step graph of a streaming model, for "
                   "`asr transcribe --stream FILE.onnx` without torch (asr/deploy/onnx_stream.py)")

    p = sub.add_parser("tune-decoder", help="pick LM weight and word score for beam search on the dev split")
    add_checkpoint_corpus_options(p, lm_required=True)
    p.add_argument("--lm-weights", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0, 3.0])
    p.add_argument("--word-scores", type=float, nargs="+", default=[-1.0, 0.0, 1.0, 2.0])

    p = sub.add_parser("bench", help="measure: `bench transcribe` (WER and real-time factor of greedy, beam, beam+LM),"
                       " `bench train` (training loop vs bare model step)")
    bench_sub = p.add_subparsers(dest="bench_command", required=True, metavar="WHAT")
    p = bench_sub.add_parser("transcribe", help="WER and real-time factor of greedy, beam and beam+LM on a split")
    add_checkpoint_corpus_options(p, lm_required=False)
    p.add_argument("--split", choices=SPLITS, default="test")
    p.add_argument("--lm-weight", type=float, default=LM_WEIGHT)
    p.add_argument("--word-score", type=float, default=WORD_SCORE)
    p.add_argument("--repeats", type=int, default=3, help="timed passes per decoder after a warm-up (median reported)")
    p = bench_sub.add_parser("train", help="seconds of the training loop against the bare model step")
    p.add_argument("-c", "--config", required=True, help="a training recipe, e.g. recipes/models/an4_lstm.yaml")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--data-dir")
    p.add_argument("--output", help="write the results here as JSON")

    p = sub.add_parser("lm", help="language model tools: `asr lm build` makes a lexicon and an ARPA n-gram LM")
    lm_sub = p.add_subparsers(dest="lm_command", required=True, metavar="WHAT")
    p = lm_sub.add_parser("build", help="lexicon + n-gram LM from a corpus' training transcripts")
    p.add_argument("--dataset", choices=CORPORA, default="an4")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--order", type=int, default=3)
    p.add_argument("--out", default="data/lm/an4", help="output folder (default data/lm/an4)")

    p = sub.add_parser("download", help="download corpora from upstream into the data folder, checksummed")
    p.add_argument("datasets", nargs="+", choices=("an4", "fsdd", "librispeech"))
    p.add_argument("--data-dir", default=str(default_data_dir()))
    p.add_argument("--url", help="fetch from this URL instead of upstream (a mirror or a local file:// copy); for "
                   "librispeech the folder holding <subset>.tar.gz, as OpenSLR's mirrors lay it out")
    p.add_argument("--subset", nargs="+", default=["train-clean-100", "dev-clean", "test-clean"],
                   help="librispeech: the subsets to fetch (default: %(default)s, what recipes/models/librispeech_lstm.yaml "
                        "reads; train-clean-360, train-other-500, dev-other, test-other also)")
    return parser


def add_checkpoint_corpus_options(p: argparse.ArgumentParser, lm_required: bool) -> None:
    from asr.data.corpora import CORPORA

    p.add_argument("checkpoint")
    p.add_argument("--dataset", choices=CORPORA, default="an4")
    p.add_argument("--data-dir")
    p.add_argument("--lexicon", required=lm_required, help="lexicon file (from `asr lm build`)")
    p.add_argument("--lm", required=lm_required, help="word n-gram LM, ARPA (from `asr lm build`)")
    p.add_argument("--beam-size", type=int, default=BEAM_SIZE)
    p.add_argument("--output", help="write the results here as JSON")


# One pattern for every command: "module:function", imported only when that command runs, called with the
# parsed arguments (args.extra: what follows `asr train`, for LightningCLI; args.argv: the whole command line).
HANDLERS = {
    "train": "asr.train.fit:command",
    "compare": "asr.study.compare:command",
    "wrec-sweep": "asr.study.sweep:command",
    "evaluate": "asr.deploy.evaluate:command",
    "transcribe": "asr.deploy.transcribe:command",
    "serve": "asr.app.serve:command",
    "export": "asr.deploy.export:command",
    "tune-decoder": "asr.app.bench:tune_command",
    "bench transcribe": "asr.app.bench:transcribe_command",
    "bench train": "asr.app.bench:train_command",
    "lm build": "asr.decode.lm:command",
    "download": "asr.data.download:command",
}


def handler(args):
    import importlib

    name = " ".join(filter(None, (args.command, getattr(args, "bench_command", None), getattr(args, "lm_command", None))))
    module, function = HANDLERS[name].split(":")
    return getattr(importlib.import_module(module), function)


def main(argv: Optional[list[str]] = None) -> int:
    """Runs one command. A UserError (asr/base/errors.py: bad input, a missing file, a refused overwrite) is one
    `error: ...` line and exit status 2; anything else is a bug in asr, reported as one with its traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.argv, args.extra = argv, extra
    try:
        return handler(args)(args)
    except UserError as e:
        if args.verbose:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output stopped early (`asr transcribe ... | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 0
    except Exception as e:  # noqa: BLE001 - not the user's doing: show everything needed to fix it
        traceback.print_exc()
        print(f"error: a bug in asr ({type(e).__name__}: {e}). The traceback above says where; please report it "
              "with the command that caused it.", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
