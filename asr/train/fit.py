"""`asr train`: one training run from a YAML recipe, through Lightning's own LightningCLI.

Every value of a recipe can be overridden on the command line (`--model.cell gru`, `--trainer.max_epochs 5`),
and `--ckpt_path <run_dir>/checkpoints/last.ckpt` resumes a run exactly. The Trainer gets what every run gets
(asr/train/runs.py: logs, checkpoints, exact resume, the gradient-across-time monitor), so `asr train -c` on the
config.yaml that `asr compare` writes beside each of its runs trains that very run again.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from lightning.pytorch.cli import LightningCLI

from asr.train.checkpoint import read_checkpoint
from asr.base.errors import UserError
from asr.base.files import recipe_file
from asr.train.runs import (TRAINER_DEFAULTS, RunLock, check_trainer_values, expected_warnings_silenced, holds_checkpoints,
                   trainer_arguments)


class TrainCLI(LightningCLI):
    """LightningCLI plus one `run_dir` that holds a run's logs (metrics, TensorBoard) and checkpoints, and the
    settings of the gradient-across-time monitor (`gradient_flow`)."""

    def add_arguments_to_parser(self, parser):
        parser.add_argument("--run_dir", type=str, default="runs/default", help="folder for logs and checkpoints")
        parser.add_argument("--last_every_n_steps", type=Optional[int], default=None,
                            help="also rewrite last.ckpt every N training steps (long epochs: a kill then costs at "
                                 "most N steps; the resumed run continues inside the epoch, exactly)")
        parser.add_argument("--gradient_flow.frames", type=int, default=100,
                            help="gradient across time: frames of each fixed dev utterance it is measured on")
        parser.add_argument("--gradient_flow.utterances", type=int, default=8,
                            help="gradient across time: how many dev utterances (the first that are long enough)")
        parser.add_argument("--gradient_flow.every_n_epochs", type=int, default=1,
                            help="gradient across time: measured at initialisation and every N epochs")
        parser.link_arguments("data.feature_dim", "model.input_dim", apply_on="instantiate")
        parser.link_arguments("data.vocabulary", "model.vocabulary", apply_on="instantiate")

    def parse_arguments(self, parser, args) -> None:
        """A resume checkpoint is read here first, before LightningCLI reads its hyper-parameters: one that
        would run code, or is not a checkpoint, is refused with the same one-line message as `asr transcribe`."""
        super().parse_arguments(parser, args)
        ckpt_path = self.config[self.config.subcommand].get("ckpt_path") if self.config.get("subcommand") else None
        if ckpt_path:
            read_checkpoint(ckpt_path)

    def before_instantiate_classes(self):
        config = self.config[self.subcommand]
        check_trainer_values(config.trainer)
        RunLock.acquire(Path(config.run_dir))  # before looking at the run dir: two starts cannot both pass
        if self.subcommand == "fit" and not config.ckpt_path and holds_checkpoints(Path(config.run_dir)):
            checkpoints = Path(config.run_dir) / "checkpoints"
            raise UserError(f"{checkpoints} already holds checkpoints of an earlier run. Resume it with "
                            f"--ckpt_path {checkpoints / 'last.ckpt'}, or start a new one with another --run_dir.")

    def instantiate_trainer(self, **kwargs):
        config = self.config[self.subcommand]
        recipe_trainer = self.config_init[self.subcommand].get("trainer", {})
        run = trainer_arguments(Path(config.run_dir), vars(config.gradient_flow), config.last_every_n_steps)
        for key in TRAINER_DEFAULTS:  # already the parser's defaults (below), which the recipe may have changed
            run.pop(key)
        # a recipe may still name its own loggers, extra callbacks or plugins
        if recipe_trainer.get("logger") not in (None, True):
            run.pop("logger")
        run["callbacks"] += recipe_trainer.get("callbacks") or []
        if recipe_trainer.get("plugins"):
            run.pop("plugins")
        return super().instantiate_trainer(**{**kwargs, **run})


def command(args) -> int:
    """`asr train ARGS`: args.extra holds everything after `train`."""
    return train(args.extra)


def train(argv: list[str]) -> int:
    """`asr train ARGS` is LightningCLI's `fit ARGS`."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from asr.data.datamodule import ASRDataModule
    from asr.train.module import ASRModule

    for flag, value in zip(argv, argv[1:]):  # a missing recipe, in one line (and where it moved to), before Lightning
        if flag in ("-c", "--config"):
            recipe_file(value)
    try:
        with expected_warnings_silenced():
            TrainCLI(ASRModule, ASRDataModule, args=["fit", *argv], trainer_defaults=TRAINER_DEFAULTS,
                     save_config_kwargs={"overwrite": True}, parser_kwargs={"prog": "asr train"})
    except MisconfigurationException as e:  # e.g. resuming a run whose schedule has already ended
        raise UserError(str(e).strip()) from e
    return 0
