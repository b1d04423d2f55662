"""Shared fixtures. Tests read the real corpora from $ASR_DATA_DIR (CI: ../shared/data) and fail loudly,
never skip, when they are missing: a green run must mean the tests ran on real speech."""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items):
    """Every test that reads a corpus (through the data_dir fixture, however indirectly) is marked `corpora`:
    `make test-fast` runs the others (pytest -m "not corpora")."""
    for item in items:
        if "data_dir" in item.fixturenames:
            item.add_marker(pytest.mark.corpora)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """$ASR_DATA_DIR (CI: ../shared/data), else the repository's data/ where `make test` downloads the corpora."""
    path = Path(os.environ.get("ASR_DATA_DIR") or REPO / "data")
    missing = [name for name in ("an4", "fsdd") if not (path / name).is_dir()]
    if missing:
        pytest.fail(f"test data missing: {', '.join(missing)} not under {path}. Run `make test` (it downloads them into "
                    f"data/), or set ASR_DATA_DIR to a folder holding an4/ and fsdd/.")
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
    from helpers import train_argv

    run = tmp_path_factory.mktemp("tiny_run")
    rc = main(train_argv("an4_lstm", run, data_dir, utterances=16, batch_size=None))
    assert rc == 0
    return run / "checkpoints/last.ckpt"


@pytest.fixture(scope="session")
def overfit(tmp_path_factory, data_dir) -> SimpleNamespace:
    """A small LSTM trained until it has memorised 8 real AN4 training utterances (1.2-2.2 s, three words or
    more), saved as a checkpoint: the learning test's model, and a model whose transcripts have words in
    them for the transcription tests. Unidirectional, its features normalised by the training split's
    statistics: it can also stream (tests/test_streaming.py). About half a minute on 2 cores."""
    import lightning as L

    from asr.data.corpora import load_split
    from asr.data.datamodule import ASRDataModule, FeatureDataset
    from asr.train.module import ASRModule

    out = tmp_path_factory.mktemp("overfit")
    data = ASRDataModule(dataset="an4", data_dir=str(data_dir), batch_size=8, spec_augment=False,
                         cache_dir=str(out / "cache"), normalize="global")
    eight = [e for e in data.load("train").examples if 120 <= e.log_mel.shape[0] <= 220 and len(e.text.split()) >= 3][:8]
    assert len(eight) == 8
    data.datasets["train"] = FeatureDataset(eight)
    L.seed_everything(0, verbose=False)
    model = ASRModule(input_dim=data.feature_dim, cell="lstm", hidden_size=128, num_layers=1, dropout=0.0,
                      bidirectional=False, learning_rate=5e-3, weight_decay=0.0, warmup_fraction=0.1)
    trainer = L.Trainer(max_steps=800, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", limit_val_batches=0,
                        use_distributed_sampler=False)
    trainer.fit(model, datamodule=data)
    checkpoint = out / "overfit.ckpt"
    trainer.save_checkpoint(checkpoint, weights_only=True)
    by_id = {u.id: u for u in load_split("an4", "train", data_dir)}
    return SimpleNamespace(checkpoint=checkpoint, utterances=[by_id[e.id] for e in eight])
