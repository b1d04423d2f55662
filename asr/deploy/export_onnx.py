"""`asr export CKPT model.onnx`: the whole recogniser up to the log-probabilities as one ONNX graph, for
onnxruntime (asr/deploy/onnx_recognizer.py), which needs no torch.

The graph takes a batch of waveforms at the model's sample rate, zero-padded to the longest, with their lengths
in samples, and gives each utterance's per-frame log-probabilities and its number of frames:

    waveforms (batch, samples) float32, lengths (batch,) int64  ->  log_probs (batch, frames, symbols), frames (batch,)

Inside: the log-mel features as asr/data/features.py computes them (the short-time Fourier transform as a product
of each window with the windowed DFT basis, the mel filterbank, log, normalisation (per utterance over the
utterance's own frames, or by the training statistics the checkpoint carries), frame stacking), then the acoustic model, each recurrent layer and direction as its own
ONNX RNN/LSTM/GRU node, the right-to-left ones over each utterance reversed within its own length (as
asr/model/recurrence.py does). Batch and time axes are dynamic. The vocabulary, the feature settings and the frame
duration travel in the file's metadata.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from asr.base.files import sha256
from asr.train.checkpoint import read_training_checkpoint
from asr.base.errors import UserError
from asr.data.features import FeatureExtractor
from asr.deploy.inference import Recognizer
from asr.model.recurrence import reverse_within_lengths, valid_frames

OPSET = 17


class FeatureGraph(nn.Module):
    """asr/data/features.py's log-mel, normalisation and stacking on a padded batch of waveforms. The spectrum is a
    product of each window with the windowed DFT basis (float32: one matrix product, the fast kernel), then
    everything from the power spectrum to the normalised log-mel in float64: done in float32, the log and the
    normalisation alone moved log-probabilities by more than 1e-4 from PyTorch's (tests/test_onnx.py)."""

    def __init__(self, extractor: FeatureExtractor):
        super().__init__()
        spectrogram, mel = extractor.mel.spectrogram, extractor.mel.mel_scale
        n_fft, self.hop = spectrogram.n_fft, spectrogram.hop_length
        self.win = spectrogram.win_length
        if spectrogram.win_length != n_fft or spectrogram.center:
            raise UserError("ONNX export supports the project's features only (one window per FFT, no centring)")
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[None]
        n = torch.arange(n_fft, dtype=torch.float64)[:, None]
        window = spectrogram.window.double()[:, None]
        angle = 2 * torch.pi * k * n / n_fft
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)], dim=1) * window
        self.register_buffer("basis", basis.float())  # (n_fft, 2 * bins)
        self.register_buffer("filterbank", mel.fb.double())  # (bins, n_mels)
        self.stack, self.stride = extractor.config.stack, extractor.config.stride
        self.normalize = extractor.config.normalize
        if self.normalize == "global":  # the training split's statistics, constants of the graph
            if extractor.stats is None:
                raise UserError("this checkpoint's features are normalised globally, but it carries no statistics")
            self.register_buffer("mean", extractor.mean.double())
            self.register_buffer("std", extractor.std.double())

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total = torch.div(waveforms.shape[1] - self.win, self.hop, rounding_mode="floor") + 1
        starts = torch.arange(total)[:, None] * self.hop + torch.arange(self.win)[None]
        spectrum = (waveforms[:, starts] @ self.basis).double()  # (batch, frames, 2 * bins)
        real, imag = spectrum.chunk(2, dim=2)
        feats = torch.log((real * real + imag * imag) @ self.filterbank + 1e-6)
        frames = torch.div(lengths - self.win, self.hop, rounding_mode="floor") + 1
        if self.normalize == "global":
            feats = ((feats - self.mean) / (self.std + 1e-5)).float()
        else:
            mask = valid_frames(frames, feats.shape[1])[..., None].to(feats.dtype)
            count = frames[:, None, None].to(feats.dtype)
            mean = (feats * mask).sum(1, keepdim=True) / count
            std = (((feats - mean) * mask).pow(2).sum(1, keepdim=True) / (count - 1)).sqrt()  # unbiased, as torch.std
            feats = ((feats - mean) / (std + 1e-5)).float()
        k, s = self.stack, self.stride
        n_out = torch.div(feats.shape[1] - k, s, rounding_mode="floor") + 1
        stacked = torch.cat([feats[:, i : i + s * n_out : s] for i in range(k)], dim=2)
        return stacked, torch.div(frames - k, s, rounding_mode="floor") + 1


class AcousticGraph(nn.Module):
    """The acoustic model with its recurrent stack unrolled into one-layer, one-direction modules (each an ONNX
    RNN/LSTM/GRU node), holding the trained model's own weights."""

    def __init__(self, model):
        super().__init__()
        if model.cell == "esn" or model.truncate_bptt:
            raise UserError(f"ONNX export covers the rnn_tanh, rnn_relu, lstm and gru cells without truncate_bptt; "
                            f"this model has cell {model.cell}{' with truncate_bptt' if model.truncate_bptt else ''}")
        rnn = model.rnn
        self.input_projection, self.output, self.lookahead = model.input_projection, model.output, model.lookahead
        self.bidirectional = rnn.bidirectional
        self.layers = nn.ModuleList()
        for layer in range(rnn.num_layers):
            for suffix in ("", "_reverse") if rnn.bidirectional else ("",):
                extra = {"nonlinearity": rnn.nonlinearity} if isinstance(rnn, nn.RNN) else {}
                size = rnn.input_size if layer == 0 else rnn.hidden_size * (2 if rnn.bidirectional else 1)
                one = type(rnn)(size, rnn.hidden_size, num_layers=1, bias=rnn.bias, batch_first=True, **extra)
                names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if rnn.bias else ("weight_ih", "weight_hh")
                one.load_state_dict({f"{n}_l0": getattr(rnn, f"{n}_l{layer}{suffix}") for n in names})
                self.layers.append(one)

    def forward(self, features: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        x = self.input_projection(features)
        valid = valid_frames(frames, x.shape[1])[..., None]
        if self.bidirectional:
            order = reverse_within_lengths(frames, x.shape[1])[..., None]
            for forward, backward in zip(self.layers[0::2], self.layers[1::2]):
                ahead, _ = forward(x)
                behind, _ = backward(x.gather(1, order.expand(-1, -1, x.shape[-1])))
                x = torch.cat([ahead, behind.gather(1, order.expand(-1, -1, behind.shape[-1]))], dim=-1)
        else:
            for layer in self.layers:
                x, _ = layer(x)
        x = torch.where(valid, x, torch.zeros_like(x))
        if self.lookahead is not None:  # after the zeroing: past an utterance's end it sees zeros, as in training
            x = self.lookahead(x)
        return self.output(x).log_softmax(-1)


class RecognizerGraph(nn.Module):
    def __init__(self, recognizer: Recognizer):
        super().__init__()
        self.features, self.acoustic = FeatureGraph(recognizer.extractor), AcousticGraph(recognizer.model)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, frames = self.features(waveforms, lengths)
        return self.acoustic(features, frames), frames


def export_onnx(checkpoint: str | Path, target: str | Path, overwrite: bool = False) -> dict:
    """Writes the ONNX graph of `checkpoint` to `target` (never over an existing file unless overwrite) and
    returns its size and sha256."""
    checkpoint, target = Path(checkpoint), Path(target)
    if target.exists() and not overwrite:
        raise UserError(f"{target} exists; nothing was written. Pass --force to replace it, or choose another name.")
    recognizer = Recognizer.from_saved(read_training_checkpoint(checkpoint))
    write_onnx(recognizer, target, {"exported_from": json.dumps({"file": checkpoint.name, "sha256": sha256(checkpoint)})})
    return {"file": str(target), "bytes": target.stat().st_size, "sha256": sha256(target)}


def write_onnx(recognizer: Recognizer, target: Path, extra_metadata: dict | None = None) -> None:
    """The recogniser's graph, its metadata set, written to a temporary file and renamed into place."""
    import onnx

    graph = RecognizerGraph(recognizer).eval()
    rate = recognizer.extractor.config.sample_rate
    example = (torch.randn(2, rate), torch.tensor([rate, rate // 2]))
    tmp = target.with_name(target.name + ".tmp")
    with torch.no_grad(), warnings.catch_warnings():
        # The batch axis is dynamic (dynamic_axes below), which is what this warning asks for; tests/test_onnx.py
        # runs the graph at other batch sizes than the example's.
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        # The TorchScript-based exporter, on purpose (torch is pinned, pyproject.toml): it writes each recurrent layer as
        # one ONNX RNN/LSTM/GRU node and needs no onnxscript; torch 2.9 calls it legacy.
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", message="The feature will be removed", module="torch.onnx")
        # nn.RNN's own shape checks, traced as constants: the shapes they check are fixed by the weights
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module="torch.nn.modules.rnn")
        torch.onnx.export(graph, example, str(tmp), input_names=["waveforms", "lengths"],
                          output_names=["log_probs", "frames"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"waveforms": {0: "batch", 1: "samples"}, "lengths": {0: "batch"},
                                        "log_probs": {0: "batch", 1: "frames"}, "frames": {0: "batch"}})
    model = onnx.load(str(tmp))
    meta = {"vocabulary": json.dumps(recognizer.vocabulary),
            "features": json.dumps(recognizer.extractor.config.as_dict()),
            "frame_ms": str(recognizer.extractor.config.frame_ms),
            "min_samples": str(recognizer.extractor.min_samples()),
            "model": json.dumps(vars(recognizer.model.config)),
            "dataset": str(recognizer.dataset), **(extra_metadata or {})}
    onnx.helper.set_model_props(model, meta)
    onnx.save(model, str(tmp))
    tmp.replace(target)
