"""Each remedy does what it claims: clipping, truncated BPTT, gradient-norm penalty, echo state network."""
import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from asr.data.datamodule import ASRDataModule, Batch
from asr.model.gradients import gradient_norms, model_gradient_flow
from asr.model.acoustic import AcousticModel, ModelConfig
from asr.train.module import ASRModule
from asr.model.remedies import gradient_norm_penalty, unrolled_rnn


def fit(module, batches, steps, **trainer_args):
    L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, accelerator="cpu", **trainer_args).fit(module, DataLoader(batches, batch_size=None))


@pytest.fixture(scope="module")
def an4_batch(data_dir, tmp_path_factory):
    """8 real AN4 dev utterances, cut to their first 100 stacked frames."""
    data = ASRDataModule(dataset="an4", data_dir=str(data_dir), cache_dir=str(tmp_path_factory.mktemp("cache")),
                         spec_augment=False, batch_size=8)
    examples = [e for e in data.load("dev").examples if data.extractor.stacked_length(len(e.log_mel)) >= 100][:8]
    feats = torch.stack([data.extractor.stack(e.log_mel)[:100] for e in examples])
    labels = [e.labels[:20] for e in examples]
    return Batch(feats, torch.full((8,), 100), torch.cat(labels), torch.tensor([len(x) for x in labels]),
                 [e.text for e in examples], [e.id for e in examples])


class ValueClipProbe(ASRModule):
    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        self.largest = max(float(p.grad.abs().max()) for p in self.parameters() if p.grad is not None)


def test_clipping_by_value_bounds_every_component(an4_batch):
    module = ValueClipProbe(input_dim=240, cell="rnn_tanh", hidden_size=16, num_layers=1)
    fit(module, [an4_batch], 1, gradient_clip_val=1e-3, gradient_clip_algorithm="value")
    assert module.largest <= 1e-3 * (1 + 1e-6)  # float32 rounding of the threshold


@pytest.mark.parametrize("k", [10, 25])
def test_truncated_bptt_cuts_the_gradient_at_k_frames(k):
    torch.manual_seed(0)
    model = AcousticModel(ModelConfig(20, 29, cell="rnn_tanh", hidden_size=32, num_layers=2, bidirectional=False,
                                      dropout=0.0, truncate_bptt=k, init="orthogonal"))
    full = AcousticModel(ModelConfig(20, 29, cell="rnn_tanh", hidden_size=32, num_layers=2, bidirectional=False,
                                     dropout=0.0, init="orthogonal"))
    full.load_state_dict(model.state_dict())
    x = torch.randn(3, 100, 20)
    assert torch.allclose(model(x), full(x), atol=1e-6)  # forward values are unchanged
    curve = model_gradient_flow(model, x)  # 100 frames: the last chunk is exactly k long
    assert (curve[:k] > 0).all()
    assert (curve[k:] == 0).all()
    assert (model_gradient_flow(full, x)[k:] > 0).all()


def test_truncated_bptt_refuses_bidirectional_models():
    with pytest.raises(ValueError, match=r"^truncate_bptt needs a unidirectional model"):
        AcousticModel(ModelConfig(20, 29, cell="rnn_tanh", bidirectional=True, truncate_bptt=20))


def test_unrolled_rnn_matches_nn_rnn():
    rnn = nn.RNN(8, 16, num_layers=2, batch_first=True)
    x = torch.randn(2, 12, 8)
    out, states = unrolled_rnn(rnn, x)
    assert torch.allclose(out, rnn(x)[0], atol=1e-6) and len(states) == 2 and len(states[0]) == 12


def test_penalty_is_zero_for_an_orthogonal_linear_recurrence_and_positive_for_a_contracting_one():
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(16, 16))
    states = [torch.randn(4, 16) for _ in range(10)]
    grads = tuple(torch.randn(4, 16) for _ in range(10))
    assert float(gradient_norm_penalty(q, states, grads, "linear")) == pytest.approx(0.0, abs=1e-10)
    assert float(gradient_norm_penalty(0.5 * q, states, grads, "linear")) == pytest.approx(0.25, rel=1e-5)
    assert float(gradient_norm_penalty(0.5 * torch.eye(16), states, grads, "tanh")) > 0


def test_penalty_raises_the_gradient_that_reaches_early_frames(an4_batch):
    def trained(weight):
        torch.manual_seed(0)
        module = ASRModule(input_dim=240, cell="rnn_tanh", hidden_size=32, num_layers=1, bidirectional=False,
                           spectral_radius=0.7, gradient_penalty=weight, learning_rate=3e-3)
        fit(module, [an4_batch], 15)
        return model_gradient_flow(module.model, an4_batch.features)

    plain, penalised = trained(0.0), trained(10.0)
    assert penalised[20] / penalised[0] > 10 * plain[20] / plain[0]


def test_penalty_refuses_models_it_cannot_unroll():
    with pytest.raises(ValueError, match="gradient_penalty needs a unidirectional rnn_tanh or rnn_relu model"):
        ASRModule(input_dim=240, cell="lstm", bidirectional=False, gradient_penalty=1.0)


def test_echo_state_network_trains_only_its_readout(an4_batch):
    torch.manual_seed(0)
    module = ASRModule(input_dim=240, cell="esn", hidden_size=64, num_layers=1, bidirectional=False,
                       spectral_radius=0.95, esn_leak=0.5)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    assert module.model.recurrent_spectral_radii()["l0"] == pytest.approx(0.95, rel=1e-4)
    fit(module, [an4_batch], 3)
    after = module.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"model.output.weight", "model.output.bias"}
    assert set(gradient_norms(module.model)) <= {"output", "total"}


def test_penalty_gradient_with_two_layers_matches_finite_differences():
    """Omega for a 2-layer RNN as the training module sums it (asr/train/module.py), as a function of both W_hh, checked by
    torch.autograd.gradcheck (finite differences, float64); delta is held constant as in Pascanu et al."""
    torch.manual_seed(0)
    rnn = nn.RNN(6, 5, num_layers=2, batch_first=True).double()
    x = torch.randn(3, 9, 6, dtype=torch.float64)
    _, states = unrolled_rnn(rnn, x)
    loss = sum(h.pow(2).sum() for h in states[-1])
    flat = [h for layer in states for h in layer]
    deltas = [g.detach() for g in torch.autograd.grad(loss, flat)]

    def omega(w0, w1):
        weights = {"weight_hh_l0": w0, "weight_hh_l1": w1}
        _, layers = unrolled_with(rnn, x, weights)
        return sum(gradient_norm_penalty(weights[f"weight_hh_l{i}"], layer, deltas[i * 9:(i + 1) * 9])
                   for i, layer in enumerate(layers)) / 2

    w0 = rnn.weight_hh_l0.detach().clone().requires_grad_(True)
    w1 = rnn.weight_hh_l1.detach().clone().requires_grad_(True)
    assert float(omega(w0, w1).detach()) > 0
    assert torch.autograd.gradcheck(omega, (w0, w1), eps=1e-6, atol=1e-5)
    g0, g1 = torch.autograd.grad(omega(w0, w1), (w0, w1))
    assert g0.abs().sum() > 0 and g1.abs().sum() > 0  # both layers get a penalty gradient


def unrolled_with(rnn, x, weights):
    """unrolled_rnn with the recurrent matrices replaced by `weights` (so that gradcheck can vary them)."""
    originals = {name: getattr(rnn, name) for name in weights}
    try:
        for name, w in weights.items():
            delattr(rnn, name)
            setattr(rnn, name, w)
        return unrolled_rnn(rnn, x)
    finally:
        for name, w in originals.items():
            delattr(rnn, name)
            rnn.register_parameter(name, w)
