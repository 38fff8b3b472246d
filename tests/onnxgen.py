"""Tiny QONNX models written with onnx.helper, for tests of the frontend and CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

QONNX = "qonnx.custom_op.general"


def _const(name, value, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def quant_node(inp, out, scale, bits, prefix, signed=1, narrow=0, inits=None):
    inits.extend([_const(f"{prefix}_s", scale), _const(f"{prefix}_z", 0.0),
                  _const(f"{prefix}_b", float(bits))])
    return helper.make_node("Quant", [inp, f"{prefix}_s", f"{prefix}_z", f"{prefix}_b"], [out],
                            domain=QONNX, signed=signed, narrow=narrow,
                            rounding_mode="ROUND", name=f"{prefix}_quant")


def mlp(sizes=(6, 5, 3), *, act_bits=3, weight_bits=3, seed=0, extra=None,
        opset=13) -> onnx.ModelProto:
    """x -> Quant -> [MatMul(Quant W) -> Mul/Add -> Quant]* -> MatMul -> Mul -> y."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    nodes.append(quant_node("x", "q0", 0.25, act_bits, "in", inits=inits))
    cur = "q0"
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        inits.append(_const(f"w{i}", rng.normal(size=(a, b))))
        nodes.append(quant_node(f"w{i}", f"wq{i}", 0.5, weight_bits, f"w{i}", inits=inits))
        nodes.append(helper.make_node("MatMul", [cur, f"wq{i}"], [f"mm{i}"], name=f"fc{i}"))
        inits.append(_const(f"g{i}", rng.uniform(0.5, 1.5, size=b)))
        nodes.append(helper.make_node("Mul", [f"mm{i}", f"g{i}"], [f"sc{i}"], name=f"scale{i}"))
        last = i == len(sizes) - 2
        if last:
            cur = f"sc{i}"
        else:
            nodes.append(quant_node(f"sc{i}", f"q{i + 1}", 0.5, act_bits, f"a{i}",
                                    signed=0, inits=inits))
            cur = f"q{i + 1}"
    if extra:
        cur = extra(nodes, inits, cur)
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, sizes[0]])],
        [helper.make_tensor_value_info(cur, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    helper.make_opsetid(QONNX, 1)])
    return model


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path
