"""The callbacks every training run carries (asr/train/runs.py puts them on the Trainer): exact resume (random
state, loggers flushed with each checkpoint), atomic checkpoint writes, and the gradient-across-time monitor.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Optional

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from asr.base.files import save_atomically, write_text_atomically
from asr.model.gradients import FRAMES_BACK, fixed_probe_batch, model_gradient_flow


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing atomically (asr/train/checkpoint.py): a kill in the middle of a save
    leaves the previous checkpoint whole."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options: Optional[Any] = None) -> None:
        save_atomically(checkpoint, path)


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
    """Flushes the loggers whenever a checkpoint is written: the metrics log buffers rows, and a run killed
    after a checkpoint but before the next flush would lose steps that the resumed run never logs again."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        for logger in trainer.loggers:
            logger.save()


class GradientFlowMonitor(L.Callback):
    """Measures the gradient-across-time curve on fixed dev utterances at initialisation and every
    `every_n_epochs` epochs, logs it at a few distances (gradient_flow/k<K>) and writes every curve to
    <run_dir>/gradient_flow.json for the report."""

    def __init__(self, frames: int = 100, utterances: int = 8, every_n_epochs: int = 1):
        self.frames, self.utterances, self.every_n_epochs = frames, utterances, every_n_epochs
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
        curve = model_gradient_flow(pl_module.model, probe.to(pl_module.device)).cpu()
        self.curves.append({"epoch": epoch, "step": trainer.global_step, "curve": curve.tolist()})
        if trainer.logger is not None and trainer.is_global_zero:
            trainer.logger.log_metrics({f"gradient_flow/k{k}": float(curve[k] / curve[0]) for k in FRAMES_BACK
                                        if k < len(curve)}, step=trainer.global_step)
        if trainer.is_global_zero and trainer.default_root_dir:
            out = Path(trainer.default_root_dir) / "gradient_flow.json"
            write_text_atomically(out, json.dumps({"frames": self.frames, "utterances": int(probe.shape[0]),
                                                   "cell": pl_module.model.cell,
                                                   "bidirectional": pl_module.model.bidirectional,
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
