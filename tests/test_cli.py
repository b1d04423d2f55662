"""End to end through the `asr` command: train a tiny model on real AN4, resume it, evaluate, bad recipes."""
import json
from pathlib import Path
import subprocess
import sys

import pytest
import torch

from asr.cli import main
from asr.train.checkpoint import CheckpointError
from asr.deploy.inference import Recognizer
from asr.train.runs import read_metrics
from helpers import train_argv


def tiny(run_dir, data_dir, *extra):
    return train_argv("an4_rnn", run_dir, data_dir, *extra, num_layers=2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    run = tmp_path_factory.mktemp("run")
    assert main(tiny(run, data_dir, "--trainer.max_epochs", "2", "--trainer.callbacks+=recorders.StopAfterFirstEpoch")) == 0
    assert torch.load(run / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 3  # 24 utts / 8
    return run


def test_train_writes_logs_and_best_and_last_checkpoints(trained):
    assert (trained / "checkpoints/best.ckpt").is_file() and (trained / "checkpoints/last.ckpt").is_file()
    assert list((trained / "tensorboard").glob("version_0/events.out.tfevents.*"))
    rows = read_metrics(trained)
    steps = [r for r in rows if "grad_norm/total" in r]
    assert len(steps) == 3  # 24 utterances / 8: every step logs its gradient norms
    for r in steps:
        layers = [float(r[f"grad_norm/{k}"]) for k in ("input_projection", "rnn_l0", "rnn_l1", "output")]
        assert float(r["grad_norm/total"]) == pytest.approx(sum(x * x for x in layers) ** 0.5, rel=1e-4)
    assert len([r for r in rows if "lr-AdamW" in r]) == 3  # the one-cycle learning rate, every step
    radii = [r for r in rows if "spectral_radius/l1_reverse" in r]
    assert radii and 0 < float(radii[0]["spectral_radius/l0"]) < 10
    assert any("dev/wer" in r for r in rows)


def test_checkpoint_loads_safely_and_carries_model_and_vocabulary(trained):
    ckpt = torch.load(trained / "checkpoints/best.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["cell"] == "rnn_tanh" and len(ckpt["hyper_parameters"]["vocabulary"]) == 29
    rec = Recognizer.from_checkpoint(trained / "checkpoints/best.ckpt")
    assert rec.model.cell == "rnn_tanh" and rec.extractor.config.n_mels == 80


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": object()}}, evil)
    with pytest.raises(CheckpointError, match="refusing to load"):
        Recognizer.from_checkpoint(evil)


def test_resume_continues_from_the_checkpoint(trained, data_dir):
    assert main(tiny(trained, data_dir, "--trainer.max_epochs", "2", "--ckpt_path",
                     str(trained / "checkpoints/last.ckpt"))) == 0
    assert torch.load(trained / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 6
    rows = [json.loads(line) for line in open(trained / "metrics/version_1.jsonl")]  # the resumed session's log
    assert {r["epoch"] for r in rows if "grad_norm/total" in r} == {1}  # only the second epoch ran again


def test_an_existing_run_is_never_overwritten(trained, data_dir, capsys):
    before = (trained / "checkpoints/best.ckpt").read_bytes()
    assert main(tiny(trained, data_dir)) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {trained / 'checkpoints'} already holds checkpoints of an earlier run. Resume it "
        f"with --ckpt_path {trained / 'checkpoints/last.ckpt'}, or start a new one with another --run_dir.")
    assert (trained / "checkpoints/best.ckpt").read_bytes() == before


def test_resuming_from_a_checkpoint_that_holds_code_is_refused_in_one_line(tmp_path, data_dir, capsys):
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": object()}}, evil)
    assert main(tiny(tmp_path / "r", data_dir, "--ckpt_path", str(evil))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: refusing to load {evil}: it holds Python objects beyond tensors")
    assert not any(line.startswith("Traceback") for line in err)


def test_verbose_adds_the_traceback_to_the_one_line_error(tmp_path, data_dir, capsys):
    assert main(["--verbose", *tiny(tmp_path / "r", data_dir, "--model.cell", "transformer")]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and 'raise UserError(f"unknown cell' in err
    assert err.strip().splitlines()[-1] == "error: unknown cell 'transformer': choose one of rnn_tanh, rnn_relu, lstm, gru, esn"


@pytest.mark.parametrize("argv,message", [(["bench"], "the following arguments are required: WHAT"),
                                          (["lm"], "the following arguments are required: WHAT"),
                                          (["evaluate", "x.ckpt", "--nonsense"], "unrecognized arguments: --nonsense")])
def test_incomplete_commands_get_a_usage_message(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_evaluate_reports_wer_and_writes_per_utterance_results(trained, data_dir, tmp_path, capsys):
    out, summary = tmp_path / "utts.json", tmp_path / "summary.json"
    assert main(["evaluate", str(trained / "checkpoints/best.ckpt"), "--dataset", "an4", "--split", "test",
                 "--data-dir", str(data_dir), "--output", str(out), "--summary-json", str(summary)]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "an4 test: 130 utterances, 773 words" in printed and "WER " in printed
    # progress of long work on stderr: plain lines when it is not a terminal
    assert "decoding an4 test: 130/130 utterances" in captured.err.splitlines()
    rows, s = json.loads(out.read_text()), json.loads(summary.read_text())
    assert len(rows) == 130 and {"id", "reference", "hypothesis", "wer", "substitutions"} <= set(rows[0])
    assert s["substitutions"] + s["deletions"] + s["hits"] == 773
    assert s["wer"] == pytest.approx(100 * (s["substitutions"] + s["deletions"] + s["insertions"]) / 773)


def test_unknown_cell_in_a_recipe(tmp_path, data_dir, capsys):
    assert main(tiny(tmp_path / "r", data_dir, "--model.cell", "transformer")) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: unknown cell 'transformer': choose one of rnn_tanh, rnn_relu, lstm, gru, esn"


def test_missing_data_dir(tmp_path, capsys):
    assert main(tiny(tmp_path / "r", tmp_path / "nowhere")) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: an4 not found under {tmp_path / 'nowhere'}: run `asr download an4 --data-dir {tmp_path / 'nowhere'}`, "
        f"or point --data-dir / ASR_DATA_DIR at a folder holding an4/")


def test_checkpoint_errors_say_what_the_file_is(trained, tmp_path):
    good = (trained / "checkpoints/best.ckpt").read_bytes()
    cases = {"empty.ckpt": (b"", "is empty (0 bytes), not a checkpoint"),
             "random.ckpt": (bytes(range(256)) * 20, "is not a PyTorch checkpoint (not the zip archive torch.save writes)"),
             "truncated.ckpt": (good[: len(good) // 2], "is truncated: a checkpoint whose end is missing")}
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CheckpointError) as e:
            Recognizer.from_checkpoint(path)
        assert str(e.value).startswith(f"{path} {message}"), str(e.value)


def test_evaluating_on_another_corpus_warns(trained, data_dir, tmp_path, capsys):
    assert main(["evaluate", str(trained / "checkpoints/best.ckpt"), "--dataset", "fsdd", "--data-dir", str(data_dir),
                 "--output", str(tmp_path / "rows.csv")]) == 0
    assert (f"warning: {trained / 'checkpoints/best.ckpt'} was trained on an4, and is evaluated on fsdd"
            in capsys.readouterr().err)


def test_a_user_mistake_is_one_line_and_anything_else_is_reported_as_a_bug(monkeypatch, capsys, tmp_path):
    """UserError (asr/base/errors.py) is the user's to fix: one line, exit 2. Any other exception, a ValueError from a
    library included, is ours: the traceback and exit 3, never dressed up as a user error."""
    assert main(["compare", "-c", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: recipe {tmp_path / 'missing.yaml'} not found (the recipes are in recipes/models/, "
                   "recipes/studies/ and recipes/streaming/)\n")

    import asr.study.compare

    def broken(args):
        return int("not a number")  # a ValueError that is not the user's doing

    monkeypatch.setattr(asr.study.compare, "command", broken)
    assert main(["compare", "-c", str(tmp_path / "missing.yaml")]) == 3
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and 'int("not a number")' in err
    assert "error: a bug in asr (ValueError: invalid literal for int() with base 10: 'not a number')" in err


def test_the_command_tree_imports_neither_torch_nor_lightning():
    """`asr --help` and argument errors answer at once: building and parsing the command line imports no torch
    (the beam defaults it shows come from asr/decode/decoders.py, which imports torch only for type checking)."""
    code = ("import sys; from asr.cli import build_parser; build_parser().parse_known_args(['evaluate', 'x.ckpt']); "
            "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("argv, named", [
    (["train", "-c", "recipes/an4_lstm.yaml"], "now recipes/models/an4_lstm.yaml"),
    (["compare", "-c", "recipes/an4_cpu.yaml"], "now recipes/studies/an4_cpu.yaml"),
    (["compare", "-c", "recipes/an4_stream_576_cpu.yaml"], "now reports/an4_stream_576_cpu/recipe.yaml"),
    (["compare", "-c", "recipes/an4_stream_words_cpu.yaml"],
     "now recipes/streaming/an4_lstm_stream.yaml --stage 3 --stop-stage 3"),
    (["wrec-sweep", "-c", "recipes/wrec_sweep.yaml"], "now recipes/studies/wrec_sweep.yaml"),
    (["compare", "-c", "recipes/no_such_study.yaml"], "not found (the recipes are in recipes/models/"),
])
def test_a_recipe_named_by_its_old_path_says_where_it_is_now(argv, named, capsys, monkeypatch):
    """recipes/ was regrouped: a command given a recipe's old path fails in one line that names the new one."""
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    assert main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: recipe ") and named in error, error


def test_training_prints_no_advertisement(data_dir, tmp_path, caplog):
    """Lightning 2.6 advertises a cloud logger whenever a Trainer starts without it: not ours to show a user."""
    import logging

    with caplog.at_level(logging.INFO):
        assert main(train_argv("an4_lstm", tmp_path / "run", data_dir, utterances=8)) == 0
    said = [r.getMessage() for r in caplog.records if r.name.startswith("lightning")]
    assert not [m for m in said if "litlogger" in m or "💡" in m], said
    assert any("GPU available" in m for m in said), said  # Lightning's own lines were seen, so that one would be
