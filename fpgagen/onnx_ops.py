"""Numpy implementations of the ONNX and QONNX ops fpgagen evaluates itself.

One source of truth for float semantics: constant folding in the frontend, the host's
pre-/post-processing, and the float chains that thresholds are derived from all call
``evaluate``. Arithmetic is float32, as in the exported model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import UnsupportedError

F32 = np.float32


def _attr(attrs: dict, name: str, default=None):
    value = attrs.get(name, default)
    return value.decode() if isinstance(value, bytes) else value


def round_mode(x: np.ndarray, mode: str) -> np.ndarray:
    mode = mode.upper()
    if mode in ("ROUND", "HALF_EVEN"):
        return np.round(x)  # half to even, as torch.round in Brevitas
    if mode == "FLOOR":
        return np.floor(x)
    if mode == "CEIL":
        return np.ceil(x)
    if mode in ("ROUND_TO_ZERO", "TRUNC"):
        return np.trunc(x)
    if mode == "HALF_UP":
        return np.floor(x + F32(0.5))
    raise UnsupportedError(f"rounding mode {mode} is not supported",
                           hint="use ROUND, FLOOR, CEIL, ROUND_TO_ZERO or HALF_UP")


def quant_range(bits: int, signed: bool, narrow: bool) -> tuple[int, int]:
    if signed:
        lo = -(1 << (bits - 1)) + (1 if narrow else 0)
        return lo, (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1 - (1 if narrow else 0)


def quant_levels(x, scale, zero_point, bits, attrs) -> np.ndarray:
    """The integer levels of a QONNX Quant (before multiplying back by the scale)."""
    lo, hi = quant_range(int(np.asarray(bits).ravel()[0]), bool(_attr(attrs, "signed", 1)),
                         bool(_attr(attrs, "narrow", 0)))
    y = np.asarray(x, F32) / np.asarray(scale, F32) + np.asarray(zero_point, F32)
    y = round_mode(y, _attr(attrs, "rounding_mode", "ROUND"))
    return np.clip(y, lo, hi) - np.asarray(zero_point, F32)


def bipolar_levels(x) -> np.ndarray:
    return np.where(np.asarray(x) >= 0, F32(1), F32(-1))


def _quant(x, scale, zp, bits, attrs):
    return (quant_levels(x, scale, zp, bits, attrs) * np.asarray(scale, F32)).astype(F32)


def _bipolar(x, scale, attrs):
    return (bipolar_levels(x) * np.asarray(scale, F32)).astype(F32)


def trunc_operands(inputs: list) -> tuple:
    """A QONNX Trunc's (x, scale, zero_point, in_bits, out_scale, out_bits), any version.

    Version 1 has 5 inputs (the output scale is implied by the bit widths); Brevitas
    exports version 2 with 6 (x, scale, zp, in_bits, out_scale, out_bits); the qonnx
    schema lists 7 (an output zero point before out_bits).
    """
    if len(inputs) == 5:
        x, scale, zp, in_bits, out_bits = inputs
        shift = np.asarray(in_bits, F32) - np.asarray(out_bits, F32)
        return x, scale, zp, in_bits, np.asarray(scale, F32) * F32(2) ** shift, out_bits
    if len(inputs) == 6:
        return tuple(inputs)
    if len(inputs) == 7:
        return (*inputs[:5], inputs[6])
    raise UnsupportedError(f"Trunc with {len(inputs)} inputs is not supported")


def trunc_levels(x, scale, zp, in_bits, out_scale, out_bits, attrs) -> np.ndarray:
    """Integer levels of a QONNX Trunc (qonnx's ``trunc``, before the output scale)."""
    scale, zp = np.asarray(scale, F32), np.asarray(zp, F32)
    y = np.round(np.asarray(x, F32) / scale + zp)
    trunc_scale = F32(2) ** np.round(np.log2(np.asarray(out_scale, F32) / scale))
    y = y / trunc_scale
    lo, hi = quant_range(int(np.asarray(out_bits).ravel()[0]), bool(_attr(attrs, "signed", 1)),
                         bool(_attr(attrs, "narrow", 0)))
    y = np.clip(y, lo, hi)
    y = round_mode(y, _attr(attrs, "rounding_mode", "FLOOR"))
    return (y - zp / trunc_scale).astype(F32)


def _trunc(*inputs, attrs):
    x, scale, zp, in_bits, out_scale, out_bits = trunc_operands(list(inputs))
    levels = trunc_levels(x, scale, zp, in_bits, out_scale, out_bits, attrs)
    return (levels * np.asarray(out_scale, F32)).astype(F32)


def _reshape(x, shape, attrs):
    shape = [int(s) for s in np.asarray(shape).ravel()]
    if not _attr(attrs, "allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return np.reshape(x, shape)


def _flatten(x, attrs):
    axis = int(_attr(attrs, "axis", 1))
    axis = axis if axis >= 0 else x.ndim + axis
    lead = int(np.prod(x.shape[:axis], dtype=np.int64))
    return np.reshape(x, (lead, -1))


def _batchnorm(x, scale, bias, mean, var, attrs):
    eps = F32(_attr(attrs, "epsilon", 1e-5))
    shape = [1, -1] + [1] * (x.ndim - 2)
    r = [np.asarray(a, F32).reshape(shape) for a in (scale, bias, mean, var)]
    return ((x - r[2]) / np.sqrt(r[3] + eps) * r[0] + r[1]).astype(F32)


def _gemm(a, b, c=None, attrs=None):
    attrs = attrs or {}
    if _attr(attrs, "transA", 0):
        a = a.T
    if _attr(attrs, "transB", 0):
        b = b.T
    y = F32(_attr(attrs, "alpha", 1.0)) * (a @ b)
    if c is not None:
        y = y + F32(_attr(attrs, "beta", 1.0)) * c
    return y.astype(F32)


def _clip(x, lo=None, hi=None, attrs=None):
    attrs = attrs or {}
    lo = _attr(attrs, "min", None) if lo is None else lo
    hi = _attr(attrs, "max", None) if hi is None else hi
    return np.clip(x, -np.inf if lo is None else lo, np.inf if hi is None else hi).astype(x.dtype)


def _squeeze(x, axes=None, attrs=None):
    axes = _attr(attrs or {}, "axes", None) if axes is None else axes
    return np.squeeze(x, axis=None if axes is None else tuple(int(a) for a in np.ravel(axes)))


def _unsqueeze(x, axes=None, attrs=None):
    axes = _attr(attrs or {}, "axes", None) if axes is None else axes
    for a in sorted(int(a) for a in np.ravel(axes)):
        x = np.expand_dims(x, a if a >= 0 else x.ndim + 1 + a)
    return x


def _argmax(x, attrs):
    axis = int(_attr(attrs, "axis", 0))
    y = np.argmax(x, axis=axis)
    if _attr(attrs, "keepdims", 1):
        y = np.expand_dims(y, axis)
    return y.astype(np.int64)


def _erf(x) -> np.ndarray:
    from scipy.special import erf

    return erf(np.asarray(x, F32)).astype(F32)


def _gelu(x, attrs):
    x = np.asarray(x, F32)
    if _attr(attrs, "approximate", "none") == "tanh":
        inner = F32(np.sqrt(2 / np.pi)) * (x + F32(0.044715) * x * x * x)
        return (F32(0.5) * x * (F32(1) + np.tanh(inner))).astype(F32)
    return (F32(0.5) * x * (F32(1) + _erf(x / F32(np.sqrt(2))))).astype(F32)


def _slice(x, starts, ends, axes=None, steps=None, attrs=None):
    x = np.asarray(x)
    starts, ends = np.ravel(starts).astype(np.int64), np.ravel(ends).astype(np.int64)
    axes = range(len(starts)) if axes is None else np.ravel(axes).astype(np.int64)
    steps = [1] * len(starts) if steps is None else np.ravel(steps).astype(np.int64)
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[int(axis)] = slice(int(start), int(max(min(end, 2**62), -2**62)), int(step))
    return x[tuple(index)]


def _constant_of_shape(shape, attrs) -> np.ndarray:
    value = attrs.get("value")
    if value is None:
        value = np.zeros(1, F32)
    elif not isinstance(value, np.ndarray):
        from onnx import numpy_helper

        value = numpy_helper.to_array(value)
    return np.full(np.ravel(shape).astype(np.int64), np.ravel(value)[0], value.dtype)


def _shape(x, attrs):
    shape = np.asarray(np.shape(x), np.int64)
    return shape[int(_attr(attrs, "start", 0)):_attr(attrs, "end", None)]


def _binary(fn):
    def op(a, b, attrs):
        out = fn(np.asarray(a), np.asarray(b))
        return out.astype(np.result_type(a, b)) if np.asarray(a).dtype.kind == "f" else out
    return op


_OPS: dict[str, Callable[..., np.ndarray]] = {
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "Div": _binary(lambda a, b: a / b if a.dtype.kind == "f" else a // b),
    "Pow": _binary(np.power),
    "Sqrt": lambda x, attrs: np.sqrt(x),
    "Neg": lambda x, attrs: -x,
    "Relu": lambda x, attrs: np.maximum(x, 0).astype(x.dtype),
    "Identity": lambda x, attrs: x,
    "Dropout": lambda x, *rest, attrs: x,
    "Transpose": lambda x, attrs: np.transpose(x, _attr(attrs, "perm", None)),
    "Gather": lambda x, idx, attrs: np.take(x, np.asarray(idx, np.int64),
                                            axis=int(_attr(attrs, "axis", 0))),
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Squeeze": lambda x, *axes, attrs: _squeeze(x, *axes, attrs=attrs),
    "Unsqueeze": lambda x, *axes, attrs: _unsqueeze(x, *axes, attrs=attrs),
    "MatMul": lambda a, b, attrs: (a @ b).astype(np.result_type(a, b)),
    "Gemm": lambda a, b, *c, attrs: _gemm(a, b, *c, attrs=attrs),
    "BatchNormalization": _batchnorm,
    "Clip": lambda x, *bounds, attrs: _clip(x, *bounds, attrs=attrs),
    "Quant": _quant,
    "BipolarQuant": _bipolar,
    "Trunc": _trunc,
    "ArgMax": _argmax,
    # fpgagen's own: the integer levels of the host-side input quantizer
    "QuantLevels": lambda x, scale, zp, bits, attrs: quant_levels(x, scale, zp, bits, attrs),
    "BipolarLevels": lambda x, scale, attrs: bipolar_levels(x),
    "Cast": lambda x, attrs: x,
    "Shape": _shape,
    "ConstantOfShape": lambda shape, attrs: _constant_of_shape(shape, attrs),
    "Equal": lambda a, b, attrs: np.equal(a, b),
    "Where": lambda c, a, b, attrs: np.where(np.asarray(c, bool), a, b),
    "Expand": lambda x, shape, attrs: x * np.ones(np.ravel(shape).astype(np.int64), x.dtype),
    "Slice": lambda x, *rest, attrs: _slice(x, *rest, attrs=attrs),
    "Concat": lambda *xs, attrs: np.concatenate(xs, axis=int(_attr(attrs, "axis", 0))),
    "Gelu": _gelu,
    "Erf": lambda x, attrs: _erf(x),
    "Tanh": lambda x, attrs: np.tanh(np.asarray(x, F32)),
    "Sigmoid": lambda x, attrs: (F32(1) / (F32(1) + np.exp(-np.asarray(x, F32)))).astype(F32),
}

# Ops that map each element on its own (with constants broadcast): they can stand in a
# float chain between an integer accumulator and the next quantizer.
ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Relu", "Identity", "Clip", "Neg",
               "BatchNormalization", "Dropout", "Cast", "Gelu", "Erf", "Tanh", "Sigmoid"}
# Ops that only move or regroup elements of a C-order stream without reordering them.
REGROUP = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"}


def supported(op: str) -> bool:
    return op in _OPS


def evaluate(op: str, inputs: list[Any], attrs: dict) -> np.ndarray:
    """Evaluate one op; ``inputs`` in ONNX order (``None`` for an omitted optional input)."""
    fn = _OPS.get(op)
    if fn is None:
        raise UnsupportedError(f"op {op} is not supported")
    args = list(inputs)
    while args and args[-1] is None:
        args.pop()
    args = [a.astype(F32) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a
            for a in args]
    if op == "Clip":
        return _clip(args[0], *(args[1:] + [None, None])[:2], attrs=attrs)
    return fn(*args, attrs=attrs)
