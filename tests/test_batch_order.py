"""The batch order through the real Trainer: a new order every epoch, and a resumed run continues with
the order the uninterrupted run would have had. (Two-process DDP: tests/test_ddp.py.)"""
import pytest
import torch

from asr.cli import main
from helpers import train_argv
from recorders import read_batch_order


def tiny_train(run_dir, data_dir, *extra):
    return train_argv("an4_rnn", run_dir, data_dir, "--trainer.callbacks+=recorders.RecordBatchOrder", *extra,
                      cache_dir=run_dir.parent / "cache", batch_size=4, hidden_size=8, epochs=3)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
    base = tmp_path_factory.mktemp("order")
    log = base / "uninterrupted.jsonl"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BATCH_ORDER_LOG", str(log))
        assert main(tiny_train(base / "run", data_dir)) == 0
    return base, read_batch_order(log)


def test_every_epoch_sees_every_utterance_in_a_new_order(uninterrupted):
    _, order = uninterrupted
    epochs = [order[(0, e)] for e in range(3)]
    for batches in epochs:
        ids = [i for batch in batches for i in batch]
        assert len(batches) == 6 and len(ids) == 24 and len(set(ids)) == 24  # 24 utterances / 4, each once
    assert epochs[0] != epochs[1] != epochs[2] != epochs[0]
    assert [set(map(tuple, e)) for e in epochs].count(set(map(tuple, epochs[0]))) < 3  # not just the same batches reshuffled


def test_last_checkpoint_holds_the_end_of_the_last_epoch(uninterrupted):
    base, _ = uninterrupted
    last = torch.load(base / "run/checkpoints/last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, 18)  # 3 epochs of 6 steps, even when dev WER stopped improving


def test_a_resumed_run_continues_with_the_uninterrupted_order(uninterrupted, data_dir, monkeypatch):
    base, expected = uninterrupted
    log = base / "resumed.jsonl"
    monkeypatch.setenv("BATCH_ORDER_LOG", str(log))
    run = base / "interrupted"
    assert main(tiny_train(run, data_dir, "--trainer.callbacks+=recorders.StopAfterFirstEpoch")) == 0
    assert main(tiny_train(run, data_dir, "--ckpt_path", str(run / "checkpoints/last.ckpt"))) == 0
    resumed = read_batch_order(log)
    assert sorted(resumed) == [(0, 0), (0, 1), (0, 2)]
    assert [resumed[(0, e)] for e in range(3)] == [expected[(0, e)] for e in range(3)]
