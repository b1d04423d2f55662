"""Learning-rate schedules of the training module (asr/train/module.py), and the convergence rule that ends a run.

- `onecycle`: warm up to the peak rate over `warmup_fraction` of the run's steps, then anneal to nearly zero
  at `max_epochs` (torch's OneCycleLR). The run's length is fixed in advance.
- `plateau`: warm up the same way, then hold the peak rate and halve it whenever dev WER stops improving
  ("newbob", as Kaldi's and early ESPnet recipes do). The Plateau rule below decides, from the dev WER of each
  epoch, when to halve and when the run has converged and stops: every model gets the epochs it needs, up to
  `max_epochs`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

SCHEDULES = ("onecycle", "plateau")


@dataclass
class Plateau:
    """The convergence rule. After every epoch: a dev WER at least `min_delta` points below the best so far is
    progress; `patience` epochs in a row without progress halve the learning rate, and once it has been halved
    `halvings` times, `patience` more epochs without progress end the run (converged). Epochs before the dev WER
    first falls below `below` % count for nothing (a CTC model first learns to emit blanks only: a flat 100 %
    there is the start of learning, not a plateau). A run that reaches max_epochs first has not met the rule."""
    patience: int = 4
    min_delta: float = 0.5
    halvings: int = 2
    below: float = 100.0
    best: float = math.inf
    wait: int = 0
    halved: int = 0
    converged_epoch: Optional[int] = None

    def update(self, epoch: int, dev_wer: float) -> bool:
        """Takes one epoch's dev WER; True when the run has converged and should stop."""
        if dev_wer <= self.best - self.min_delta:
            self.best, self.wait = dev_wer, 0
            return False
        if self.best >= self.below:  # nothing recognised yet
            return False
        self.wait += 1
        if self.wait < self.patience:
            return False
        if self.halved < self.halvings:
            self.halved, self.wait = self.halved + 1, 0
            return False
        self.converged_epoch = epoch
        return True

    @property
    def factor(self) -> float:
        """The learning rate's share of its peak after the halvings so far."""
        return 0.5 ** self.halved

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def warmup(step: int, warmup_steps: int) -> float:
    """Linear warm-up from 1/warmup_steps of the peak to the peak."""
    return min(1.0, (step + 1) / max(1, warmup_steps))
