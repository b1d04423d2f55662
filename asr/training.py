"""Training runs: `asr train` (LightningCLI), and what every run shares, whether started by `asr train`
or by `asr compare`: where its logs and checkpoints go, how the best checkpoint is chosen, and how its
logged metrics are read back."""
from __future__ import annotations

import csv
import warnings
from pathlib import Path

from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger


def run_loggers(run_dir: Path) -> list:
    """CSV (read back by the study) and TensorBoard (for people), both under run_dir."""
    return [CSVLogger(run_dir, name="csv"), TensorBoardLogger(run_dir, name="tensorboard")]


def run_callbacks(run_dir: Path) -> list:
    """best.ckpt (lowest dev WER: model selection never looks at test), last.ckpt (the end of every epoch,
    to resume from) and the learning rate. last.ckpt has its own callback: ModelCheckpoint's `save_last`
    rewrites it only in an epoch that also saved a new best, so it would lag behind once dev WER plateaus."""
    checkpoints = Path(run_dir) / "checkpoints"
    return [ModelCheckpoint(dirpath=checkpoints, filename="best", monitor="dev/wer", mode="min", save_top_k=1,
                            auto_insert_metric_name=False),
            ModelCheckpoint(dirpath=checkpoints, filename="last", save_top_k=1, every_n_epochs=1,
                            save_on_train_epoch_end=True, enable_version_counter=False),
            LearningRateMonitor(logging_interval="step")]


def holds_checkpoints(run_dir: Path) -> bool:
    """True when run_dir already holds checkpoints: a new run must never overwrite them."""
    checkpoints = Path(run_dir) / "checkpoints"
    return checkpoints.is_dir() and any(checkpoints.iterdir())


def read_metrics(run_dir: Path) -> list[dict]:
    """Every row the CSV logger wrote for a run (all its versions, in order)."""
    rows = []
    for f in sorted((Path(run_dir) / "csv").glob("version_*/metrics.csv")):
        with open(f, newline="") as handle:
            rows += list(csv.DictReader(handle))
    return rows


def column(rows: list[dict], key: str, by: str = "step") -> list[tuple[int, float]]:
    """(step or epoch, value) of every row that logged `key`."""
    return [(int(float(r[by])), float(r[key])) for r in rows if r.get(key) not in (None, "")]


class TrainCLI(LightningCLI):
    """LightningCLI plus one `run_dir` that holds a run's logs (CSV, TensorBoard) and checkpoints."""

    def add_arguments_to_parser(self, parser):
        parser.add_argument("--run_dir", type=str, default="runs/default", help="folder for logs and checkpoints")
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
        if self.subcommand == "fit" and not config.ckpt_path and holds_checkpoints(Path(config.run_dir)):
            checkpoints = Path(config.run_dir) / "checkpoints"
            raise ValueError(f"{checkpoints} already holds checkpoints of an earlier run. Resume it with "
                             f"--ckpt_path {checkpoints / 'last.ckpt'}, or start a new one with another --run_dir.")

    def instantiate_trainer(self, **kwargs):
        run_dir = Path(self.config[self.subcommand].run_dir)
        trainer_config = self._get(self.config_init, "trainer", default={})
        if trainer_config.get("logger") in (None, True):  # a recipe may still name its own loggers
            kwargs["logger"] = run_loggers(run_dir)
        kwargs["callbacks"] = [*run_callbacks(run_dir), *(trainer_config.get("callbacks") or [])]
        kwargs.setdefault("default_root_dir", str(run_dir))
        return super().instantiate_trainer(**kwargs)


def train(argv: list[str]) -> int:
    from .datamodule import ASRDataModule
    from .module import ASRModule

    # `asr train ARGS` is `fit ARGS` for LightningCLI, which warns when args and sys.argv both exist.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    TrainCLI(
        ASRModule,
        ASRDataModule,
        args=["fit", *argv],
        trainer_defaults={
            "log_every_n_steps": 1,  # gradient norms are logged on every step
            "use_distributed_sampler": False,  # ASRDataModule's bucket sampler shards itself across ranks
        },
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "asr train"},
    )
    return 0


def train(argv: list[str]) -> int:
    """`asr train ARGS` is LightningCLI's `fit ARGS`."""
    from .datamodule import ASRDataModule
    from .module import ASRModule

    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")  # args given and sys.argv both set
    TrainCLI(
        ASRModule,
        ASRDataModule,
        args=["fit", *argv],
        trainer_defaults={
            "log_every_n_steps": 1,  # gradient norms are logged on every step
            "use_distributed_sampler": False,  # ASRDataModule's bucket sampler shards itself across ranks
        },
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "asr train"},
    )
    return 0
