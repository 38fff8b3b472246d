"""Structural checks of a loaded model, before the lowering interprets it.

A damaged or hand-edited file can hold tensors whose bytes do not match their shape,
attributes of the wrong type, quantizers with missing or empty operands, or absurd
shapes. These are found here, with the node or tensor named, so that the lowering can
trust the basic structure; what the lowering does not support is its own business.
Every check here was prompted by a crash the mutation fuzzer (tests/test_fuzz.py) found.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import AttributeProto, numpy_helper

from ..errors import ModelError, UnsupportedError, node_where
from ..onnx_ops import round_mode

# Largest tensor the frontend will materialise (elements); far beyond any model that
# fits an FPGA, small enough that a forged shape cannot exhaust memory.
MAX_TENSOR_ELEMENTS = 1 << 28
QUANTIZERS = {"Quant", "BipolarQuant"}
# QONNX ops have no ONNX schema: (inputs, {attribute: type})
_QONNX_SCHEMAS = {
    "Quant": (4, {"signed": AttributeProto.INT, "narrow": AttributeProto.INT,
                  "rounding_mode": AttributeProto.STRING}),
    "BipolarQuant": (2, {}),
}
_NUMERIC = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
            onnx.TensorProto.BFLOAT16, onnx.TensorProto.INT8, onnx.TensorProto.UINT8,
            onnx.TensorProto.INT16, onnx.TensorProto.UINT16, onnx.TensorProto.INT32,
            onnx.TensorProto.UINT32, onnx.TensorProto.INT64, onnx.TensorProto.UINT64,
            onnx.TensorProto.BOOL}


def check_model(model: onnx.ModelProto) -> None:
    """Raise a ModelError naming the first structural problem of ``model``, if any."""
    g = model.graph
    _check_text(model)
    _check_initializers(g)
    for vi in g.input:
        _check_dims(vi.type.tensor_type.shape.dim, f"input '{vi.name}'")
    opset = next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), None)
    for node in g.node:
        _check_node(node, opset)
    if not any(n.op_type in QUANTIZERS for n in g.node):
        raise ModelError("the model has no quantizer (no Quant or BipolarQuant node): it is "
                         "a float model, and fpgagen builds integer hardware",
                         hint="quantize it with Brevitas and export with "
                              "brevitas.export.export_qonnx")


def _check_text(model: onnx.ModelProto) -> None:
    """Names and op types must be text: protobuf hands invalid UTF-8 over as bytes."""
    g = model.graph
    for node in g.node:
        for text in (node.op_type, node.domain, node.name, *node.input, *node.output):
            if not isinstance(text, str):
                raise ModelError(f"a node's name, op type or tensor name {text!r} is not "
                                 "UTF-8 text", hint="the file is damaged")
    for item in (*g.initializer, *g.input, *g.output, *model.opset_import):
        text = getattr(item, "name", getattr(item, "domain", ""))
        if not isinstance(text, str):
            raise ModelError(f"name {text!r} is not UTF-8 text", hint="the file is damaged")


def _check_initializers(g: onnx.GraphProto) -> None:
    values: dict[str, np.ndarray] = {}
    for init in g.initializer:
        where = f"initializer '{init.name}'"
        if init.name in values:
            raise ModelError(f"initializer '{init.name}' is defined more than once",
                             hint="the file is damaged or was edited by hand")
        _check_dims(init.dims, where)
        if init.data_type not in _NUMERIC:
            name = onnx.TensorProto.DataType.Name(init.data_type) \
                if init.data_type in onnx.TensorProto.DataType.values() else init.data_type
            raise ModelError(f"tensor data type {name} is not numeric", where=where)
        try:
            values[init.name] = numpy_helper.to_array(init)
        except Exception as e:  # bytes that do not match the shape or type
            raise ModelError(f"tensor data do not match its shape {list(init.dims)} and "
                             f"type ({e})", where=where,
                             hint="the file is damaged; export the model again") from None


def _check_dims(dims, where: str) -> None:
    elems = 1
    for d in dims:
        value = d if isinstance(d, int) else (d.dim_value if d.HasField("dim_value") else 1)
        if value < 0:
            raise ModelError(f"negative dimension {value}", where=where)
        elems *= value
    if elems > MAX_TENSOR_ELEMENTS:
        raise UnsupportedError(f"{elems} elements is far beyond any network fpgagen can "
                               f"build (limit {MAX_TENSOR_ELEMENTS})", where=where)


def _check_node(node: onnx.NodeProto, opset: int | None) -> None:
    where = node_where(node.name or (node.output[0] if node.output else "?"), node.op_type)
    if not node.output:
        raise ModelError("the node has no output", where=where)
    if node.op_type in _QONNX_SCHEMAS:
        n_inputs, attr_types = _QONNX_SCHEMAS[node.op_type]
        if len(node.input) != n_inputs or not all(node.input):
            raise ModelError(f"{node.op_type} needs {n_inputs} inputs, it has "
                             f"{len([i for i in node.input if i])}", where=where)
    elif node.domain in ("", "ai.onnx") and opset is not None and onnx.defs.has(node.op_type):
        schema = onnx.defs.get_schema(node.op_type, opset, "")
        attr_types = {k: int(v.type) for k, v in schema.attributes.items()}
        if not schema.min_input <= len(node.input) <= schema.max_input:
            raise ModelError(f"{node.op_type} takes {schema.min_input} to {schema.max_input} "
                             f"inputs, it has {len(node.input)}", where=where)
    else:
        return
    for a in node.attribute:
        want = attr_types.get(a.name)
        if want is not None and a.type != want:
            raise ModelError(f"attribute '{a.name}' must be "
                             f"{AttributeProto.AttributeType.Name(want)}, not "
                             f"{AttributeProto.AttributeType.Name(a.type)}", where=where)
    if node.op_type == "Quant":
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        for flag in ("signed", "narrow"):
            if attrs.get(flag, 0) not in (0, 1):
                raise ModelError(f"attribute '{flag}' must be 0 or 1, not {attrs[flag]}",
                                 where=where)
        try:
            mode = attrs.get("rounding_mode", b"ROUND").decode("utf-8", "replace")
            round_mode(np.zeros(1, np.float32), mode)
        except UnsupportedError as e:
            raise UnsupportedError(e.what, where=where, hint=e.hint) from None

