"""Multi-GPU readiness: the same recipe runs 2-process DDP (here on CPU, gloo) through trainer settings alone,
and the two ranks split every epoch's utterances between them, in a new order each epoch: held in memory, or
streamed from shards (asr/data/shards.py), each rank reading its own."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asr.train.runs import column, read_metrics
from helpers import train_argv
from recorders import read_batch_order

TESTS = Path(__file__).parent


@pytest.mark.parametrize("storage", ["memory", "shards"])
def test_two_process_ddp_shards_every_epoch_disjointly(storage, tmp_path, data_dir):
    asr = Path(sys.executable).with_name("asr")
    cmd = [str(asr), *train_argv("an4_gru", tmp_path, data_dir, "--trainer.devices", "2", "--trainer.strategy", "ddp",
                                 "--trainer.callbacks+=recorders.RecordBatchOrder", "--data.storage", storage,
                                 "--data.shard_size", "4", utterances=32, batch_size=4, epochs=2)]
    log = tmp_path / "order.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BATCH_ORDER_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in result.stdout + result.stderr
    ckpt = torch.load(tmp_path / "checkpoints/last.ckpt", weights_only=True)
    # 32 training utterances in batches of 4 shared by 2 ranks (in shards: 4 shards of 4 each): 4 steps per epoch
    assert ckpt["global_step"] == 8
    assert len(column(read_metrics(tmp_path), "grad_norm/total")) == 8
    order = read_batch_order(log)
    assert sorted(order) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for epoch in (0, 1):
        shards = [[i for batch in order[(rank, epoch)] for i in batch] for rank in (0, 1)]
        assert not set(shards[0]) & set(shards[1])  # disjoint
        assert len(shards[0]) == len(shards[1]) == 16
        assert len(set(shards[0]) | set(shards[1])) == 32  # together: every utterance, once
    assert order[(0, 0)] != order[(0, 1)] and order[(1, 0)] != order[(1, 1)]
