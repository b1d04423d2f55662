#!/usr/bin/env python3
"""Makes checkpoints/: the shipped models and their model card, from finished CPU studies.

    .venv/bin/python scripts/ship_checkpoints.py --study runs/an4_cpu [--stream-study runs/an4_remedies_cpu]
        [--fsdd-run runs/fsdd_lstm-...]

From the main study (recipes/studies/an4_cpu.yaml), for each of the LSTM, the GRU and the clipped tanh RNN, the seed with
the lowest dev WER is exported (`asr export`: weights only) to checkpoints/an4_<model>.ckpt beside the `asr train`
recipe that made it; from a study of unidirectional models on globally normalised features (--stream-study: the
remedies study, recipes/studies/an4_remedies_cpu.yaml, or the lookahead study, reports/an4_stream_cpu/recipe.yaml, with
--stream-study-report) its LSTM and clipped tanh RNN go to checkpoints/an4_<model>_stream.ckpt, the models that transcribe live
(asr/deploy/streaming.py); a run that started from another run's weights (`model.init_from`, a fine-tune) ships with
the recipes of the runs before it, <name>.stage1.yaml, ..., so the card can say how to train it again. The word LM (a 3-gram from AN4's training transcripts, `asr lm build`) goes to
checkpoints/lm/an4/. Each model is then measured: greedy and beam+LM WER on dev and test, with the LM weight and
word score picked on dev only (`asr tune-decoder`'s grid), and greedy test WER under each test condition of
`asr evaluate --condition` (asr/data/conditions.py). checkpoints/models.json records every number (the test
suite reproduces them from the shipped files); checkpoints/README.md is the model card written from it. Models
not named in a call keep their files and records. Per-utterance results and the tuning grids go to
reports/shipped/. Needs $ASR_DATA_DIR or ./data.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asr.app.bench import tune  # noqa: E402
from asr.data.conditions import CONDITIONS  # noqa: E402
from asr.data.corpora import load_split  # noqa: E402
from asr.decode.decoders import BeamSearchDecoder  # noqa: E402
from asr.train.checkpoint import export_checkpoint, read_checkpoint  # noqa: E402
from asr.deploy.export_onnx import export_onnx  # noqa: E402
from asr.deploy.inference import Recognizer, write_rows  # noqa: E402
from asr.deploy.onnx_recognizer import OnnxRecognizer  # noqa: E402
from asr.decode.lm import build  # noqa: E402
from asr.data.text import is_word_vocabulary  # noqa: E402

STUDY_MODELS = ("lstm", "gru", "tanh_rnn_clipped")
STREAM_MODELS = ("lstm", "tanh_rnn_clipped")  # of the --stream-study, shipped as an4_<model>_stream
ORDER = ("an4_lstm", "an4_gru", "an4_tanh_rnn_clipped", "an4_lstm_stream", "an4_tanh_rnn_clipped_stream", "fsdd_lstm")
LM_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0)  # the grid of scripts/decoding_report.sh
WORD_SCORES = (-1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
BEAM_SIZE = 50


def best_seed(model_dir: Path) -> dict:
    """The finished run of this model with the lowest dev WER (ties: the lower seed). Test plays no part."""
    results = [json.loads(p.read_text()) for p in sorted(model_dir.glob("seed*/result.json"))]
    if not results:
        raise SystemExit(f"no finished run under {model_dir}: run the study first (scripts/cpu_study.sh)")
    return min(results, key=lambda r: (r["best_dev_wer"], r["seed"]))


def lookahead_words(model: dict, features: dict) -> str:
    frames = model.get("lookahead", 0)
    if not frames:
        return ""
    return f" with a lookahead of {frames} frames ({frames * features['hop_ms'] * features['stride']:g} ms)"


def training_stages(run_dir: Path) -> list[Path]:
    """The runs a run was trained through, first to last: each `model.init_from` (RUN/checkpoints/best.ckpt) leads
    back to the run before, down to one trained from a random initialisation."""
    stages = [run_dir]
    while source := (yaml.safe_load((stages[0] / "config.yaml").read_text()).get("model") or {}).get("init_from"):
        before = Path(source).parents[1]
        if not (before / "config.yaml").is_file() or not (before / "result.json").is_file():
            raise SystemExit(f"{stages[0]} was trained from {source}, which is not a finished run's checkpoint here "
                             "(RUN/checkpoints/best.ckpt beside RUN/config.yaml and RUN/result.json): the card could not "
                             "say how to train it again")
        stages.insert(0, before)
    return stages


def architecture(ckpt: Path) -> dict:
    """What the card says about the network and its input, read from the shipped file itself."""
    saved = read_checkpoint(ckpt)
    model, data = saved["hyper_parameters"], saved["datamodule_hyper_parameters"]
    return {"model": {**{k: model[k] for k in ("cell", "num_layers", "hidden_size", "bidirectional", "dropout", "init")},
                      "lookahead": model.get("lookahead", 0),
                      "units": "words" if is_word_vocabulary(model["vocabulary"]) else "chars",
                      "symbols": len(model["vocabulary"])},
            "features": {**{k: data[k] for k in ("sample_rate", "n_mels", "hop_ms", "stack", "stride", "spec_augment")},
                         "augment": data.get("augment"), "normalize": data.get("normalize", "utterance")}}


def ctc_words(model: dict) -> str:
    if model.get("units") == "words":  # symbols: blank, <unk>, the words
        return (f"word CTC (`data.units: words`: its {model['symbols'] - 2} training words are its symbols; "
                "greedy decoding only, beam search spells words from characters)")
    return "character CTC"


def rates(summary: dict) -> dict:
    keys = ("wer", "cer", "substitutions", "deletions", "insertions", "reference_words", "utterances")
    return {k: summary[k] for k in keys}


def measure(name: str, ckpt: Path, dataset: str, details: Path, lexicon: Path | None, lm: Path | None,
            lm_grid: tuple = (LM_WEIGHTS, WORD_SCORES)) -> dict:
    recognizer = Recognizer.from_checkpoint(ckpt)
    out = {}
    for split in ("dev", "test"):
        summary, rows = recognizer.evaluate(dataset, split, None)
        write_rows(rows, details / f"{name}.{split}.greedy.csv")
        out[f"{split}_greedy"] = rates(summary)
    if dataset == "an4":  # the robustness columns: the same weights, greedy, under each test condition
        out["test_conditions"] = {}
        for condition in CONDITIONS:
            summary, rows = recognizer.evaluate(dataset, "test", None, condition=condition)
            write_rows(rows, details / f"{name}.test-{condition}.greedy.csv")
            out["test_conditions"][condition] = rates(summary)
    if lm is None or is_word_vocabulary(recognizer.vocabulary):  # beam search spells words from characters
        for stale in (*details.glob(f"{name}.*.beam_lm.csv"), details / f"{name}.tune_dev.json"):  # a model before it
            stale.unlink(missing_ok=True)
        return out
    grid = tune(recognizer, dataset, None, str(lexicon), str(lm), *lm_grid, BEAM_SIZE)
    (details / f"{name}.tune_dev.json").write_text(json.dumps(grid, indent=1))
    best = grid["best"]
    out["decoder"] = {"beam_size": BEAM_SIZE, "lm_weight": best["lm_weight"], "word_score": best["word_score"]}
    for split in ("dev", "test"):
        decoder = BeamSearchDecoder(recognizer.tokenizer.vocabulary, BEAM_SIZE, str(lexicon), str(lm),
                                    best["lm_weight"], best["word_score"])
        summary, rows = recognizer.evaluate(dataset, split, None, decoder=decoder)
        write_rows(rows, details / f"{name}.{split}.beam_lm.csv")
        out[f"{split}_beam_lm"] = rates(summary)
    return out


def pct(rates_or_none: dict | None) -> str:
    return "n/a" if rates_or_none is None else f"{rates_or_none['wer']:.1f}"


def write_model_card(record: dict, path: Path) -> None:
    """checkpoints/README.md, every number taken from models.json."""
    lines = [
        "# checkpoints/: trained models that ship with the project",
        "",
        "Written by `scripts/ship_checkpoints.py` from `models.json` (do not edit by hand; rerun the script).",
        "Each file holds the acoustic model's weights and the hyper-parameters that rebuild it and its features,",
        "no optimizer state (`asr export`). They load with `torch.load(weights_only=True)`: a file that would",
        "need to run code is refused. `tests/test_shipped.py` reproduces every test WER below from these files.",
        "",
        "    asr transcribe checkpoints/an4_lstm.ckpt recording.wav",
        "    asr evaluate checkpoints/an4_lstm.ckpt --split test --output /tmp/an4_lstm_test.csv",
        "    asr evaluate checkpoints/an4_lstm.ckpt --split test --output /tmp/an4_lstm_test_lm.csv --decoder beam \\",
        "        --lexicon checkpoints/lm/an4/lexicon.txt --lm checkpoints/lm/an4/an4_3gram.arpa --lm-weight W --word-score S",
        "    asr serve                      # the AN4 models side by side in a browser",
        "    asr transcribe checkpoints/an4_lstm.onnx recording.wav   # the same model through onnxruntime, no torch",
        "    asr transcribe --stream checkpoints/an4_lstm_stream.ckpt recording.wav   # live: audio in 160 ms chunks",
        "    asr transcribe --stream checkpoints/an4_lstm_stream.step.onnx recording.wav   # live, no torch",
        "",
        "(W and S: each model's tuned values in the table of details.) WER in %, word errors over the reference",
        "words of the whole split; greedy = best path; beam+LM = beam 50 with the word 3-gram of `lm/an4/`",
        "(AN4 training transcripts only), LM weight and word score picked on dev, never on test.",
        "",
        "| model | cell | layers x hidden | parameters | MB | dev greedy | dev beam+LM | test greedy | test beam+LM |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in record["models"]:
        arch = m["model"]
        ahead = f" (lookahead {arch['lookahead'] * m['features']['hop_ms'] * m['features']['stride']:g} ms)" \
            if arch.get("lookahead") else ""
        lines.append(f"| `{m['file']}` | {arch['cell']}{' (bidirectional)' if arch['bidirectional'] else ahead} | "
                     f"{arch['num_layers']} x {arch['hidden_size']} | {m['parameters']:,} | {m['bytes'] / 1e6:.1f} | "
                     f"{pct(m['dev_greedy'])} | {pct(m.get('dev_beam_lm'))} | {pct(m['test_greedy'])} | "
                     f"{pct(m.get('test_beam_lm'))} |")
    robust = [m for m in record["models"] if m.get("test_conditions")]
    if robust:
        lines += ["", "Robustness: test WER %, greedy, under the fixed distortions of `asr evaluate --condition NAME`",
                  "(asr/data/conditions.py), and in brackets its ratio to the clean test WER:", "",
                  "| model | clean | " + " | ".join(c.describe for c in CONDITIONS.values()) + " |",
                  "|---" * (len(CONDITIONS) + 2) + "|"]
        for m in robust:
            clean = m["test_greedy"]["wer"]
            lines.append(f"| `{m['file']}` | {clean:.1f} | " + " | ".join(
                f"{m['test_conditions'][c]['wer']:.1f} ({m['test_conditions'][c]['wer'] / clean:.1f}x)"
                for c in CONDITIONS) + " |")
    quantized = [m for m in record["models"] if m.get("int8")]
    if quantized:
        lines += ["", "Int8: each model also as `NAME.int8.onnx` (`asr export CKPT NAME.int8.onnx --quantize int8`,",
                  "asr/deploy/quantize.py: LSTM and matrix-product weights in 8 bits computed in int8 by onnxruntime;",
                  "GRU and tanh RNN weights stored in 8 bits and computed in float32), transcribed as the float32 file is.",
                  "Test WER %, float32 -> int8 (speed: `benchmarks/deployment.py`, benchmarks/README.md):", "",
                  "| model | int8 file | MB (float32 ONNX) | test greedy | test beam+LM | largest change under a condition |",
                  "|---|---|---|---|---|---|"]
        for m in quantized:
            q = m["int8"]
            beam = (f"{m['test_beam_lm']['wer']:.1f} -> {q['test_beam_lm']['wer']:.1f}" if q.get("test_beam_lm")
                    else "n/a")
            worst = "n/a"
            if q.get("test_conditions"):  # int8 against float32 under the same condition
                change = {c: q["test_conditions"][c]["wer"] - m["test_conditions"][c]["wer"] for c in q["test_conditions"]}
                c = max(change, key=lambda c: abs(change[c]))
                worst = f"{change[c]:+.1f} ({c})"
            lines.append(f"| `{m['name']}` | `{q['file']}` | {q['bytes'] / 1e6:.1f} ({m['onnx']['bytes'] / 1e6:.1f}) | "
                         f"{m['test_greedy']['wer']:.1f} -> {q['test_greedy']['wer']:.1f} | {beam} | {worst} |")
    lines += ["", "## Details", ""]
    for m in record["models"]:
        f = m["features"]
        lines += [f"### {m['name']}", "",
                  f"- file `{m['file']}`, {m['bytes']:,} bytes, sha256 `{m['sha256']}`",
                  *([f"- ONNX `{m['onnx']['file']}` (`asr transcribe {m['onnx']['file']} FILES` without torch), "
                     f"{m['onnx']['bytes']:,} bytes, sha256 `{m['onnx']['sha256']}`"] if m.get("onnx") else []),
                  *([f"- ONNX step graph `{m['step_onnx']['file']}` (`asr transcribe --stream {m['step_onnx']['file']} "
                     f"FILES` without torch), {m['step_onnx']['bytes']:,} bytes, sha256 `{m['step_onnx']['sha256']}`"]
                    if m.get("step_onnx") else []),
                  *([f"- int8 ONNX `{m['int8']['file']}`, {m['int8']['bytes']:,} bytes, sha256 `{m['int8']['sha256']}`; "
                     f"test greedy WER {m['int8']['test_greedy']['wer']:.2f} %"
                     + (f", beam+LM {m['int8']['test_beam_lm']['wer']:.2f} %" if m["int8"].get("test_beam_lm") else "")
                     + (", under each condition: " + ", ".join(f"{c} {r['wer']:.1f}" for c, r in
                                                               m["int8"]["test_conditions"].items())
                        if m["int8"].get("test_conditions") else "")] if m.get("int8") else []),
                  f"- data: {m['dataset'].upper()} ({DATA[m['dataset']]}); training split without the dev utterances",
                  f"- input: {f['n_mels']} log-mel bands at {f['sample_rate']} Hz, {f['stack']} frames stacked, "
                  f"{f['hop_ms'] * f['stride']:g} ms per model frame, normalised "
                  f"{NORMALISED[f.get('normalize', 'utterance')]}; "
                  f"SpecAugment in training: {f['spec_augment']}; "
                  f"waveform augmentation (asr/data/augment.py): {f.get('augment') or False}",
                  f"- network: {m['model']['num_layers']} x {m['model']['hidden_size']} {m['model']['cell']}, "
                  f"{'bidirectional' if m['model']['bidirectional'] else 'unidirectional'}"
                  f"{lookahead_words(m['model'], m['features'])}, dropout "
                  f"{m['model']['dropout']}, init {m['model']['init']}; {ctc_words(m['model'])}; {m['parameters']:,} parameters",
                  f"- trained by `{m['trained_by']}`; run: {m['run']}; commit `{m.get('git_commit')}`",
                  f"- recipe: [`{m['recipe_file']}`]({m['recipe_file']}) (`asr train -c checkpoints/{m['recipe_file']}` "
                  "trains it again)"]
        if m.get("stages"):
            before = ", then ".join(f"`asr train -c checkpoints/{stage['recipe_file']}`" for stage in m["stages"])
            lines.append(f"- trained in {len(m['stages']) + 1} stages, each starting from the dev-best weights of the "
                         f"one before (`model.init_from`): {before}, then the recipe above")
        if m.get("selected_epoch") is not None:
            weights = m.get("weights") or f"epoch {m['selected_epoch']} (lowest dev WER)"
            lines.append(f"- weights of {weights}; {m['train_seconds'] / 60:.0f} "
                         f"min of training{' (all stages)' if m.get('stages') else ''} on {m.get('study_device')}")
        for split in ("dev", "test"):
            for decoding, key in (("greedy", "greedy"), ("beam+LM", "beam_lm")):
                r = m.get(f"{split}_{key}")
                if r:
                    lines.append(f"- {split} {decoding}: WER {r['wer']:.2f} %, CER {r['cer']:.2f} % "
                                 f"({r['substitutions']} sub, {r['deletions']} del, {r['insertions']} ins of "
                                 f"{r['reference_words']} words, {r['utterances']} utterances)")
        if m.get("decoder"):
            d = m["decoder"]
            lines.append(f"- beam+LM decoder: beam {d['beam_size']}, LM weight {d['lm_weight']:g}, "
                         f"word score {d['word_score']:g} (picked on dev)")
        lines.append("")
    lines += [
        "## What they are for, and what not",
        "",
        "They are the studies' models (reports/an4_cpu/; the `_stream` ones: the studies their details name), shipped so",
        "that transcribing, evaluating, live transcription and the browser page work without training first. AN4 is small: 42 minutes of speech in its training set",
        "(948 utterances, 98 of them held out as dev) from 74 US English speakers on a close-talking microphone, saying census-style data",
        "(names and words spelled letter by letter, numbers, dates). On other voices, microphones, noise or",
        "vocabulary expect far higher error rates; the beam+LM decoder only knows AN4's training words.",
        "The FSDD model knows the ten digits \"zero\" to \"nine\" spoken alone at 8 kHz.",
        "",
        "Licences: AN4 (CMU, BSD-style) and FSDD (CC BY-SA 4.0); upstream sources in `../data/README.md`",
        "(`asr download an4 fsdd` fetches them). The language model in `lm/an4/` is made from AN4's training transcripts only.",
        "",
        "Made by: " + "; ".join(f"`{c}`" for c in dict.fromkeys(m["shipped_by"] for m in record["models"])) + ".",
    ]
    path.write_text("\n".join(lines) + "\n")


def ship_onnx(record: dict, out: Path, only: set | None = None) -> None:
    """Each shipped checkpoint (those named in `only`, if given) also as .onnx (`asr export CKPT NAME.onnx`: features
    and model in one graph, for onnxruntime without torch), its size and sha256 in the record; tests/test_onnx.py
    checks it against the checkpoint."""
    for m in record["models"]:
        if only is not None and m["name"] not in only:
            continue
        target = out / Path(m["file"]).with_suffix(".onnx").name
        info = export_onnx(out / m["file"], target, overwrite=True)
        m["onnx"] = {"file": target.name, "bytes": info["bytes"], "sha256": info["sha256"]}
        print(f"{target}: {info['bytes'] / 1e6:.1f} MB", flush=True)


def ship_step(record: dict, out: Path, only: set | None = None) -> None:
    """Each shipped model that streams (those named in `only`, if given) also as its step graph, NAME.step.onnx
    (`asr export CKPT NAME.step.onnx --stream`): live transcription through onnxruntime without torch
    (asr/deploy/onnx_stream.py; tests/test_onnx_stream.py checks it against the torch stream)."""
    for m in record["models"]:
        if only is not None and m["name"] not in only:
            continue
        if m["model"]["bidirectional"] or m["features"].get("normalize", "utterance") == "utterance":
            m.pop("step_onnx", None)
            continue
        target = out / f"{m['name']}.step.onnx"
        info = export_onnx(out / m["file"], target, overwrite=True, stream=True)
        m["step_onnx"] = {"file": target.name, "bytes": info["bytes"], "sha256": info["sha256"]}
        print(f"{target}: {info['bytes'] / 1e6:.1f} MB", flush=True)


def ship_int8(record: dict, out: Path, details: Path, only: set | None = None) -> None:
    """Each shipped .onnx (those named in `only`, if given) also in int8 (`asr export CKPT NAME.int8.onnx --quantize
    int8`, asr/deploy/quantize.py), measured through onnxruntime as the float32 model is: greedy test WER, beam+LM at the
    float32 model's LM weight and word score (picked on dev), and greedy under each test condition, on one thread."""
    lm = record.get("lm")
    for m in record["models"]:
        if only is not None and m["name"] not in only:
            continue
        target = out / f"{m['name']}.int8.onnx"
        info = export_onnx(out / m["file"], target, overwrite=True, quantize="int8")
        # one thread: int8 results can move with the thread count (a float rounding that lands on the other side of
        # a quantisation step); the records and tests/test_onnx.py use one
        recognizer = OnnxRecognizer(target, threads=1)
        summary, rows = recognizer.evaluate(m["dataset"], "test", None)
        write_rows(rows, details / f"{m['name']}.int8.test.greedy.csv")
        measured = {"file": target.name, "bytes": info["bytes"], "sha256": info["sha256"],
                    "made_by": f"asr export checkpoints/{m['file']} checkpoints/{target.name} --quantize int8",
                    "test_greedy": rates(summary)}
        if m.get("decoder") and lm:
            d = m["decoder"]
            decoder = BeamSearchDecoder(recognizer.vocabulary, d["beam_size"], str(out / lm["lexicon"]),
                                        str(out / lm["arpa"]), d["lm_weight"], d["word_score"])
            summary, rows = recognizer.evaluate(m["dataset"], "test", None, decoder=decoder)
            write_rows(rows, details / f"{m['name']}.int8.test.beam_lm.csv")
            measured["test_beam_lm"] = rates(summary)
        if m["dataset"] == "an4":
            measured["test_conditions"] = {}
            for condition in CONDITIONS:
                summary, rows = recognizer.evaluate(m["dataset"], "test", None, condition=condition)
                write_rows(rows, details / f"{m['name']}.int8.test-{condition}.greedy.csv")
                measured["test_conditions"][condition] = rates(summary)
        m["int8"] = measured
        print(f"{target}: {info['bytes'] / 1e6:.1f} MB, test WER greedy {summary_wer(measured)}", flush=True)


def summary_wer(measured: dict) -> str:
    return f"{measured['test_greedy']['wer']:.2f} %" + (f", beam+LM {measured['test_beam_lm']['wer']:.2f} %"
                                                        if measured.get("test_beam_lm") else "")


def conditions_completed(record: dict, details: Path) -> None:
    """Test conditions added since a model was shipped (asr/data/conditions.py) measured on its checkpoint, as
    `measure` does; the conditions it has keep their numbers."""
    for m in record["models"]:
        if m["dataset"] != "an4":
            continue
        missing = [c for c in CONDITIONS if c not in m.get("test_conditions", {})]
        if missing:
            recognizer = Recognizer.from_checkpoint(Path(ROOT / "checkpoints" / m["file"]))
        for condition in missing:
            summary, rows = recognizer.evaluate(m["dataset"], "test", None, condition=condition)
            write_rows(rows, details / f"{m['name']}.test-{condition}.greedy.csv")
            m.setdefault("test_conditions", {})[condition] = rates(summary)
            print(f"{m['name']}: test WER under {condition} {summary['wer']:.2f} %", flush=True)


NORMALISED = {"utterance": "per utterance",
              "global": "by the training split statistics (it streams: `asr transcribe --stream`)",
              "online": "online, by a running mean that starts from the training mean (it streams, and forgets the "
                        "microphone's level: `asr transcribe --stream`)",
              "online_level": "online, by a running mean that starts from the training mean moved to the level heard "
                              "so far (it streams, and a microphone's level is gone from the first frame: "
                              "`asr transcribe --stream`)"}
DATA = {"an4": "CMU AN4, 16 kHz, BSD-style licence", "fsdd": "Free Spoken Digit Dataset, 8 kHz, CC BY-SA 4.0"}


def ship_study_model(study: Path, summary: dict, model: str, name: str, out: Path, details: Path, lexicon: Path,
                     arpa: Path, lm_grid: tuple, shipped_by: str, average: bool = False) -> dict:
    """The seed of `model` with the lowest dev WER in a study's runs folder, exported to out/<name>.ckpt and measured.
    With `average`, the mean of that run's dev-best epochs (checkpoints/top/) is shipped instead, unless the best
    epoch alone has the lower dev WER."""
    run = best_seed(study / model)
    run_dir = study / model / f"seed{run['seed']}"
    target = out / f"{name}.ckpt"
    info = export_checkpoint(run_dir / "checkpoints/best.ckpt", target, overwrite=True)
    weights = f"epoch {run['selected_epoch']} (lowest dev WER)"
    top = sorted((run_dir / "checkpoints/top").glob("*.ckpt"))
    if average and len(top) > 1:  # the mean of the dev-best epochs unless the best alone does better on dev (not test)
        averaged = out / f".{name}.averaged.ckpt"
        averaged_info = export_checkpoint(top, averaged, overwrite=True)
        dev = {path: Recognizer.from_checkpoint(path).evaluate("an4", "dev", None)[0]["wer"]
               for path in (target, averaged)}
        print(f"{name}: dev WER {dev[target]:.2f} % (best epoch), {dev[averaged]:.2f} % (average of {len(top)})",
              flush=True)
        if dev[averaged] <= dev[target]:
            averaged.replace(target)
            info = {**averaged_info, "file": str(target)}
            epochs = [int(read_checkpoint(path)["epoch"]) for path in top]
            weights = f"the average of epochs {', '.join(map(str, sorted(epochs)))} (the {len(top)} of lowest dev WER)"
        averaged.unlink(missing_ok=True)
    shutil.copyfile(run_dir / "config.yaml", out / f"{name}.yaml")  # the `asr train` recipe
    # A fine-tune (model.init_from) ships the recipes of the runs before it too: name.stage1.yaml, ... in order
    for stale in out.glob(f"{name}.stage*.yaml"):
        stale.unlink()
    stages = []
    for i, stage in enumerate(training_stages(run_dir)[:-1], 1):
        shutil.copyfile(stage / "config.yaml", out / f"{name}.stage{i}.yaml")
        earlier = json.loads((stage / "result.json").read_text())
        stages.append({"recipe_file": f"{name}.stage{i}.yaml", "run": str(stage),
                       "selected_epoch": earlier["selected_epoch"], "train_seconds": earlier["train_seconds"]})
    stage = summary["recipe"].get("stage")  # a stage of a staged recipe: the stages up to it train this model
    how = f"asr compare -c {summary['recipe_path']}" + (f" --stop-stage {stage}" if stage else "")
    record = {"name": name, "file": target.name, "recipe_file": f"{name}.yaml", "dataset": "an4",
              "bytes": info["bytes"], "sha256": info["sha256"], "parameters": run["parameters"],
              **architecture(target),
              "trained_by": how + (" --jobs 2 (scripts/cpu_study.sh)" if summary["recipe_path"] == "recipes/studies/an4_cpu.yaml"
                                   else ""),
              **({"stages": stages} if stages else {}),
              "run": f"{model} seed {run['seed']} (lowest dev WER of seeds "
                     f"{', '.join(str(r['seed']) for r in summary['models'][model]['runs'])})",
              "git_commit": run["git_commit"], "selected_epoch": run["selected_epoch"], "weights": weights,
              "train_seconds": run["train_seconds"] + sum(stage["train_seconds"] for stage in stages),
              "study_device": summary.get("device"), "shipped_by": shipped_by,
              **measure(name, target, "an4", details, lexicon, arpa, lm_grid)}
    print(f"{name}: test WER greedy {record['test_greedy']['wer']:.2f} %, beam+LM {pct(record.get('test_beam_lm'))} %",
          flush=True)
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", help="runs folder of `asr compare -c recipes/studies/an4_cpu.yaml` (ships an4_lstm, "
                        "an4_gru, an4_tanh_rnn_clipped)")
    parser.add_argument("--study-report", default="reports/an4_cpu/summary.json")
    parser.add_argument("--stream-study", help="runs folder of `asr compare -c recipes/studies/an4_remedies_cpu.yaml` (ships "
                        "an4_lstm_stream, an4_tanh_rnn_clipped_stream)")
    parser.add_argument("--stream-study-report", default="reports/an4_remedies_cpu/summary.json")
    parser.add_argument("--stream-models", nargs="+", default=STREAM_MODELS, choices=STREAM_MODELS,
                        help="which models of the --stream-study to ship (a study of LSTMs alone: lstm)")
    parser.add_argument("--average", action="store_true", help="ship the average of each run's dev-best epochs "
                        "(RUN/checkpoints/top/, `asr export`) unless the best epoch alone has the lower dev WER")
    parser.add_argument("--fsdd-run", help="run folder of `asr train -c recipes/models/fsdd_lstm.yaml` (ships fsdd_lstm)")
    parser.add_argument("--fsdd-commit", help="the commit the FSDD run was trained at")
    parser.add_argument("--out", default="checkpoints")
    parser.add_argument("--details", default="reports/shipped")
    parser.add_argument("--lm-weights", type=float, nargs="+", default=LM_WEIGHTS, help="the dev grid's LM weights")
    parser.add_argument("--word-scores", type=float, nargs="+", default=WORD_SCORES, help="the dev grid's word scores")
    parser.add_argument("--card-only", action="store_true", help="only write README.md again from models.json")
    parser.add_argument("--onnx-only", action="store_true",
                        help="only export the shipped checkpoints to .onnx and .int8.onnx again, measure the int8 files "
                        "and any test condition a model has not been measured under (recorded in models.json and the card)")
    args = parser.parse_args()
    out, details = Path(args.out), Path(args.details)
    previous = json.loads((out / "models.json").read_text()) if (out / "models.json").is_file() else {"models": []}
    if args.card_only or args.onnx_only:
        if args.onnx_only:
            details.mkdir(parents=True, exist_ok=True)
            conditions_completed(previous, details)
            ship_onnx(previous, out)
            ship_step(previous, out)
            ship_int8(previous, out, details)
            (out / "models.json").write_text(json.dumps(previous, indent=1) + "\n")
        write_model_card(previous, out / "README.md")
        return 0
    if not (args.study or args.stream_study or args.fsdd_run):
        parser.error("nothing to ship: name --study, --stream-study and/or --fsdd-run")
    details.mkdir(parents=True, exist_ok=True)
    shipped_by = "python scripts/ship_checkpoints.py " + " ".join(sys.argv[1:])
    lm_dir = out / "lm/an4"
    arpa, lexicon = build([u.text for u in load_split("an4", "train", None)], lm_dir, order=3, name="an4_3gram")
    lm_grid = (args.lm_weights, args.word_scores)
    shipped = {}
    for study, report, models, suffix in ((args.study, args.study_report, STUDY_MODELS, ""),
                                          (args.stream_study, args.stream_study_report, args.stream_models, "_stream")):
        if study:
            summary = json.loads(Path(report).read_text())
            for model in models:
                name = f"an4_{model}{suffix}"
                shipped[name] = ship_study_model(Path(study), summary, model, name, out, details, lexicon, arpa,
                                                 lm_grid, shipped_by, args.average)
    if args.fsdd_run:
        run_dir = Path(args.fsdd_run)
        target = out / "fsdd_lstm.ckpt"
        info = export_checkpoint(run_dir / "checkpoints/best.ckpt", target, overwrite=True)
        shutil.copyfile(ROOT / "recipes/models/fsdd_lstm.yaml", out / "fsdd_lstm.yaml")
        recognizer = Recognizer.from_checkpoint(target)
        shipped["fsdd_lstm"] = {"name": "fsdd_lstm", "file": target.name, "recipe_file": "fsdd_lstm.yaml",
                                "dataset": "fsdd", "bytes": info["bytes"], "sha256": info["sha256"],
                                "parameters": recognizer.model.num_parameters(), **architecture(target),
                                "trained_by": "asr train -c recipes/models/fsdd_lstm.yaml (scripts/reproduce_reports.sh)",
                                "run": run_dir.name, "git_commit": args.fsdd_commit, "shipped_by": shipped_by,
                                **measure("fsdd_lstm", target, "fsdd", details, None, None)}
        print(f"fsdd_lstm: test WER greedy {shipped['fsdd_lstm']['test_greedy']['wer']:.2f} %", flush=True)

    kept = {m["name"]: {"shipped_by": previous.get("made_by"), **m} for m in previous["models"]}
    models = {**kept, **shipped}
    record = {"lm": {"arpa": str(arpa.relative_to(out)), "lexicon": str(lexicon.relative_to(out)),
                     "made_by": "asr lm build --dataset an4 --order 3 (AN4 training transcripts only)"},
              "models": sorted(models.values(), key=lambda m: ORDER.index(m["name"]) if m["name"] in ORDER else 99)}
    ship_onnx(record, out, only=set(shipped))
    ship_step(record, out, only=set(shipped))
    ship_int8(record, out, details, only=set(shipped))
    (out / "models.json").write_text(json.dumps(record, indent=1) + "\n")
    write_model_card(record, out / "README.md")
    print(f"wrote {out / 'models.json'} and {out / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
