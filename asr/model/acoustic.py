"""The acoustic model: input projection -> recurrent stack (the cell under study) -> per-frame symbol scores.

Only the recurrent cell changes between the models we compare; projection, depth, width, dropout,
output layer, optimiser and data stay identical, so differences in WER come from the cell.

- rnn_tanh: h_t = tanh(W_ih x_t + W_hh h_{t-1} + b). Backpropagation through time multiplies the
  gradient by W_hh^T diag(1 - h_t^2) once per frame: when that product's scale is below 1 it vanishes
  geometrically, above 1 it explodes.
- rnn_relu: the same with ReLU; with identity W_hh it is the IRNN of Le, Jaitly & Hinton 2015.
- lstm: a memory cell updated additively, c_t = f_t * c_{t-1} + i_t * g_t; while the forget gate f_t
  stays near 1 the gradient flows back along c unchanged (Hochreiter & Schmidhuber 1997).
- gru: a gated interpolation h_t = (1 - z_t) * n_t + z_t * h_{t-1}, the same idea with fewer weights.
- esn: an echo state network, random frozen leaky reservoirs with only the output layer trained
  (asr/model/remedies.py, like truncated BPTT, `truncate_bptt`).

A unidirectional model may look a few frames ahead before it commits to a frame's symbol (`lookahead`, the row
convolution of DeepSpeech 2): it still streams, with that many frames of delay.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Mapping, Optional

import torch
from torch import nn

from asr.base.errors import UserError
from asr.model.recurrence import recurrence
from asr.model.remedies import EchoStateNetwork, truncated_recurrence, unrolled_rnn
from asr.data.text import VOCABULARY

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru", "esn")
INITS = ("default", "orthogonal", "identity", "gaussian")
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3, "esn": 1}
# W_hh of gated cells stacks one block per gate; the block that plays the role of the plain RNN's
# W_rec (the candidate state, g in the LSTM and n in the GRU) is the third in PyTorch's layout.
CANDIDATE_BLOCK = {"rnn_tanh": 0, "rnn_relu": 0, "lstm": 2, "gru": 2, "esn": 0}


def spectral_radius(matrix: torch.Tensor) -> float:
    """Largest |eigenvalue|: the factor by which W_hh stretches its dominant direction per time step."""
    matrix = matrix.detach().double().cpu()
    if not torch.isfinite(matrix).all():  # LAPACK may crash on NaN input
        return float("nan")
    return float(torch.linalg.eigvals(matrix).abs().max())


def scale_to_spectral_radius(matrix: torch.Tensor, radius: float) -> None:
    if matrix.is_meta:  # a model built only to count its parameters has no values to scale
        return
    with torch.no_grad():
        matrix.mul_(radius / spectral_radius(matrix))


@dataclass(frozen=True)
class ModelConfig:
    """Everything that builds an AcousticModel, with its one set of defaults. The training module takes the same
    fields as its arguments (a recipe's `model:` section sets them; asr/train/module.py reads its defaults from here),
    a checkpoint carries them among its hyper-parameters, and `ModelConfig.from_hparams` reads them back.

    input_dim: features per frame; vocab_size: output symbols (CTC blank included); cell: rnn_tanh, rnn_relu,
    lstm, gru or esn; init: default (PyTorch's uniform), orthogonal, identity (IRNN) or gaussian for W_hh;
    spectral_radius: rescale each W_hh (block) to it after init (None: leave it; esn: the reservoirs', 0.9 if
    None); truncate_bptt: backpropagate through at most this many frames (unidirectional only); esn_leak: leak
    rate of the echo-state reservoirs; lookahead: frames of future context the output layer sees through a row
    convolution (`Lookahead`; unidirectional only: a bidirectional model sees the whole utterance already);
    forget_bias: the LSTM forget gate's bias at init (None: PyTorch's uniform draw, about 0, a half-open gate;
    1.0, Gers et al. 2000 and Jozefowicz et al. 2015: f_t near 0.73 from the first step, so the cell and the
    gradient through it last longer before training has learned to keep them)."""
    input_dim: int = 240
    vocab_size: int = len(VOCABULARY)
    cell: str = "lstm"
    hidden_size: int = 256
    num_layers: int = 3
    bidirectional: bool = True
    dropout: float = 0.25
    init: str = "default"
    spectral_radius: Optional[float] = None
    truncate_bptt: Optional[int] = None
    esn_leak: float = 0.3
    lookahead: int = 0
    forget_bias: Optional[float] = None

    def __post_init__(self):
        if self.cell not in CELLS:
            raise UserError(f"unknown cell {self.cell!r}: choose one of {', '.join(CELLS)}")
        if self.init not in INITS:
            raise UserError(f"unknown init {self.init!r}: choose one of {', '.join(INITS)}")
        if self.truncate_bptt is not None and (self.bidirectional or self.truncate_bptt < 1):
            raise UserError("truncate_bptt needs a unidirectional model and a positive number of frames: the "
                             "backward direction of a bidirectional model would carry the future across every cut "
                             "(set bidirectional: false)")
        if self.cell == "esn" and self.bidirectional:
            raise UserError("the echo state network (cell esn) runs forward in time only: set bidirectional: false")
        if self.lookahead < 0 or (self.lookahead and (self.bidirectional or self.cell == "esn" or self.truncate_bptt)):
            raise UserError(f"lookahead must be 0 or a positive number of frames on a unidirectional rnn_tanh, rnn_relu, "
                             f"lstm or gru model without truncate_bptt, got {self.lookahead} (bidirectional models see "
                             "the whole utterance already: set bidirectional: false or lookahead: 0)")
        if self.forget_bias is not None and self.cell != "lstm":
            raise UserError(f"forget_bias sets the LSTM forget gate's bias: cell {self.cell} has no forget gate "
                             "(set cell: lstm, or leave forget_bias out)")

    @classmethod
    def from_hparams(cls, hparams: Mapping) -> "ModelConfig":
        """The model a training module's hyper-parameters describe (a checkpoint's `hyper_parameters`: these
        fields, the vocabulary, and the optimiser's settings, which the model does not read)."""
        names = {f.name for f in fields(cls)} - {"vocab_size"}
        return cls(vocab_size=len(hparams["vocabulary"]), **{k: v for k, v in hparams.items() if k in names})


class Lookahead(nn.Module):
    """Future context for a unidirectional model (Wang et al.'s row convolution, DeepSpeech 2): frame t's output
    also sees the next `context` frames of the top layer, one weight per channel and offset,
    y_t = sum_k w_k * h_{t+k} for k = 0..context, with zeros after the last frame. It starts as the identity
    (w_0 = 1, the rest 0), so training starts from the model without it. Streaming waits `context` frames."""

    def __init__(self, channels: int, context: int):
        super().__init__()
        self.context = context
        self.conv = nn.Conv1d(channels, channels, context + 1, groups=channels, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, 0, 0] = 1.0

    def forward(self, hidden: torch.Tensor, final: bool = True) -> torch.Tensor:
        """(batch, frames, channels) -> the output of every frame (final: the sequence ends here, zeros after it)
        or, mid-stream, of the frames whose `context` next frames are in (frames - context of them)."""
        x = hidden.transpose(1, 2)
        if final:
            x = nn.functional.pad(x, (0, self.context))
        return self.conv(x).transpose(1, 2)


class AcousticModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        c = self.config = config
        self.cell, self.num_layers, self.bidirectional, self.truncate_bptt = (c.cell, c.num_layers, c.bidirectional,
                                                                               c.truncate_bptt)
        self.input_projection = nn.Linear(c.input_dim, c.hidden_size)
        self.output = nn.Linear(c.hidden_size * (2 if c.bidirectional else 1), c.vocab_size)
        self.lookahead = Lookahead(c.hidden_size, c.lookahead) if c.lookahead else None
        if c.cell == "esn":  # random, frozen input weights and reservoirs: only the output layer learns
            self.input_projection.requires_grad_(False)
            self.rnn = EchoStateNetwork(c.hidden_size, c.num_layers, c.spectral_radius or 0.9, c.esn_leak)
            return
        rnn_class = {"rnn_tanh": nn.RNN, "rnn_relu": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[c.cell]
        extra = {"nonlinearity": c.cell.split("_")[1]} if c.cell.startswith("rnn_") else {}
        self.rnn = rnn_class(c.hidden_size, c.hidden_size, num_layers=c.num_layers, batch_first=True,
                             bidirectional=c.bidirectional, dropout=c.dropout if c.num_layers > 1 else 0.0, **extra)
        self.initialize(c.init, c.spectral_radius, c.forget_bias)

    def initialize(self, init: str, radius: Optional[float], forget_bias: Optional[float] = None) -> None:
        for name, weights in self.recurrent_weights().items():
            if weights.is_meta:  # built on the meta device to count parameters: nothing to initialise
                return
            blocks = weights.data.chunk(GATES[self.cell], dim=0)  # views into the parameter
            for block in blocks:
                if init == "orthogonal":
                    nn.init.orthogonal_(block)
                elif init == "identity":
                    nn.init.eye_(block)
                elif init == "gaussian":  # N(0, 1/H): spectral radius close to 1 for large H (circular law)
                    nn.init.normal_(block, std=block.shape[1] ** -0.5)
                if radius is not None:
                    scale_to_spectral_radius(block, radius)
        if init == "identity":  # IRNN: identity recurrence and zero biases
            for name, p in self.rnn.named_parameters():
                if name.startswith("bias"):
                    nn.init.zeros_(p)
        if forget_bias is not None:  # PyTorch's LSTM gates are (input, forget, cell, output); the two biases add up
            for name, p in self.rnn.named_parameters():
                if name.startswith("bias"):
                    p.data.chunk(4)[1].fill_(forget_bias if name.startswith("bias_ih") else 0.0)

    def recurrent_weights(self) -> dict[str, torch.Tensor]:
        """W_hh of every layer and direction, e.g. {'weight_hh_l0': ..., 'weight_hh_l0_reverse': ...}."""
        if self.cell == "esn":
            return {f"weight_hh_l{i}": layer.weight_hh for i, layer in enumerate(self.rnn.layers)}
        return {n: p for n, p in self.rnn.named_parameters() if n.startswith("weight_hh")}

    def recurrent_spectral_radii(self) -> dict[str, float]:
        """Spectral radius of each layer's W_hh (its candidate-state block for gated cells)."""
        block = CANDIDATE_BLOCK[self.cell]
        return {n.removeprefix("weight_hh_"): spectral_radius(w.chunk(GATES[self.cell], dim=0)[block])
                for n, w in self.recurrent_weights().items()}

    def recurrent_input(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, frames, input_dim) -> the sequence the recurrence runs over."""
        return self.input_projection(features)

    def recur(self, inputs: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Runs the recurrent stack and the output layer: (batch, frames, hidden) -> log-probs. Always in float32:
        under autocast (a trainer's bf16-mixed) PyTorch runs cuDNN RNNs in float16, whose range ends near 6e-8,
        above the gradients across time this project measures, so "vanishing" would partly be underflow."""
        if torch.is_autocast_enabled(inputs.device.type):
            with torch.autocast(inputs.device.type, enabled=False):
                return self.recur(inputs.float(), lengths)
        if self.cell == "esn":  # unidirectional: padding at the end cannot reach earlier frames
            return self.output(self.rnn(inputs)).log_softmax(-1)
        if self.truncate_bptt:
            return self.output(truncated_recurrence(self.rnn, inputs, self.truncate_bptt)).log_softmax(-1)
        # lengths keep padding out of every valid frame (asr/model/recurrence.py: the fast exact path per device); its
        # zeros on padding are what the lookahead sees after an utterance's end
        hidden = recurrence(self.rnn, inputs, lengths)
        if self.lookahead is not None:
            hidden = self.lookahead(hidden)
        return self.output(hidden).log_softmax(-1)

    def forward(self, features: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.recur(self.recurrent_input(features), lengths)

    def can_stream(self) -> bool:
        """Whether the model can transcribe audio as it arrives: it must not look at frames to come."""
        return not self.bidirectional and self.cell != "esn"

    def step(self, features: torch.Tensor, state=None) -> tuple[torch.Tensor, object]:
        """The next frames of a stream: (batch, frames, input_dim) and the state after the frames before (None at
        the start) -> the log-probs of the frames now complete and the state after them (asr/deploy/streaming.py). With a
        lookahead the last `lookahead` frames wait for their future (the state holds them) until the next step
        or `finish`. Running an utterance in steps gives the log-probs of running it whole (in eval mode)."""
        if not self.can_stream():
            raise UserError("only a unidirectional rnn_tanh, rnn_relu, lstm or gru model can stream; this one is "
                            f"{'bidirectional' if self.bidirectional else self.cell}")
        recurrent, waiting = state if state is not None else (None, None)
        hidden, recurrent = self.rnn(self.recurrent_input(features), recurrent)
        if self.lookahead is not None:
            if waiting is not None:
                hidden = torch.cat([waiting, hidden], dim=1)
            waiting = hidden[:, max(0, hidden.shape[1] - self.lookahead.context) :]
            hidden = self.lookahead(hidden, final=False) if hidden.shape[1] > self.lookahead.context else hidden[:, :0]
        return self.output(hidden).log_softmax(-1), (recurrent, waiting)

    def finish(self, state) -> torch.Tensor:
        """The end of a stream: the log-probs of the frames still waiting for their lookahead (none without one)."""
        waiting = state[1] if state is not None else None
        if self.lookahead is None or waiting is None:
            return torch.zeros(1, 0, self.output.out_features, device=self.output.weight.device)
        return self.output(self.lookahead(waiting)).log_softmax(-1)

    def can_unroll(self) -> bool:
        return self.cell.startswith("rnn_") and not self.bidirectional and not self.truncate_bptt

    def forward_unrolled(self, features: torch.Tensor) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
        """Log-probs plus every layer's hidden state at every frame, for the gradient-norm penalty
        (plain unidirectional rnn_tanh / rnn_relu only)."""
        if not self.can_unroll():
            raise UserError("the gradient-norm penalty needs a unidirectional rnn_tanh or rnn_relu model "
                             "without truncate_bptt")
        hidden, states = unrolled_rnn(self.rnn, self.recurrent_input(features), self.rnn.dropout, self.training)
        return self.output(hidden).log_softmax(-1), states

    def num_parameters(self) -> int:
        """Trained parameters (an echo state network's frozen weights do not count)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def build_model(hparams: Mapping) -> AcousticModel:
    """The acoustic model that a training module's hyper-parameters describe. Checkpoints carry those
    hyper-parameters whole, and training, evaluation, transcription and the study all build their model
    here, so a value set in a recipe can never be lost on the way from training to a loaded checkpoint."""
    return AcousticModel(ModelConfig.from_hparams(hparams))


def parameter_count(hparams: Mapping) -> int:
    """Trained parameters of the model `hparams` describe, counted on a model built on the meta device
    (shapes only: no memory, no initialisation)."""
    with torch.device("meta"):
        return build_model(hparams).num_parameters()
