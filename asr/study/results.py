"""The study's results, typed: what one run measured (RunResult, with the logged series it plots as
RunHistory), one model over its seeds (ModelResult) and the whole study (StudyResult).

asr/study/compare.py makes them, summary.json keeps them (`to_dict` / `from_dict`), and asr/study/report.py turns a
StudyResult into report.md and its figures without reading anything else: the report can be made again
from summary.json alone, after the runs folder is gone."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from asr.train.runs import column, read_metrics

Series = list[tuple[int, float]]  # (step or epoch, value)


def per_epoch_mean(points: Series) -> Series:
    """Values logged several times an epoch (the training loss), averaged per epoch."""
    by_epoch: dict[int, list[float]] = {}
    for epoch, value in points:
        by_epoch.setdefault(epoch, []).append(value)
    return [(e, float(np.mean(v))) for e, v in sorted(by_epoch.items())]


def pairs(rows) -> Series:
    return [(int(x), float(y)) for x, y in rows]


@dataclass
class RunHistory:
    """A run's training record as the report draws it, from its MetricsLog and the gradient monitor."""
    grad_norm: Series                  # (step, total gradient norm before clipping)
    train_loss: Series                 # (epoch, mean training CTC loss of the epoch)
    dev_loss: Series                   # (epoch, dev CTC loss)
    dev_wer: Series                    # (epoch, dev WER %)
    spectral_radius: dict[str, Series]  # layer and direction -> (epoch, largest |eigenvalue| of W_hh)
    initial_gradient_flow: Optional[list[float]]  # the monitor's curve at initialisation (None: no monitor file)

    @classmethod
    def of_run(cls, run_dir: Path) -> RunHistory:
        rows = read_metrics(run_dir)
        radius_keys = sorted({k for r in rows for k in r if k.startswith("spectral_radius/")})
        flow = Path(run_dir) / "gradient_flow.json"
        curves = json.loads(flow.read_text())["curves"] if flow.is_file() else []
        return cls(grad_norm=column(rows, "grad_norm/total"),
                   train_loss=per_epoch_mean(column(rows, "train/loss", by="epoch")),
                   dev_loss=per_epoch_mean(column(rows, "dev/loss", by="epoch")),
                   dev_wer=per_epoch_mean(column(rows, "dev/wer", by="epoch")),
                   spectral_radius={k.split("/", 1)[1]: column(rows, k, by="epoch") for k in radius_keys},
                   initial_gradient_flow=curves[0]["curve"] if curves else None)

    @classmethod
    def from_dict(cls, d: dict) -> RunHistory:
        return cls(grad_norm=pairs(d["grad_norm"]), train_loss=pairs(d["train_loss"]), dev_loss=pairs(d["dev_loss"]),
                   dev_wer=pairs(d["dev_wer"]), spectral_radius={k: pairs(v) for k, v in d["spectral_radius"].items()},
                   initial_gradient_flow=d.get("initial_gradient_flow"))


@dataclass
class RunResult:
    """One model, one seed. Every number but the training statistics (grad_norm, nonfinite_steps, history)
    comes from the weights chosen on dev, the weights the test WER is measured on."""
    seed: int
    test_wer: float
    test_cer: float
    best_dev_wer: Optional[float]
    selected_epoch: int
    spectral_radius: dict[str, float]   # per layer and direction, on the selected weights
    gradient_flow: dict[str, float]     # str(k) -> gradient k frames back relative to the last frame's own
    gradient_flow_curve: list[float]    # the whole curve on the selected weights
    parameters: int
    train_seconds: float
    nonfinite_steps: int
    steps: int
    epochs: int
    grad_norm: Optional[dict[str, float]]  # median, p99, max over training steps (None: no finite step)
    history: RunHistory
    run_dir: str
    git_commit: Optional[str] = None
    max_epochs: Optional[int] = None
    converged_epoch: Optional[int] = None  # the epoch the convergence rule ended the run (None: it did not)
    conditions: dict[str, dict[str, float]] = field(default_factory=dict)  # test condition -> wer, cer

    @classmethod
    def from_dict(cls, d: dict) -> RunResult:
        return cls(**{**d, "history": RunHistory.from_dict(d["history"])})


@dataclass
class Spread:
    """Mean, sample standard deviation (n - 1; None for a single seed), range and the values."""
    per_seed: list[float]
    mean: float
    sd: Optional[float]
    min: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        a = np.array(values, dtype=float)
        return cls(a.tolist(), float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else None,
                   float(a.min()), float(a.max()))


@dataclass
class ModelResult:
    """One model of the study: its `asr train` recipe (seed aside) and its runs, one per seed."""
    config: dict
    runs: list[RunResult]

    @property
    def test_wer(self) -> Spread:
        return Spread.of([r.test_wer for r in self.runs])

    @property
    def test_cer(self) -> Spread:
        return Spread.of([r.test_cer for r in self.runs])

    @property
    def parameters(self) -> int:
        return self.runs[0].parameters

    @property
    def train_seconds(self) -> float:
        return float(np.mean([r.train_seconds for r in self.runs]))

    @property
    def nonfinite_steps(self) -> int:
        return int(sum(r.nonfinite_steps for r in self.runs))

    def condition_wer(self, name: str) -> Optional[Spread]:
        """Test WER under a condition (asr/data/conditions.py) over the seeds that measured it."""
        values = [r.conditions[name]["wer"] for r in self.runs if name in r.conditions]
        return Spread.of(values) if values else None

    @property
    def grad_norm_max(self) -> Optional[float]:
        return max((r.grad_norm["max"] for r in self.runs if r.grad_norm), default=None)

    @property
    def grad_norm_median(self) -> Optional[float]:
        medians = [r.grad_norm["median"] for r in self.runs if r.grad_norm]
        return float(np.median(medians)) if medians else None

    def to_dict(self) -> dict:
        """The runs and, for readers of summary.json, the aggregates computed from them."""
        return {"config": self.config, "test_wer": asdict(self.test_wer), "test_cer": asdict(self.test_cer),
                "parameters": self.parameters, "train_seconds": self.train_seconds,
                "nonfinite_steps": self.nonfinite_steps, "grad_norm_max": self.grad_norm_max,
                "grad_norm_median": self.grad_norm_median, "runs": [asdict(r) for r in self.runs]}

    @classmethod
    def from_dict(cls, d: dict) -> ModelResult:
        return cls(config=d["config"], runs=[RunResult.from_dict(r) for r in d["runs"]])


@dataclass
class StudyResult:
    """The whole study, with where and at which commit it ran."""
    study: str
    dataset: str
    seeds: list[int]
    baseline: Optional[str]
    frame_ms: float
    models: dict[str, ModelResult]
    device: str
    versions: dict[str, str]
    git_commit: Optional[str]
    git_dirty: Optional[bool]
    recipe: dict
    recipe_path: Optional[str] = None

    @property
    def relative_wer_reduction(self) -> dict[str, Optional[float]]:
        """Per model: the share of the baseline's word errors (mean over seeds) it does not make."""
        if self.baseline not in self.models:
            return {}
        base = self.models[self.baseline].test_wer.mean
        return {name: (base - m.test_wer.mean) / base if base else None
                for name, m in self.models.items() if name != self.baseline}

    def to_dict(self) -> dict:
        d = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "models"}
        return {**d, "models": {n: m.to_dict() for n, m in self.models.items()},
                "relative_wer_reduction": self.relative_wer_reduction}

    @classmethod
    def from_dict(cls, d: dict) -> StudyResult:
        fields = set(cls.__dataclass_fields__) - {"models"}
        return cls(**{k: d.get(k) for k in fields}, models={n: ModelResult.from_dict(m) for n, m in d["models"].items()})

    @classmethod
    def read(cls, path: Path) -> StudyResult:
        return cls.from_dict(json.loads(Path(path).read_text()))
