"""Training runs: `asr train` (LightningCLI), and what every run shares, whether started by `asr train`
or by `asr compare`: where its logs and checkpoints go, how the best checkpoint is chosen, how a killed
run resumes exactly, and how its logged metrics are read back.

A run survives a kill: last.ckpt is written (atomically) at the end of every epoch and holds, besides
weights, optimiser, schedule and loop counters, every random number generator's state, so a run resumed
from it with `--ckpt_path` takes the very steps the uninterrupted run would have taken. One process at
a time may write a run directory (a lock the operating system releases when its holder dies).
"""
from __future__ import annotations

import csv
import fcntl
import json
import os
import random
import re
import socket
import warnings
from pathlib import Path
from typing import Any, Optional

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from .gradients import fixed_probe_batch, model_gradient_across_time


def run_loggers(run_dir: Path) -> list:
    """CSV (read back by the study) and TensorBoard (for people), both under run_dir."""
    return [CSVLogger(run_dir, name="csv"), TensorBoardLogger(run_dir, name="tensorboard")]


def run_callbacks(run_dir: Path, last_every_n_steps: Optional[int] = None) -> list:
    """best.ckpt (lowest dev WER: model selection never looks at test), last.ckpt (to resume from: the end of
    every epoch and, with last_every_n_steps, every that many steps within one) and the learning rate.
    last.ckpt has callbacks of its own: ModelCheckpoint's `save_last` rewrites it only in an epoch that also
    saved a new best, so it would lag behind once dev WER plateaus."""
    checkpoints = Path(run_dir) / "checkpoints"
    callbacks = [ModelCheckpoint(dirpath=checkpoints, filename="best", monitor="dev/wer", mode="min", save_top_k=1,
                                 auto_insert_metric_name=False),
                 ModelCheckpoint(dirpath=checkpoints, filename="last", save_top_k=1, every_n_epochs=1,
                                 save_on_train_epoch_end=True, enable_version_counter=False),
                 LearningRateMonitor(logging_interval="step"), RandomState(), LogsWithCheckpoints()]
    if last_every_n_steps:
        if last_every_n_steps < 1:
            raise ValueError(f"last_every_n_steps must be at least 1, got {last_every_n_steps}")
        callbacks.insert(2, ModelCheckpoint(dirpath=checkpoints, filename="last", save_top_k=1,
                                            every_n_train_steps=last_every_n_steps, enable_version_counter=False))
    return callbacks


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file beside it, then renames it into place: a kill in the middle
    of a save leaves the previous checkpoint whole."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Optional[Any] = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)


class RandomState(L.Callback):
    """Puts every random number generator (Python, NumPy, torch CPU and CUDA) in the checkpoint and, on
    resume, back where it was when the checkpoint was written, just before the first resumed training step
    (so that whatever the resuming process drew while starting up does not count). Dropout masks then repeat
    those of the uninterrupted run exactly. (SpecAugment draws from generators of its own, seeded per
    utterance and epoch by the data module, and the loader has its own generator: neither touches these.)"""

    def __init__(self):
        self.pending: Optional[dict] = None

    def state_dict(self) -> dict:
        state = {"python": list(random.getstate()), "numpy": list(np.random.get_state()),
                 "torch": torch.get_rng_state()}
        state["python"][1] = list(state["python"][1])  # tuples of ints: plain data for weights_only loading
        state["numpy"][1] = torch.from_numpy(state["numpy"][1].copy())
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self.pending = state_dict

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.pending is None:
            return
        state, self.pending = self.pending, None
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy(), pos, has_gauss, cached))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class LogsWithCheckpoints(L.Callback):
    """Flushes the loggers whenever a checkpoint is written: the CSV logger buffers rows, and a run killed
    after a checkpoint but before the next flush would lose steps that the resumed run never logs again."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        for logger in trainer.loggers:
            logger.save()


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
            raise ValueError(f"{run_dir} is being written by {holder}: one run directory takes one training at a "
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


class GradientFlowMonitor(L.Callback):
    """Measures the gradient-across-time curve on fixed dev utterances at initialisation and every
    `every_n_epochs` epochs, logs it at a few distances (grad_flow/k<K>) and writes every curve to
    <run_dir>/gradient_flow.json for the report."""

    def __init__(self, frames: int = 100, utterances: int = 8, every_n_epochs: int = 1,
                 log_at: tuple[int, ...] = (1, 10, 40, 80)):
        self.frames, self.utterances, self.every_n_epochs, self.log_at = frames, utterances, every_n_epochs, log_at
        self.curves: list[dict] = []
        self.probe: torch.Tensor | None = None

    def probe_batch(self, data) -> torch.Tensor:
        """The fixed dev utterances every curve of the run is measured on."""
        if self.probe is None:
            dev = [data.extractor.stack(e.log_mel) for e in data.load("dev").examples]
            self.probe = fixed_probe_batch(dev, self.frames, self.utterances)
        return self.probe

    def measure(self, trainer, pl_module, epoch: int) -> None:
        probe = self.probe_batch(trainer.datamodule)
        curve = model_gradient_across_time(pl_module.model, probe.to(pl_module.device)).cpu()
        self.curves.append({"epoch": epoch, "step": trainer.global_step, "curve": curve.tolist()})
        if trainer.logger is not None and trainer.is_global_zero:
            trainer.logger.log_metrics({f"grad_flow/k{k}": float(curve[k] / curve[0]) for k in self.log_at
                                        if k < len(curve)}, step=trainer.global_step)
        if trainer.is_global_zero and trainer.default_root_dir:
            out = Path(trainer.default_root_dir) / "gradient_flow.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"frames": self.frames, "utterances": int(probe.shape[0]),
                                       "cell": pl_module.model.cell, "bidirectional": pl_module.model.bidirectional,
                                       "curves": self.curves}))

    def state_dict(self) -> dict:
        return {"curves": self.curves}  # in every checkpoint: a resumed run continues the same history

    def load_state_dict(self, state_dict: dict) -> None:
        self.curves = list(state_dict.get("curves", []))

    def on_fit_start(self, trainer, pl_module):
        if not self.curves:  # a fresh run (a resumed one brought its history, initialisation included)
            self.measure(trainer, pl_module, epoch=-1)  # -1: at initialisation

    def on_train_epoch_end(self, trainer, pl_module):
        last = trainer.current_epoch + 1 == trainer.max_epochs
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0 or last:
            self.measure(trainer, pl_module, epoch=trainer.current_epoch)


def read_metrics(run_dir: Path) -> list[dict]:
    """One continuous record of a run from the CSV logger's files. A resumed run writes a new version that
    repeats the steps the killed one logged after its last checkpoint: a row of an earlier version gives way
    to a row of a later one that logged the same metrics at the same step and epoch."""
    versions = sorted((Path(run_dir) / "csv").glob("version_*/metrics.csv"),
                      key=lambda f: int(re.sub(r"\D", "", f.parent.name) or 0))
    tables = []
    for f in versions:
        with open(f, newline="") as handle:
            # a line cut short by a kill in mid-write has missing fields (None): the resumed run logs it again
            tables.append([row for row in csv.DictReader(handle) if None not in row.values()])

    def identity(row: dict) -> tuple:
        return row.get("step"), row.get("epoch") or "", frozenset(k for k, v in row.items() if v not in (None, ""))

    rows = []
    for i, table in enumerate(tables):
        later = {identity(r) for t in tables[i + 1:] for r in t}
        rows += [r for r in table if identity(r) not in later]
    return rows


def column(rows: list[dict], key: str, by: str = "step") -> list[tuple[int, float]]:
    """(step or epoch, value) of every row that logged `key`."""
    return [(int(float(r[by])), float(r[key])) for r in rows if r.get(key) not in (None, "")]


def check_trainer_values(trainer) -> None:
    """Refuses trainer values that would train nothing, naming the option and what it accepts."""
    for name in ("max_epochs", "max_steps"):
        value = trainer.get(name) if hasattr(trainer, "get") else getattr(trainer, name, None)
        if value is not None and value != -1 and value < 1:
            raise ValueError(f"trainer.{name} must be at least 1 (or -1 / null for no limit), got {value}: "
                             "nothing would be trained")


class TrainCLI(LightningCLI):
    """LightningCLI plus one `run_dir` that holds a run's logs (CSV, TensorBoard) and checkpoints."""

    def add_arguments_to_parser(self, parser):
        parser.add_argument("--run_dir", type=str, default="runs/default", help="folder for logs and checkpoints")
        parser.add_argument("--last_every_n_steps", type=Optional[int], default=None,
                            help="also rewrite last.ckpt every N training steps (long epochs: a kill then costs at "
                                 "most N steps; the resumed run continues inside the epoch, exactly)")
        parser.link_arguments("data.feature_dim", "model.input_dim", apply_on="instantiate")

    def _parse_ckpt_path(self):
        """LightningCLI reads a resume checkpoint's hyper-parameters here: refuse one that would run code, or
        is not a checkpoint, with the same one-line message as `asr transcribe` (a CheckpointError)."""
        ckpt_path = self.config[self.config.subcommand].get("ckpt_path") if self.config.get("subcommand") else None
        if ckpt_path:
            from .inference import read_checkpoint

            read_checkpoint(ckpt_path)
        super()._parse_ckpt_path()

    def before_instantiate_classes(self):
        config = self.config[self.subcommand]
        check_trainer_values(config.trainer)
        RunLock.acquire(Path(config.run_dir))  # before looking at the run dir: two starts cannot both pass
        if self.subcommand == "fit" and not config.ckpt_path and holds_checkpoints(Path(config.run_dir)):
            checkpoints = Path(config.run_dir) / "checkpoints"
            raise ValueError(f"{checkpoints} already holds checkpoints of an earlier run. Resume it with "
                             f"--ckpt_path {checkpoints / 'last.ckpt'}, or start a new one with another --run_dir.")

    def instantiate_trainer(self, **kwargs):
        run_dir = Path(self.config[self.subcommand].run_dir)
        trainer_config = self._get(self.config_init, "trainer", default={})
        if trainer_config.get("logger") in (None, True):  # a recipe may still name its own loggers
            kwargs["logger"] = run_loggers(run_dir)
        every = self.config[self.subcommand].get("last_every_n_steps")
        kwargs["callbacks"] = [*run_callbacks(run_dir, every), *(trainer_config.get("callbacks") or [])]
        kwargs.setdefault("default_root_dir", str(run_dir))
        if not trainer_config.get("plugins"):
            kwargs["plugins"] = [AtomicCheckpointIO()]
        return super().instantiate_trainer(**kwargs)


def train(argv: list[str]) -> int:
    """`asr train ARGS` is LightningCLI's `fit ARGS`."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from .datamodule import ASRDataModule
    from .module import ASRModule

    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")  # args given and sys.argv both set
    try:
        run_train_cli(argv, ASRModule, ASRDataModule)
    except MisconfigurationException as e:  # e.g. resuming a run whose schedule has already ended
        raise ValueError(str(e).strip()) from e
    return 0


def run_train_cli(argv: list[str], module_class, data_class) -> None:
    TrainCLI(
        module_class,
        data_class,
        args=["fit", *argv],
        trainer_defaults={
            "log_every_n_steps": 1,  # gradient norms are logged on every step
            "use_distributed_sampler": False,  # ASRDataModule's bucket sampler shards itself across ranks
        },
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "asr train"},
    )
