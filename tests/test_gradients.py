import pytest
import torch
from torch import nn

from asr.model.gradients import gradient_flow, gradient_norms, layer_name, model_gradient_flow
from asr.model.acoustic import AcousticModel, ModelConfig


def test_layer_names_group_directions_and_weights():
    assert layer_name("rnn.weight_hh_l1_reverse") == "rnn_l1"
    assert layer_name("rnn.bias_ih_l0") == "rnn_l0"
    assert layer_name("input_projection.weight") == "input_projection"


def test_gradient_norms_per_layer_and_total():
    model = AcousticModel(ModelConfig(12, 5, cell="gru", hidden_size=8, num_layers=2))
    model(torch.randn(2, 6, 12)).sum().backward()
    norms = gradient_norms(model)
    assert set(norms) == {"input_projection", "rnn_l0", "rnn_l1", "output", "total"}
    everything = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert norms["total"] == pytest.approx(float(everything.norm()), rel=1e-5)
    layer0 = torch.cat([p.grad.flatten() for n, p in model.named_parameters() if "_l0" in n])
    assert norms["rnn_l0"] == pytest.approx(float(layer0.norm()), rel=1e-5)


class LinearRNN(nn.Module):
    """h_t = a * h_{t-1} + x_t, output h_t: the gradient k frames back is exactly a^k."""

    def __init__(self, a):
        super().__init__()
        self.a = a

    def forward(self, x):
        h, outs = torch.zeros_like(x[:, 0]), []
        for t in range(x.shape[1]):
            h = self.a * h + x[:, t]
            outs.append(h)
        return torch.stack(outs, 1)


@pytest.mark.parametrize("a", [0.5, 0.9, 1.0, 1.2])
def test_gradient_across_time_of_a_linear_recurrence_is_a_to_the_k(a):
    curve = gradient_flow(LinearRNN(a), torch.randn(3, 30, 4))
    expected = torch.tensor([a ** k for k in range(30)])
    assert torch.allclose(curve, expected, rtol=1e-5)


def test_tanh_rnn_gradient_vanishes_where_lstm_keeps_it():
    torch.manual_seed(0)
    x = torch.randn(4, 80, 20)
    tanh = AcousticModel(ModelConfig(20, 29, cell="rnn_tanh", hidden_size=64, num_layers=1, bidirectional=False,
                                     spectral_radius=0.5))
    lstm = AcousticModel(ModelConfig(20, 29, cell="lstm", hidden_size=64, num_layers=1, bidirectional=False))
    c_tanh, c_lstm = model_gradient_flow(tanh, x), model_gradient_flow(lstm, x)
    assert c_tanh.shape == (80,)
    assert c_tanh[40] / c_tanh[0] < 1e-6  # 40 frames through a contracting W_hh: gone
    assert c_lstm[40] / c_lstm[0] > 100 * c_tanh[40] / c_tanh[0]


@pytest.mark.parametrize("training", [False, True])
def test_the_instrument_measures_without_dropout_and_leaves_the_model_as_it_found_it(training):
    """It switches every dropout off to measure (the curve equals the dropout-free model's) and puts the
    model's mode and dropout rates back afterwards."""
    torch.manual_seed(0)
    model = AcousticModel(ModelConfig(20, 29, cell="lstm", hidden_size=16, num_layers=2, bidirectional=True,
                                      dropout=0.5))
    model.train(training)
    x = torch.randn(2, 30, 20)
    curve = model_gradient_flow(model, x)
    assert model.training is training and model.rnn.dropout == 0.5
    without = AcousticModel(ModelConfig(20, 29, cell="lstm", hidden_size=16, num_layers=2, bidirectional=True,
                                        dropout=0.0))
    without.load_state_dict(model.state_dict())
    assert torch.allclose(curve, model_gradient_flow(without, x), rtol=1e-6, atol=0)
    assert torch.equal(curve, model_gradient_flow(model, x))  # no mask was drawn: the same curve again


def test_gradient_across_time_of_the_model_matches_its_jacobian():
    """The instrument on a real model against an independent computation: the full Jacobian of the last
    frame's winning score with respect to every recurrent input (torch.autograd.functional.jacobian)."""
    torch.manual_seed(0)
    model = AcousticModel(ModelConfig(12, 29, cell="rnn_tanh", hidden_size=16, num_layers=2, bidirectional=True,
                                      dropout=0.0))
    features = torch.randn(1, 25, 12)
    curve = model_gradient_flow(model, features)
    inputs = model.recurrent_input(features).detach()
    winner = int(model.recur(inputs)[0, -1].argmax())
    jacobian = torch.autograd.functional.jacobian(lambda x: model.recur(x)[0, -1, winner], inputs)  # (1, 25, 16)
    expected = jacobian[0].norm(dim=-1).flip(0)
    assert torch.allclose(curve, expected, rtol=1e-4, atol=1e-7)
