"""Lower a QONNX model to the fpgagen IR by walking it once in topological order.

Each ONNX tensor gets an abstract value:

- ``np.ndarray``: a constant (initializers, folded sub-graphs);
- ``_QWeight``: a quantized constant (integer levels and their scale);
- ``_Host``: a float tensor computed from the model input on the host, before the first
  quantizer (pre-processing such as ``2*x - 1``);
- ``_Stream``: an integer tensor on chip plus the float ``chain`` of elementwise ops
  that maps its integers to the model's float values. Image tensors travel channels
  innermost (NHWC); ``order`` and ``channels`` say how (see ``layout.py``).

Quantizers on a stream become thresholds (fused into the producing MVAU), MatMul/Gemm
with quantized weights become MVAUs, Conv a sliding window and an MVAU, pooling a sliding
window and a pool, and whatever chain is left at the output runs on the host as
post-processing. Both Brevitas exporters' graph shapes (Gemm or
Transpose+MatMul, Flatten or Reshape) reduce to the same values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from ..dtypes import IntType, smallest_type
from ..errors import ModelError, UnsupportedError, node_where
from ..ir import Graph, HostOp, Node, Tensor
from ..nodes import add, matmul, mvau, pool, swg, thresholding, vvau
from ..onnx_ops import ELEMENTWISE, F32, REGROUP, evaluate, supported, trunc_operands
from . import layout
from . import thresholds as thr
from .transformer import TransformerLowering
from .values import _channels, _Host, _QWeight, _Stream, _stream_shape

QUANT_OPS = {"Quant", "BipolarQuant", "Trunc"}
POOL_OPS = {"MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool"}
TRANSFORMER_OPS = {"Softmax", "LayerNormalization", "ReduceMean", "Split", "Where"}
LOWERED_OPS = {"MatMul", "Gemm", "Conv", *POOL_OPS, *TRANSFORMER_OPS}  # built by lowering
MAX_WEIGHT_BITS = 16


@dataclass
class _Lowering(TransformerLowering):
    model: onnx.ModelProto
    values: dict = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    tensors: dict[str, Tensor] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    input_name: str = ""
    input_shape: tuple[int, ...] = ()
    hw_input: str | None = None
    values_pre: list = field(default_factory=list)
    exp_unit: str = "auto"

    # ---- helpers -------------------------------------------------------------------
    def fresh(self, kind: str) -> str:
        n = self.counts.get(kind, 0)
        self.counts[kind] = n + 1
        return f"{kind}{n}"

    def add_node(self, spec, inputs, out_tensor: Tensor, onnx_name: str) -> Node:
        node = Node(spec.name, spec, tuple(inputs), (out_tensor.name,))
        self.nodes.append(node)
        self.tensors[out_tensor.name] = out_tensor
        self.origin[spec.name] = onnx_name
        return node

    def replace_node(self, old: Node, spec, out_tensor: Tensor) -> Node:
        new = Node(spec.name, spec, old.inputs, old.outputs)
        self.nodes[self.nodes.index(old)] = new
        self.tensors[out_tensor.name] = out_tensor
        return new

    def producer(self, tensor: str) -> Node | None:
        return next((n for n in self.nodes if tensor in n.outputs), None)

    # ---- the walk ----------------------------------------------------------------
    def run(self) -> Graph:
        g = self.model.graph
        for init in g.initializer:
            self.values[init.name] = numpy_helper.to_array(init)
        inputs = [i for i in g.input if i.name not in self.values]
        if len(inputs) != 1:
            raise UnsupportedError(f"the model has {len(inputs)} inputs; fpgagen supports "
                                   "exactly one")
        if len(g.output) != 1:
            raise UnsupportedError(f"the model has {len(g.output)} outputs; fpgagen "
                                   "supports exactly one")
        inp = inputs[0]
        dims = inp.type.tensor_type.shape.dim
        shape = []
        for d in dims:
            if not d.HasField("dim_value") or d.dim_value <= 0:
                raise UnsupportedError(f"input '{inp.name}' has a dynamic or zero-sized "
                                       "shape", hint="export with a fixed input shape")
            shape.append(d.dim_value)
        if not shape or shape[0] != 1:
            raise UnsupportedError(f"input '{inp.name}' shape {shape} must have batch size 1",
                                   hint="export with an example input of batch 1")
        self.input_name, self.input_shape = inp.name, tuple(shape)
        self.values[inp.name] = _Host([], tuple(shape))

        for node in _needed_nodes(g):
            self.visit(node)

        out = g.output[0].name
        value = self.values.get(out)
        if isinstance(value, _Host) or self.hw_input is None:
            raise ModelError("the model has no quantizer on its data path, so there is "
                             "nothing integer to build",
                             hint="fpgagen builds quantized (Brevitas QONNX) models")
        if not isinstance(value, _Stream):
            raise UnsupportedError("the model output is a constant")
        if _pending_layernorm(value):
            raise UnsupportedError("a LayerNormalization at the model output is not "
                                   "supported", hint="quantize the LayerNorm's output")
        self.prune(value.tensor)
        if not self.nodes:
            raise UnsupportedError("the model has no layer to put in hardware "
                                   "(no MatMul/Gemm or quantizer after the input)")
        host_pre = tuple(self.values_pre)
        post = []
        if value.channels != value.elems:  # the chain's constants apply per channel
            post.append(HostOp("Reshape", (None, np.asarray([1, -1, value.channels])),
                               {"allowzero": 0}, name="channels"))
        post += list(value.chain)
        post += layout.from_stream_ops(value.order, _stream_shape(value), value.shape)
        meta = {
            "input_name": self.input_name, "input_shape": list(self.input_shape),
            "output_name": out, "output_shape": list(value.shape),
            "origin": self.origin,
        }
        projections = self.projections()
        if projections:
            meta["differential"] = projections
        return Graph(tuple(self.nodes), dict(self.tensors), (self.hw_input,),
                     (value.tensor,), host_pre, tuple(post), meta)

    def prune(self, output: str) -> None:
        """Drop nodes nothing reads (a layer split into slices leaves its whole self)."""
        while True:
            used = {t for n in self.nodes for t in n.inputs} | {output}
            dead = [n for n in self.nodes if not any(t in used for t in n.outputs)]
            if not dead:
                return
            for n in dead:
                self.nodes.remove(n)
                for t in n.outputs:
                    self.tensors.pop(t, None)
                self.origin.pop(n.name, None)

    def projections(self) -> list[str]:
        """The MVAUs a differential build runs on deltas: the patch embedding (an MVAU
        behind a sliding window whose windows do not overlap) and the projections that
        feed attention's matmuls (Q, K, V). Empty for models without attention."""
        by_output = {t: n for n in self.nodes for t in n.outputs}
        feeds = [by_output.get(t) for n in self.nodes if isinstance(n.spec, matmul.Spec)
                 for t in n.inputs]
        if not any(feeds):
            return []
        names = [n.name for n in feeds if n is not None and isinstance(n.spec, mvau.Spec)]
        for n in self.nodes:
            src = by_output.get(n.inputs[0]) if n.inputs else None
            if isinstance(n.spec, mvau.Spec) and src is not None and isinstance(
                    src.spec, swg.Spec) and (src.spec.k_h, src.spec.k_w) == (
                    src.spec.stride_h, src.spec.stride_w):
                names.insert(0, n.name)
        return list(dict.fromkeys(names))

    def visit(self, node: onnx.NodeProto) -> None:
        op, where = node.op_type, node_where(node.name or node.output[0], node.op_type)
        if node.domain not in ("", "ai.onnx") and not node.domain.startswith("qonnx") \
                and not node.domain.startswith("finn"):
            raise UnsupportedError(f"custom op domain '{node.domain}' is not supported",
                                   where=where)
        if op == "Constant":
            self.values[node.output[0]] = _constant_attr(node, where)
            return
        ins = []
        for name in node.input:
            if name == "":
                ins.append(None)
            elif name not in self.values:
                raise ModelError(f"input '{name}' is not produced by any node", where=where,
                                 hint="the graph is not connected or not topologically sorted")
            else:
                ins.append(self.values[name])
        attrs = {a.name: _plain(onnx.helper.get_attribute_value(a)) for a in node.attribute}
        if op == "Dropout" and len(ins) > 2 and isinstance(ins[2], np.ndarray) \
                and bool(np.ravel(ins[2])[0]) and (ins[1] is None or float(np.ravel(
                    np.asarray(ins[1], F32))[0]) > 0):
            raise UnsupportedError("Dropout in training mode is not supported", where=where,
                                   hint="call model.eval() before exporting")
        if not supported(op) and op not in LOWERED_OPS:
            raise UnsupportedError(f"op {op} is not supported", where=where,
                                   hint="see docs/ops.md for the supported ops")
        data = [v for v in ins if isinstance(v, (_Host, _Stream))]
        if op in QUANT_OPS and any(isinstance(v, (_Host, _Stream)) for v in ins[1:]):
            raise UnsupportedError(f"{op} needs constant scale, zero point and bit width",
                                   where=where, hint="a scale computed at run time cannot "
                                                     "be built into hardware")
        if op == "Where" and isinstance(ins[0], np.ndarray) and len(data) == 1 \
                and (not np.any(ins[0]) or np.all(ins[0])):
            # a constant condition selects one side (the dynamo export of an attention
            # without a mask guards its softmax so); a real mask is refused
            out = ins[2] if not np.any(ins[0]) else ins[1]
            if not isinstance(out, _Stream) or np.broadcast_shapes(
                    np.shape(ins[0]), tuple(out.shape)) != tuple(out.shape):
                raise UnsupportedError("Where is supported only as a constant choice of an "
                                       "on-chip tensor", where=where)
        elif op in QUANT_OPS and len(ins) >= 1 and isinstance(ins[0], np.ndarray):
            out = self.quantize_constant(op, ins, attrs, where)
        elif all(v is None or isinstance(v, np.ndarray) for v in ins):
            out = _fold(op, ins, attrs, where)
        elif any(isinstance(v, _QWeight) for v in ins):
            out = self.weight_op(op, node, ins, attrs, where)
        elif op == "Add" and len(data) == 2 and all(isinstance(v, _Stream) for v in data):
            out = self.add_streams(data[0], data[1], node, where)
        elif op == "MatMul" and len(data) == 2 and all(isinstance(v, _Stream) for v in data):
            out = self.matmul_streams(ins[0], ins[1], node, where)
        elif len(data) != 1:
            raise UnsupportedError(f"{op} of two data tensors is not supported", where=where,
                                   hint="two on-chip tensors may only be added (residuals)")
        elif isinstance(data[0], _Host):
            out = self.host_op(op, ins, attrs, where)
        else:
            out = self.stream_op(op, node, ins, attrs, where)
        if isinstance(out, list):  # a Split
            for name, value in zip(node.output, out):
                self.values[name] = value
            return
        if len(node.output) > 1 and op != "Dropout":
            raise UnsupportedError(f"{op} with several outputs is not supported", where=where)
        self.values[node.output[0]] = out

    # ---- constants ---------------------------------------------------------------
    def quantize_constant(self, op, ins, attrs, where):
        if op == "Trunc":
            raise UnsupportedError("Trunc of a constant is not supported", where=where)
        w = np.asarray(ins[0], F32)
        if w.size == 0:
            raise ModelError("the quantized weights are empty", where=where)
        if not np.all(np.isfinite(w)):
            raise ModelError("weights contain NaN or Inf", where=where)
        quant = _quant_op(op, ins, attrs, where)
        if op == "Quant" and float(np.asarray(quant.operands[3]).ravel()[0]) > MAX_WEIGHT_BITS:
            # too wide for weights on chip: a bias (Brevitas' Int32Bias) the host adds
            return _fold(op, ins, attrs, where)
        dtype, _ = thr.quantizer_type(quant, where)
        if not dtype.bipolar and dtype.bits > MAX_WEIGHT_BITS:
            raise UnsupportedError(f"{dtype.bits}-bit weights are wider than the "
                                   f"{MAX_WEIGHT_BITS} supported", where=where)
        try:  # scale and zero point broadcast to the weights, never the other way
            fits = np.broadcast_shapes(w.shape, *map(np.shape, quant.operands[1:3])) == w.shape
        except ValueError:
            fits = False
        if not fits:
            raise ModelError(f"the quantizer's scale or zero point does not broadcast to the "
                             f"weights' shape {list(w.shape)}", where=where)
        levels = thr.quantizer_levels(quant, w)
        scale = np.broadcast_to(np.asarray(quant.operands[1], F32), w.shape).copy()
        return _QWeight(levels, scale, dtype)

    def weight_op(self, op, node, ins, attrs, where):
        if op == "Transpose" and len(ins) == 1:
            qw = ins[0]
            perm = attrs.get("perm")
            if perm is not None and sorted(perm) != list(range(qw.levels.ndim)):
                raise ModelError(f"perm {perm} does not permute the weights' "
                                 f"{qw.levels.ndim} axes", where=where)
            return _QWeight(np.transpose(qw.levels, perm), np.transpose(qw.scale, perm),
                            qw.dtype)
        if op in ("Identity", "Dropout"):
            return ins[0]
        if op in ("Expand", "Unsqueeze", "Reshape", "Squeeze") and isinstance(ins[0], _QWeight) \
                and all(not isinstance(v, (_Stream, _Host, _QWeight)) for v in ins[1:]):
            qw = ins[0]  # a view or broadcast of quantized constants (a class token)
            levels = _fold(op, [qw.levels, *ins[1:]], attrs, where)
            scale = _fold(op, [np.broadcast_to(qw.scale, qw.levels.shape), *ins[1:]], attrs,
                          where)
            return _QWeight(np.asarray(levels, np.int64), np.asarray(scale, F32), qw.dtype)
        if op == "Concat" and sum(isinstance(v, _Stream) for v in ins) == 1:
            return self.concat_constant(ins, attrs, node, where)
        if op == "Add" and len(ins) == 2 and any(isinstance(v, _Stream) for v in ins):
            stream, qw = (ins[0], ins[1]) if isinstance(ins[0], _Stream) else (ins[1], ins[0])
            return self.add_constant(stream, qw, node, where)
        if op in ("MatMul", "Gemm") and isinstance(ins[0], _Stream) \
                and isinstance(ins[1], _QWeight):
            return self.matmul(op, node, ins, attrs, where)
        if op == "Conv" and isinstance(ins[0], _Stream) and isinstance(ins[1], _QWeight):
            return self.conv(node, ins, attrs, where)
        raise UnsupportedError(f"{op} on quantized weights is not supported", where=where,
                               hint="quantized weights may feed MatMul/Gemm/Conv "
                                    "(optionally through Transpose)")

    # ---- host pre-processing -----------------------------------------------------
    def host_op(self, op, ins, attrs, where):
        host = next(v for v in ins if isinstance(v, _Host))
        if self.hw_input is not None:
            raise UnsupportedError("a second path from the model input is not supported",
                                   where=where)
        operands = tuple(None if v is host else v for v in ins)
        if op == "Trunc":
            raise UnsupportedError("Trunc as the input quantizer is not supported",
                                   where=where, hint="quantize the input with Quant")
        if op in QUANT_OPS:
            return self.host_quantizer(op, host, ins, attrs, where)
        if op in LOWERED_OPS or op == "ArgMax" or not supported(op):
            raise UnsupportedError(f"{op} before the first quantizer is not supported",
                                   where=where, hint="quantize the input first "
                                   "(a QuantIdentity at the start of the model)")
        hop = HostOp(op, operands, attrs, name=where)
        shape = _shape_after(hop, host.shape, where)
        return _Host(host.ops + [hop], shape)

    def host_quantizer(self, op, host, ins, attrs, where):
        quant = _quant_op(op, ins, attrs, where)
        dtype, _ = thr.quantizer_type(quant, where)
        scale = np.asarray(quant.operands[1], F32)
        if scale.size != 1:
            raise UnsupportedError("a per-channel input quantizer is not supported", where=where,
                                   hint="use a per-tensor scale on the input quantizer")
        to_int = HostOp("QuantLevels" if op == "Quant" else "BipolarLevels",
                        quant.operands, quant.attrs, name=where)
        order = layout.channels_last_order(host.shape)
        self.values_pre = host.ops + [to_int] + layout.to_stream_ops(order)
        name = "input"
        stream = _Stream(name, [HostOp("Mul", (None, scale.reshape(())), {}, name=where)],
                         host.shape, order, _channels(host.shape, order))
        self.tensors[name] = Tensor(name, _stream_shape(stream), dtype, scale.reshape(()))
        self.hw_input = name
        return stream

    # ---- on-chip streams -----------------------------------------------------------
    def stream_op(self, op, node, ins, attrs, where):
        stream = next(v for v in ins if isinstance(v, _Stream))
        operands = tuple(None if v is stream else v for v in ins)
        if op in QUANT_OPS:
            return self.requantize(op, stream, ins, attrs, where, node)
        if op in REGROUP or op == "Transpose":
            return self.regroup(op, stream, operands, attrs, where)
        if op == "Shape":
            return evaluate("Shape", [np.zeros(stream.shape, np.int8)], attrs)
        if _pending_layernorm(stream):
            raise UnsupportedError(f"{op} after a LayerNormalization is not supported",
                                   where=where, hint="quantize the LayerNorm's output first")
        if op == "Concat":
            return self.concat_constant(ins, attrs, node, where)
        if op in ("Slice", "Gather") and self.token_axis(stream, op, ins, attrs) is not None:
            return self.select_tokens(op, node, stream, ins, attrs, where)
        if op in ("Slice", "Split"):
            return self.slice_stream(op, node, stream, ins, attrs, where)
        if op == "Softmax":
            return self.softmax(stream, attrs, node, where)
        if op == "LayerNormalization":
            return self.layernorm(stream, ins, attrs, where)
        if op == "ReduceMean":
            return self.reduce_mean(stream, ins, attrs, node, where)
        if op == "BatchNormalization":
            for const in operands[1:]:
                _check_finite(const, where)
            chain = layout.batchnorm_chain(operands, attrs, stream.shape, stream.order,
                                           stream.channels, where)
            return dataclasses.replace(stream, chain=stream.chain + chain)
        if op in ELEMENTWISE:
            if op in ("Add", "Sub") and all(o is None or (np.all(np.isfinite(o)) and not np.any(o))
                                           for o in operands):
                _shape_after(HostOp(op, operands, attrs), stream.shape, where)
                return stream  # adding zeros (an empty attention mask): nothing to do
            producer = self.producer(stream.tensor)
            if op in ("Add", "Sub") and producer is not None \
                    and isinstance(producer.spec, matmul.Spec):
                raise UnsupportedError("an attention mask (an Add to the scores) is not "
                                       "supported", where=where,
                                       hint="export the attention without attn_mask / "
                                            "key_padding_mask")
            for o in operands:
                if o is not None:
                    _check_finite(o, where)
            stream = _widen_period(stream, operands, where)
            consts = tuple(None if o is None else layout.stream_constant(
                o, stream.shape, stream.order, stream.channels, where) for o in operands)
            hop = HostOp(op, consts, attrs, name=where)
            return dataclasses.replace(stream, chain=stream.chain + [hop])
        if op == "ArgMax":
            return self.argmax(stream, attrs, where)
        if op in POOL_OPS:
            return self.pool(op, stream, attrs, where, node.name)
        raise UnsupportedError(f"op {op} on an on-chip tensor is not supported", where=where,
                               hint="see docs/ops.md for the supported ops")

    def regroup(self, op, stream, operands, attrs, where):
        """Reshape, Flatten, Transpose...: the stream stays, its ONNX view changes.

        The data does not move, so the chain's constants (in stream form) stay valid.
        """
        if op == "Transpose":
            index = np.arange(stream.elems).reshape(stream.shape)
            perm = attrs.get("perm") or list(range(len(stream.shape)))[::-1]
            moved = np.transpose(index, perm).reshape(-1)
            # new ONNX element j is old element moved[j]: position i holds argsort(moved)
            new_of_old = np.argsort(moved)
            old = np.arange(stream.elems) if stream.order is None else stream.order
            order = new_of_old[old]
            shape = tuple(stream.shape[p] for p in perm)
        else:
            hop = HostOp(op, operands, attrs, name=where)
            shape = _shape_after(hop, stream.shape, where)
            order = stream.order
        if layout.is_identity(order):
            order = None
        return _Stream(stream.tensor, stream.chain, shape, order, stream.channels)

    def argmax(self, stream, attrs, where):
        axis = int(attrs.get("axis", 0))
        if axis % len(stream.shape) != len(stream.shape) - 1 or stream.order is not None \
                or stream.channels != stream.elems:
            raise UnsupportedError("ArgMax is supported over the last axis of a vector "
                                   "only", where=where)
        hop = HostOp("ArgMax", (None,), attrs, name=where)
        return dataclasses.replace(stream, chain=stream.chain + [hop],
                                   shape=_shape_after(hop, stream.shape, where))

    def requantize(self, op, stream, ins, attrs, where, node):
        if any(h.op == "ArgMax" for h in stream.chain):
            raise UnsupportedError("a quantizer after ArgMax is not supported", where=where)
        quant = _quant_op(op, ins, attrs, where)
        channels = stream.channels

        def stream_form(value):
            return layout.stream_constant(value, stream.shape, stream.order, channels,
                                          where).astype(F32)
        if op == "Trunc":  # (x, scale, zp, in_bits, out_scale, out_bits)
            ops = quant.operands
            quant = HostOp(op, (None, stream_form(ops[1]), *ops[2:4], stream_form(ops[4]),
                                ops[5]), quant.attrs, where)
            scale = quant.operands[4]
        else:
            scale = stream_form(quant.operands[1])
            quant = HostOp(quant.op, (None, scale, *quant.operands[2:]), quant.attrs, where)
        if _pending_layernorm(stream):
            return self.layernorm_node(stream, quant, node, where)
        src = self.tensors[stream.tensor]
        producer = self.producer(stream.tensor)
        # a layer's accumulators (one row of weights per output channel) take the
        # thresholds themselves
        fuse = (producer is not None and isinstance(producer.spec, (mvau.Spec, vvau.Spec))
                and producer.spec.thresholds is None
                and producer.spec.weights.shape[0] == channels
                and self.hw_input != stream.tensor)
        if fuse:
            w = producer.spec.weights
            lo, hi = mvau.acc_bounds(w, producer.spec.in_type)
        else:
            lo = np.full(channels, src.dtype.min, np.int64)
            hi = np.full(channels, src.dtype.max, np.int64)
        try:
            t = thr.derive(stream.chain, quant, lo, hi, where)
        except UnsupportedError:
            out_name = None if fuse else self.table_node(stream, quant, node, where)
            if out_name is None:
                raise
            t = None
        out_scale = np.broadcast_to(scale.reshape(-1) if scale.size > 1 else scale.reshape(()),
                                    (channels,) if scale.size > 1 else ())
        if t is None:  # a table
            pass
        elif fuse:
            spec = dataclasses.replace(
                producer.spec, weights=np.where(t.flip[:, None], -w, w),
                out_type=t.out_type, thresholds=t.thresholds, out_base=t.out_base)
            self.replace_node(producer, spec, Tensor(stream.tensor, src.shape, t.out_type))
            out_name = stream.tensor
        else:
            if t.flip.any():
                raise UnsupportedError("a decreasing activation on a stream that no layer "
                                       "produces is not supported", where=where)
            name = self.fresh("thresholding")
            vectors = src.elems // channels
            spec = thresholding.Spec(name, channels, src.dtype, t.out_type, t.thresholds,
                                     t.out_base, vectors=vectors)
            out_name = f"{name}_out"
            self.add_node(spec, [stream.tensor], Tensor(out_name, src.shape, t.out_type),
                          node.name)
        self.tensors[out_name] = dataclasses.replace(self.tensors[out_name],
                                                     scale=np.asarray(out_scale, F32))
        return _Stream(out_name, [HostOp("Mul", (None, np.asarray(out_scale, F32)), {},
                                         name=where)], stream.shape, stream.order, channels)

    def matmul(self, op, node, ins, attrs, where):
        stream, qw = ins[0], ins[1]
        levels, scale = qw.levels, qw.scale
        if op == "Gemm":
            if attrs.get("transA", 0):
                raise UnsupportedError("Gemm with transA is not supported", where=where)
            if not attrs.get("transB", 0):
                levels, scale = levels.T, scale.T
        else:
            levels, scale = levels.T, scale.T
        if levels.ndim != 2:
            raise UnsupportedError(f"MatMul with {levels.ndim}-D weights is not supported",
                                   where=where)
        mh, mw = levels.shape
        if stream.shape[-1] != mw:
            raise ModelError(f"input has {stream.shape[-1]} features but the weights "
                             f"expect {mw}", where=where)
        if stream.order is not None:
            if len(stream.shape) != 2:
                raise UnsupportedError("a MatMul over the last axis of an image tensor is "
                                       "not supported", where=where,
                                       hint="flatten the image before the linear layer")
            # stream position i carries input feature order[i]
            levels, scale = levels[:, stream.order], scale[:, stream.order]
        wscale = _per_output_scale(scale.reshape(mh, -1), where)
        if op == "Gemm":
            wscale = wscale * F32(attrs.get("alpha", 1.0))
        shape = tuple(stream.shape[:-1]) + (mh,)
        bias = _float_value(ins[2]) if op == "Gemm" and len(ins) > 2 else None
        if bias is not None:
            bias = np.asarray(bias, F32) * F32(attrs.get("beta", 1.0))
        return self.add_mvau(stream, levels, wscale, qw.dtype, bias, shape, node, where)

    def conv(self, node, ins, attrs, where):
        stream, qw = ins[0], ins[1]
        if len(stream.shape) != 4 or qw.levels.ndim != 4:
            raise UnsupportedError("only 2-D convolutions (NCHW input, OIHW weights) are "
                                   "supported", where=where)
        if not stream.channels_last:
            raise UnsupportedError("the input of this convolution is not an image in "
                                   "channel-major (NCHW) order", where=where)
        group = int(attrs.get("group", 1))
        oc, ic, kh, kw = qw.levels.shape
        depthwise = group == stream.shape[1] == oc and ic == 1 and group > 1
        if group != 1 and not depthwise:
            raise UnsupportedError(f"grouped convolution (group={group}) is not supported",
                                   where=where, hint="use group=1 or depthwise "
                                                     "(group = input = output channels)")
        if depthwise:
            return self.depthwise(stream, qw, ins, attrs, node, where)
        if ic != stream.shape[1]:
            raise ModelError(f"input has {stream.shape[1]} channels but the weights expect "
                             f"{ic}", where=where)
        window = _window_attrs(attrs, (kh, kw), stream.shape, where)
        src = self.tensors[stream.tensor]
        name, oh, ow = self.add_window(stream, src, window, where, node.name)
        levels = qw.levels.transpose(0, 2, 3, 1).reshape(oc, kh * kw * ic)  # (kh, kw, c)
        wscale = _per_output_scale(qw.scale.reshape(oc, -1), where)
        bias = _float_value(ins[2]) if len(ins) > 2 else None
        win = _Stream(name, stream.chain, (1, kh * kw * ic, oh, ow),
                      layout.channels_last_order((1, kh * kw * ic, oh, ow)), kh * kw * ic)
        out = self.add_mvau(win, levels, wscale, qw.dtype, None if bias is None
                            else np.asarray(bias, F32).reshape(1, oc, 1, 1),
                            (1, oc, oh, ow), node, where)
        return out

    def depthwise(self, stream, qw, ins, attrs, node, where):
        """A depthwise convolution: a sliding window and a vector-vector unit."""
        c, kh, kw = qw.levels.shape[0], qw.levels.shape[2], qw.levels.shape[3]
        window = _window_attrs(attrs, (kh, kw), stream.shape, where)
        src = self.tensors[stream.tensor]
        source, oh, ow = self.add_window(stream, src, window, where, node.name)
        probe = vvau.Spec(self.fresh("vvau"), c, kh * kw, qw.levels.reshape(c, kh * kw),
                          src.dtype, qw.dtype, IntType(64, True), vectors=oh * ow)
        shape = (1, c, oh, ow)
        bias = _float_value(ins[2]) if len(ins) > 2 else None
        return self.add_layer(probe, source, stream.chain, shape,
                              layout.channels_last_order(shape),
                              _per_output_scale(qw.scale.reshape(c, -1), where),
                              None if bias is None else np.asarray(bias, F32).reshape(shape[:2]
                                                                                     + (1, 1)),
                              node, where)

    def pool(self, op, stream, attrs, where, onnx_name):
        if not stream.channels_last or len(stream.shape) != 4:
            raise UnsupportedError(f"{op} needs an NCHW image", where=where)
        if not _is_positive_scaling(stream.chain):
            raise UnsupportedError(f"{op} of a tensor that is not a quantized tensor times "
                                   "a positive scale is not supported", where=where,
                                   hint="quantize the activation before pooling")
        c, h, w = stream.shape[1:]
        src = self.tensors[stream.tensor]
        mode = "max" if op in ("MaxPool", "GlobalMaxPool") else "sum"
        whole = (op.startswith("Global") or (
            tuple(attrs.get("kernel_shape", ())) == (h, w) and not any(attrs.get("pads", ()))))
        if whole:  # the stream is the window: no sliding window needed
            positions, windows, oh, ow, source = h * w, 1, 1, 1, stream.tensor
        else:
            if int(attrs.get("ceil_mode", 0)):
                raise UnsupportedError(f"{op} with ceil_mode=1 is not supported",
                                       where=where, hint="use ceil_mode=0 (the default)")
            window = _window_attrs(attrs, tuple(attrs.get("kernel_shape", ())),
                                   stream.shape, where)
            if any(window["pads"]):
                if mode == "sum" and not int(attrs.get("count_include_pad", 0)):
                    raise UnsupportedError("average pooling with padding that excludes the "
                                           "padding from the count is not supported",
                                           where=where, hint="use count_include_pad=1")
                if mode == "max" and src.dtype.min < 0:
                    raise UnsupportedError("max pooling with padding over signed values is "
                                           "not supported", where=where,
                                           hint="pad after a ReLU (unsigned activations)")
            source, oh, ow = self.add_window(stream, src, window, where, onnx_name)
            positions, windows = window["kernel"][0] * window["kernel"][1], oh * ow
        if mode == "max":
            out_type = src.dtype
        else:
            out_type = smallest_type(src.dtype.min * positions, src.dtype.max * positions)
        name = self.fresh("pool")
        spec = pool.Spec(name, c, positions, mode, src.dtype, out_type, windows=windows)
        out_name = f"{name}_out"
        self.add_node(spec, [source], Tensor(out_name, (oh, ow, c), out_type), onnx_name)
        chain = list(stream.chain)
        if mode == "sum":
            chain.append(HostOp("Div", (None, np.asarray(F32(positions))), {}, name=where))
        shape = (1, c, oh, ow)
        return _Stream(out_name, chain, shape, layout.channels_last_order(shape), c)

    def add_streams(self, a, b, node, where):
        """The residual add: integers a*ka + b*kb on chip, times a common scale."""
        if tuple(a.shape) != tuple(b.shape) or not layout.same_order(a.order, b.order) \
                or a.channels != b.channels:
            raise UnsupportedError(f"Add of tensors of shapes {list(a.shape)} and "
                                   f"{list(b.shape)} is not supported", where=where,
                                   hint="both sides of a residual add must have one shape")
        sa, sb = _linear_scale(a.chain), _linear_scale(b.chain)
        if sa is None or sb is None:
            raise UnsupportedError("each side of a residual add must be a quantized tensor "
                                   "times a per-tensor scale", where=where,
                                   hint="end both branches with a quantizer")
        ka, kb, common = _integer_ratio(sa, sb, where)
        ta, tb = self.tensors[a.tensor], self.tensors[b.tensor]
        name = self.fresh("add")
        spec = add.Spec(name, a.channels, ta.dtype, tb.dtype, ka=ka, kb=kb,
                        vectors=a.elems // a.channels)
        out_type = spec.out_type
        out_name = f"{name}_out"
        out = _Stream(out_name, [HostOp("Mul", (None, np.asarray(common, F32)), {}, where)],
                      a.shape, a.order, a.channels)
        self.add_node(spec, [a.tensor, b.tensor], Tensor(out_name, _stream_shape(out), out_type),
                      node.name)
        return out

    # ---- building blocks ----------------------------------------------------------
    def add_window(self, stream, src, window, where, onnx_name) -> tuple[str, int, int]:
        """A sliding window over ``stream``; returns its tensor and the output size."""
        c, h, w = stream.shape[1:]
        (kh, kw), (sh, sw), (pt, pl, pb, pr) = (window["kernel"], window["strides"],
                                                window["pads"])
        oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
        if oh < 1 or ow < 1:
            raise ModelError(f"a {kh}x{kw} window does not fit the {h}x{w} input", where=where)
        if (kh, kw, sh, sw) == (1, 1, 1, 1) and not any(window["pads"]):
            return stream.tensor, oh, ow  # a pointwise window is the stream itself
        if any(window["pads"]) and src.dtype.bipolar:
            raise UnsupportedError("zero padding of a bipolar (+1/-1) tensor is not "
                                   "representable", where=where,
                                   hint="remove the padding or use a multi-bit activation")
        name = self.fresh("swg")
        spec = swg.Spec(name, c, h, w, kh, kw, src.dtype, stride_h=sh, stride_w=sw,
                        pad_top=pt, pad_left=pl, pad_bottom=pb, pad_right=pr)
        out_name = f"{name}_out"
        self.add_node(spec, [stream.tensor], Tensor(out_name, (oh, ow, kh * kw * c), src.dtype),
                      onnx_name)
        return out_name, oh, ow

    def add_mvau(self, stream, levels, wscale, weight_type, bias, shape, node, where):
        """An MVAU on ``stream`` (weights in stream order); the result's stream."""
        mh, mw = levels.shape
        src = self.tensors[stream.tensor]
        probe = mvau.Spec(self.fresh("mvau"), mw, mh, levels, src.dtype, weight_type,
                          IntType(64, True), vectors=src.elems // mw)
        order = layout.channels_last_order(shape) if len(shape) >= 3 and stream.channels_last \
            else None
        return self.add_layer(probe, stream.tensor, stream.chain, shape, order, wscale, bias,
                              node, where)

    def add_layer(self, probe, source, chain_in, shape, order, wscale, bias, node, where):
        """A layer (``probe``: an MVAU or VVAU spec, one weight row per output channel)
        with the exact accumulator type; its stream is the accumulators times the input
        and weight scales, plus the bias."""
        sx = _linear_scale(chain_in)
        if sx is None:
            raise UnsupportedError(
                "the input of this layer is not a quantized tensor times a per-tensor "
                "scale (float ops stand between its quantizer and the layer)", where=where,
                hint="put a quantizer directly before each quantized layer")
        acc_type = probe.acc_type
        if acc_type.bits > 48:
            raise UnsupportedError(f"accumulator needs {acc_type.bits} bits", where=where)
        channels = probe.weights.shape[0]
        out = _Stream(f"{probe.name}_out", [], shape, order, channels)
        self.add_node(dataclasses.replace(probe, out_type=acc_type), [source],
                      Tensor(out.tensor, _stream_shape(out), acc_type), node.name)
        chain = [HostOp("Mul", (None, (sx * wscale).astype(F32)), {}, name=where)]
        if bias is not None:
            _check_finite(bias, where)
            chain.append(HostOp("Add", (None, layout.stream_constant(
                bias, shape, order, channels, where)), {}, name=where))
        return dataclasses.replace(out, chain=chain)


# ---- module-level helpers ---------------------------------------------------------


def _needed_nodes(g: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Nodes the output depends on, in a checked topological order."""
    produced = {}
    for node in g.node:
        for out in node.output:
            if out in produced:
                raise ModelError(f"tensor '{out}' is produced by more than one node",
                                 where=node_where(node.name or out, node.op_type))
            produced[out] = node
    needed, stack = set(), [o.name for o in g.output]
    while stack:
        t = stack.pop()
        node = produced.get(t)
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        stack.extend(i for i in node.input if i)
    order, state = [], {}

    def visit(node, depth=0):
        key = id(node)
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            raise ModelError("the graph has a cycle",
                             where=node_where(node.name or node.output[0], node.op_type))
        state[key] = 1
        for i in node.input:
            if i in produced:
                visit(produced[i], depth + 1)
        state[key] = 2
        order.append(node)

    import sys
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * len(g.node) + 100))
    try:
        for node in g.node:
            if id(node) in needed:
                visit(node)
    finally:
        sys.setrecursionlimit(limit)
    return order


def _plain(value):
    """ONNX attribute values as JSON-friendly Python values (bytes -> str)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    return value


def _constant_attr(node, where):
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name in ("value_float", "value_int"):
            return np.asarray(onnx.helper.get_attribute_value(a))
        if a.name in ("value_floats", "value_ints"):
            return np.asarray(list(onnx.helper.get_attribute_value(a)))
    raise UnsupportedError("Constant without a tensor value is not supported", where=where)


def _fold(op, ins, attrs, where):
    try:
        with np.errstate(all="ignore"):
            return np.asarray(evaluate(op, ins, attrs))
    except UnsupportedError as e:
        raise UnsupportedError(e.what, where=where, hint=e.hint) from None
    except Exception as e:
        raise ModelError(f"cannot evaluate {op} on constants: {e}", where=where) from None


def _quant_op(op, ins, attrs, where) -> HostOp:
    if op == "Trunc":
        if len(ins) not in (5, 6, 7) or not all(isinstance(v, np.ndarray) for v in ins[1:]):
            raise UnsupportedError("Trunc needs constant scales, zero point and bit widths",
                                   where=where)
        x, scale, zp, in_bits, out_scale, out_bits = trunc_operands(ins)
        for arr in (scale, zp, in_bits, out_scale, out_bits):
            _check_finite(arr, where)
        if np.any(np.asarray(scale) <= 0) or np.any(np.asarray(out_scale) <= 0):
            raise ModelError("Trunc scales must be positive", where=where)
        if np.any(np.asarray(zp) != 0):
            raise UnsupportedError("non-zero zero points are not supported", where=where)
        return HostOp("Trunc", (None, *(np.asarray(v, F32) for v in (
            scale, zp, in_bits, out_scale, out_bits))), attrs, name=where)
    if op == "BipolarQuant":
        if len(ins) < 2 or not isinstance(ins[1], np.ndarray):
            raise UnsupportedError("BipolarQuant needs a constant scale", where=where)
        scale = np.asarray(ins[1], F32)
        if scale.size == 0:
            raise ModelError("BipolarQuant has an empty scale", where=where)
        _check_finite(scale, where)
        return HostOp("BipolarQuant", (None, scale), attrs, name=where)
    if len(ins) < 4 or not all(isinstance(v, np.ndarray) for v in ins[1:4]):
        raise UnsupportedError("Quant needs constant scale, zero point and bit width",
                               where=where, hint="a non-constant scale cannot be built "
                                                 "into hardware")
    scale, zp, bits = (np.asarray(v, F32) for v in ins[1:4])
    if min(scale.size, zp.size) == 0 or bits.size != 1:
        raise ModelError("Quant needs a non-empty scale and zero point and one bit width",
                         where=where)
    for arr in (scale, zp, bits):
        _check_finite(arr, where)
    if np.any(scale <= 0):
        raise ModelError("quantizer scale must be positive", where=where)
    if np.any(zp != 0):
        raise UnsupportedError("non-zero zero points are not supported", where=where,
                               hint="use symmetric or unsigned quantizers with zero_point=0")
    zp = np.zeros((), F32)  # all zero: a malformed shape must not break broadcasting later
    return HostOp("Quant", (None, scale, zp, bits), attrs, name=where)


def _check_finite(arr, where):
    if not np.all(np.isfinite(np.asarray(arr, dtype=np.float64))):
        raise ModelError("constant contains NaN or Inf", where=where)


def _float_value(value):
    """A constant operand's float value (a quantized bias is its levels times scale)."""
    if isinstance(value, _QWeight):
        return (value.levels * value.scale).astype(F32)
    return value


def _per_output_scale(scale: np.ndarray, where) -> np.ndarray:
    """Weight scales (outputs, rest) -> one positive scale per output channel."""
    if not np.all(scale == scale[:, :1]):
        raise UnsupportedError("weight scales that vary along the input dimension are "
                               "not supported", where=where,
                               hint="use per-tensor or per-output-channel weight scales")
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise ModelError("weight scales must be finite and positive", where=where)
    return np.asarray(scale[:, 0], F32)


def _window_attrs(attrs, kernel, shape, where) -> dict:
    """Kernel, strides and pads (top, left, bottom, right) of a 2-D Conv or pool."""
    if len(kernel) != 2:
        raise UnsupportedError(f"a {len(kernel)}-D window is not supported", where=where,
                               hint="2-D convolutions and pools only")
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "VALID"):
        raise UnsupportedError(f"auto_pad={auto_pad} is not supported", where=where,
                               hint="export with explicit pads")
    strides = list(attrs.get("strides", [1, 1]))
    dilations = list(attrs.get("dilations", [1, 1]))
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if any(d != 1 for d in dilations):
        raise UnsupportedError(f"dilation {dilations} is not supported", where=where,
                               hint="use dilation 1")
    if len(strides) != 2 or len(pads) != 4 or min(strides) < 1 or min(pads) < 0:
        raise ModelError(f"strides {strides} / pads {pads} are not valid for a 2-D window",
                         where=where)
    if min(kernel) < 1:
        raise ModelError(f"kernel {list(kernel)} is not valid", where=where)
    # ONNX pads: (top, left, bottom, right) = (begin_h, begin_w, end_h, end_w)
    return {"kernel": tuple(int(k) for k in kernel), "strides": tuple(map(int, strides)),
            "pads": tuple(int(p) for p in pads)}


def _integer_ratio(sa, sb, where, limit: int = 16) -> tuple[int, int, np.float32]:
    """Small integers ka, kb and a scale s with sa = ka*s and sb = kb*s, exactly in float32."""
    for kb in range(1, limit + 1):
        for ka in range(1, limit + 1):
            common = F32(sb) / F32(kb)
            if F32(ka) * common == F32(sa) and F32(kb) * common == F32(sb):
                return ka, kb, common
    raise UnsupportedError(f"the two sides of the add have scales {float(sa):g} and "
                           f"{float(sb):g}, which are not small integer multiples of one "
                           "scale", where=where,
                           hint="quantize both branches with one shared quantizer scale")


def _is_positive_scaling(chain: list[HostOp]) -> bool:
    """The chain multiplies (or divides) by positive constants only: max commutes with it."""
    for op in chain:
        if op.op in ("Identity", "Dropout", "Cast"):
            continue
        if op.op not in ("Mul", "Div") or op.operands[0] is not None:
            return False
        if np.any(np.asarray(op.operands[1]) <= 0):
            return False
    return True


def _linear_scale(chain: list[HostOp]) -> np.float32 | None:
    """The scalar s if ``chain`` is just multiplying/dividing by positive scalars."""
    s = F32(1)
    for op in chain:
        if op.op in ("Identity", "Dropout", "Cast"):
            continue
        if op.op not in ("Mul", "Div") or op.operands[0] is not None:
            return None
        c = np.asarray(op.operands[1], F32)
        if c.size != 1 or c.ravel()[0] <= 0:
            return None
        s = s * c.ravel()[0] if op.op == "Mul" else s / c.ravel()[0]
    return F32(s)


def _pending_layernorm(stream: _Stream) -> bool:
    return any(h.op == "LayerNormalization" for h in stream.chain)


def _widen_period(stream: _Stream, constants, where) -> _Stream:
    """``stream`` with a chain period in which every constant of ``constants`` fits.

    A constant that varies along the stream faster than the chain's period (a
    per-feature scale after a flatten, say) needs a longer period: the smallest
    multiple of the current one that divides the frame and holds it.
    """
    n, p = stream.elems, stream.channels
    for o in constants:
        if o is None or np.asarray(o).size == 1:
            continue
        for q in range(p, n + 1, p):
            if n % q:
                continue
            try:
                layout.stream_constant(o, stream.shape, stream.order, q, where)
            except UnsupportedError:
                continue
            break
        if q != p:
            chain = layout.rechannel(stream.chain, p, q, n, where)
            stream, p = dataclasses.replace(stream, chain=chain, channels=q), q
    return stream


def _shape_after(hop: HostOp, shape, where) -> tuple[int, ...]:
    try:
        probe = np.zeros(shape, F32)
        out = evaluate(hop.op, [probe if o is None else o for o in hop.operands], hop.attrs)
    except UnsupportedError as e:
        raise UnsupportedError(e.what, where=where, hint=e.hint) from None
    except Exception as e:
        raise ModelError(f"shape mismatch: {e}", where=where) from None
    return tuple(np.shape(out))


def lower(model: onnx.ModelProto, *, exp_unit: str = "auto") -> Graph:
    """QONNX ModelProto -> IR graph (unfolded: PE = SIMD = 1).

    ``exp_unit``: the softmax exponent unit, "single" (one table), "split" (hi/lo
    tables and a multiply) or "auto" (split when the table would be deep).
    """
    return _Lowering(model, exp_unit=exp_unit).run()
