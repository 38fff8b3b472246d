"""Abstract values of ONNX tensors during lowering (see ``lower.py``).

- ``_Host``: a float tensor computed from the model input on the host;
- ``_QWeight``: a quantized constant (integer levels and their scale);
- ``_Stream``: an integer tensor on chip plus the float chain that maps its integers to
  the model's values, with where each ONNX element travels (``order``) and the period
  of the chain's constants along the stream (``channels``).

The input has batch size 1, so an ONNX tensor's elements are one frame whatever axis
the batch is on: shapes here are full ONNX shapes and ``elems`` is their product.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..dtypes import IntType
from ..ir import HostOp
from . import layout


@dataclass
class _Host:
    ops: list[HostOp]
    shape: tuple[int, ...]


@dataclass
class _Stream:
    tensor: str
    chain: list[HostOp]  # in stream form (layout.py)
    shape: tuple[int, ...]  # ONNX shape, batch first
    order: np.ndarray | None  # ONNX element at each stream position; None: the same
    channels: int  # period of the chain's constants along the stream (its channel axis)

    @property
    def elems(self) -> int:
        return layout.elems(self.shape)

    @property
    def channels_last(self) -> bool:
        """An image (N, C, spatial...) travelling NHWC, as convolutions need it."""
        return len(self.shape) >= 3 and self.shape[0] == 1 and layout.same_order(
            self.order, layout.channels_last_order(self.shape)) and \
            self.channels == self.shape[1]


def _channels(shape, order) -> int:
    """The innermost stream axis of a tensor of ``shape`` travelling in ``order``."""
    if len(shape) == 4 and shape[0] == 1 and layout.same_order(
            order, layout.channels_last_order(shape)):
        # an NCHW image travelling NHWC; with one channel (or one pixel) that order is
        # also the identity, and the image's channel axis must still be innermost
        return int(shape[1])
    if layout.is_identity(order):
        return int(shape[-1]) if len(shape) > 1 else 1
    if len(shape) >= 3 and shape[0] == 1 and layout.same_order(
            order, layout.channels_last_order(shape)):
        return int(shape[1])
    return layout.elems(shape)  # no axis survives: every element is its own channel


def _stream_shape(s: _Stream) -> tuple[int, ...]:
    """The per-frame shape of the stream, in its own order (IR tensor shape)."""
    if s.channels_last:
        return tuple(s.shape[2:]) + (s.shape[1],)
    if layout.is_identity(s.order) and s.shape[0] == 1:
        return tuple(s.shape[1:])
    return (s.elems // s.channels, s.channels)


@dataclass
class _QWeight:
    levels: np.ndarray  # int64
    scale: np.ndarray  # float32, broadcast to levels.shape
    dtype: IntType
