"""Using a trained checkpoint: load it safely, evaluate it on a corpus split, transcribe audio files."""
from __future__ import annotations

import csv
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from .audio import AudioError, load_audio
from .datamodule import ASRDataModule
from .features import FeatureConfig, FeatureExtractor
from .metrics import error_rates, utterance_errors
from .model import AcousticModel
from .text import CharTokenizer

MODEL_ARGS = ("cell", "hidden_size", "num_layers", "bidirectional", "dropout")
FEATURE_ARGS = ("sample_rate", "n_mels", "win_ms", "hop_ms", "stack", "stride")
MIN_SECONDS = 0.1


class CheckpointError(ValueError):
    pass


def read_checkpoint(path: str | Path) -> dict:
    """torch.load with weights_only=True: tensors and plain containers only, so a file can never run code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"refusing to load {path}: it holds Python objects beyond tensors and plain data "
                              f"({str(e).splitlines()[0]})") from None
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{path} is not a readable checkpoint ({e})") from None


@dataclass
class Recognizer:
    model: AcousticModel
    tokenizer: CharTokenizer
    extractor: FeatureExtractor
    data_hparams: dict
    device: torch.device

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> "Recognizer":
        ckpt = read_checkpoint(path)
        if "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
            raise CheckpointError(f"{path} is not a checkpoint written by `asr train` (no state_dict/hyper_parameters)")
        hp, data_hp = ckpt["hyper_parameters"], ckpt.get("datamodule_hyper_parameters", {})
        features = FeatureConfig(**{k: data_hp[k] for k in FEATURE_ARGS if k in data_hp})
        tokenizer = CharTokenizer(hp["vocabulary"])
        model = AcousticModel(hp["input_dim"], len(tokenizer), **{k: hp[k] for k in MODEL_ARGS})
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        model.load_state_dict(state)
        model.to(device).eval()
        return cls(model, tokenizer, FeatureExtractor(features), dict(data_hp), torch.device(device))

    @torch.no_grad()
    def decode_features(self, feats: list[torch.Tensor]) -> list[str]:
        """Greedy transcripts of stacked feature sequences."""
        lengths = torch.tensor([len(f) for f in feats])
        padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True).to(self.device)
        return self.tokenizer.greedy_decode(self.model(padded, lengths), lengths)

    def transcribe_file(self, path: str | Path) -> str:
        waveform = load_audio(path, self.extractor.config.sample_rate, min_seconds=MIN_SECONDS)
        return self.decode_features([self.extractor(waveform)])[0]

    def evaluate(self, dataset: str, split: str, data_dir: Optional[str], batch_size: int = 32) -> tuple[dict, list[dict]]:
        data = ASRDataModule(dataset=dataset, data_dir=data_dir, batch_size=batch_size, spec_augment=False,
                             cache_dir=self.data_hparams.get("cache_dir"),
                             **{k: v for k, v in self.data_hparams.items() if k in FEATURE_ARGS})
        refs, hyps, ids = [], [], []
        for batch in data.dataloader(split):
            hyps += self.tokenizer.greedy_decode(self.model(batch.features.to(self.device), batch.feature_lengths),
                                                 batch.feature_lengths)
            refs += batch.texts
            ids += batch.ids
        summary = error_rates(refs, hyps)
        summary.update(dataset=dataset, split=split, left_out=data.dropped.get(split, []))
        rows = [{"id": i, "reference": r, "hypothesis": h, **utterance_errors(r, h)} for i, r, h in zip(ids, refs, hyps)]
        return summary, sorted(rows, key=lambda row: row["id"])


def write_rows(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(rows, indent=1))
    else:
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


__all__ = ["Recognizer", "CheckpointError", "AudioError", "read_checkpoint", "write_rows"]
