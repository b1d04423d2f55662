"""The remedies for vanishing/exploding gradients other than the LSTM, as the model and module use them.

- Gradient clipping: Lightning's own `gradient_clip_val` / `gradient_clip_algorithm` (norm or value).
- Weight initialisation: orthogonal, identity (IRNN) and spectral-radius scaling, in AcousticModel.initialize.
- Truncated BPTT (`truncated_recurrence`): run the recurrence in chunks of k frames and cut the gradient
  between chunks. Forward values are unchanged; the gradient can never travel more than k frames back.
- Gradient-norm penalty (`unrolled_rnn`, `gradient_norm_penalty`): Pascanu, Mikolov & Bengio (2013),
  a regulariser that asks every step of backpropagation through time to preserve the gradient's norm.
- Echo state network (`LeakyReservoir`): random, frozen input and recurrent weights with a chosen
  spectral radius and leak; only the readout learns, so no gradient has to cross time at all.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn


def _detach(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def truncated_recurrence(rnn: nn.RNNBase, inputs: torch.Tensor, frames: int) -> torch.Tensor:
    """Outputs of a unidirectional `rnn` over (batch, time, dim) inputs, carrying the hidden state from
    chunk to chunk but detaching it, so gradients flow back at most `frames` frames (to the chunk start).
    Padding at the end of shorter utterances only affects outputs past their own end."""
    state, outputs = None, []
    for chunk in inputs.split(frames, dim=1):
        out, state = rnn(chunk, state)
        state = _detach(state)
        outputs.append(out)
    return torch.cat(outputs, dim=1)


ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "linear": lambda x: x}


def unrolled_rnn(rnn: nn.RNN, inputs: torch.Tensor, dropout: float = 0.0,
                 training: bool = False) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
    """A unidirectional nn.RNN stepped frame by frame with its own weights (same outputs as rnn(inputs)),
    keeping every hidden state h_t as a node of the graph so that dLoss/dh_t can be asked for."""
    act = ACTIVATIONS[rnn.nonlinearity]
    layer_input, states = inputs, []
    for layer in range(rnn.num_layers):
        w_ih, w_hh = getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"weight_hh_l{layer}")
        bias = getattr(rnn, f"bias_ih_l{layer}") + getattr(rnn, f"bias_hh_l{layer}")
        drive = layer_input @ w_ih.T + bias  # the input part of every step at once
        h = inputs.new_zeros(inputs.shape[0], rnn.hidden_size)
        hs = []
        for t in range(inputs.shape[1]):
            h = act(drive[:, t] + h @ w_hh.T)
            hs.append(h)
        states.append(hs)
        layer_input = torch.stack(hs, dim=1)
        if layer < rnn.num_layers - 1 and dropout:
            layer_input = nn.functional.dropout(layer_input, dropout, training)
    return layer_input, states


def gradient_norm_penalty(w_hh: torch.Tensor, states: list[torch.Tensor], grads: tuple[torch.Tensor, ...],
                          nonlinearity: str = "tanh") -> torch.Tensor:
    """Omega = mean over steps and utterances of (||delta_{t+1} dh_{t+1}/dh_t|| / ||delta_{t+1}|| - 1)^2.

    delta_{t+1} = dLoss/dh_{t+1} (from autograd.grad, treated as a constant as in Pascanu et al.);
    dh_{t+1}/dh_t = diag(f'(a_{t+1})) W_hh, with f' read off h_{t+1} itself (tanh: 1 - h^2). Zero when every
    backward step keeps the gradient's norm (e.g. an orthogonal linear recurrence), positive when it shrinks
    or grows it. Steps where delta is zero (padding) are left out."""
    terms = []
    for t in range(len(states) - 1):
        delta, h_next = grads[t + 1].detach(), states[t + 1]
        slope = {"tanh": lambda h: 1 - h * h, "relu": lambda h: (h > 0).to(h.dtype), "linear": torch.ones_like}[nonlinearity](h_next)
        back = (delta * slope) @ w_hh  # row vector times the Jacobian
        norm = delta.norm(dim=-1)
        keep = norm > 1e-12
        if keep.any():
            terms.append((back.norm(dim=-1)[keep] / norm[keep] - 1) ** 2)
    return torch.cat(terms).mean() if terms else w_hh.new_zeros(())


class LeakyReservoir(nn.Module):
    """One echo-state layer: h_t = (1 - leak) h_{t-1} + leak * tanh(W_in x_t + W h_{t-1}).

    W_in and W are random and stay fixed (buffers, not parameters): W is scaled to `spectral_radius`
    (below 1 gives the echo-state property, fading memory of the input); `leak` sets how slowly the
    state integrates (small leak, long memory)."""

    def __init__(self, input_size: int, hidden_size: int, spectral_radius: float = 0.9, leak: float = 0.3):
        super().__init__()
        self.hidden_size, self.leak = hidden_size, leak
        w = torch.randn(hidden_size, hidden_size) / hidden_size ** 0.5
        if not w.is_meta:  # (a model built on the meta device only counts parameters)
            w *= spectral_radius / torch.linalg.eigvals(w.double()).abs().max().float()
        self.register_buffer("weight_hh", w)
        self.register_buffer("weight_ih", (torch.rand(hidden_size, input_size) * 2 - 1) / input_size ** 0.5)

    def forward(self, inputs: torch.Tensor, state: Optional[torch.Tensor] = None) -> torch.Tensor:
        drive = inputs @ self.weight_ih.T
        h = state if state is not None else inputs.new_zeros(inputs.shape[0], self.hidden_size)
        outputs = []
        for t in range(inputs.shape[1]):
            h = (1 - self.leak) * h + self.leak * torch.tanh(drive[:, t] + h @ self.weight_hh.T)
            outputs.append(h)
        return torch.stack(outputs, dim=1)


class EchoStateNetwork(nn.Module):
    """A stack of leaky reservoirs, with the nn.RNN-like call signature the acoustic model uses."""

    def __init__(self, hidden_size: int, num_layers: int, spectral_radius: float, leak: float):
        super().__init__()
        self.layers = nn.ModuleList(LeakyReservoir(hidden_size, hidden_size, spectral_radius, leak)
                                    for _ in range(num_layers))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        # Nothing before the readout learns: skip building a graph unless someone asks for input gradients.
        with torch.set_grad_enabled(torch.is_grad_enabled() and inputs.requires_grad):
            for layer in self.layers:
                inputs = layer(inputs)
        return inputs
