"""Shared fixtures. Tests read the real corpora from $ASR_DATA_DIR (CI: ../shared/data) and fail loudly,
never skip, when they are missing: a green run must mean the tests ran on real speech."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ.get("ASR_DATA_DIR") or REPO.parent / "shared" / "data")
    missing = [name for name in ("an4", "fsdd") if not (path / name).is_dir()]
    if missing:
        pytest.fail(f"test data missing: {', '.join(missing)} not under {path}. Set ASR_DATA_DIR to a folder holding "
                    f"an4/ and fsdd/ (CI: ../shared/data), or run `asr download an4 fsdd --data-dir DIR`.")
    return path


@pytest.fixture(scope="session")
def an4_test_wav(data_dir) -> Path:
    return data_dir / "an4/wav/an4test_clstk/fcaw/an406-fcaw-b.wav"


@pytest.fixture
def tone(tmp_path):
    """Writes a short synthetic WAV and returns its path: write(name, seconds, rate, channels, subtype)."""
    def write(name="tone.wav", seconds=1.0, rate=16000, channels=1, subtype="PCM_16"):
        t = np.arange(int(seconds * rate)) / rate
        x = 0.3 * np.sin(2 * np.pi * 440 * t)
        x = np.stack([x] * channels, axis=1) if channels > 1 else x
        path = tmp_path / name
        soundfile.write(path, x, rate, subtype=subtype)
        return path
    return write


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, data_dir) -> Path:
    """A tiny LSTM trained one epoch on 16 AN4 utterances: enough for the plumbing, not for accuracy."""
    from asr.cli import main

    run = tmp_path_factory.mktemp("tiny_run")
    rc = main(["train", "-c", str(REPO / "recipes/an4_lstm.yaml"), "--run_dir", str(run), "--data.data_dir",
               str(data_dir), "--data.max_utterances", "16", "--data.cache_dir", str(run / "cache"),
               "--model.hidden_size", "16", "--model.num_layers", "1", "--trainer.max_epochs", "1",
               "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu"])
    assert rc == 0
    return run / "checkpoints/last.ckpt"
