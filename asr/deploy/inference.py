"""Using a trained checkpoint: load it safely, evaluate it on a corpus split, transcribe audio files."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from asr.data.audio import load_audio
from asr.train.checkpoint import acoustic_weights, read_training_checkpoint
from asr.data.conditions import CLEAN
from asr.data.dataset import CorpusFeatures
from asr.decode.decoders import GreedyDecoder, Transcript
from asr.data.features import FeatureConfig, FeatureExtractor
from asr.decode.metrics import score
from asr.base.progress import progress
from asr.model.acoustic import AcousticModel, build_model
from asr.data.text import CharTokenizer, tokenizer_for
from asr.deploy.transcription import MIN_SECONDS, length_batches, transcribe_files

FEATURE_ARGS = ("sample_rate", "n_mels", "win_ms", "hop_ms", "stack", "stride", "normalize")


@dataclass
class Recognizer:
    model: AcousticModel
    tokenizer: CharTokenizer
    extractor: FeatureExtractor
    data_hparams: dict
    device: torch.device

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> "Recognizer":
        return cls.from_saved(read_training_checkpoint(path), device)

    @classmethod
    def from_saved(cls, ckpt: dict, device: str = "cpu") -> "Recognizer":
        """From a checkpoint already read (asr/train/checkpoint.py: read_training_checkpoint)."""
        hp, data_hp = ckpt["hyper_parameters"], ckpt.get("datamodule_hyper_parameters", {})
        features = FeatureConfig(**{k: data_hp[k] for k in FEATURE_ARGS if k in data_hp})
        tokenizer = tokenizer_for(hp["vocabulary"])
        model = build_model(hp)  # the call the training module made: every hyper-parameter, none by hand
        model.load_state_dict(acoustic_weights(ckpt))
        model.to(device).eval()
        extractor = FeatureExtractor(features, data_hp.get("feature_stats"))
        return cls(model, tokenizer, extractor, dict(data_hp), torch.device(device))

    @property
    def vocabulary(self) -> list[str]:
        return self.tokenizer.vocabulary

    @property
    def dataset(self) -> Optional[str]:
        """The corpus it was trained on."""
        return self.data_hparams.get("dataset")

    @property
    def frame_seconds(self) -> float:
        return self.extractor.config.frame_ms / 1000

    @torch.no_grad()
    def log_probs(self, feats: list[torch.Tensor], batch_size: int = 16) -> list[torch.Tensor]:
        """Per-frame log-probabilities of each stacked feature sequence, batched by length."""
        out: list[torch.Tensor] = [torch.empty(0)] * len(feats)
        for chunk in length_batches(feats, batch_size):
            lengths = torch.tensor([len(feats[i]) for i in chunk])
            padded = torch.nn.utils.rnn.pad_sequence([feats[i] for i in chunk], batch_first=True).to(self.device)
            scores = self.model(padded, lengths).cpu()
            for row, i in enumerate(chunk):
                out[i] = scores[row, : lengths[row]]
        return out

    def transcribe_files(self, paths: list[str | Path], decoder=None, batch_size: int = 16,
                         max_segment_seconds: float = 15.0) -> list[tuple[Path, Optional[Transcript], Optional[str]]]:
        """(path, transcript, None) or (path, None, reason) per file, in the order given (asr/deploy/transcription.py)."""
        rate = self.extractor.config.sample_rate
        return transcribe_files(paths, lambda path: load_audio(path, rate, min_seconds=MIN_SECONDS),
                                lambda pieces, size: self.log_probs([self.extractor(w) for w in pieces], size),
                                decoder or GreedyDecoder(self.tokenizer.vocabulary), self.frame_seconds, rate,
                                self.extractor.min_samples(), batch_size, max_segment_seconds)

    def split_log_probs(self, dataset: str, split: str, data_dir: Optional[str], batch_size: int = 32,
                        condition: Optional[str] = None) -> tuple[CorpusFeatures, list, list[torch.Tensor]]:
        """A corpus split's examples (through the training feature cache), its audio distorted by a test condition
        (asr/data/conditions.py) if one is named, and the model's log-probs for each."""
        data = CorpusFeatures(dataset, data_dir, self.extractor.config, cache_dir=self.data_hparams.get("cache_dir"),
                              cache_dtype=self.data_hparams.get("cache_dtype", "float32"), condition=condition,
                              feature_stats=self.extractor.stats, vocabulary=self.vocabulary)
        examples = data.load(split).examples
        return data, examples, self.log_probs([data.extractor.stack(e.log_mel) for e in examples], batch_size)

    def evaluate(self, dataset: str, split: str, data_dir: Optional[str], batch_size: int = 32,
                 decoder=None, condition: Optional[str] = None) -> tuple[dict, list[dict]]:
        """WER/CER over every utterance of the split (the WER of `asr evaluate`, of the study and of
        `asr bench transcribe`), under a test condition if one is named, and one row per utterance."""
        data, examples, scores = self.split_log_probs(dataset, split, data_dir, batch_size, condition)
        decoder = decoder or GreedyDecoder(self.tokenizer.vocabulary)
        decoded = progress(zip(examples, scores), len(examples), f"decoding {dataset} {split}", "utterances", minimum=50)
        hyps = {e.id: decoder(s, self.frame_seconds).text for e, s in decoded}
        summary, rows = score(data.utterances[split], hyps)  # every reference of the split, not only the examples
        summary.update(dataset=dataset, split=split, condition=condition or CLEAN,
                       ctc_cannot_emit=data.unemittable.get(split, []))
        return summary, rows


def write_rows(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(rows, indent=1))
    else:
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
