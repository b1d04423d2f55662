"""`asr export CKPT model.onnx --quantize int8`: the acoustic model's weights in 8 bits, the features in float32.

onnxruntime's dynamic quantisation (`onnxruntime.quantization.quantize_dynamic`) does the work where it has an
integer kernel: the LSTM nodes become DynamicQuantizeLSTM and the matrix products (input projection, output layer)
MatMulInteger, each weight matrix in int8 with one scale per output row, activations quantised on the fly. It has
no integer kernel for the GRU and plain RNN nodes; their weights are stored in int8 all the same (one scale per
row, a DequantizeLinear in front of the node), so the file is as small, and onnxruntime computes them in float32.
The feature graph (DFT, mel, log, normalisation) stays float32/float64: 8-bit spectra would cost accuracy for
nothing, it holds few weights.
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
    from onnx import helper, numpy_helper
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
        if node.op_type not in ("GRU", "RNN"):
            continue
        for slot in (1, 2):  # W (input weights) and R (recurrent weights): (1, gates x hidden, inputs)
            name = node.input[slot]
            w = numpy_helper.to_array(weights[name])[0]
            scale = np.maximum(np.abs(w).max(axis=1), 1e-12) / 127
            q = np.clip(np.round(w / scale[:, None]), -127, 127).astype(np.int8)
            model.graph.initializer.remove(weights[name])
            model.graph.initializer.extend([numpy_helper.from_array(q, f"{name}_int8"),
                                            numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale")])
            dequantized = f"{name}_dequantized"
            model.graph.node.append(helper.make_node("DequantizeLinear", [f"{name}_int8", f"{name}_scale"],
                                                     [f"{name}_2d"], axis=0))
            model.graph.node.append(helper.make_node("Unsqueeze", [f"{name}_2d", f"{name}_axes"], [dequantized]))
            model.graph.initializer.append(numpy_helper.from_array(np.array([0], dtype=np.int64), f"{name}_axes"))
            node.input[slot] = dequantized
    _sort_topologically(model.graph)
    meta = {p.key: p.value for p in model.metadata_props}
    meta["quantized"] = QUANTIZED
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    onnx.save(model, str(target))


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
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:
            raise RuntimeError("the quantised graph has a cycle or an undefined input")
        for n in ready:
            ordered.append(n)
            known.update(n.output)
        done = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in done]
    del graph.node[:]
    graph.node.extend(ordered)
