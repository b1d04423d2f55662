"""The training module's guard against non-finite steps and its pre-clipping gradient norms."""
import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from asr.data.datamodule import Batch
from asr.model.gradients import gradient_norms
from asr.train.module import ASRModule


def synthetic_batches(n=4):
    torch.manual_seed(0)
    return [Batch(torch.randn(2, 30, 12), torch.tensor([30, 25]), torch.tensor([5, 6, 7, 5, 5]),
                  torch.tensor([3, 2]), ["ABC", "AB"], ["a", "b"]) for _ in range(n)]


def fit(module, steps, **trainer_args):
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", **trainer_args)
    trainer.fit(module, DataLoader(synthetic_batches(), batch_size=None))
    return trainer


class PoisonedLoss(ASRModule):
    def training_step(self, batch, batch_idx):
        return super().training_step(batch, batch_idx) * float("nan")


def test_nonfinite_steps_are_skipped_and_counted():
    module = PoisonedLoss(input_dim=12, cell="rnn_tanh", hidden_size=8, num_layers=1)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    fit(module, 3)
    assert module.nonfinite_steps == 3
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_finite_steps_update_the_weights():
    module = ASRModule(input_dim=12, cell="rnn_tanh", hidden_size=8, num_layers=1)
    before = module.model.rnn.weight_hh_l0.detach().clone()
    fit(module, 2)
    assert module.nonfinite_steps == 0
    assert not torch.equal(before, module.model.rnn.weight_hh_l0)


class NoiseProbe(PoisonedLoss):
    """Every step skipped (a non-finite loss: the optimizer leaves the weights alone), the weights the forward pass saw
    recorded."""
    def training_step(self, batch, batch_idx):
        self.seen = getattr(self, "seen", []) + [self.model.rnn.weight_hh_l0.detach().clone()]
        return super().training_step(batch, batch_idx)


def test_weight_noise_is_in_the_forward_pass_and_out_of_the_weights_the_optimizer_updates():
    """model.weight_noise (Graves et al. 2013): each batch's forward and backward pass see the weights plus fresh noise
    of that standard deviation; the optimizer gets the clean weights back, unchanged to the last bit; the noise of a
    step is the same in a resumed run (drawn from the run's seed and the step)."""
    torch.manual_seed(7)
    module = NoiseProbe(input_dim=12, cell="lstm", hidden_size=32, num_layers=1, weight_noise=0.05)
    clean = {k: v.clone() for k, v in module.state_dict().items()}
    fit(module, 3)
    assert all(torch.equal(clean[k], v) for k, v in module.state_dict().items())
    noises = [seen - clean["model.rnn.weight_hh_l0"] for seen in module.seen]
    assert len(noises) == 3 and all(abs(float(n.std()) - 0.05) < 0.005 for n in noises)
    assert not torch.equal(noises[0], noises[1])  # fresh noise every batch
    assert torch.equal(module.weight_noise_draw(1)[1], module.weight_noise_draw(1)[1])
    with pytest.raises(Exception, match="weight_noise"):
        ASRModule(input_dim=12, weight_noise=-0.1)


class ClipProbe(ASRModule):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.true_norms, self.clipped_norms = [], []

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        self.true_norms.append(float(gradient_norms(self.model)["total"]))
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        self.clipped_norms.append(float(gradient_norms(self.model)["total"]))
        self.logged = float(self.trainer.callback_metrics["grad_norm/total"])


def test_clipping_bounds_the_norm_and_the_logged_norm_is_the_pre_clip_one():
    module = ClipProbe(input_dim=12, cell="rnn_tanh", hidden_size=8, num_layers=1)
    fit(module, 2, gradient_clip_val=0.01)
    assert all(n > 0.01 for n in module.true_norms)
    assert all(n <= 0.01 * (1 + 1e-4) for n in module.clipped_norms)
    assert module.logged == pytest.approx(module.true_norms[-1], rel=1e-6)


SUBNORMAL = 1e-39  # below float32's smallest normal number, 1.2e-38


def kept(value: float) -> float:
    """What a float32 operation makes of a subnormal input: itself under IEEE rules, 0 when flushed."""
    return float(torch.tensor([value]) * 1.0)


class SubnormalProbe(ASRModule):
    def training_step(self, batch, batch_idx):
        self.seen_in_training = kept(SUBNORMAL)
        return super().training_step(batch, batch_idx)


def test_training_flushes_subnormal_floats_and_leaves_them_as_they_were_after_fit():
    """Subnormals slow x86 CPUs many times over (benchmarks/denormals.py): training runs without them, and the
    process gets IEEE arithmetic back when fit ends (evaluation, tests and streaming compare exact values)."""
    assert kept(SUBNORMAL) == pytest.approx(SUBNORMAL)
    module = SubnormalProbe(input_dim=12, cell="lstm", hidden_size=8, num_layers=1)
    fit(module, 2)
    assert module.seen_in_training == 0.0
    assert kept(SUBNORMAL) == pytest.approx(SUBNORMAL)


class FailingStep(SubnormalProbe):
    def training_step(self, batch, batch_idx):
        super().training_step(batch, batch_idx)
        raise RuntimeError("a training step that fails")


def test_a_failed_fit_also_gives_ieee_arithmetic_back():
    module = FailingStep(input_dim=12, cell="lstm", hidden_size=8, num_layers=1)
    with pytest.raises(RuntimeError, match="a training step that fails"):
        fit(module, 2)
    assert module.seen_in_training == 0.0
    assert kept(SUBNORMAL) == pytest.approx(SUBNORMAL)
