"""Lowering of the transformer ops: attention, softmax, LayerNorm, token means, GELU.

A Brevitas ViT exported with the TorchScript exporter surrounds its attention with
Shape/Gather/Slice/Reshape/Transpose/Div. None of these moves data: a regroup only
changes the ONNX view of a stream (``lower.regroup``), a ``Shape`` of a stream is a
constant, and the arithmetic on shapes folds. What is left are the ops that compute,
and each becomes a dataflow node once its operands' *physical* layout is checked:

- ``Slice``/``Split`` of a layer's outputs before their quantizer: the layer splits into
  one MVAU per slice (the packed Q/K/V projection becomes three MVAUs on one input);
- ``MatMul`` of two streams: a two-port ``matmul`` (QKᵀ, AV). Its operands must travel
  token-major with the heads inside each token, which is how the projections emit them;
  the heads are split and merged by that layout alone;
- ``Softmax`` over a row that travels contiguously: a ``softmax`` with the LUT exponent
  unit, its output in steps of 2**-15; the quantizer after it becomes thresholds;
- ``LayerNormalization`` followed by a quantizer: a ``layernorm`` (exact integer square
  root, dyadic affine that includes the quantizer's scale);
- ``ReduceMean`` over tokens: a ``pool`` (sum) with the division left to the chain;
- ``Add`` of a quantized constant (a position embedding): an ``offset``;
- a non-monotone function (GELU) between a narrow quantized stream and a quantizer: a
  ``table`` over every input level.

Everything else fails with the node, the op and what is supported.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..dtypes import IntType, smallest_type
from ..errors import UnsupportedError
from ..ir import HostOp, Tensor
from ..nodes import layernorm, matmul, mvau, offset, pool, prefix, select, softmax, table
from ..onnx_ops import F32
from . import layout
from . import thresholds as thr
from .values import _QWeight, _Stream, _stream_shape

SOFTMAX_FRAC_BITS = 15  # softmax outputs in steps of 2**-15 (unsigned 16-bit)
EXP_WIDTH = 16  # exponent table entries
SPLIT_ABOVE = 1024  # exponent tables deeper than this use the hi/lo split
LN_NORM_FRAC = 10  # fraction bits of the normalised value n
LN_AFFINE_SHIFT = 24  # k of the dyadic affine


def positions(stream: _Stream) -> np.ndarray:
    """For each ONNX element (array of the stream's ONNX shape), its stream position."""
    n = stream.elems
    pos = np.arange(n) if stream.order is None else np.argsort(stream.order)
    return pos.reshape(stream.shape)


def order_of(pos: np.ndarray) -> np.ndarray | None:
    """The ``order`` (ONNX element at each stream position) of a position array."""
    order = np.argsort(pos.reshape(-1))
    return None if layout.is_identity(order) else order


def contiguous_rows(pos: np.ndarray) -> np.ndarray | None:
    """For rows along the last axis: each row's positions within its block, if every
    row fills one aligned block of the stream (in one order shared by all rows)."""
    n = pos.shape[-1]
    rows = pos.reshape(-1, n)
    within = rows - (rows.min(axis=1, keepdims=True) // n) * n
    if not (np.all(rows.min(axis=1) % n == 0) and np.all(within == within[:1])
            and np.array_equal(np.sort(within[0]), np.arange(n))):
        return None
    return within[0]


def _scale(stream: _Stream, what: str, where: str) -> np.float32:
    from .lower import _linear_scale

    s = _linear_scale(stream.chain)
    if s is None:
        raise UnsupportedError(f"the input of {what} must be a quantized tensor times one "
                               "positive per-tensor scale", where=where,
                               hint="put a per-tensor quantizer directly before it")
    return s


class TransformerLowering:
    """Methods of ``lower._Lowering`` for the transformer ops (a mixin)."""

    # ---- layouts --------------------------------------------------------------
    def slice_stream(self, op, node, stream, ins, attrs, where):
        """Slice/Split along a layer's output channels, before the layer's quantizer."""
        producer = self.producer(stream.tensor)
        if not (producer is not None and isinstance(producer.spec, mvau.Spec)
                and producer.spec.thresholds is None
                and producer.spec.weights.shape[0] == stream.channels):
            raise UnsupportedError(f"{op} of an on-chip tensor is supported only on a "
                                   "layer's output channels, before their quantizer",
                                   where=where, hint="slice the layer's outputs (as a "
                                   "packed Q/K/V projection does), not its activations")
        pos = positions(stream)
        ndim = len(stream.shape)
        if op == "Slice":
            starts, ends = (np.ravel(ins[1]), np.ravel(ins[2]))
            axes = np.ravel(ins[3]) if len(ins) > 3 and ins[3] is not None else [0]
            steps = np.ravel(ins[4]) if len(ins) > 4 and ins[4] is not None else [1]
            if len(starts) != 1 or int(steps[0]) != 1:
                raise UnsupportedError("Slice of an on-chip tensor along more than one axis "
                                       "or with a step is not supported", where=where)
            axis, size = int(axes[0]) % ndim, stream.shape[int(axes[0]) % ndim]
            lo, hi, _ = slice(int(starts[0]), int(min(ends[0], 2**62))).indices(size)
            pieces = [(lo, hi)]
        else:  # Split
            axis = int(attrs.get("axis", 0)) % ndim
            size = stream.shape[axis]
            split = ins[1] if len(ins) > 1 and ins[1] is not None else attrs.get("split")
            if split is None:
                count = len(node.output)
                split = [size // count] * count
            bounds = np.cumsum([0, *[int(v) for v in np.ravel(split)]])
            pieces = list(zip(bounds[:-1], bounds[1:]))
        channel = contiguous_rows(np.moveaxis(pos, axis, -1))
        if axis != ndim - 1 or channel is None or stream.shape[-1] != stream.channels:
            raise UnsupportedError(f"{op} of a layer's outputs must be along their channel "
                                   "axis", where=where)
        outs = []
        for lo, hi in pieces:
            rows = channel[lo:hi]  # stream channels of the slice, in ONNX order
            if not np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows))):
                raise UnsupportedError(f"{op} of non-adjacent layer outputs is not "
                                       "supported", where=where)
            spec = producer.spec
            probe = dataclasses.replace(spec, name=self.fresh("mvau"), mh=hi - lo,
                                        weights=spec.weights[rows[0]:rows[0] + len(rows)],
                                        out_type=IntType(64, True))
            probe = dataclasses.replace(probe, out_type=probe.acc_type)
            shape = tuple(stream.shape[:-1]) + (hi - lo,)
            part = np.take(pos, range(lo, hi), axis=-1)
            out = _Stream(f"{probe.name}_out", [], shape,
                          None if stream.order is None else order_of(_renumber(part)),
                          hi - lo)
            self.add_node(probe, list(producer.inputs), Tensor(
                out.tensor, _stream_shape(out), probe.out_type), node.name)
            chain = [HostOp(h.op, tuple(None if o is None else _slice_form(
                o, stream.channels, rows[0], len(rows)) for o in h.operands), h.attrs, h.name)
                for h in stream.chain]
            outs.append(dataclasses.replace(out, chain=chain))
        return outs

    # ---- class tokens -----------------------------------------------------------
    @staticmethod
    def token_axis(stream, op, ins, attrs) -> int | None:
        """The axis a Slice/Gather works on, if it is the token axis of a token stream
        (vectors of ``channels`` elements, channels last, in ONNX order)."""
        ndim = len(stream.shape)
        if ndim < 2 or stream.order is not None or stream.shape[-1] != stream.channels:
            return None
        if op == "Gather":
            axis = int(attrs.get("axis", 0))
        else:
            axes = ins[3] if len(ins) > 3 and ins[3] is not None else [0]
            if np.size(axes) != 1:
                return None
            axis = int(np.ravel(axes)[0])
        axis %= ndim
        return axis if axis == ndim - 2 else None

    def select_tokens(self, op, node, stream, ins, attrs, where):
        """Gather/Slice of tokens (a class token's read-out): a ``select``."""
        ndim, tokens = len(stream.shape), stream.shape[-2]
        if op == "Gather":
            index = np.asarray(ins[1])
            if index.size != 1:
                raise UnsupportedError("Gather of several tokens is not supported",
                                       where=where, hint="gather one token, or slice a range")
            start, count = int(index.ravel()[0]) % tokens, 1
            shape = tuple(stream.shape[:-2]) + (() if index.ndim == 0 else (1,)) \
                + (stream.shape[-1],)
        else:
            steps = ins[4] if len(ins) > 4 and ins[4] is not None else [1]
            if int(np.ravel(steps)[0]) != 1:
                raise UnsupportedError("Slice of tokens with a step is not supported",
                                       where=where)
            start, stop, _ = slice(int(np.ravel(ins[1])[0]), int(min(np.ravel(ins[2])[0],
                                                                     2**62))).indices(tokens)
            count = stop - start
            if count < 1:
                raise UnsupportedError("Slice selects no token", where=where)
            shape = tuple(stream.shape[:-2]) + (count, stream.shape[-1])
        if int(np.prod(stream.shape[:-2], dtype=np.int64)) != 1:
            raise UnsupportedError(f"{op} of tokens of a tensor of shape "
                                   f"{list(stream.shape)} is not supported", where=where)
        src = self.tensors[stream.tensor]
        spec = select.Spec(self.fresh("select"), stream.channels, src.dtype, tokens,
                           start, count)
        out = _Stream(f"{spec.name}_out", stream.chain, shape if ndim > 1 else (1,), None,
                      stream.channels)
        self.add_node(spec, [stream.tensor], Tensor(out.tensor, _stream_shape(out),
                                                    src.dtype), node.name)
        return out

    def concat_constant(self, ins, attrs, node, where):
        """Concat of quantized constant tokens in front of a token stream (a class
        token): a ``prefix`` of integer levels in the stream's scale."""
        from .lower import _integer_ratio

        stream = next(v for v in ins if isinstance(v, _Stream))
        ndim = len(stream.shape)
        axis = int(attrs.get("axis", 0)) % ndim
        consts = ins[:ins.index(stream)]
        if (ins.index(stream) != len(ins) - 1 or len(consts) != 1
                or not isinstance(consts[0], _QWeight) or axis != ndim - 2
                or stream.order is not None or stream.shape[-1] != stream.channels):
            raise UnsupportedError("Concat with an on-chip tensor is supported only to put "
                                   "quantized constant tokens in front of a token stream "
                                   "(a class token)", where=where)
        qw = consts[0]
        if qw.dtype.bipolar or np.unique(qw.scale).size != 1 or qw.levels.ndim != ndim \
                or qw.levels.shape[-1] != stream.shape[-1]:
            raise UnsupportedError("the constant tokens must have the stream's width and "
                                   "one per-tensor scale", where=where)
        sx = _scale(stream, "a Concat of tokens", where)
        ka, kb, _ = _integer_ratio(sx, F32(qw.scale.ravel()[0]), where)
        if ka != 1:
            raise UnsupportedError("the constant tokens' scale is not an integer multiple "
                                   "of the stream's", where=where,
                                   hint="quantize the class token with the tokens' quantizer")
        src = self.tensors[stream.tensor]
        k = int(np.prod(qw.levels.shape[:-1], dtype=np.int64))
        spec = prefix.Spec(self.fresh("prefix"), stream.channels, src.dtype,
                           qw.levels.reshape(k, -1).astype(np.int64) * kb,
                           vectors=stream.elems // stream.channels)
        shape = tuple(stream.shape[:-2]) + (stream.shape[-2] + k, stream.shape[-1])
        out = _Stream(f"{spec.name}_out", stream.chain, shape, None, stream.channels)
        self.add_node(spec, [stream.tensor], Tensor(out.tensor, _stream_shape(out),
                                                    spec.out_type), node.name)
        return out

    # ---- attention ------------------------------------------------------------
    def matmul_streams(self, a, b, node, where):
        """MatMul of two on-chip tensors: a two-port matmul (QKᵀ or AV)."""
        if len(a.shape) < 2 or len(b.shape) < 2 or a.shape[:-2] != b.shape[:-2]:
            raise UnsupportedError(f"MatMul of on-chip tensors of shapes {list(a.shape)} and "
                                   f"{list(b.shape)} is not supported", where=where,
                                   hint="both operands need the same leading (head) axes")
        sa, sb = _scale(a, "a MatMul", where), _scale(b, "a MatMul", where)
        heads = int(np.prod(a.shape[:-2], dtype=np.int64))
        rows, inner = a.shape[-2:]
        k, cols = b.shape[-2:]
        if k != inner:
            raise UnsupportedError(f"MatMul of shapes {list(a.shape)} and {list(b.shape)}",
                                   where=where)
        pa = positions(a).reshape(heads, rows, inner)
        pb = positions(b).reshape(heads, inner, cols)
        h, r, i = np.ix_(range(heads), range(rows), range(inner))
        if not np.array_equal(pa, (r * heads + h) * inner + i):
            raise UnsupportedError("the left operand of this MatMul does not travel as "
                                   "tokens (rows) with the heads inside each token",
                                   where=where, hint="see docs/ops.md, attention")
        h, i, c = np.ix_(range(heads), range(inner), range(cols))
        if np.array_equal(pb, (c * heads + h) * inner + i):
            transpose_b, n_b, d_b = True, cols, inner  # b-tokens are columns (K)
        elif np.array_equal(pb, (i * heads + h) * cols + c):
            transpose_b, n_b, d_b = False, inner, cols  # b-tokens are rows (V)
        else:
            raise UnsupportedError("the right operand of this MatMul does not travel as "
                                   "tokens with the heads inside each token", where=where,
                                   hint="see docs/ops.md, attention")
        ta, tb = self.tensors[a.tensor], self.tensors[b.tensor]
        # two B buffers: B arrives at its producer's pace over a whole frame, so with one
        # buffer the next frame's B would wait for this frame's rows, serialising both
        spec = matmul.Spec(self.fresh("matmul"), rows, n_b, d_b, ta.dtype, tb.dtype,
                           transpose_b=transpose_b, heads=heads, pingpong=True)
        shape = tuple(a.shape[:-1]) + (cols,)
        h, r, c = np.ix_(range(heads), range(rows), range(cols))
        out = _Stream(f"{spec.name}_out", [HostOp("Mul", (None, np.asarray(sa * sb, F32)), {},
                                                  name=where)], shape,
                      order_of(((r * heads + h) * cols + c).reshape(shape)), cols)
        self.add_node(spec, [a.tensor, b.tensor], Tensor(out.tensor, (rows, heads * cols),
                                                         spec.out_type), node.name)
        return out

    def softmax(self, stream, attrs, node, where):
        axis = int(attrs.get("axis", -1)) % len(stream.shape)
        if axis != len(stream.shape) - 1:
            raise UnsupportedError("Softmax is supported over the last axis only",
                                   where=where)
        if contiguous_rows(positions(stream)) is None:
            raise UnsupportedError("the rows of this Softmax do not travel one after "
                                   "another", where=where)
        if any(h.op in ("Add", "Sub") for h in stream.chain):
            raise UnsupportedError("an attention mask (an Add before the Softmax) is not "
                                   "supported", where=where,
                                   hint="export the attention without attn_mask / "
                                        "key_padding_mask")
        score_scale = float(_scale(stream, "Softmax", where))
        src = self.tensors[stream.tensor]
        n = stream.shape[-1]
        reach = min(src.dtype.max - src.dtype.min + 1, softmax.MAX_TABLE_DEPTH,
                    math.floor(math.log(2.0 * (1 << EXP_WIDTH)) / score_scale) + 2)
        variant = self.exp_unit if self.exp_unit != "auto" else (
            "single" if reach <= SPLIT_ABOVE else "split")
        tables = softmax.exp_tables(score_scale, src.dtype, variant=variant, depth=reach,
                                    width=EXP_WIDTH)
        out_type = IntType(SOFTMAX_FRAC_BITS + 1, False)
        spec = softmax.Spec(self.fresh("softmax"), n, src.dtype, out_type,
                            softmax.output_shift(SOFTMAX_FRAC_BITS), rows=stream.elems // n,
                            **tables)
        out = _Stream(f"{spec.name}_out", [HostOp(
            "Mul", (None, np.asarray(F32(2.0 ** -SOFTMAX_FRAC_BITS))), {}, name=where)],
            stream.shape, stream.order, n)
        self.add_node(spec, [stream.tensor], Tensor(out.tensor, _stream_shape(out), out_type),
                      node.name)
        return out

    # ---- normalisation and pooling --------------------------------------------
    def layernorm(self, stream, ins, attrs, where):
        """LayerNorm: pending until its quantizer, which the layernorm node includes."""
        d = stream.shape[-1]
        axis = int(attrs.get("axis", -1)) % len(stream.shape)
        if axis != len(stream.shape) - 1:
            raise UnsupportedError("LayerNormalization is supported over the last axis "
                                   "only", where=where)
        within = contiguous_rows(positions(stream))
        if within is None:
            raise UnsupportedError("the vectors of this LayerNormalization do not travel "
                                   "one after another", where=where)
        s = _scale(stream, "LayerNormalization", where)
        affine = []
        for v, default in ((ins[1] if len(ins) > 1 else None, 1.0),
                           (ins[2] if len(ins) > 2 else None, 0.0)):
            v = np.full(d, default, F32) if v is None else np.broadcast_to(
                np.asarray(v, F32), (d,))
            if not np.all(np.isfinite(v)):
                raise UnsupportedError("LayerNormalization scale or bias is not finite",
                                       where=where)
            stream_form = np.empty(d, F32)
            stream_form[within] = v  # the element at stream offset within[j] is j
            affine.append(stream_form)
        hop = HostOp("LayerNormalization", (None, *affine),
                     {"epsilon": float(attrs.get("epsilon", 1e-5)), "scale": float(s)},
                     name=where)
        return _Stream(stream.tensor, [hop], stream.shape, stream.order, d)

    def layernorm_node(self, stream, quant, node, where):
        """The pending LayerNorm of ``stream`` with the quantizer ``quant`` after it."""
        ln = stream.chain[0]
        _, gamma, beta = ln.operands
        out_type, _ = thr.quantizer_type(quant, where)
        if quant.op != "Quant" or np.asarray(quant.operands[1]).size != 1:
            raise UnsupportedError("the quantizer after a LayerNormalization must be a "
                                   "per-tensor Quant", where=where)
        so = float(np.asarray(quant.operands[1]).ravel()[0])
        src = self.tensors[stream.tensor]
        d, s = stream.shape[-1], ln.attrs["scale"]
        span = src.dtype.max - src.dtype.min
        v_max = d * d * span * span // 4 + 1
        var_offset = int(round(d * d * ln.attrs["epsilon"] / (s * s)))
        frac = math.isqrt(v_max + var_offset).bit_length() + LN_NORM_FRAC + 2
        k = LN_AFFINE_SHIFT
        mult = np.rint(gamma.astype(np.float64) / so * 2.0 ** (k - LN_NORM_FRAC))
        bias = np.rint(beta.astype(np.float64) / so * 2.0 ** k)
        spec = layernorm.Spec(self.fresh("layernorm"), d, src.dtype, out_type, frac,
                              frac - LN_NORM_FRAC, mult.astype(np.int64),
                              bias.astype(np.int64), k, var_offset=var_offset,
                              vectors=stream.elems // d)
        out = _Stream(f"{spec.name}_out", [HostOp("Mul", (None, np.asarray(F32(so))), {},
                                                  name=where)],
                      stream.shape, stream.order, d)
        self.add_node(spec, [stream.tensor], Tensor(out.tensor, _stream_shape(out), out_type),
                      node.name)
        self.tensors[out.tensor] = dataclasses.replace(self.tensors[out.tensor],
                                                       scale=np.asarray(F32(so)))
        return out

    def reduce_mean(self, stream, ins, attrs, node, where):
        """ReduceMean over outer axes (tokens): a pool summing them; the chain divides."""
        from .lower import _is_positive_scaling

        ndim = len(stream.shape)
        axes = ins[1] if len(ins) > 1 and ins[1] is not None else attrs.get("axes")
        if axes is None:
            axes = list(range(ndim))
        axes = sorted({int(a) % ndim for a in np.ravel(axes)})
        keep = [a for a in range(ndim) if a not in axes]
        pos = np.transpose(positions(stream), axes + keep)
        count = int(np.prod([stream.shape[a] for a in axes], dtype=np.int64))
        width = stream.elems // count
        pos = pos.reshape(count, width)
        q = pos[0]
        if not (np.array_equal(pos, np.arange(count)[:, None] * width + q[None])
                and width % stream.channels == 0):
            raise UnsupportedError("ReduceMean is supported over the outer axes of a "
                                   "stream (e.g. the tokens), not its channels", where=where)
        if not _is_positive_scaling(stream.chain):
            raise UnsupportedError("ReduceMean of a tensor that is not a quantized tensor "
                                   "times a positive scale is not supported", where=where,
                                   hint="quantize the activation before the mean")
        src = self.tensors[stream.tensor]
        out_type = smallest_type(src.dtype.min * count, src.dtype.max * count)
        spec = pool.Spec(self.fresh("pool"), width, count, "sum", src.dtype, out_type)
        keepdims = int(attrs.get("keepdims", 1))
        shape = tuple(1 if a in axes else n for a, n in enumerate(stream.shape)) \
            if keepdims else tuple(stream.shape[a] for a in keep)
        if not shape:
            shape = (1,)
        out = _Stream(f"{spec.name}_out", stream.chain + [HostOp(
            "Div", (None, np.asarray(F32(count))), {}, name=where)], shape,
            order_of(_renumber(q).reshape(shape)), stream.channels)
        self.add_node(spec, [stream.tensor], Tensor(out.tensor, (1, width), out_type),
                      node.name)
        return out

    # ---- elementwise -----------------------------------------------------------
    def add_constant(self, stream, qw: _QWeight, node, where):
        """A stream plus a quantized constant of its shape (a position embedding)."""
        from .lower import _integer_ratio

        if qw.dtype.bipolar or np.unique(qw.scale).size != 1:
            raise UnsupportedError("a constant added to an on-chip tensor must be quantized "
                                   "with one per-tensor scale", where=where)
        sx = _scale(stream, "an Add of a constant", where)
        ka, kb, common = _integer_ratio(sx, F32(qw.scale.ravel()[0]), where)
        try:
            levels = np.broadcast_to(qw.levels, stream.shape)
        except ValueError:
            raise UnsupportedError(f"a constant of shape {list(qw.levels.shape)} does not "
                                   f"broadcast to {list(stream.shape)}", where=where) from None
        flat = levels.reshape(-1)
        if stream.order is not None:
            flat = flat[stream.order]
        src = self.tensors[stream.tensor]
        p = stream.channels
        spec = offset.Spec(self.fresh("offset"), p, src.dtype, flat.astype(np.int64) * kb,
                           k=ka, vectors=stream.elems // p)
        out = _Stream(f"{spec.name}_out", [HostOp("Mul", (None, np.asarray(common, F32)), {},
                                                  name=where)],
                      stream.shape, stream.order, p)
        self.add_node(spec, [stream.tensor], Tensor(out.tensor, _stream_shape(out),
                                                    spec.out_type), node.name)
        return out

    def table_node(self, stream, quant, node, where):
        """A non-monotone function of a narrow quantized stream: a lookup table."""
        src = self.tensors[stream.tensor]
        if src.dtype.bipolar or src.dtype.bits > table.MAX_IN_BITS or any(
                o is not None and np.asarray(o).size != 1 for h in stream.chain
                for o in h.operands):
            return None
        x = np.arange(src.dtype.min, src.dtype.max + 1).astype(F32)
        with np.errstate(all="ignore"):
            levels = thr.quantizer_levels(quant, thr.apply_chain(stream.chain, x))
        out_type, _ = thr.quantizer_type(quant, where)
        spec = table.Spec(self.fresh("table"), stream.channels, src.dtype, out_type,
                          levels.astype(np.int64), vectors=stream.elems // stream.channels)
        out_name = f"{spec.name}_out"
        self.add_node(spec, [stream.tensor], Tensor(out_name, src.shape, out_type), node.name)
        return out_name


def _renumber(pos: np.ndarray) -> np.ndarray:
    """Positions of a subset of a stream's elements, renumbered 0.. in stream order."""
    flat = pos.reshape(-1)
    return np.argsort(np.argsort(flat)).reshape(pos.shape)


def _slice_form(operand, channels: int, start: int, count: int) -> np.ndarray:
    a = np.asarray(operand)
    if a.ndim == 1 and a.size == channels:
        return a[start:start + count]
    return a
