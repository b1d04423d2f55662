"""`asr export CKPT model.onnx`: the whole recogniser up to the log-probabilities as one ONNX graph, for
onnxruntime (asr/deploy/onnx_recognizer.py), which needs no torch.

The graph takes a batch of waveforms at the model's sample rate, zero-padded to the longest, with their lengths
in samples, and gives each utterance's per-frame log-probabilities and its number of frames:

    waveforms (batch, samples) float32, lengths (batch,) int64  ->  log_probs (batch, frames, symbols), frames (batch,)

Inside: the log-mel features as asr/data/features.py computes them (the short-time Fourier transform as a strided
convolution with the windowed DFT basis, the mel filterbank, log, normalisation (per utterance over the utterance's
own frames, or by the training statistics the checkpoint carries), frame stacking), then the acoustic model: its
input projection folded into the first layer where that is cheaper, each recurrent layer and direction as its own
node (an ONNX LSTM or GRU node; a tanh or ReLU layer as a Scan over one step, which onnxruntime runs 3x faster than
its RNN node), the right-to-left ones over each utterance reversed within its own length (as
asr/model/recurrence.py does). Batch and time axes are dynamic. The vocabulary, the feature settings and the frame
duration travel in the file's metadata.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from asr.base.files import sha256
from asr.train.checkpoint import read_training_checkpoint
from asr.base.errors import UserError
from asr.data.features import ONLINE_PRIOR_FRAMES, RUNNING_MEANS, FeatureExtractor
from asr.deploy.inference import Recognizer
from asr.model.recurrence import reverse_within_lengths, valid_frames

OPSET = 17


class FeatureGraph(nn.Module):
    """asr/data/features.py's log-mel, normalisation and stacking on a padded batch of waveforms. The spectrum is one
    strided convolution of the waveform with the windowed DFT basis (framing and DFT in one float32 kernel), the mel
    power (squares, then one product with the filterbank stacked twice: real and imaginary parts), the log and the
    normalisation, all in float32 as in PyTorch (the running mean's sums in float64, as RunningMean keeps them). The
    DFT basis is not stored: the file holds the window, and the graph computes the basis from it
    (`basis_computed_in_graph`), 640 kB less a file."""

    def __init__(self, extractor: FeatureExtractor):
        super().__init__()
        spectrogram, mel = extractor.mel.spectrogram, extractor.mel.mel_scale
        n_fft, self.hop = spectrogram.n_fft, spectrogram.hop_length
        self.win = spectrogram.win_length
        if spectrogram.win_length != n_fft or spectrogram.center:
            raise UserError("ONNX export supports the project's features only (one window per FFT, no centring)")
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
        n = torch.arange(n_fft, dtype=torch.float64)[None]
        angle = 2 * torch.pi * k * n / n_fft
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)], dim=0) * spectrogram.window.double()[None]
        self.register_buffer("basis", basis.float()[:, None])  # (2 * bins, 1, n_fft): convolution kernels
        self.register_buffer("window", spectrogram.window.float())
        # (n_mels, 2 * bins): the mel filterbank for the real parts' squares and again for the imaginary parts', so
        # that one product over the convolution's channels gives the mel power (no slices, one small transpose after)
        self.register_buffer("mel_of_squares", torch.cat([mel.fb, mel.fb]).T.float().contiguous())
        self.stack, self.stride = extractor.config.stack, extractor.config.stride
        self.normalize = extractor.config.normalize
        if extractor.config.uses_training_stats:  # the training split's statistics, constants of the graph
            if extractor.stats is None:
                raise UserError("this checkpoint's features are normalised globally, but it carries no statistics")
            self.register_buffer("mean", extractor.mean.float())
            self.register_buffer("std", extractor.std.float())

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spectrum = nn.functional.conv1d(waveforms[:, None], self.basis, stride=self.hop)  # (batch, 2 * bins, frames)
        power = (self.mel_of_squares @ (spectrum * spectrum)).transpose(1, 2)  # (batch, frames, n_mels)
        feats = torch.log(power + 1e-6)
        frames = torch.div(lengths - self.win, self.hop, rounding_mode="floor") + 1
        if self.normalize == "global":
            feats = (feats - self.mean) / (self.std + 1e-5)
        elif self.normalize in RUNNING_MEANS:  # RunningMean's formula or LevelMatchedMean's: padding comes after each
            seen = torch.arange(1, feats.shape[1] + 1, dtype=torch.float64)[:, None]  # utterance's frames, so no matter
            sums = torch.cumsum(feats.double(), dim=1)
            running = RUNNING_MEANS[self.normalize].formula(self.mean.double(), ONLINE_PRIOR_FRAMES, sums, seen)
            feats = (feats - running.float()) / (self.std + 1e-5)
        else:
            mask = valid_frames(frames, feats.shape[1])[..., None].to(feats.dtype)
            count = frames[:, None, None].to(feats.dtype)
            mean = (feats * mask).sum(1, keepdim=True) / count
            std = (((feats - mean) * mask).pow(2).sum(1, keepdim=True) / (count - 1)).sqrt()  # unbiased, as torch.std
            feats = (feats - mean) / (std + 1e-5)
        k, s = self.stack, self.stride
        n_out = torch.div(feats.shape[1] - k, s, rounding_mode="floor") + 1
        stacked = torch.cat([feats[:, i : i + s * n_out : s] for i in range(k)], dim=2)
        return stacked, torch.div(frames - k, s, rounding_mode="floor") + 1


def basis_computed_in_graph(model, window) -> None:
    """Replaces the stored DFT basis (the feature convolution's kernels, 2 x 201 x 400 floats) by the nodes that compute
    it from the window: cos and -sin of 2 pi (k n mod N) / N (the modulo keeps the angle below 2 pi, so float32 loses
    nothing), times the window. onnxruntime folds them into a constant when it loads the file."""
    from onnx import helper, numpy_helper

    conv = next(n for n in model.graph.node if n.op_type == "Conv" and n.name.startswith("/features/"))
    stored = next(i for i in model.graph.initializer if i.name == conv.input[1])
    model.graph.initializer.remove(stored)
    n_fft = window.numel()
    bins = n_fft // 2 + 1
    const = {"dft.window": window.numpy().astype(np.float32)[None], "dft.n": np.array(n_fft, dtype=np.int64),
             "dft.bins": np.array(bins, dtype=np.int64), "dft.zero": np.array(0, dtype=np.int64),
             "dft.one": np.array(1, dtype=np.int64), "dft.step": np.array(2 * np.pi / n_fft, dtype=np.float32),
             "dft.axis0": np.array([0], dtype=np.int64), "dft.axis1": np.array([1], dtype=np.int64)}
    model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in const.items())
    nodes = [("Range", ["dft.zero", "dft.n", "dft.one"], ["dft.n_range"], {}),
             ("Range", ["dft.zero", "dft.bins", "dft.one"], ["dft.k_range"], {}),
             ("Unsqueeze", ["dft.k_range", "dft.axis1"], ["dft.k_col"], {}),
             ("Unsqueeze", ["dft.n_range", "dft.axis0"], ["dft.n_row"], {}),
             ("Mul", ["dft.k_col", "dft.n_row"], ["dft.kn"], {}),
             ("Mod", ["dft.kn", "dft.n"], ["dft.kn_mod"], {}),
             ("Cast", ["dft.kn_mod"], ["dft.kn_float"], {"to": 1}),
             ("Mul", ["dft.kn_float", "dft.step"], ["dft.angle"], {}),
             ("Cos", ["dft.angle"], ["dft.cos"], {}),
             ("Sin", ["dft.angle"], ["dft.sin"], {}),
             ("Neg", ["dft.sin"], ["dft.minus_sin"], {}),
             ("Concat", ["dft.cos", "dft.minus_sin"], ["dft.cos_sin"], {"axis": 0}),
             ("Mul", ["dft.cos_sin", "dft.window"], ["dft.windowed"], {}),
             ("Unsqueeze", ["dft.windowed", "dft.axis1"], [conv.input[1]], {})]
    made = [helper.make_node(op, inputs, outputs, name=f"/features/dft/{i}", **attrs)
            for i, (op, inputs, outputs, attrs) in enumerate(nodes)]
    for node in reversed(made):  # before every node that reads them
        model.graph.node.insert(0, node)


def rnn_nodes_as_scan(model) -> None:
    """Rewrites each plain RNN node (tanh or ReLU, one direction) as its input product, one MatMul over every frame,
    and a Scan whose body is one step: h' = act(p_t + h R^T). Same arithmetic; onnxruntime's RNN kernel applies the
    activation one element at a time through a std::function, its Scan body runs MLAS's vectorised Tanh: a layer of
    the shipped tanh RNN 3x faster (benchmarks/README.md)."""
    from onnx import TensorProto, helper, numpy_helper

    weights = {i.name: i for i in model.graph.initializer}
    rewritten = []
    for node in model.graph.node:
        if node.op_type != "RNN":
            rewritten.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        activation = attrs.get("activations", [b"Tanh"])[0].decode()
        x, w, r, b, lengths, h0 = (list(node.input) + [""] * 6)[:6]
        if attrs.get("direction", b"forward") != b"forward" or "clip" in attrs or lengths or not h0 \
                or activation not in ("Tanh", "Relu"):
            raise ValueError(f"{node.name}: only a forward tanh/ReLU RNN with an initial state becomes a Scan")
        W, R = (numpy_helper.to_array(weights[name])[0] for name in (w, r))
        hidden = R.shape[0]
        bias = numpy_helper.to_array(weights[b])[0] if b else np.zeros(2 * hidden, np.float32)
        p = node.name
        for name in {w, r, b} - {""}:
            model.graph.initializer.remove(weights[name])
        model.graph.initializer.extend([
            numpy_helper.from_array(np.ascontiguousarray(W.T), f"{p}/W_t"),
            numpy_helper.from_array(np.ascontiguousarray(R.T), f"{p}/R_t"),
            numpy_helper.from_array((bias[:hidden] + bias[hidden:]).astype(np.float32), f"{p}/bias"),
            numpy_helper.from_array(np.array([0], dtype=np.int64), f"{p}/axis0"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), f"{p}/axis1")])
        state = [None, hidden]  # (batch, hidden)
        body = helper.make_graph(
            [helper.make_node("MatMul", ["h", f"{p}/R_t"], ["hr"], name=f"{p}/step/MatMul"),
             helper.make_node("Add", ["hr", "p_t"], ["pre"], name=f"{p}/step/Add"),
             helper.make_node(activation, ["pre"], ["h_next"], name=f"{p}/step/{activation}"),
             # the state and the scan output as two names: onnxruntime 1.x gave wrong outputs for one name twice
             helper.make_node("Identity", ["h_next"], ["y"], name=f"{p}/step/Identity")],
            f"{p}/step", [helper.make_tensor_value_info("h", TensorProto.FLOAT, state),
                          helper.make_tensor_value_info("p_t", TensorProto.FLOAT, state)],
            [helper.make_tensor_value_info("h_next", TensorProto.FLOAT, state),
             helper.make_tensor_value_info("y", TensorProto.FLOAT, state)])
        y, y_h = (list(node.output) + [""] * 2)[:2]
        rewritten += [
            helper.make_node("MatMul", [x, f"{p}/W_t"], [f"{p}/xw"], name=f"{p}/input/MatMul"),
            helper.make_node("Add", [f"{p}/xw", f"{p}/bias"], [f"{p}/pre"], name=f"{p}/input/Add"),
            helper.make_node("Squeeze", [h0, f"{p}/axis0"], [f"{p}/h0"], name=f"{p}/Squeeze"),
            helper.make_node("Scan", [f"{p}/h0", f"{p}/pre"], [f"{p}/h_last", f"{p}/ys"], name=f"{p}/Scan",
                             num_scan_inputs=1, body=body),
            helper.make_node("Unsqueeze", [f"{p}/ys", f"{p}/axis1"], [y or f"{p}/y"], name=f"{p}/Unsqueeze"),
            *([helper.make_node("Unsqueeze", [f"{p}/h_last", f"{p}/axis0"], [y_h], name=f"{p}/Unsqueeze_h")]
              if y_h else [])]
    del model.graph.node[:]
    model.graph.node.extend(rewritten)


def projection_folded(model) -> tuple[nn.Module, nn.RNNBase]:
    """The model's input projection and recurrent stack, or, where it costs fewer multiplications per frame, an
    identity and a copy of the stack whose first layer reads the features: the projection (P x + p) and the first
    layer's input product (W_ih, each direction) are both linear, so W_ih P and W_ih p + b_ih replace them (computed
    in float64). The live tanh RNN's graph loses a 320 x 320 product per frame; training keeps the projection,
    whose output is where the gradient instruments look."""
    rnn, projection = model.rnn, model.input_projection
    directions, gates = 2 if rnn.bidirectional else 1, rnn.weight_ih_l0.shape[0] // rnn.hidden_size
    inputs, hidden = projection.in_features, rnn.hidden_size
    if not rnn.bias or directions * gates * hidden * inputs >= hidden * inputs + directions * gates * hidden * hidden:
        return projection, rnn
    extra = {"nonlinearity": rnn.nonlinearity} if isinstance(rnn, nn.RNN) else {}
    folded = type(rnn)(inputs, hidden, num_layers=rnn.num_layers, batch_first=True, bidirectional=rnn.bidirectional,
                       **extra)
    state = {name: value.clone() for name, value in rnn.state_dict().items()}
    for suffix in ("", "_reverse")[:directions]:
        w = state[f"weight_ih_l0{suffix}"].double()
        state[f"weight_ih_l0{suffix}"] = (w @ projection.weight.double()).float()
        state[f"bias_ih_l0{suffix}"] = (w @ projection.bias.double() + state[f"bias_ih_l0{suffix}"].double()).float()
    folded.load_state_dict(state)
    return nn.Identity(), folded.eval()


class AcousticGraph(nn.Module):
    """The acoustic model with its recurrent stack unrolled into one-layer, one-direction modules (each traced as an
    ONNX RNN/LSTM/GRU node; write_onnx turns the RNN ones into Scans), holding the trained model's own weights (the
    input projection folded into the first layer where that is cheaper)."""

    def __init__(self, model):
        super().__init__()
        if model.cell == "esn" or model.truncate_bptt:
            raise UserError(f"ONNX export covers the rnn_tanh, rnn_relu, lstm and gru cells without truncate_bptt; "
                            f"this model has cell {model.cell}{' with truncate_bptt' if model.truncate_bptt else ''}")
        self.input_projection, rnn = projection_folded(model)
        self.output, self.lookahead = model.output, model.lookahead
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
        if self.bidirectional:
            order = reverse_within_lengths(frames, x.shape[1])[..., None]
            for forward, backward in zip(self.layers[0::2], self.layers[1::2]):
                ahead, _ = forward(x)
                behind, _ = backward(x.gather(1, order.expand(-1, -1, x.shape[-1])))
                x = torch.cat([ahead, behind.gather(1, order.expand(-1, -1, behind.shape[-1]))], dim=-1)
        else:
            for layer in self.layers:
                x, _ = layer(x)
        if self.lookahead is not None:
            # past an utterance's end the lookahead sees zeros, as in training; without one, what the padding frames
            # give is never read (the graph's frames output says how many of each row are valid)
            x = self.lookahead(torch.where(valid_frames(frames, x.shape[1])[..., None], x, torch.zeros_like(x)))
        return self.output(x).log_softmax(-1)


class RecognizerGraph(nn.Module):
    def __init__(self, recognizer: Recognizer):
        super().__init__()
        self.features, self.acoustic = FeatureGraph(recognizer.extractor), AcousticGraph(recognizer.model)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, frames = self.features(waveforms, lengths)
        return self.acoustic(features, frames), frames


class StepGraph(nn.Module):
    """One step of a stream (AcousticModel.step) as a graph of fixed-shape tensors, for asr/deploy/onnx_stream.py:

        features (1, T, inputs), h (layers, 1, hidden)[, c (layers, 1, hidden) for an LSTM][, waiting (1, K, hidden),
        appended (1, A, hidden) with a lookahead of K frames]  ->  log_probs (1, T + A, symbols), the next h[, c]
        [, the next waiting]

    The lookahead's waiting frames are always K: they start as zeros, whose K outputs the stream drops; at the end
    the stream appends K zero frames (T = 0) for the frames still waiting, as the offline graph pads them."""

    def __init__(self, model):
        super().__init__()
        if not model.can_stream() or model.truncate_bptt:
            raise UserError("a step graph is exported from a model that streams: unidirectional rnn_tanh, rnn_relu, "
                            "lstm or gru, without truncate_bptt")
        self.input_projection, self.rnn = projection_folded(model)
        self.output, self.lookahead = model.output, model.lookahead
        self.lstm = isinstance(model.rnn, nn.LSTM)

    def forward(self, features: torch.Tensor, h: torch.Tensor, *rest: torch.Tensor):
        rest = list(rest)
        state = (h, rest.pop(0)) if self.lstm else h
        hidden, state = self.rnn(self.input_projection(features), state)
        states = list(state) if self.lstm else [state]
        if self.lookahead is None:
            return (self.output(hidden).log_softmax(-1), *states)
        waiting, appended = rest
        every = torch.cat([waiting, hidden, appended], dim=1)
        ahead = self.lookahead(every, final=False)  # frame t's output, once its K frames ahead are in
        return (self.output(ahead).log_softmax(-1), *states, every[:, every.shape[1] - self.lookahead.context :])


def step_io(model) -> tuple[list[str], list[str]]:
    """The step graph's input and output names."""
    lstm, ahead = model.cell == "lstm", model.lookahead is not None
    inputs = ["features", "h", *(["c"] if lstm else []), *(["waiting", "appended"] if ahead else [])]
    outputs = ["log_probs", "next_h", *(["next_c"] if lstm else []), *(["next_waiting"] if ahead else [])]
    return inputs, outputs


def write_step_onnx(recognizer: Recognizer, target: Path, extra_metadata: dict | None = None) -> None:
    """The step graph of a streaming recogniser, its metadata set (what asr/deploy/onnx_stream.py needs to make the
    features in numpy and to decode), written to a temporary file and renamed into place."""
    import onnx

    from asr.deploy.streaming import streamable

    if not streamable(recognizer):
        raise UserError("--stream exports the step graph of a model that streams: a unidirectional model whose "
                        "features are normalised online or globally (data.normalize); this one cannot")
    model = recognizer.model.eval()
    graph = StepGraph(model).eval()
    layers, hidden = model.config.num_layers, model.config.hidden_size
    inputs, outputs = step_io(model)
    example = [torch.randn(1, 5, model.config.input_dim), torch.zeros(layers, 1, hidden)]
    if graph.lstm:
        example.append(torch.zeros(layers, 1, hidden))
    if model.lookahead is not None:
        example += [torch.zeros(1, model.lookahead.context, hidden), torch.zeros(1, 0, hidden)]
    tmp = target.with_name(target.name + ".tmp")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", message="The feature will be removed", module="torch.onnx")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module="torch.nn.modules.rnn")
        # its batch is 1 and its initial states are inputs, which is what this warning asks for
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        torch.onnx.export(graph, tuple(example), str(tmp), input_names=inputs, output_names=outputs,
                          opset_version=OPSET, dynamo=False,
                          dynamic_axes={"features": {1: "frames"}, "log_probs": {1: "frames_out"},
                                        **({"appended": {1: "appended"}} if "appended" in inputs else {})})
    saved = onnx.load(str(tmp))
    rnn_nodes_as_scan(saved)
    extractor = recognizer.extractor
    meta = {"graph": "stream_step", "vocabulary": json.dumps(recognizer.vocabulary),
            "features": json.dumps(extractor.config.as_dict()), "feature_stats": json.dumps(extractor.stats),
            "frame_ms": str(extractor.config.frame_ms), "min_samples": str(extractor.min_samples()),
            "model": json.dumps(vars(model.config)), "cell": model.cell, "layers": str(layers), "hidden": str(hidden),
            "lookahead": str(model.lookahead.context if model.lookahead is not None else 0),
            "online_prior_frames": str(ONLINE_PRIOR_FRAMES if extractor.config.normalize in RUNNING_MEANS else 0),
            "dataset": str(recognizer.dataset), **(extra_metadata or {})}
    onnx.helper.set_model_props(saved, meta)
    onnx.save(saved, str(tmp))
    tmp.replace(target)


def export_onnx(checkpoint: str | Path, target: str | Path, overwrite: bool = False, quantize: str | None = None,
                stream: bool = False) -> dict:
    """Writes the ONNX graph of `checkpoint` to `target` (never over an existing file unless overwrite): the whole-
    recording graph, or with `stream` the step graph of a streaming model; its weights in 8 bits if `quantize` is
    "int8". Returns its size and sha256."""
    checkpoint, target = Path(checkpoint), Path(target)
    if target.exists() and not overwrite:
        raise UserError(f"{target} exists; nothing was written. Pass --force to replace it, or choose another name.")
    recognizer = Recognizer.from_saved(read_training_checkpoint(checkpoint))
    origin = {"exported_from": json.dumps({"file": checkpoint.name, "sha256": sha256(checkpoint)})}
    write = write_step_onnx if stream else write_onnx
    if quantize is None:
        write(recognizer, target, origin)
    else:
        from asr.deploy.quantize import quantize_int8

        staged = target.with_name(target.name + ".float32.tmp")
        try:
            write(recognizer, staged, origin)
            quantize_int8(staged, target.with_name(target.name + ".tmp"))
            target.with_name(target.name + ".tmp").replace(target)
        finally:
            staged.unlink(missing_ok=True)
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
        # the frame stacking's strided slices stay Slice nodes: nothing to fold there
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1 can be constant folded")
        torch.onnx.export(graph, example, str(tmp), input_names=["waveforms", "lengths"],
                          output_names=["log_probs", "frames"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"waveforms": {0: "batch", 1: "samples"}, "lengths": {0: "batch"},
                                        "log_probs": {0: "batch", 1: "frames"}, "frames": {0: "batch"}})
    model = onnx.load(str(tmp))
    basis_computed_in_graph(model, graph.features.window)
    rnn_nodes_as_scan(model)
    meta = {"vocabulary": json.dumps(recognizer.vocabulary),
            "features": json.dumps(recognizer.extractor.config.as_dict()),
            "frame_ms": str(recognizer.extractor.config.frame_ms),
            "min_samples": str(recognizer.extractor.min_samples()),
            "model": json.dumps(vars(recognizer.model.config)),
            "dataset": str(recognizer.dataset), **(extra_metadata or {})}
    onnx.helper.set_model_props(model, meta)
    onnx.save(model, str(tmp))
    tmp.replace(target)
