"""`asr export CKPT model.onnx --quantize int8`: the acoustic model's weights in 8 bits, the features in float32.

onnxruntime's dynamic quantisation (`onnxruntime.quantization.quantize_dynamic`) does the work where it has an
integer kernel: the LSTM nodes become DynamicQuantizeLSTM and the matrix products (input projection, output layer,
a tanh/ReLU layer's input product) MatMulInteger, each weight matrix in int8 with one scale per output row,
activations quantised on the fly. It has no integer kernel for the GRU node; its weights are stored in int8 all the
same (one scale per row, a DequantizeLinear in front of the node), so the file is as small, and onnxruntime computes
it in float32; so is the recurrent matrix of a tanh/ReLU layer's Scan step. The feature graph (DFT, mel, log,
normalisation) stays float32: 8-bit spectra would cost accuracy for nothing, it holds few weights.
"""
from __future__ import annotations

import logging
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

QUANTIZED = "int8"  # the value of the file's "quantized" metadata


def quantize_int8(source: Path, target: Path) -> None:
    """Writes the int8 version of the float32 recogniser graph `source` (`asr export`'s) to `target`."""
    import onnx
    from onnx import helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(source))
    # the whole-recording graph's acoustic model (/acoustic/...), or all of a step graph (its nodes have no prefix)
    acoustic = [n for n in model.graph.node if not n.name.startswith("/features/")]
    integer = [n.name for n in acoustic if n.op_type in ("MatMul", "LSTM")]
    with tempfile.TemporaryDirectory() as tmp, _advice_silenced():
        staged = Path(tmp) / "quantized.onnx"
        quantize_dynamic(str(source), str(staged), nodes_to_quantize=integer, weight_type=QuantType.QInt8,
                         per_channel=True)
        model = onnx.load(str(staged))
    weights = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "GRU":  # W (input weights) and R (recurrent weights): (1, gates x hidden, inputs)
            for slot in (1, 2):
                node.input[slot] = _stored_in_int8(model, weights, node.input[slot], per=0, unsqueeze=True)
        elif node.op_type == "Scan":  # a tanh/ReLU RNN layer (export_onnx.rnn_nodes_as_scan): its step's R^T,
            # (hidden, hidden), read from the outer graph; one scale per output column
            for step in next(a.g for a in node.attribute if a.name == "body").node:
                if step.op_type == "MatMul" and step.input[1] in weights:
                    step.input[1] = _stored_in_int8(model, weights, step.input[1], per=1, unsqueeze=False)
    _sort_topologically(model.graph)
    meta = {p.key: p.value for p in model.metadata_props}
    meta["quantized"] = QUANTIZED
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    onnx.save(model, str(target))


def _stored_in_int8(model, weights: dict, name: str, per: int, unsqueeze: bool) -> str:
    """Replaces the float32 matrix initializer `name` by int8 values with one scale per entry of its axis `per`
    (0: per row, 1: per column), behind a DequantizeLinear; with `unsqueeze` the initializer is the GRU node's
    (1, rows, columns) and is given back that shape. Returns the name of the dequantised tensor."""
    from onnx import helper, numpy_helper

    w = numpy_helper.to_array(weights[name])
    w = w[0] if unsqueeze else w
    scale = np.maximum(np.abs(w).max(axis=1 - per, keepdims=True), 1e-12) / 127
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    scale = scale.ravel()
    model.graph.initializer.remove(weights[name])
    model.graph.initializer.extend([numpy_helper.from_array(q, f"{name}_int8"),
                                    numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale")])
    dequantized = f"{name}_dequantized"
    matrix = f"{name}_2d" if unsqueeze else dequantized
    model.graph.node.append(helper.make_node("DequantizeLinear", [f"{name}_int8", f"{name}_scale"], [matrix],
                                             axis=per))
    if unsqueeze:
        model.graph.node.append(helper.make_node("Unsqueeze", [matrix, f"{name}_axes"], [dequantized]))
        model.graph.initializer.append(numpy_helper.from_array(np.array([0], dtype=np.int64), f"{name}_axes"))
    return dequantized


@contextmanager
def _advice_silenced():
    """quantize_dynamic logs advice to pre-process the model (shape inference for static quantisation), which
    dynamic quantisation of these nodes does not need."""
    advice = logging.Filter()
    advice.filter = lambda record: "pre-processing before quantization" not in record.getMessage()
    logging.getLogger().addFilter(advice)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(advice)


def _sort_topologically(graph) -> None:
    """ONNX wants each node after the nodes whose outputs it reads; the dequantising nodes were appended last."""
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    needs = {id(n): set(n.input) | _outer_names(n) for n in pending}
    while pending:
        ready = [n for n in pending if needs[id(n)] <= known]
        if not ready:
            raise RuntimeError("the quantised graph has a cycle or an undefined input")
        for n in ready:
            ordered.append(n)
            known.update(n.output)
        done = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in done]
    del graph.node[:]
    graph.node.extend(ordered)


def _outer_names(node) -> set:
    """The names a node's subgraphs (a Scan's body) read from the graph around them."""
    names = set()
    for body in (a.g for a in node.attribute if a.type == a.GRAPH):
        inner = {i.name for i in body.input} | {i.name for i in body.initializer}
        for n in body.node:
            names |= (set(n.input) | _outer_names(n)) - inner
            inner |= set(n.output)
    return names
