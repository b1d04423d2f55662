import pytest
import torch

from asr.base.errors import UserError
from asr.model.acoustic import CELLS, AcousticModel, ModelConfig, spectral_radius


@pytest.mark.parametrize("cell", CELLS)
def test_every_cell_maps_frames_to_log_probs(cell):
    model = AcousticModel(ModelConfig(240, 29, cell=cell, hidden_size=16, num_layers=2, bidirectional=cell != "esn"))
    out = model(torch.randn(3, 20, 240), torch.tensor([20, 15, 7]))
    assert out.shape == (3, 20, 29)
    assert torch.allclose(out.exp().sum(-1), torch.ones(3, 20), atol=1e-5)


def test_cells_differ_only_in_the_recurrence():
    shapes = {c: {n: p.shape for n, p in AcousticModel(ModelConfig(240, 29, cell=c, hidden_size=16)).named_parameters()
                  if not n.startswith("rnn.")} for c in CELLS if c != "esn"}
    assert all(s == shapes["lstm"] for s in shapes.values())


def test_unknown_cell_is_refused():
    with pytest.raises(ValueError, match=r"^unknown cell 'transformer': choose one of rnn_tanh, rnn_relu, lstm, gru, esn$"):
        AcousticModel(ModelConfig(240, 29, cell="transformer"))


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm"])
def test_orthogonal_init_makes_each_block_orthogonal(cell):
    model = AcousticModel(ModelConfig(240, 29, cell=cell, hidden_size=32, num_layers=1, init="orthogonal"))
    for w in model.recurrent_weights().values():
        for block in w.detach().chunk(4 if cell == "lstm" else 1):
            assert torch.allclose(block @ block.T, torch.eye(32), atol=1e-5)


def test_forget_bias_opens_every_lstm_forget_gate_and_leaves_the_rest():
    torch.manual_seed(0)
    plain = AcousticModel(ModelConfig(240, 29, cell="lstm", hidden_size=8, num_layers=2, bidirectional=True))
    torch.manual_seed(0)
    opened = AcousticModel(ModelConfig(240, 29, cell="lstm", hidden_size=8, num_layers=2, bidirectional=True,
                                       forget_bias=1.0))
    biases = [n for n, _ in opened.rnn.named_parameters() if n.startswith("bias_ih")]
    assert len(biases) == 4  # 2 layers x 2 directions
    for name in biases:
        ih, hh = getattr(opened.rnn, name).detach(), getattr(opened.rnn, name.replace("_ih", "_hh")).detach()
        total = (ih + hh).chunk(4)  # input, forget, cell, output gates
        assert torch.equal(total[1], torch.ones(8)), name
        for gate in (0, 2, 3):  # the other gates keep PyTorch's draw
            assert torch.equal(ih.chunk(4)[gate], getattr(plain.rnn, name).detach().chunk(4)[gate])
    with pytest.raises(ValueError, match="forget_bias sets the LSTM forget gate's bias: cell gru has no forget gate"):
        ModelConfig(240, 29, cell="gru", forget_bias=1.0)


def test_identity_init_is_the_irnn():
    model = AcousticModel(ModelConfig(240, 29, cell="rnn_relu", hidden_size=8, num_layers=1, init="identity"))
    assert torch.equal(model.rnn.weight_hh_l0.detach(), torch.eye(8))
    assert torch.count_nonzero(model.rnn.bias_hh_l0) == 0


@pytest.mark.parametrize("radius", [0.5, 1.0, 1.5])
def test_spectral_radius_after_init_is_the_one_asked_for(radius):
    model = AcousticModel(ModelConfig(240, 29, cell="rnn_tanh", hidden_size=64, num_layers=2, spectral_radius=radius))
    for name, rho in model.recurrent_spectral_radii().items():
        assert rho == pytest.approx(radius, rel=1e-4), name
    assert spectral_radius(torch.diag(torch.tensor([0.3, -2.0]))) == pytest.approx(2.0)


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru"])
def test_an_utterance_in_a_padded_batch_gets_the_output_it_gets_alone(cell):
    """Packing keeps the padding out of both directions: the backward direction of a short utterance starts
    at its own last frame, not at the end of the padding."""
    torch.manual_seed(0)
    model = AcousticModel(ModelConfig(12, 29, cell=cell, hidden_size=16, num_layers=2, bidirectional=True,
                                      dropout=0.0)).eval()
    long, short = torch.randn(40, 12), torch.randn(23, 12)
    batch = torch.stack([long, torch.cat([short, torch.full((17, 12), 5.0)])])  # padding that would show
    with torch.no_grad():
        together = model(batch, torch.tensor([40, 23]))
        alone = model(short[None], torch.tensor([23]))
    assert torch.allclose(together[1, :23], alone[0], atol=1e-6)
    assert torch.allclose(together[0], model(long[None])[0], atol=1e-6)


def test_lookahead_sees_the_next_frames_and_never_the_padding():
    """Frame t's output depends on frames up to t + lookahead, not beyond; in a padded batch an utterance's last frames
    see zeros after its end, as when it runs alone."""
    torch.manual_seed(0)
    model = AcousticModel(ModelConfig(12, 29, cell="lstm", hidden_size=16, num_layers=2, bidirectional=False,
                                      dropout=0.0, lookahead=3)).eval()
    with torch.no_grad():
        model.lookahead.conv.weight.normal_()
        x = torch.randn(1, 30, 12)
        changed = x.clone()
        changed[0, 20] += 1.0
        diff = (model(changed) - model(x))[0].abs().amax(-1)
        assert (diff[:17] == 0).all() and (diff[17:] > 0).all()  # frames 17..19 see frame 20 ahead of them
        short = torch.randn(23, 12)
        batch = torch.stack([torch.randn(40, 12), torch.cat([short, torch.full((17, 12), 5.0)])])
        assert torch.allclose(model(batch, torch.tensor([40, 23]))[1, :23], model(short[None])[0], atol=1e-6)


def test_lookahead_needs_a_unidirectional_recurrence():
    for wrong in (dict(bidirectional=True, lookahead=2), dict(bidirectional=False, cell="esn", lookahead=2),
                  dict(bidirectional=False, lookahead=-1)):
        with pytest.raises(UserError, match="lookahead must be 0 or a positive number of frames"):
            ModelConfig(**wrong)


def test_under_autocast_the_recurrence_and_the_gradient_instrument_stay_in_float32():
    """bf16/fp16 autocast (the trainer's precision: bf16-mixed) must not run the recurrence in half precision: on a
    GPU, PyTorch runs cuDNN RNNs in float16 under autocast, whose range ends near 6e-8, above the gradients across
    time this project measures (1e-8 and far below), so "vanishing" would partly be underflow. The recurrence, the
    output layer and the gradient instrument run in float32; only the input projection takes the lower precision."""
    from asr.model.gradients import model_gradient_flow

    torch.manual_seed(0)
    model = AcousticModel(ModelConfig(12, 29, cell="lstm", hidden_size=16, num_layers=2, bidirectional=True))
    features, lengths = torch.randn(2, 40, 12), torch.tensor([40, 31])
    seen = []
    model.rnn.register_forward_hook(lambda module, args, output: seen.append(output[0].dtype))
    reference = model_gradient_flow(model, features)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        log_probs = model(features, lengths)
        flow = model_gradient_flow(model, features)
    assert log_probs.dtype == torch.float32 and flow.dtype == torch.float32
    assert seen and set(seen) == {torch.float32}, seen
    assert torch.allclose(flow, reference, rtol=0.05), (flow / reference)


def test_a_bf16_mixed_run_trains_its_recurrence_in_float32(data_dir, tmp_path, monkeypatch):
    """The same through the real Trainer: `asr train --trainer.precision bf16-mixed` (recipes/models/
    librispeech_lstm.yaml's setting) runs every LSTM call, training steps, validation and the gradient monitor,
    on float32 inputs."""
    from asr.cli import main
    from helpers import train_argv

    dtypes, forward = [], torch.nn.LSTM.forward

    def recorded(self, inputs, *args, **kwargs):
        dtypes.append(inputs.dtype)
        return forward(self, inputs, *args, **kwargs)

    monkeypatch.setattr(torch.nn.LSTM, "forward", recorded)
    assert main(train_argv("an4_lstm", tmp_path / "run", data_dir, "--trainer.precision", "bf16-mixed",
                           utterances=8)) == 0
    assert dtypes and set(dtypes) == {torch.float32}, set(dtypes)
