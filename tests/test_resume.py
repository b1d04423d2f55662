"""Training that survives kills, clashes and bad files (through the installed `asr` command, in processes
of their own): kill -9 in mid-epoch and resume exactly; one writer per run directory; a damaged feature
cache rebuilt; unreadable training files named or skipped; invalid recipe values refused by name."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from asr.train.runs import column, read_metrics
from helpers import LSTM, TANH_RNN_CLIPPED, tiny_study, train_argv
from recorders import read_batch_order

TESTS = Path(__file__).parent
ASR = Path(sys.executable).with_name("asr")


def env(**extra):
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra,
            "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}


def train_args(run_dir, data_dir, cache, *extra):
    # 2 layers with dropout 0.3, waveform augmentation and SpecAugment on: random numbers drawn in every step; the
    # plateau schedule halves the learning rate after epoch 1 and ends the run by its rule after epoch 2, a state
    # the resumed run must bring back
    return [str(ASR), *train_argv("an4_lstm", run_dir, data_dir, "--model.dropout", "0.3", "--data.spec_augment", "true",
                                  "--data.augment", "true", "--model.schedule", "plateau",
                                  "--model.plateau_patience", "1", "--model.plateau_halvings", "1",
                                  "--model.plateau_below", "1000",  # count from the first epoch on
                                  "--trainer.callbacks+=recorders.RecordBatchOrder", *extra, cache_dir=cache,
                                  batch_size=4, hidden_size=12, num_layers=2, epochs=3)]


def run(args, timeout=300, **extra_env):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env(**extra_env))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
    """One run trained without a kill, the reference of both kill tests below (how often a run writes last.ckpt
    changes nothing it computes, so one reference serves both)."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    whole = run(train_args(folder / "whole", data_dir, folder / "cache"), BATCH_ORDER_LOG=str(folder / "whole.jsonl"))
    assert whole.returncode == 0, whole.stderr[-2000:]
    return folder


@pytest.mark.parametrize("extra,checkpointed,redone", [
    ((), (0, 6), 3),  # last.ckpt at the end of epoch 0: the kill costs the 3 steps of epoch 1 done so far
    (("--last_every_n_steps", "4"), (1, 8), 1),  # and every 4 steps: it costs 1 step (step 9), resumed in mid-epoch
], ids=["epoch-checkpoint", "step-checkpoint"])
def test_kill_9_in_mid_epoch_then_resume_is_exact(extra, checkpointed, redone, uninterrupted, tmp_path, data_dir):
    cache = uninterrupted / "cache"

    killed_dir, log = tmp_path / "killed", str(tmp_path / "killed.jsonl")
    killed = run(train_args(killed_dir, data_dir, cache, *extra, "--trainer.callbacks+=recorders.KillAtStep"),
                 BATCH_ORDER_LOG=log, KILL_AT_STEP="9")  # 6 steps an epoch: killed in the middle of epoch 1
    assert killed.returncode == -signal.SIGKILL
    last = torch.load(killed_dir / "checkpoints/last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == checkpointed
    resumed = run(train_args(killed_dir, data_dir, cache, *extra, "--ckpt_path", str(killed_dir / "checkpoints/last.ckpt")),
                  BATCH_ORDER_LOG=log)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "not resumable" not in resumed.stderr

    a, b = read_metrics(uninterrupted / "whole"), read_metrics(killed_dir)
    for key in ("train/loss", "lr-AdamW", "grad_norm/total", "train/nonfinite_steps", "dev/wer", "dev/loss"):
        assert column(b, key) == column(a, key), key  # one record, no step twice, every value as uninterrupted
    assert len(column(b, "train/loss")) == 18
    order_a, order_b = read_batch_order(uninterrupted / "whole.jsonl"), read_batch_order(log)
    assert order_b[(0, 0)] == order_a[(0, 0)] and order_b[(0, 2)] == order_a[(0, 2)]
    # epoch 1: three batches before the kill, then from the checkpoint on again, in the same order
    assert order_b[(0, 1)][:3] == order_a[(0, 1)][:3] and order_b[(0, 1)][3:] == order_a[(0, 1)][3 - redone:]
    final_a = torch.load(uninterrupted / "whole/checkpoints/last.ckpt", weights_only=True)
    final_b = torch.load(killed_dir / "checkpoints/last.ckpt", weights_only=True)
    assert all(torch.equal(final_a["state_dict"][k], final_b["state_dict"][k]) for k in final_a["state_dict"])
    assert final_a["nonfinite_steps"] == final_b["nonfinite_steps"]
    assert final_a["plateau"] == final_b["plateau"] and final_a["plateau"]["halved"] == 1
    assert final_b["plateau"]["converged_epoch"] == 2  # no dev progress at epochs 1 and 2: halved, then ended
    lr = [v for _, v in column(b, "lr-AdamW")]
    assert lr[-1] == pytest.approx(lr[6] / 2)  # the rate of epoch 2 is half the peak rate of epoch 1


def test_a_second_training_on_the_same_run_dir_is_refused(tmp_path, data_dir, capsys, monkeypatch):
    from asr.cli import main

    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    # long enough to still be training when the second one starts (it is killed below): no rule ends it early
    slow = train_args(run_dir, data_dir, cache, "--trainer.max_epochs", "100000", "--model.schedule", "onecycle")
    first = subprocess.Popen(slow, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env(BATCH_ORDER_LOG=str(tmp_path / "first.jsonl")))
    try:
        deadline = time.time() + 120
        while not (tmp_path / "first.jsonl").exists() and time.time() < deadline:  # the first one is training
            time.sleep(0.2)
        second = run(train_args(run_dir, data_dir, cache), BATCH_ORDER_LOG=str(tmp_path / "second.jsonl"))
        assert second.returncode == 2
        assert second.stderr.strip().splitlines()[-1].startswith(f"error: {run_dir.resolve()} is being written by process "
                                                                 f"{first.pid} on ")
        assert not (tmp_path / "second.jsonl").exists()
        assert first.poll() is None  # the first one is unharmed and still training
    finally:
        first.kill()
        first.wait()
    # a killed holder leaves no lock behind: resuming works at once
    epochs = torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)["epoch"] + 1
    monkeypatch.setenv("BATCH_ORDER_LOG", str(tmp_path / "third.jsonl"))
    assert main(train_args(run_dir, data_dir, cache, "--trainer.max_epochs", str(epochs), "--model.schedule",
                           "onecycle", "--ckpt_path", str(run_dir / "checkpoints/last.ckpt"))[1:]) == 0  # in-process
    # resuming with a schedule that has already ended says so in one line
    assert main(train_args(run_dir, data_dir, cache, "--trainer.max_epochs", "1", "--model.schedule", "onecycle",
                           "--ckpt_path", str(run_dir / "checkpoints/last.ckpt"))[1:]) == 2
    assert "error: You restored a checkpoint with current_epoch=" in capsys.readouterr().err


def test_a_truncated_feature_cache_is_named_and_rebuilt(data_dir, tmp_path, caplog):
    from asr.data.datamodule import ASRDataModule

    kwargs = dict(dataset="an4", data_dir=str(data_dir), max_utterances=6, cache_dir=str(tmp_path))
    original = ASRDataModule(**kwargs).load("dev")
    (cache,) = tmp_path.glob("features-*.pt")
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    with caplog.at_level("WARNING"):
        rebuilt = ASRDataModule(**kwargs).load("dev")
    assert f"feature cache {cache} is damaged" in caplog.text and "rebuilding it from the audio" in caplog.text
    assert all(torch.equal(a.log_mel, b.log_mel) for a, b in zip(original.examples, rebuilt.examples))
    assert torch.load(cache, weights_only=True)  # whole again


@pytest.fixture
def corpus_with_a_bad_file(data_dir, tmp_path):
    """A copy of AN4 with the first two training speakers only (the first becomes dev), one of the second
    speaker's WAV files replaced by garbage."""
    from asr.data.corpora import load_split

    train = load_split("an4", "train", data_dir) + load_split("an4", "dev", data_dir)
    speakers = sorted({u.speaker for u in train})[:2]
    keep = [u for u in train if u.speaker in speakers]
    root = tmp_path / "data/an4"
    (root / "etc").mkdir(parents=True)
    lines = [line for line in (data_dir / "an4/etc/an4_train.transcription").read_text().splitlines()
             if any(f"({u.id})" in line for u in keep)]
    (root / "etc/an4_train.transcription").write_text("\n".join(lines) + "\n")
    (root / "etc/an4_test.transcription").write_text("")
    for u in keep:
        target = root / u.path.relative_to(data_dir / "an4")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(u.path.read_bytes())
    bad = next(root / u.path.relative_to(data_dir / "an4") for u in keep if u.speaker == speakers[1])
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 3)
    return tmp_path / "data", bad, sum(u.speaker == speakers[1] for u in keep)


def test_an_unreadable_training_file_is_named_or_skipped_and_reported(corpus_with_a_bad_file, tmp_path, caplog):
    from asr.data.datamodule import ASRDataModule

    data_dir, bad, train_files = corpus_with_a_bad_file
    with pytest.raises(ValueError, match=rf"^{bad} \(utterance {bad.stem}\): unreadable or corrupt audio .*"
                                         r"set data.bad_audio: skip to go on without it"):
        ASRDataModule(data_dir=str(data_dir), cache_dir=str(tmp_path / "cache")).load("train")
    with caplog.at_level("WARNING"):
        train = ASRDataModule(data_dir=str(data_dir), cache_dir=str(tmp_path / "cache"), bad_audio="skip").load("train")
    ids = [e.id for e in train.examples]
    assert bad.stem not in ids and len(ids) == train_files - 1  # every other file is kept
    assert f"1 audio file(s) skipped (data.bad_audio: skip): {bad} (unreadable or corrupt audio" in caplog.text
    assert not list((tmp_path / "cache").glob("*.pt"))  # a split with a skipped file is not cached


@pytest.mark.parametrize("option,value,message", [
    ("--data.batch_size", "-1", "error: data.batch_size must be at least 1, got -1"),
    ("--trainer.max_epochs", "0", "error: trainer.max_epochs must be at least 1 (or -1 / null for no limit), got 0: "
                                  "nothing would be trained"),
    ("--model.dropout", "1.5", "error: model.dropout must be in [0, 1), got 1.5"),
    ("--data.bad_audio", "ignore", "error: data.bad_audio must be stop or skip, got 'ignore'"),
])
def test_invalid_recipe_values_are_refused_by_name(option, value, message, tmp_path, data_dir, capsys):
    from asr.cli import main

    args = train_args(tmp_path / "run", data_dir, tmp_path / "cache", option, value)[1:]
    assert main(args) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == message
    assert not (tmp_path / "run/checkpoints").exists()


def test_a_study_killed_at_any_point_ends_as_an_uninterrupted_one(tmp_path, data_dir):
    recipe = tiny_study("killed", data_dir, tmp_path / "cache", {"tanh_rnn_clipped": TANH_RNN_CLIPPED, "lstm": LSTM},
                        model={"hidden_size": 12, "num_layers": 2, "dropout": 0.3},
                        data={"batch_size": 4, "spec_augment": True}, trainer={"max_epochs": 4})
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))  # tanh RNN first, then the LSTM

    def study(name):
        return [str(ASR), "compare", "-c", str(path), "--runs-dir", str(tmp_path / name), "--report-dir",
                str(tmp_path / f"{name}-report")]

    assert run(study("whole")).returncode == 0
    killed = subprocess.Popen(study("killed"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    marker = tmp_path / "killed/lstm/seed0/checkpoints/last.ckpt"  # the second model is in its second epoch
    deadline = time.time() + 240
    while not marker.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "killed/lstm/seed0/result.json").exists()  # it was killed before the end
    again = run(study("killed"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "tanh_rnn_clipped seed 0: finished earlier" in again.stdout and "lstm seed 0: resuming from" in again.stdout

    whole = json.loads((tmp_path / "whole-report/summary.json").read_text())
    resumed = json.loads((tmp_path / "killed-report/summary.json").read_text())
    for name in recipe["models"]:
        a, b = whole["models"][name]["runs"][0], resumed["models"][name]["runs"][0]
        for key in ("test_wer", "test_cer", "best_dev_wer", "selected_epoch", "spectral_radius", "gradient_flow",
                    "gradient_flow_curve", "nonfinite_steps", "steps", "grad_norm"):
            assert a[key] == b[key], (name, key)
        for key in ("train/loss", "lr-AdamW", "grad_norm/total", "dev/wer"):
            assert column(read_metrics(a["run_dir"]), key) == column(read_metrics(b["run_dir"]), key), (name, key)
        flows = [json.loads((Path(r["run_dir"]) / "gradient_flow.json").read_text()) for r in (a, b)]
        assert flows[0]["curves"] == flows[1]["curves"]
        assert [c["epoch"] for c in flows[1]["curves"]] == [-1, 0, 1, 2, 3]  # initialisation kept, once


def test_a_run_that_converged_trains_no_further_when_resumed(tmp_path, data_dir):
    """A study killed after a run's convergence rule ended it but before its result was written resumes that run
    from last.ckpt: it must not train another epoch (which could move best.ckpt and the run's results)."""
    from asr.cli import main
    from asr.train.checkpoint import read_checkpoint

    run = tmp_path / "run"
    rule = ["--model.schedule", "plateau", "--model.plateau_patience", "1", "--model.plateau_halvings", "0",
            "--model.plateau_min_delta", "1000", "--model.plateau_below", "1000"]  # converges at epoch 1
    assert main(train_argv("an4_lstm", run, data_dir, *rule, utterances=16, epochs=5)) == 0
    last = run / "checkpoints/last.ckpt"
    before = read_checkpoint(last)
    assert before["plateau"]["converged_epoch"] == 1 and before["epoch"] == 1
    best = (run / "checkpoints/best.ckpt").read_bytes()
    assert main(train_argv("an4_lstm", run, data_dir, *rule, "--ckpt_path", str(last), utterances=16, epochs=5)) == 0
    after = read_checkpoint(last)
    assert after["global_step"] == before["global_step"] and after["epoch"] == before["epoch"]
    assert (run / "checkpoints/best.ckpt").read_bytes() == best
