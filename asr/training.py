"""What every training run shares, whether started by `asr train` or by `asr compare`: where its logs
and checkpoints go, and how the best checkpoint is chosen."""
from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger


def run_loggers(run_dir: Path) -> list:
    """CSV (read back by the study) and TensorBoard (for people), both under run_dir."""
    return [CSVLogger(run_dir, name="csv"), TensorBoardLogger(run_dir, name="tensorboard")]


def run_callbacks(run_dir: Path) -> list:
    """best.ckpt (lowest dev WER: model selection never looks at test) and last.ckpt; the learning rate."""
    return [ModelCheckpoint(dirpath=Path(run_dir) / "checkpoints", filename="best", monitor="dev/wer", mode="min",
                            save_top_k=1, save_last=True, auto_insert_metric_name=False),
            LearningRateMonitor(logging_interval="step")]


def holds_checkpoints(run_dir: Path) -> bool:
    """True when run_dir already holds checkpoints: a new run must never overwrite them."""
    checkpoints = Path(run_dir) / "checkpoints"
    return checkpoints.is_dir() and any(checkpoints.iterdir())
