"""The shipped checkpoints (checkpoints/): each file is the one its card describes, loads without running
code, and gives the WER its card records, to the last word error; and the script that makes them, run on a
small study, exports, measures and describes what it should."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from asr.base.files import sha256
from asr.train.checkpoint import read_checkpoint
from asr.cli import main
from asr.decode.decoders import BeamSearchDecoder
from asr.deploy.inference import Recognizer
from helpers import LSTM, TANH_RNN_CLIPPED, tiny_study

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "checkpoints"
ASR = Path(sys.executable).with_name("asr")
COUNTS = ("wer", "cer", "substitutions", "deletions", "insertions", "reference_words", "utterances")


def shipped_models() -> list[dict]:
    return json.loads((SHIPPED / "models.json").read_text())["models"]


def same_rates(measured: dict, recorded: dict) -> None:
    assert {k: measured[k] for k in COUNTS} == {k: recorded[k] for k in COUNTS}


def test_the_card_lists_every_shipped_file_with_its_size_and_hash():
    models = shipped_models()
    assert {m["name"] for m in models} >= {"an4_lstm", "an4_gru", "an4_tanh_rnn_clipped", "an4_lstm_stream",
                                            "an4_tanh_rnn_clipped_stream", "fsdd_lstm"}
    assert {p.name for p in SHIPPED.glob("*.ckpt")} == {m["file"] for m in models}
    card = (SHIPPED / "README.md").read_text()
    total = 0
    for m in models:
        path = SHIPPED / m["file"]
        assert path.stat().st_size == m["bytes"] and sha256(path) == m["sha256"]
        assert m["sha256"] in card and f"{m['test_greedy']['wer']:.1f}" in card
        saved = read_checkpoint(path)  # weights_only=True
        assert "optimizer_states" not in saved and "loops" not in saved
        assert (SHIPPED / m["recipe_file"]).is_file()
        total += m["bytes"]
    assert total < 50e6


def test_the_card_says_which_symbols_each_model_outputs():
    """Characters or words (`data.units`): read from each shipped file's vocabulary, not from the recipe."""
    from asr.data.text import is_word_vocabulary

    card = (SHIPPED / "README.md").read_text()
    for m in shipped_models():
        section = card.split(f"### {m['name']}\n", 1)[1].split("\n### ", 1)[0]
        words = is_word_vocabulary(read_checkpoint(SHIPPED / m["file"])["hyper_parameters"]["vocabulary"])
        assert ("word CTC" in section, "character CTC" in section) == (words, not words), m["name"]


@pytest.mark.parametrize("name", ["an4_lstm", "an4_gru", "an4_tanh_rnn_clipped", "an4_lstm_stream",
                                  "an4_tanh_rnn_clipped_stream", "fsdd_lstm"])
def test_a_shipped_checkpoint_reproduces_its_recorded_test_wer(name, data_dir):
    model = next(m for m in shipped_models() if m["name"] == name)
    recognizer = Recognizer.from_checkpoint(SHIPPED / model["file"])
    summary, _ = recognizer.evaluate(model["dataset"], "test", str(data_dir))
    same_rates(summary, model["test_greedy"])
    if "decoder" in model:  # beam search with the shipped LM, at the weights picked on dev
        lm = json.loads((SHIPPED / "models.json").read_text())["lm"]
        d = model["decoder"]
        decoder = BeamSearchDecoder(recognizer.tokenizer.vocabulary, d["beam_size"], str(SHIPPED / lm["lexicon"]),
                                    str(SHIPPED / lm["arpa"]), d["lm_weight"], d["word_score"])
        summary, _ = recognizer.evaluate(model["dataset"], "test", str(data_dir), decoder=decoder)
        same_rates(summary, model["test_beam_lm"])


def test_the_quick_start_works_on_the_shipped_lstm(data_dir, an4_test_wav, tmp_path):
    """README's quick start through the installed command: transcribe one file, evaluate on AN4 test."""
    env = {**os.environ, "ASR_DATA_DIR": str(data_dir)}
    done = subprocess.run([str(ASR), "transcribe", str(SHIPPED / "an4_lstm.ckpt"), str(an4_test_wav)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    reference = "RUBOUT G M E F THREE NINE".split()  # an406-fcaw-b's transcript
    words = done.stdout.split()
    assert sum(w in reference for w in words) >= 4, done.stdout  # a trained model, not an empty line
    summary_file = tmp_path / "summary.json"
    done = subprocess.run([str(ASR), "evaluate", str(SHIPPED / "an4_lstm.ckpt"), "--split", "test", "--output",
                           str(tmp_path / "rows.csv"), "--summary-json", str(summary_file)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    recorded = next(m for m in shipped_models() if m["name"] == "an4_lstm")["test_greedy"]
    same_rates(json.loads(summary_file.read_text()), recorded)


def test_export_keeps_the_model_and_drops_the_training_state(checkpoint, tmp_path, data_dir):
    target = tmp_path / "small.ckpt"
    assert main(["export", str(checkpoint), str(target)]) == 0
    saved = read_checkpoint(target)
    assert set(saved) == {"epoch", "global_step", "pytorch-lightning_version", "hyper_parameters",
                          "datamodule_hyper_parameters", "state_dict", "exported_from"}
    assert all(k.startswith("model.") for k in saved["state_dict"]) and "data_dir" not in saved["datamodule_hyper_parameters"]
    assert target.stat().st_size < checkpoint.stat().st_size / 2
    features = [torch.randn(50, 240), torch.randn(31, 240)]
    before = Recognizer.from_checkpoint(checkpoint).log_probs(features)
    after = Recognizer.from_checkpoint(target).log_probs(features)
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    # an existing file is kept unless --force
    target.write_bytes(b"mine")
    assert main(["export", str(checkpoint), str(target)]) == 2
    assert target.read_bytes() == b"mine"
    assert main(["export", str(checkpoint), str(target), "--force"]) == 0
    assert read_checkpoint(target)["exported_from"]["sha256"] == sha256(checkpoint)


def test_a_run_keeps_its_dev_best_epochs_and_export_averages_them(tmp_path, data_dir):
    """`asr train` keeps each epoch's weights in checkpoints/top/ (up to AVERAGED, those of lowest dev WER), and
    `asr export RUN/checkpoints/top OUT.ckpt` writes their tensor-by-tensor mean, which a recogniser loads."""
    from asr.train.runs import AVERAGED
    from helpers import train_argv

    run = tmp_path / "run"
    assert main(train_argv("an4_lstm", run, data_dir, utterances=16, epochs=3)) == 0
    top = sorted((run / "checkpoints/top").glob("*.ckpt"))
    assert len(top) == min(3, AVERAGED)
    weights = [read_checkpoint(p)["state_dict"] for p in top]
    assert not torch.equal(weights[0]["model.output.weight"], weights[-1]["model.output.weight"])  # epochs differ
    target = tmp_path / "averaged.ckpt"
    assert main(["export", str(run / "checkpoints/top"), str(target)]) == 0
    averaged = read_checkpoint(target)
    assert set(averaged["state_dict"]) == {k for k in weights[0] if k.startswith("model.")}
    for key, value in averaged["state_dict"].items():
        torch.testing.assert_close(value, sum(w[key] for w in weights) / len(weights))
    assert [f["sha256"] for f in averaged["exported_from"]["averaged"]] == [sha256(p) for p in top]
    (log_probs,) = Recognizer.from_checkpoint(target).log_probs([torch.randn(40, 240)])
    assert torch.isfinite(log_probs).all()

    # checkpoints of another model are not averaged in, and an .onnx file comes from one checkpoint only
    other = tmp_path / "other"
    assert main(train_argv("an4_lstm", other, data_dir, utterances=16, hidden_size=12)) == 0
    assert main(["export", str(top[0]), str(other / "checkpoints/best.ckpt"), str(tmp_path / "mixed.ckpt")]) == 2
    assert not (tmp_path / "mixed.ckpt").exists()
    assert main(["export", str(run / "checkpoints/top"), str(tmp_path / "averaged.onnx")]) == 2


def test_ship_script_exports_the_best_dev_seed_and_writes_a_card_that_matches(tmp_path, data_dir):
    """scripts/ship_checkpoints.py on a small study (the three study models, two LSTM seeds)."""
    recipe = tiny_study("small", data_dir, tmp_path / "cache", {
        "lstm": {**LSTM, "seeds": [0, 1]}, "gru": {"model": {"cell": "gru"}}, "tanh_rnn_clipped": TANH_RNN_CLIPPED},
        baseline="tanh_rnn_clipped", model={"hidden_size": 8}, trainer={"max_epochs": 1})
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    runs, report, out = tmp_path / "runs", tmp_path / "report", tmp_path / "shipped"
    assert main(["compare", "-c", str(path), "--runs-dir", str(runs), "--report-dir", str(report)]) == 0
    done = subprocess.run([sys.executable, str(REPO / "scripts/ship_checkpoints.py"), "--study", str(runs),
                           "--study-report", str(report / "summary.json"), "--out", str(out),
                           "--details", str(tmp_path / "details"), "--lm-weights", "1", "--word-scores", "0"],
                          capture_output=True, text=True, env={**os.environ, "ASR_DATA_DIR": str(data_dir)},
                          timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    record = json.loads((out / "models.json").read_text())
    lstm = next(m for m in record["models"] if m["name"] == "an4_lstm")
    results = [json.loads((runs / f"lstm/seed{s}/result.json").read_text()) for s in (0, 1)]
    chosen = min(results, key=lambda r: (r["best_dev_wer"], r["seed"]))
    assert lstm["run"].startswith(f"lstm seed {chosen['seed']} ")
    assert read_checkpoint(out / "an4_lstm.ckpt")["exported_from"]["sha256"] == sha256(
        runs / f"lstm/seed{chosen['seed']}/checkpoints/best.ckpt")
    assert yaml.safe_load((out / "an4_lstm.yaml").read_text())["seed_everything"] == chosen["seed"]
    # the recorded test WER is the study's own measurement of the same weights
    assert lstm["test_greedy"]["wer"] == pytest.approx(chosen["test_wer"], abs=1e-9)
    card = (out / "README.md").read_text()
    for m in record["models"]:
        assert m["sha256"] == sha256(out / m["file"]) and f"`{m['file']}`" in card
        assert m["decoder"] == {"beam_size": 50, "lm_weight": 1.0, "word_score": 0.0}
        assert {"dev_greedy", "test_greedy", "dev_beam_lm", "test_beam_lm"} <= set(m)
    assert (out / record["lm"]["arpa"]).is_file() and (out / record["lm"]["lexicon"]).is_file()
    assert (tmp_path / "details/an4_gru.test.greedy.csv").is_file()



def test_ship_script_ships_the_averaged_epochs_of_a_stream_study_where_dev_says_so(tmp_path, data_dir):
    """--stream-study of LSTMs alone (--stream-models lstm) with --average: the shipped weights are the average of
    the run's dev-best epochs unless its best epoch alone has the lower dev WER, and the card says which. The
    study is a fine-tune (model.init_from) of another one's run: that stage's recipe ships beside it, in order."""
    model = {"hidden_size": 8, "bidirectional": False}
    first = tiny_study("stream1", data_dir, tmp_path / "cache", {"lstm": LSTM}, trainer={"max_epochs": 2},
                       model=model, data={"normalize": "global"})
    runs1 = tmp_path / "runs1"
    (tmp_path / "stream1.yaml").write_text(yaml.safe_dump(first, sort_keys=False))
    assert main(["compare", "-c", str(tmp_path / "stream1.yaml"), "--runs-dir", str(runs1),
                 "--report-dir", str(tmp_path / "report1")]) == 0
    recipe = tiny_study("stream", data_dir, tmp_path / "cache", {"lstm": LSTM}, trainer={"max_epochs": 3},
                        model={**model, "init_from": str(runs1 / "lstm/seed0/checkpoints/best.ckpt")},
                        data={"normalize": "global"})
    path = tmp_path / "stream.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    runs, report, out = tmp_path / "runs", tmp_path / "report", tmp_path / "shipped"
    assert main(["compare", "-c", str(path), "--runs-dir", str(runs), "--report-dir", str(report)]) == 0
    done = subprocess.run([sys.executable, str(REPO / "scripts/ship_checkpoints.py"), "--stream-study", str(runs),
                           "--stream-study-report", str(report / "summary.json"), "--stream-models", "lstm",
                           "--average", "--out", str(out), "--details", str(tmp_path / "details"),
                           "--lm-weights", "1", "--word-scores", "0"],
                          capture_output=True, text=True, env={**os.environ, "ASR_DATA_DIR": str(data_dir)},
                          timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (lstm,) = json.loads((out / "models.json").read_text())["models"]
    assert lstm["name"] == "an4_lstm_stream"
    top = runs / "lstm/seed0/checkpoints/top"
    assert main(["export", str(top), str(tmp_path / "averaged.ckpt")]) == 0
    dev = {kind: Recognizer.from_checkpoint(path).evaluate("an4", "dev", data_dir)[0]["wer"]
           for kind, path in (("best", runs / "lstm/seed0/checkpoints/best.ckpt"),
                              ("averaged", tmp_path / "averaged.ckpt"))}
    made_from = read_checkpoint(out / "an4_lstm_stream.ckpt")["exported_from"]
    assert lstm["dev_greedy"]["wer"] == pytest.approx(min(dev.values()), abs=1e-9)
    if dev["averaged"] <= dev["best"]:
        assert [f["sha256"] for f in made_from["averaged"]] == [sha256(p) for p in sorted(top.glob("*.ckpt"))]
        assert lstm["weights"].startswith("the average of epochs ")
    else:
        assert made_from["sha256"] == sha256(runs / "lstm/seed0/checkpoints/best.ckpt")
        assert lstm["weights"] == f"epoch {lstm['selected_epoch']} (lowest dev WER)"
    card = (out / "README.md").read_text()
    assert f"weights of {lstm['weights']}" in card
    assert not list(out.glob(".*.ckpt"))  # the candidate average is not left behind
    # the stage before: its recipe as it ran, named in the record and the card; training time counts both stages
    (stage,) = lstm["stages"]
    assert stage["recipe_file"] == "an4_lstm_stream.stage1.yaml" and stage["run"] == str(runs1 / "lstm/seed0")
    assert (out / stage["recipe_file"]).read_text() == (runs1 / "lstm/seed0/config.yaml").read_text()
    assert "trained in 2 stages" in card and "`asr train -c checkpoints/an4_lstm_stream.stage1.yaml`" in card
    seconds = [json.loads((r / "lstm/seed0/result.json").read_text())["train_seconds"] for r in (runs1, runs)]
    assert lstm["train_seconds"] == pytest.approx(sum(seconds))

def test_asr_serve_without_checkpoints_serves_the_shipped_an4_models(monkeypatch):
    """`asr serve` as a user types it: the page gets the five shipped AN4 models (not the FSDD one), each the
    shipped file's weights, the two streaming ones on its Live tab too, and listens on this machine only."""
    import asr.app.serve

    served = {}

    class Page:
        def launch(self, **options):
            served["options"] = options

    def build_app(models, reports):
        served["models"] = models
        return Page()

    monkeypatch.setattr(asr.app.serve, "build_app", build_app)
    assert main(["serve"]) == 0
    models = served["models"]
    assert [m.name for m in models] == ["an4_gru", "an4_lstm", "an4_lstm_stream", "an4_tanh_rnn_clipped",
                                        "an4_tanh_rnn_clipped_stream"]
    assert [m.name for m in asr.app.serve.live_models(models)] == ["an4_lstm_stream", "an4_tanh_rnn_clipped_stream"]
    for m in models:
        shipped = read_checkpoint(REPO / "checkpoints" / f"{m.name}.ckpt")["state_dict"]
        for key, value in m.recognizer.model.state_dict().items():
            assert torch.equal(value, shipped[f"model.{key}"]), (m.name, key)
    assert served["options"]["server_name"] == "127.0.0.1" and served["options"]["share"] is False
