"""Measuring: `asr tune-decoder` (LM weight and word score on dev, never test), `asr bench transcribe`
(WER and real-time factor of greedy, beam and beam+LM on a split) and `asr bench train` (the training
loop against the bare model step on the same batches).

Real-time factor = seconds spent / seconds of audio, for the whole path a user runs: reading the
files, features, the network and decoding. Below 1 is faster than real time.
"""
from __future__ import annotations

import itertools
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import soundfile
import torch

from asr.base.files import recipe_file
from asr.data.corpora import load_split
from asr.decode.decoders import BeamSearchDecoder, GreedyDecoder
from asr.deploy.inference import Recognizer
from asr.decode.metrics import score
from asr.decode.metrics import error_rates


def tune(recognizer: Recognizer, dataset: str, data_dir, lexicon: str, lm: str, lm_weights, word_scores,
         beam_size: int = 50) -> dict:
    """Grid search on the dev split: emissions are computed once, each (weight, score) pair decodes them."""
    _, examples, scores = recognizer.split_log_probs(dataset, "dev", data_dir)
    refs = [e.text for e in examples]
    grid = []
    for weight, word_score in itertools.product(lm_weights, word_scores):
        decoder = BeamSearchDecoder(recognizer.tokenizer.vocabulary, beam_size, lexicon, lm, weight, word_score)
        hyps = [decoder(s, recognizer.frame_seconds).text for s in scores]
        grid.append({"lm_weight": weight, "word_score": word_score, "dev_wer": error_rates(refs, hyps)["wer"]})
        print(f"lm_weight {weight:g}  word_score {word_score:g}  dev WER {grid[-1]['dev_wer']:.2f} %", flush=True)
    best = min(grid, key=lambda g: g["dev_wer"])
    return {"dataset": dataset, "split": "dev", "beam_size": beam_size, "lexicon": lexicon, "lm": lm,
            "grid": grid, "best": best}


def bench(recognizer: Recognizer, dataset: str, split: str, data_dir, decoders: dict, repeats: int = 3,
          batch_size: int = 32) -> dict:
    """Each decoder: one untimed warm-up pass (first calls allocate memory and load kernels), then
    `repeats` timed passes over the whole split; the median is reported. The WER is scored exactly as
    `asr evaluate` scores it (same batches, every utterance)."""
    utts = load_split(dataset, split, data_dir)
    paths = [u.path for u in utts]
    audio_seconds = sum(soundfile.info(p).duration for p in paths)
    results = {}
    for name, decoder in decoders.items():
        recognizer.transcribe_files(paths, decoder, batch_size=batch_size)  # warm-up, not timed
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            out = recognizer.transcribe_files(paths, decoder, batch_size=batch_size)
            times.append(time.perf_counter() - start)
        hyps = {u.id: t.text for u, (_, t, _) in zip(utts, out) if t is not None}
        rates, _ = score(utts, hyps)
        seconds = statistics.median(times)
        results[name] = {"wer": rates["wer"], "cer": rates["cer"], "seconds": seconds, "rtf": seconds / audio_seconds,
                         "repeats": times, "no_hypothesis": rates["no_hypothesis"]}
        print(f"{name:>8}: WER {rates['wer']:.2f} %  CER {rates['cer']:.2f} %  RTF {seconds / audio_seconds:.4f} "
              f"(median of {repeats})", flush=True)
    return {"dataset": dataset, "split": split, "utterances": len(utts), "audio_seconds": audio_seconds,
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, {platform.processor() or 'cpu'}",
            "torch": torch.__version__, "decoders": results}


def write_json(result: dict, output: str | None) -> None:
    if output:
        out = Path(output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))


def tune_command(args) -> int:
    """`asr tune-decoder CKPT --lexicon L --lm LM`."""
    recognizer = Recognizer.from_checkpoint(args.checkpoint)
    result = tune(recognizer, args.dataset, args.data_dir, args.lexicon, args.lm, args.lm_weights,
                  args.word_scores, args.beam_size)
    print(f"best on dev: lm_weight {result['best']['lm_weight']:g}, word_score {result['best']['word_score']:g} "
          f"(WER {result['best']['dev_wer']:.2f} %)")
    write_json(result, args.output)
    return 0


def transcribe_command(args) -> int:
    """`asr bench transcribe CKPT [--lexicon L --lm LM]`."""
    argv = args.argv[args.argv.index("transcribe") + 1:]  # the options, for the table's header
    recognizer = Recognizer.from_checkpoint(args.checkpoint)
    vocab = recognizer.tokenizer.vocabulary
    decoders = {"greedy": GreedyDecoder(vocab), "beam": BeamSearchDecoder(vocab, args.beam_size)}
    if args.lm:
        decoders["beam+lm"] = BeamSearchDecoder(vocab, args.beam_size, args.lexicon, args.lm, args.lm_weight,
                                                args.word_score)
    result = bench(recognizer, args.dataset, args.split, args.data_dir, decoders, args.repeats)
    result.update(checkpoint=str(args.checkpoint), beam_size=args.beam_size, lm=args.lm,
                  lm_weight=args.lm_weight, word_score=args.word_score)
    write_json(result, args.output)
    if args.output:
        Path(args.output).with_suffix(".md").write_text(bench_table(result, argv))
    return 0


def train_command(args) -> int:
    """`asr bench train -c RECIPE`."""
    bench_train(str(recipe_file(args.config)), args.epochs, args.data_dir, args.output)
    return 0


def bench_table(result: dict, argv: list[str]) -> str:
    rows = [f"# Decoding on {result['dataset']} {result['split']} ({result['utterances']} utterances, "
            f"{result['audio_seconds']:.0f} s of audio)", "",
            f"Checkpoint `{result['checkpoint']}`; machine: {result['machine']}; torch {result['torch']}. "
            f"Made by `asr bench transcribe {' '.join(argv)}`. Real-time factor = wall-clock seconds / audio "
            "seconds for the whole path (read file, features, network, decoder), median of the timed passes after "
            "an untimed warm-up; beam size "
            f"{result['beam_size']}, LM weight {result['lm_weight']:g}, word score {result['word_score']:g}.", "",
            "| decoder | WER % | CER % | real-time factor |", "|---|---|---|---|"]
    rows += [f"| {name} | {d['wer']:.2f} | {d['cer']:.2f} | {d['rtf']:.4f} |" for name, d in result["decoders"].items()]
    return "\n".join(rows) + "\n"


def bench_train(recipe_path: str, epochs: int, data_dir, output: str | None) -> dict:
    """Seconds for `epochs` epochs of the real training loop (the Trainer every run gets, asr/train/runs.py: data
    pipeline, logging, gradient instruments, checkpoints; no validation) against the model alone (forward +
    CTC + backward + clip + AdamW on the same batches, prepared in advance): the distance between the two is
    the loop's overhead."""
    import tempfile

    import lightning as L
    import yaml

    from asr.data.datamodule import ASRDataModule
    from asr.train.module import ASRModule
    from asr.train.runs import build_trainer

    recipe = yaml.safe_load(Path(recipe_path).read_text())
    data_args = {**recipe.get("data", {}), **({"data_dir": data_dir} if data_dir else {})}
    trainer_args = {k: v for k, v in recipe.get("trainer", {}).items() if k in ("accelerator", "devices", "precision",
                                                                               "gradient_clip_val")}
    data = ASRDataModule(**data_args)
    data.load("train")
    device = torch.device("cuda" if torch.cuda.is_available() and trainer_args.get("accelerator") != "cpu" else "cpu")

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    L.seed_everything(0, verbose=False)
    module = ASRModule(input_dim=data.feature_dim, **recipe["model"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(Path(tmp), trainer_args, recipe.get("gradient_flow"), max_epochs=epochs,
                                enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                                num_sanity_val_steps=0)
        start = time.perf_counter()
        with warnings.catch_warnings():  # no validation here, on purpose: best.ckpt has no dev WER to choose by
            warnings.filterwarnings("ignore", message=r"`ModelCheckpoint\(monitor='dev/wer'\)` could not find")
            trainer.fit(module, datamodule=data)
        sync()
        full = time.perf_counter() - start
        full_steps = trainer.global_step

    L.seed_everything(0, verbose=False)
    module = ASRModule(input_dim=data.feature_dim, **recipe["model"]).to(device)
    batches = [b.to(device) for b in data.train_dataloader()]
    optimizer = torch.optim.AdamW(module.parameters(), lr=module.hparams.learning_rate,
                                  weight_decay=module.hparams.weight_decay)
    clip = trainer_args.get("gradient_clip_val")
    sync()
    start = time.perf_counter()
    model_only_steps = 0
    for _ in range(epochs):
        for batch in batches:
            loss, _ = module.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
            optimizer.step()
            model_only_steps += 1
    sync()
    model_only = time.perf_counter() - start
    result = {"recipe": recipe_path, "epochs": epochs, "steps": {"full_loop": full_steps, "model_only": model_only_steps},
              "device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads",
              "torch": torch.__version__, "full_loop_seconds": full, "model_only_seconds": model_only,
              "full_over_model_only": full / model_only}
    print(json.dumps(result, indent=1))
    write_json(result, output)
    return result
