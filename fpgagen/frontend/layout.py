"""Where each element of an ONNX tensor travels in its stream, and constants in stream form.

ONNX image tensors are NCHW; streams carry them channels-innermost (NHWC), the order a
sliding window and an MVAU consume. A stream's ``order`` says which element of the
ONNX tensor (C-order index within one frame) stands at each stream position; ``None``
means the identity. ``channels`` is the size of the stream's innermost axis.

Float ops that follow an integer stream (scales, BatchNorm, biases) are kept in
*stream form*: each constant is a scalar or a ``(channels,)`` vector over the stream's
innermost axis, so that the same chain evaluates on a (values, channels) array when
thresholds are derived and on the stream's values on the host.
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelError, UnsupportedError
from ..ir import HostOp
from ..onnx_ops import F32


def elems(shape) -> int:
    """Elements of one frame of an ONNX tensor: the batch is 1, wherever its axis is."""
    return int(np.prod(shape, dtype=np.int64))


def channels_last_order(shape) -> np.ndarray | None:
    """Stream order of an ONNX tensor whose channel axis is 1 (NCHW, NCL): NHWC."""
    if len(shape) < 3 or shape[0] != 1:
        return None
    index = np.arange(elems(shape)).reshape(shape[1:])
    return np.moveaxis(index, 0, -1).reshape(-1)


def is_identity(order: np.ndarray | None) -> bool:
    return order is None or bool(np.array_equal(order, np.arange(order.size)))


def same_order(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if is_identity(a) or is_identity(b):
        return is_identity(a) and is_identity(b)
    return bool(np.array_equal(a, b))


def stream_constant(const, shape, order, channels: int, where: str) -> np.ndarray:
    """``const``, broadcast against an ONNX tensor of ``shape``, in stream form.

    Returns a scalar array or a ``(channels,)`` vector; a constant that differs
    along the stream's outer axes (per pixel, per element) is refused.
    """
    c = np.asarray(const)
    if c.size == 1:
        return c.reshape(())
    try:
        full = np.broadcast_to(c, shape)
    except ValueError:
        raise ModelError(f"a constant of shape {list(c.shape)} does not broadcast to the "
                         f"tensor's shape {list(shape)}", where=where) from None
    if np.broadcast_shapes(c.shape, tuple(shape)) != tuple(shape):
        raise UnsupportedError(f"a constant of shape {list(c.shape)} would broadcast the "
                               f"tensor of shape {list(shape)} to a larger one", where=where)
    flat = full.reshape(-1)
    if order is not None:
        flat = flat[order]
    return _compress(flat, channels, where, list(c.shape), list(shape))


def _compress(flat: np.ndarray, channels: int, where: str, what, shape) -> np.ndarray:
    rows = flat.reshape(-1, channels)
    if not np.all(rows == rows[:1]):
        raise UnsupportedError(f"a constant of shape {what} on a tensor of shape {shape} "
                               "is neither per-tensor nor per-channel", where=where,
                               hint="scales, biases and BatchNorm must be per tensor or "
                                    "per channel")
    return rows[0]


def rechannel(chain: list[HostOp], old: int, new: int, total: int,
              where: str) -> list[HostOp]:
    """The chain in stream form for a new innermost axis size (after a reshape)."""
    if old == new:
        return chain
    out = []
    for op in chain:
        operands = []
        for o in op.operands:
            a = None if o is None else np.asarray(o)
            if a is not None and a.ndim == 1 and a.size == old:
                a = _compress(np.tile(a, total // old), new, where, [old], [total])
            operands.append(a)
        out.append(HostOp(op.op, tuple(operands), op.attrs, op.name))
    return out


def batchnorm_chain(operands, attrs, shape, order, channels: int,
                    where: str) -> list[HostOp]:
    """BatchNormalization as Sub, Div, Mul, Add in stream form.

    The same float32 operations, in the same order, as the op itself (see
    ``onnx_ops._batchnorm``), so thresholds derived from them are unchanged.
    """
    scale, bias, mean, var = operands[1:5]
    eps = F32(attrs.get("epsilon", 1e-5))
    spread = [1, -1] + [1] * (len(shape) - 2)

    def form(v):
        return stream_constant(np.asarray(v, F32).reshape(spread), shape, order, channels,
                               where)

    std = np.sqrt(np.asarray(var, F32) + eps).astype(F32)
    return [HostOp("Sub", (None, form(mean)), {}, where),
            HostOp("Div", (None, form(std)), {}, where),
            HostOp("Mul", (None, form(scale)), {}, where),
            HostOp("Add", (None, form(bias)), {}, where)]


def to_stream_ops(order: np.ndarray | None) -> list[HostOp]:
    """Host ops taking one frame (1, ...) of an ONNX tensor to its stream order."""
    ops = [HostOp("Reshape", (None, np.asarray([1, -1])), {"allowzero": 0}, "to stream")]
    if not is_identity(order):
        ops.append(HostOp("Gather", (None, np.asarray(order)), {"axis": 1}, "to stream"))
    return ops


def from_stream_ops(order: np.ndarray | None, stream_shape, onnx_shape) -> list[HostOp]:
    """Host ops taking one frame in stream order (1, *stream_shape) back to ONNX order."""
    ops = [HostOp("Reshape", (None, np.asarray([1, -1])), {"allowzero": 0}, "from stream")]
    if not is_identity(order):
        ops.append(HostOp("Gather", (None, np.argsort(order)), {"axis": 1}, "from stream"))
    ops.append(HostOp("Reshape", (None, np.asarray(onnx_shape)), {"allowzero": 0},
                      "output shape"))
    return ops
