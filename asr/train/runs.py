"""A training run: the Trainer that every run gets, where its logs and checkpoints go, one writer at a time,
and its logged metrics read back.

Every run, started by `asr train` (asr/train/fit.py), `asr compare` or a benchmark, gets its Trainer arguments
from `trainer_arguments` here, so they cannot drift apart: the metrics log and TensorBoard, best.ckpt and last.ckpt,
exact resume, atomic checkpoint writes and the gradient-across-time monitor, always on.

A run survives a kill: last.ckpt is written (atomically) at the end of every epoch and holds, besides
weights, optimiser, schedule and loop counters, every random number generator's state, so a run resumed
from it with `--ckpt_path` takes the very steps the uninterrupted run would have taken. One process at
a time may write a run directory (a lock the operating system releases when its holder dies).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, Timer
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from asr.train.callbacks import AtomicCheckpointIO, GradientFlowMonitor, LogsWithCheckpoints, RandomState
from asr.base.errors import UserError


class NoAdvertisement(logging.Filter):
    """Lightning 2.6 logs an advertisement for its cloud logger whenever a Trainer starts without it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


# Lightning's rank-zero messages go through one of these loggers, whichever of its modules was imported last.
for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(NoAdvertisement())


class MetricsLog(Logger):
    """Every metric the run logs, one JSON line per logging call, in <run_dir>/metrics/version_<N>.jsonl (a
    resumed run starts the next version), read back by `read_metrics`. Lines are only ever appended, as Lightning
    saves its loggers and whenever a checkpoint is written (LogsWithCheckpoints): a kill can cut the line being
    written, never an earlier one. (Lightning's CSVLogger rewrites its whole file when a new metric appears, and a kill
    at that moment erased rows that a checkpoint had already counted: seen in tests/test_resume.py.)"""

    def __init__(self, run_dir: Path):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.folder = self.run_dir / "metrics"
        self.pending: list[dict] = []
        self._version: Optional[int] = None

    @property
    def name(self) -> str:
        return "metrics"

    @property
    def save_dir(self) -> str:
        return str(self.run_dir)  # Trainer.log_dir: where `asr train` saves the run's config.yaml

    @property
    def version(self) -> int:
        if self._version is None:
            taken = [int(p.stem.removeprefix("version_")) for p in self.folder.glob("version_*.jsonl")]
            self._version = max(taken, default=-1) + 1
        return self._version

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass  # the run's config.yaml and every checkpoint hold them

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: Optional[int] = None) -> None:
        self.pending.append({"step": step, **{k: float(v) for k, v in metrics.items()}})

    @rank_zero_only
    def save(self) -> None:
        if self.pending:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.folder / f"version_{self.version}.jsonl", "a") as f:
                f.write("".join(json.dumps(row) + "\n" for row in self.pending))
            self.pending = []

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()


def run_loggers(run_dir: Path) -> list:
    """The metrics log (read back by the study and its report) and TensorBoard (for people), under run_dir."""
    return [MetricsLog(run_dir), TensorBoardLogger(run_dir, name="tensorboard")]


AVERAGED = 5  # dev-best epochs whose weights each run keeps in checkpoints/top/


class TopCheckpoints(ModelCheckpoint):
    """The weights (no optimiser state) of the epochs of lowest dev WER. A class of its own because Lightning keys
    a checkpoint callback's saved state by its class and monitor, which best.ckpt's shares."""


def run_callbacks(run_dir: Path, gradient_flow: Optional[dict] = None,
                  last_every_n_steps: Optional[int] = None) -> list:
    """best.ckpt (lowest dev WER: model selection never looks at test), top/ (the weights of the AVERAGED epochs
    of lowest dev WER, which `asr export RUN/checkpoints/top OUT.ckpt` averages), last.ckpt (to resume from: the
    end of every epoch and, with last_every_n_steps, every that many steps within one), the learning rate, the
    random state and logs that travel with each checkpoint, the gradient-across-time monitor
    (`gradient_flow`: its GradientFlowMonitor arguments) and the training time.
    last.ckpt has callbacks of its own: ModelCheckpoint's `save_last` rewrites it only in an epoch that also
    saved a new best, so it would lag behind once dev WER plateaus."""
    checkpoints = Path(run_dir) / "checkpoints"
    callbacks = [ModelCheckpoint(dirpath=checkpoints, filename="best", monitor="dev/wer", mode="min", save_top_k=1,
                                 auto_insert_metric_name=False),
                 TopCheckpoints(dirpath=checkpoints / "top", filename="epoch{epoch:03d}", monitor="dev/wer",
                                 mode="min", save_top_k=AVERAGED, save_weights_only=True, auto_insert_metric_name=False),
                 ModelCheckpoint(dirpath=checkpoints, filename="last", save_top_k=1, every_n_epochs=1,
                                 save_on_train_epoch_end=True, enable_version_counter=False),
                 LearningRateMonitor(logging_interval="step"), RandomState(), LogsWithCheckpoints(),
                 GradientFlowMonitor(**(gradient_flow or {})), Timer()]
    if last_every_n_steps is not None:
        if last_every_n_steps < 1:
            raise UserError(f"last_every_n_steps must be at least 1, got {last_every_n_steps}")
        callbacks.insert(3, ModelCheckpoint(dirpath=checkpoints, filename="last", save_top_k=1,
                                            every_n_train_steps=last_every_n_steps, enable_version_counter=False))
    return callbacks


# Trainer values every run starts from, which a recipe's `trainer` section may still change
TRAINER_DEFAULTS = {
    "log_every_n_steps": 1,  # gradient norms are logged on every step
    "use_distributed_sampler": False,  # ASRDataModule's bucket sampler shards itself across ranks
}


def trainer_arguments(run_dir: Path, gradient_flow: Optional[dict] = None,
                      last_every_n_steps: Optional[int] = None) -> dict:
    """What every training run's Trainer gets besides its recipe's `trainer` section: the one place a run is
    assembled, for `asr train` (through LightningCLI), the study, `asr bench train` and the benchmarks."""
    return {
        "default_root_dir": str(run_dir),
        "logger": run_loggers(run_dir),
        "callbacks": run_callbacks(run_dir, gradient_flow, last_every_n_steps),
        "plugins": [AtomicCheckpointIO()],
        **TRAINER_DEFAULTS,
    }


def build_trainer(run_dir: Path, trainer: Optional[dict] = None, gradient_flow: Optional[dict] = None,
                  last_every_n_steps: Optional[int] = None, **overrides) -> L.Trainer:
    """The Trainer of one run: a recipe's `trainer` section on top of trainer_arguments; `overrides` (for a
    benchmark: a profiler, fewer epochs) on top of both."""
    check_trainer_values(trainer or {})
    return L.Trainer(**{**trainer_arguments(run_dir, gradient_flow, last_every_n_steps), **(trainer or {}),
                        **overrides})


@contextlib.contextmanager
def expected_warnings_silenced() -> Iterator[None]:
    """While a run trains: Lightning warnings about what this project does on purpose, and only those."""
    with warnings.catch_warnings():
        # A run resumed from a checkpoint written inside an epoch: Lightning's loaders cannot go on from there,
        # ours does (ASRDataModule.state_dict keeps its place), so the warning does not apply.
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
        # A resumed run writes its checkpoints into the folder that holds the earlier ones, as it should.
        warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
        # `asr train` hands LightningCLI its arguments while sys.argv holds the `asr` command's own.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        yield


def callback_of(trainer: L.Trainer, kind: type) -> L.Callback:
    """The run's callback of that kind (the Timer's elapsed time, the gradient monitor's probe batch)."""
    return next(c for c in trainer.callbacks if isinstance(c, kind))


def check_trainer_values(trainer) -> None:
    """Refuses trainer values that would train nothing, naming the option and what it accepts."""
    for name in ("max_epochs", "max_steps"):
        value = trainer.get(name) if hasattr(trainer, "get") else getattr(trainer, name, None)
        if value is not None and value != -1 and value < 1:
            raise UserError(f"trainer.{name} must be at least 1 (or -1 / null for no limit), got {value}: "
                             "nothing would be trained")


class RunLock:
    """One writer per run directory: an exclusive lock on <run_dir>/.lock, held until the process ends.
    The operating system drops the lock of a process that dies, even by kill -9, so it never stays stuck."""

    held: dict[str, Any] = {}  # run_dir -> open lock file, for the life of the process

    @classmethod
    def acquire(cls, run_dir: Path) -> None:
        run_dir = Path(run_dir).resolve()
        other_rank = int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0
        if str(run_dir) in cls.held or other_rank:  # DDP: global rank 0 holds the lock for all ranks
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(run_dir / ".lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise UserError(f"{run_dir} is being written by {holder}: one run directory takes one training at a "
                             "time. Wait for it to finish (or stop it), or choose another --run_dir.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        cls.held[str(run_dir)] = handle

    @classmethod
    def release(cls, run_dir: Path) -> None:
        handle = cls.held.pop(str(Path(run_dir).resolve()), None)
        if handle is not None:
            handle.close()


def holds_checkpoints(run_dir: Path) -> bool:
    """True when run_dir already holds checkpoints: a new run must never overwrite them."""
    checkpoints = Path(run_dir) / "checkpoints"
    return checkpoints.is_dir() and any(checkpoints.iterdir())


def read_metrics(run_dir: Path) -> list[dict]:
    """One continuous record of a run from its MetricsLog files. A resumed run writes a new version that
    repeats the steps the killed one logged after its last checkpoint: a row of an earlier version gives way
    to a row of a later one that logged the same metrics at the same step and epoch."""
    versions = sorted((Path(run_dir) / "metrics").glob("version_*.jsonl"),
                      key=lambda f: int(f.stem.removeprefix("version_")))
    tables = []
    for f in versions:
        table = []
        for line in f.read_text().splitlines():
            try:
                table.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a kill in mid-write: the resumed run logs it again
                continue
        tables.append(table)

    def identity(row: dict) -> tuple:
        return row.get("step"), row.get("epoch"), frozenset(row)

    rows = []
    for i, table in enumerate(tables):
        later = {identity(r) for t in tables[i + 1:] for r in t}
        rows += [r for r in table if identity(r) not in later]
    return rows


def column(rows: list[dict], key: str, by: str = "step") -> list[tuple[int, float]]:
    """(step or epoch, value) of every row that logged `key`."""
    return [(int(r[by]), float(r[key])) for r in rows if key in r]
