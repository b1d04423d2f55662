"""The `asr` command: train, evaluate, transcribe, download (and compare, see asr/compare.py).

`asr train` is Lightning's own LightningCLI (`fit`), so every value of a YAML recipe can be overridden
on the command line (`--model.cell gru`, `--trainer.max_epochs 5`) and `--ckpt_path` resumes a run.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Optional

from lightning.pytorch.cli import LightningCLI

from .training import holds_checkpoints, run_callbacks, run_loggers


class TrainCLI(LightningCLI):
    """LightningCLI plus one `run_dir` that holds a run's logs (CSV, TensorBoard) and checkpoints."""

    def add_arguments_to_parser(self, parser):
        parser.add_argument("--run_dir", type=str, default="runs/default", help="folder for logs and checkpoints")
        parser.link_arguments("data.feature_dim", "model.input_dim", apply_on="instantiate")

    def before_instantiate_classes(self):
        config = self.config[self.subcommand]
        if self.subcommand == "fit" and not config.ckpt_path and holds_checkpoints(Path(config.run_dir)):
            checkpoints = Path(config.run_dir) / "checkpoints"
            raise SystemExit(f"error: {checkpoints} already holds checkpoints of an earlier run. Resume it with "
                             f"--ckpt_path {checkpoints / 'last.ckpt'}, or start a new one with another --run_dir.")

    def instantiate_trainer(self, **kwargs):
        run_dir = Path(self.config[self.subcommand].run_dir)
        trainer_config = self._get(self.config_init, "trainer", default={})
        if trainer_config.get("logger") in (None, True):  # a recipe may still name its own loggers
            kwargs["logger"] = run_loggers(run_dir)
        kwargs["callbacks"] = [*run_callbacks(run_dir), *(trainer_config.get("callbacks") or [])]
        kwargs.setdefault("default_root_dir", str(run_dir))
        return super().instantiate_trainer(**kwargs)


def train(argv: list[str]) -> int:
    from .corpora import DataNotFoundError
    from .datamodule import ASRDataModule
    from .module import ASRModule

    # `asr train ARGS` is `fit ARGS` for LightningCLI, which warns when args and sys.argv both exist.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    try:
        TrainCLI(
            ASRModule,
            ASRDataModule,
            args=["fit", *argv],
            trainer_defaults={
                "log_every_n_steps": 1,  # gradient norms are logged on every step
                "use_distributed_sampler": False,  # ASRDataModule's bucket sampler shards itself across ranks
            },
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": "asr train"},
        )
    except (ValueError, DataNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aiff", ".aif", ".au", ".opus"}


def decoder_from_args(args, vocabulary):
    from .decoding import make_decoder

    return make_decoder(vocabulary, args.decoder, beam_size=args.beam_size, lexicon=args.lexicon, lm=args.lm,
                        lm_weight=args.lm_weight, word_score=args.word_score)


def evaluate(args) -> int:
    from .inference import Recognizer, write_rows

    recognizer = Recognizer.from_checkpoint(args.checkpoint, args.device)
    decoder = decoder_from_args(args, recognizer.tokenizer.vocabulary)
    summary, rows = recognizer.evaluate(args.dataset, args.split, args.data_dir, args.batch_size, decoder)
    out = Path(args.output) if args.output else Path(args.checkpoint).with_suffix(f".{args.dataset}-{args.split}.csv")
    write_rows(rows, out)
    print(f"{args.dataset} {args.split}: {summary['utterances']} utterances, {summary['reference_words']} words, "
          f"{args.decoder} decoding")
    print(f"WER {summary['wer']:.2f} %  CER {summary['cer']:.2f} %  "
          f"(substitutions {summary['substitutions']}, deletions {summary['deletions']}, "
          f"insertions {summary['insertions']})")
    if summary["left_out"]:
        print(f"left out (transcript longer than CTC can emit): {', '.join(summary['left_out'])}")
    print(f"per-utterance results: {out}")
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=1))
    return 0


def expand_inputs(items: list[str]) -> list[Path]:
    """Files as given; a directory stands for the audio files in it (sorted)."""
    paths = []
    for item in map(Path, items):
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        else:
            paths.append(item)
    return paths


def srt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def to_srt(transcript, words_per_cue: int = 8) -> str:
    """Subtitles: consecutive words in cues of at most `words_per_cue`, timed from the CTC alignment."""
    cues = [transcript.words[i : i + words_per_cue] for i in range(0, len(transcript.words), words_per_cue)]
    return "".join(f"{n}\n{srt_time(c[0].start)} --> {srt_time(c[-1].end)}\n{' '.join(w.word for w in c)}\n\n"
                   for n, c in enumerate(cues, 1))


def transcribe(args) -> int:
    from .inference import Recognizer

    recognizer = Recognizer.from_checkpoint(args.checkpoint, args.device)
    decoder = decoder_from_args(args, recognizer.tokenizer.vocabulary)
    paths = expand_inputs(args.files)
    if args.format == "srt" and len(paths) > 1 and not args.output_dir:
        raise ValueError("--format srt with several files needs --output-dir (one .srt per file)")
    results = recognizer.transcribe_files(paths, decoder, batch_size=args.batch_size)
    failures, documents = 0, []
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


def download(args) -> int:
    from .download import download as fetch

    for name in args.datasets:
        fetch(name, Path(args.data_dir), url=args.url)
    return 0


def lm_build(args) -> int:
    from .corpora import load_split
    from .lm import build

    sentences = [u.text for u in load_split(args.dataset, "train", args.data_dir)]  # never dev or test
    arpa, lexicon = build(sentences, Path(args.out), order=args.order, name=f"{args.dataset}_{args.order}gram")
    print(f"{len(sentences)} training transcripts -> {arpa} and {lexicon}")
    return 0


def add_decoder_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--decoder", choices=("greedy", "beam"), default="greedy")
    p.add_argument("--beam-size", type=int, default=None, help="beam width (beam decoder; default 50)")
    p.add_argument("--lexicon", help="lexicon file (from `asr lm build`): spell only these words")
    p.add_argument("--lm", help="word n-gram language model, ARPA (from `asr lm build`); needs --lexicon")
    p.add_argument("--lm-weight", type=float, default=None, help="weight of the LM score (default 1.0)")
    p.add_argument("--word-score", type=float, default=None, help="score added per word (default 0)")


def build_parser() -> argparse.ArgumentParser:
    from .corpora import CORPORA, SPLITS, default_data_dir

    parser = argparse.ArgumentParser(prog="asr", description="CTC speech recognition with tanh RNNs, LSTMs and GRUs, "
                                     "and the gradient instruments that show why the gated cells win.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help="train a model from a YAML recipe (LightningCLI fit; see `asr train --help`)",
                   add_help=False)
    sub.add_parser("compare", help="train several models and write a comparison report (see `asr compare --help`)",
                   add_help=False)
    sub.add_parser("wrec-sweep", help="gradient across time of untrained tanh RNNs by spectral radius of W_hh",
                   add_help=False)
    sub.add_parser("tune-decoder", help="pick LM weight and word score for beam search on the dev split",
                   add_help=False)
    sub.add_parser("bench", help="`asr bench transcribe CKPT`: WER and real-time factor of greedy, beam, beam+LM; "
                   "`asr bench train -c RECIPE`: training loop vs bare model step", add_help=False)

    p = sub.add_parser("evaluate", help="WER/CER of a checkpoint on a corpus split")
    p.add_argument("checkpoint")
    p.add_argument("--dataset", choices=CORPORA, default="an4")
    p.add_argument("--split", choices=SPLITS, default="test")
    p.add_argument("--data-dir", default=None, help="folder holding the corpus (default: $ASR_DATA_DIR, else ./data)")
    p.add_argument("--output", help="per-utterance results, .csv or .json (default: beside the checkpoint)")
    p.add_argument("--summary-json", help="also write the summary as JSON here")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")

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
    add_decoder_options(p)

    p = sub.add_parser("lm", help="language model tools: `asr lm build` makes a lexicon and an ARPA n-gram LM")
    lm_sub = p.add_subparsers(dest="lm_command", required=True)
    p = lm_sub.add_parser("build", help="lexicon + n-gram LM from a corpus' training transcripts")
    p.add_argument("--dataset", choices=CORPORA, default="an4")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--order", type=int, default=3)
    p.add_argument("--out", default="data/lm/an4", help="output folder (default data/lm/an4)")

    p = sub.add_parser("download", help="download corpora from upstream into the data folder, checksummed")
    p.add_argument("datasets", nargs="+", choices=("an4", "fsdd"))
    p.add_argument("--data-dir", default=str(default_data_dir()))
    p.add_argument("--url", help="fetch from this URL instead of upstream (a mirror or a local file:// copy)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        return train(argv[1:])
    if argv and argv[0] == "compare":
        from .compare import main as compare_main

        return compare_main(argv[1:])
    if argv[:1] == ["tune-decoder"] or argv[:2] in (["bench", "transcribe"], ["bench", "train"]):
        from .bench import main as bench_main

        words = 1 if argv[0] == "tune-decoder" else 2
        return bench_main(argv[words:], " ".join(argv[:words]))
    if argv and argv[0] == "wrec-sweep":
        from .sweep import main as sweep_main

        return sweep_main(argv[1:])
    args = build_parser().parse_args(argv)
    from .corpora import DataNotFoundError
    from .download import DownloadError
    from .inference import CheckpointError

    try:
        return {"evaluate": evaluate, "transcribe": transcribe, "download": download, "lm": lm_build}[args.command](args)
    except (DataNotFoundError, DownloadError, CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
