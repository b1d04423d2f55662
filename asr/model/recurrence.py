"""Running the recurrent stack over a batch of utterances of different lengths, exactly and fast.

A batch is padded to its longest utterance. The recurrence must never read that padding: a forward
pass reaches it only after an utterance's last frame (harmless), but a backward (right-to-left) pass
would start in it and carry it into every real frame.

- `packed_recurrence`: PyTorch's PackedSequence. Exact, and what cuDNN runs natively on a GPU; on a CPU
  PyTorch runs packed input through its generic loop, a fraction of what the cores can do.
- `padded_recurrence`: the same numbers on every valid frame, from padded tensors only, so that on a CPU
  PyTorch can use its oneDNN kernel (LSTM; GRU and tanh/ReLU RNNs also gain by skipping the packing).
  A unidirectional stack is one call. A bidirectional one runs each layer as two unidirectional passes,
  the right-to-left one over each utterance reversed *within its own length* (its padding stays at the
  end), then reversed back. Inter-layer dropout is applied between layers as nn.RNNBase does.

`recurrence` picks the fast exact path for the device (ASR_RECURRENCE forces one); benchmarks/rnn_kernel.py
measures the gap.
Both return zeros on padded frames, so nothing downstream can tell them apart.
"""
from __future__ import annotations

import os
import threading
from typing import Optional

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asr.base.errors import UserError

WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def valid_frames(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(batch, frames) bool: True on each utterance's own frames, False on its padding."""
    return torch.arange(frames, device=lengths.device)[None] < lengths[:, None]


def reverse_within_lengths(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(batch, frames) time indices that reverse each utterance's first `length` frames and leave its padding
    where it is. The permutation is its own inverse: gathering twice restores the original order."""
    t = torch.arange(frames, device=lengths.device)[None]
    return torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)


def packed_recurrence(rnn: nn.RNNBase, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(batch, frames, input) -> (batch, frames, hidden * directions), through a PackedSequence."""
    packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
    hidden, _ = rnn(packed)
    hidden, _ = pad_packed_sequence(hidden, batch_first=True, total_length=inputs.shape[1])
    return hidden


_stand_ins = threading.local()  # per thread: functional_call swaps a module's parameters during the call


def stand_in(rnn: nn.RNNBase, input_size: int) -> nn.RNNBase:
    """A one-layer unidirectional module of rnn's kind, on the meta device (it holds no memory: every
    parameter is replaced when it runs), built once per thread and shape (building one costs ~1 ms)."""
    cache = _stand_ins.__dict__.setdefault("modules", {})
    nonlinearity = getattr(rnn, "nonlinearity", None)
    key = (type(rnn), input_size, rnn.hidden_size, rnn.bias, nonlinearity)
    if key not in cache:
        extra = {"nonlinearity": nonlinearity} if isinstance(rnn, nn.RNN) else {}
        with torch.device("meta"):
            cache[key] = type(rnn)(input_size, rnn.hidden_size, num_layers=1, bias=rnn.bias, batch_first=True, **extra)
    return cache[key]


def one_direction(rnn: nn.RNNBase, layer: int, suffix: str, inputs: torch.Tensor) -> torch.Tensor:
    """Layer `layer` of `rnn` in one direction ('' or '_reverse') over `inputs`, run by a one-layer
    unidirectional stand-in with rnn's own parameters (so autograd reaches them and keys stay as they are)."""
    names = WEIGHTS if rnn.bias else WEIGHTS[:2]
    params = {f"{name}_l0": getattr(rnn, f"{name}_l{layer}{suffix}") for name in names}
    output, _ = functional_call(stand_in(rnn, inputs.shape[-1]), params, (inputs,))
    return output


def padded_recurrence(rnn: nn.RNNBase, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Same as packed_recurrence on every valid frame (zeros on padding), without a PackedSequence."""
    frames, lengths = inputs.shape[1], lengths.to(inputs.device)
    valid = valid_frames(lengths, frames)
    if not rnn.bidirectional or bool(valid.all()):  # nothing ever runs through padding into a valid frame
        hidden, _ = rnn(inputs)
        return hidden.where(valid[..., None], 0.0)
    order = reverse_within_lengths(lengths, frames)[..., None]
    layer_input = inputs
    for layer in range(rnn.num_layers):
        if layer > 0 and rnn.dropout:
            layer_input = nn.functional.dropout(layer_input, rnn.dropout, rnn.training)
        forward = one_direction(rnn, layer, "", layer_input)
        reversed_input = layer_input.gather(1, order.expand(-1, -1, layer_input.shape[-1]))
        backward = one_direction(rnn, layer, "_reverse", reversed_input)
        backward = backward.gather(1, order.expand(-1, -1, backward.shape[-1]))
        layer_input = torch.cat([forward, backward], dim=-1)
    return layer_input.where(valid[..., None], 0.0)


PATHS = ("auto", "packed", "padded")


def recurrence(rnn: nn.RNNBase, inputs: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The recurrent stack over a padded batch: every valid frame exact, on the fastest path for the device.
    On a GPU the packed path (cuDNN runs it natively); elsewhere the padded one. ASR_RECURRENCE=packed or padded
    forces one on any device: the tests run the GPU's path on a CPU so."""
    if lengths is None:
        hidden, _ = rnn(inputs)
        return hidden
    path = os.environ.get("ASR_RECURRENCE", "auto")
    if path not in PATHS:
        raise UserError(f"ASR_RECURRENCE={path}: it takes {', '.join(PATHS)}")
    if path == "packed" or (path == "auto" and inputs.device.type == "cuda"):
        return packed_recurrence(rnn, inputs, lengths)
    return padded_recurrence(rnn, inputs, lengths)
