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
