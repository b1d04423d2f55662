"""The padded recurrence (asr/model/recurrence.py) against the packed one: the same numbers on every valid frame,
forward and backward, for every cell, direction and depth; padding never reaches a valid frame; dropout only
between layers; and on a CPU the model really runs the fast kernel."""
import pytest
import torch
from torch import nn

from asr.model.acoustic import AcousticModel, ModelConfig
from asr.model.recurrence import packed_recurrence, padded_recurrence, reverse_within_lengths, valid_frames

LENGTHS = torch.tensor([31, 9, 24, 31, 1, 17])  # ragged, unsorted, one utterance of a single frame
KINDS = {"rnn_tanh": (nn.RNN, {"nonlinearity": "tanh"}), "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
         "lstm": (nn.LSTM, {}), "gru": (nn.GRU, {})}


def make_rnn(cell, layers, bidirectional, dropout=0.0, input_size=7, hidden=10):
    torch.manual_seed(layers * 10 + bidirectional)
    cls, extra = KINDS[cell]
    return cls(input_size, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional,
               dropout=dropout, **extra)


def outputs_and_gradients(path, rnn, inputs, lengths, weights):
    """Valid-frame outputs, and the gradients of a loss over valid frames w.r.t. the inputs and every weight."""
    rnn.zero_grad()
    x = inputs.clone().requires_grad_(True)
    out = path(rnn, x, lengths)
    valid = valid_frames(lengths, inputs.shape[1])
    (out * weights)[valid].sum().backward()
    grads = {"inputs": x.grad} | {name: p.grad.clone() for name, p in rnn.named_parameters()}
    return out[valid].detach(), grads


@pytest.mark.parametrize("cell", KINDS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_padded_equals_packed_on_valid_frames_forward_and_backward(cell, bidirectional, layers):
    rnn = make_rnn(cell, layers, bidirectional)
    inputs = torch.randn(len(LENGTHS), int(LENGTHS.max()), 7)
    weights = torch.randn(len(LENGTHS), int(LENGTHS.max()), 10 * (2 if bidirectional else 1))
    packed_out, packed_grads = outputs_and_gradients(packed_recurrence, rnn, inputs, LENGTHS, weights)
    padded_out, padded_grads = outputs_and_gradients(padded_recurrence, rnn, inputs, LENGTHS, weights)
    assert (padded_out - packed_out).abs().max() < 1e-5
    assert padded_grads.keys() == packed_grads.keys() and len(padded_grads) == 1 + 4 * layers * (1 + bidirectional)
    for name, grad in packed_grads.items():
        assert grad.abs().max() > 0, name  # every weight and input frame takes part
        assert (padded_grads[name] - grad).abs().max() < 1e-5, name


@pytest.mark.parametrize("cell", ["lstm", "rnn_relu"])
def test_values_in_the_padding_change_nothing_on_valid_frames_and_padding_comes_out_zero(cell):
    rnn = make_rnn(cell, 2, True)
    inputs = torch.randn(len(LENGTHS), int(LENGTHS.max()), 7)
    loud = inputs.where(valid_frames(LENGTHS, inputs.shape[1])[..., None], torch.tensor(1e3))
    with torch.no_grad():
        quiet_out, loud_out = padded_recurrence(rnn, inputs, LENGTHS), padded_recurrence(rnn, loud, LENGTHS)
    assert torch.equal(quiet_out, loud_out)
    assert torch.count_nonzero(quiet_out[~valid_frames(LENGTHS, inputs.shape[1])]) == 0
    assert torch.count_nonzero(quiet_out[valid_frames(LENGTHS, inputs.shape[1])]) > 0


def test_reversing_within_lengths_keeps_padding_in_place_and_undoes_itself():
    order = reverse_within_lengths(torch.tensor([3, 5, 1]), 5)
    assert order.tolist() == [[2, 1, 0, 3, 4], [4, 3, 2, 1, 0], [0, 1, 2, 3, 4]]
    assert torch.equal(order.gather(1, order), torch.arange(5).expand(3, 5))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_dropout_acts_between_layers_and_not_after_the_last(bidirectional):
    inputs = torch.randn(len(LENGTHS), int(LENGTHS.max()), 7)
    one_layer = make_rnn("lstm", 1, bidirectional)
    one_layer.dropout = 0.5  # nn.RNNBase applies it after every layer but the last: with one layer, nowhere
    with torch.no_grad():
        assert torch.equal(padded_recurrence(one_layer.train(), inputs, LENGTHS),
                           padded_recurrence(one_layer.eval(), inputs, LENGTHS))

    # Two layers: the output is layer 1 run on layer 0's output with a dropout mask applied, nothing after it.
    rnn = make_rnn("lstm", 2, bidirectional, dropout=0.5).train()
    torch.manual_seed(5)
    with torch.no_grad():
        out = padded_recurrence(rnn, inputs, LENGTHS)
    lower, upper = (make_rnn("lstm", 1, bidirectional, input_size=n) for n in (7, 10 * (1 + bidirectional)))
    with torch.no_grad():
        for layer, single in enumerate((lower, upper)):
            for suffix in ("", "_reverse") if bidirectional else ("",):
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(single, f"{name}_l0{suffix}").copy_(getattr(rnn, f"{name}_l{layer}{suffix}"))
        hidden = packed_recurrence(lower, inputs, LENGTHS)
        torch.manual_seed(5)
        dropped = nn.functional.dropout(hidden, 0.5, training=True)
        expected = packed_recurrence(upper, dropped, LENGTHS)
        undropped = packed_recurrence(upper, hidden, LENGTHS)
    valid = valid_frames(LENGTHS, inputs.shape[1])
    if bidirectional:  # our own layer loop: the very mask F.dropout draws, applied once between the layers
        assert (out - expected)[valid].abs().max() < 1e-5
    else:  # PyTorch's own stack draws its mask inside the kernel: check that one was applied, and only one
        assert (out - undropped)[valid].abs().max() > 1e-3
        assert out.abs().max() < 1  # h = o * tanh(c): a mask after the last layer would scale some above 1
    assert (out - undropped)[valid].abs().max() > 1e-3


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")
def test_an_lstm_training_step_on_cpu_runs_the_onednn_kernel_and_no_packing():
    model = AcousticModel(ModelConfig(12, 29, cell="lstm", hidden_size=16, num_layers=2, bidirectional=True)).train()
    features = torch.randn(3, 20, 12)
    with torch.profiler.profile() as profile:
        model(features, torch.tensor([20, 11, 6])).sum().backward()
    ops = {event.key for event in profile.key_averages()}
    assert {"aten::mkldnn_rnn_layer", "aten::mkldnn_rnn_layer_backward"} <= ops
    assert "aten::_pack_padded_sequence" not in ops


def test_the_recurrence_path_can_be_forced_and_an_unknown_one_is_refused(monkeypatch):
    """ASR_RECURRENCE=packed runs the GPU's path (a PackedSequence) on any device, =padded the CPU's; the two agree
    on every valid frame, forward and backward, through the whole model."""
    from asr.base.errors import UserError

    model = AcousticModel(ModelConfig(12, 29, cell="lstm", hidden_size=16, num_layers=2, bidirectional=True)).eval()
    features, lengths = torch.randn(3, 20, 12), torch.tensor([20, 11, 6])
    results = {}
    for path in ("packed", "padded"):
        monkeypatch.setenv("ASR_RECURRENCE", path)
        features.grad = None
        features.requires_grad_(True)
        with torch.profiler.profile() as profile:
            out = model(features, lengths)
            out[valid_frames(lengths, 20)].sum().backward()
        ops = {event.key for event in profile.key_averages()}
        assert ("aten::_pack_padded_sequence" in ops) is (path == "packed"), path
        results[path] = (out.detach(), features.grad.clone())
    valid = valid_frames(lengths, 20)
    assert (results["packed"][0] - results["padded"][0])[valid].abs().max() < 1e-5
    assert (results["packed"][1] - results["padded"][1]).abs().max() < 1e-5
    monkeypatch.setenv("ASR_RECURRENCE", "cudnn")
    with pytest.raises(UserError, match="ASR_RECURRENCE"):
        model(features, lengths)


@pytest.mark.corpora
def test_training_and_evaluation_through_the_gpu_path_match_the_cpu_path(data_dir, tmp_path, monkeypatch):
    """The packed (GPU) path run by the real Trainer on the CPU: a few training steps with the gradient monitor, then
    `asr evaluate`; the same with the padded path. Weights, gradient-across-time curves and WER agree (summation
    order differs: to rounding)."""
    import json

    from asr.cli import main
    from asr.train.checkpoint import read_checkpoint
    from helpers import train_argv

    import asr.model.recurrence

    packed_calls = []
    real = asr.model.recurrence.packed_recurrence

    def counted(*args):
        packed_calls.append(1)
        return real(*args)

    monkeypatch.setattr(asr.model.recurrence, "packed_recurrence", counted)
    runs = {}
    for path in ("packed", "padded"):
        monkeypatch.setenv("ASR_RECURRENCE", path)
        packed_calls.clear()
        run = tmp_path / path
        assert main(train_argv("an4_lstm", run, data_dir, "--model.dropout", "0", cache_dir=tmp_path / "cache",
                               utterances=16, epochs=2)) == 0
        summary = tmp_path / f"{path}.json"
        assert main(["evaluate", str(run / "checkpoints/last.ckpt"), "--split", "dev", "--data-dir", str(data_dir),
                     "--output", str(tmp_path / f"{path}.csv"), "--summary-json", str(summary)]) == 0
        assert bool(packed_calls) is (path == "packed"), path  # training and evaluation took that path
        runs[path] = (read_checkpoint(run / "checkpoints/last.ckpt")["state_dict"],
                      json.loads((run / "gradient_flow.json").read_text()), json.loads(summary.read_text()))
    (packed, packed_flow, packed_wer), (padded, padded_flow, padded_wer) = runs["packed"], runs["padded"]
    assert max((packed[k] - padded[k]).abs().max().item() for k in padded) < 1e-3
    for a, b in zip(packed_flow["curves"], padded_flow["curves"]):
        assert torch.allclose(torch.tensor(a["curve"]), torch.tensor(b["curve"]), rtol=1e-2, atol=1e-8)
    assert packed_wer["wer"] == pytest.approx(padded_wer["wer"], abs=0.5)
