"""Gradient instruments: the measurements that make vanishing and exploding gradients visible.

1. Per-layer gradient norms (every training step): which layers receive a learning signal at all.
2. Spectral radius of each layer's W_hh (every epoch, see AcousticModel.recurrent_spectral_radii): the
   per-step gain of the recurrence, the quantity whose distance from 1 decides vanishing vs exploding.
3. Gradient flow (across time; `gradient_flow` in code, recipes, logs and files): ||d(score at the last
   frame T) / d(input to the recurrence at frame t)||
   against k = T - t frames back. For a tanh RNN it falls geometrically with k (the product of k
   Jacobians W_hh^T diag(1 - h^2)); for an LSTM it stays up for far longer. This is how much the output
   at frame T can still learn from what happened k frames earlier.
"""
from __future__ import annotations

import contextlib
import re
from typing import Callable, Iterator

import torch
from torch import nn

from asr.base.errors import UserError

FRAMES_BACK = (1, 10, 40, 80)  # where the gradient flow is logged and reported (frames before the last)



def layer_name(parameter_name: str) -> str:
    """'rnn.weight_hh_l1_reverse' -> 'rnn_l1'; 'input_projection.weight' -> 'input_projection'."""
    module, _, _ = parameter_name.rpartition(".")
    if module == "rnn" or module.endswith(".rnn"):
        m = re.search(r"_l(\d+)", parameter_name)
        return f"rnn_l{m.group(1)}"
    return module.replace(".", "_") or parameter_name


def gradient_norms(model: nn.Module) -> dict[str, torch.Tensor]:
    """L2 norm of the gradient of each layer's parameters and of all of them ('total'), as tensors.

    Call between backward() and any clipping to see the true norms. Kept as tensors so that logging
    them does not force a device synchronisation on every step.
    """
    squares: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        if p.grad is not None:
            layer = layer_name(name)
            sq = p.grad.detach().float().pow(2).sum()
            squares[layer] = squares[layer] + sq if layer in squares else sq
    norms = {layer: sq.sqrt() for layer, sq in squares.items()}
    if squares:
        norms["total"] = torch.stack(list(squares.values())).sum().sqrt()
    return norms


@contextlib.contextmanager
def no_dropout_train_mode(model: nn.Module) -> Iterator[None]:
    """Training mode (cuDNN's RNN backward refuses eval mode) with every dropout switched off."""
    was_training = model.training
    saved = {}
    model.train()
    for m in model.modules():
        if isinstance(m, nn.RNNBase):
            saved[m], m.dropout = m.dropout, 0.0
        elif isinstance(m, nn.Dropout):
            saved[m], m.p = m.p, 0.0
    try:
        yield
    finally:
        for m, value in saved.items():
            if isinstance(m, nn.RNNBase):
                m.dropout = value
            else:
                m.p = value
        model.train(was_training)


def gradient_flow(recur: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ||d score_T / d inputs_t||, indexed by frames back k = T - t (index 0 = frame T).

    recur: maps (batch, frames, dim) recurrent inputs to (batch, frames, classes) outputs.
    score_T: each utterance's largest output at its last frame (the symbol the model would emit there);
    summing the batch's scores keeps each utterance's gradient separate, as utterances do not interact.
    """
    inputs = inputs.detach().requires_grad_(True)
    outputs = recur(inputs)
    score = outputs[:, -1].max(dim=-1).values.sum()
    (grad,) = torch.autograd.grad(score, inputs)
    return grad.norm(dim=-1).flip(1).mean(0).detach()


def model_gradient_flow(model, features: torch.Tensor) -> torch.Tensor:
    """gradient_flow for an AcousticModel on (batch, frames, feature_dim) features of equal length."""
    with no_dropout_train_mode(model), torch.enable_grad():
        return gradient_flow(model.recur, model.recurrent_input(features).float())  # float32 under autocast too


def fixed_probe_batch(utterances: list, frames: int, count: int) -> torch.Tensor:
    """(count, frames, feature_dim): the first `frames` stacked frames of the first `count` utterances that
    are at least that long. Fixed, so curves from different epochs and models are comparable."""
    long_enough = [u for u in utterances if u.shape[0] >= frames][:count]
    if not long_enough:
        raise UserError(f"no utterance has {frames} frames for the gradient-across-time probe: lower `frames`")
    return torch.stack([u[:frames] for u in long_enough])
