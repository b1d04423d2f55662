"""Multi-GPU readiness: the same recipe runs 2-process DDP (here on CPU, gloo) through trainer settings alone."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import torch


def test_two_process_ddp_trains_a_few_steps(tmp_path, data_dir):
    asr = Path(sys.executable).with_name("asr")
    cmd = [str(asr), "train", "-c", "recipes/an4_gru.yaml", "--run_dir", str(tmp_path), "--data.data_dir", str(data_dir),
           "--data.max_utterances", "32", "--data.batch_size", "4", "--data.cache_dir", str(tmp_path / "cache"),
           "--model.hidden_size", "16", "--model.num_layers", "1", "--trainer.max_epochs", "1",
           "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
           "--trainer.enable_progress_bar", "false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in result.stdout + result.stderr
    ckpt = torch.load(tmp_path / "checkpoints/last.ckpt", weights_only=True)
    # 32 training utterances in batches of 4 shared by 2 ranks: 4 steps per epoch
    assert ckpt["global_step"] == 4
    rows = list(csv.DictReader(open(tmp_path / "csv/version_0/metrics.csv")))
    assert len([r for r in rows if r["grad_norm/total"]]) == 4
