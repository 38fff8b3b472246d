"""What every node kind shares: stream signatures, the cost record, fold checks.

Every node-kind module holds four things side by side: its spec dataclass, a
``reference(spec, x)`` golden model, an Amaranth ``wiring.Component`` built from the
spec, and ``estimate(spec, family)``. Specs expose the stream view of the node:

- ``in_type`` / ``out_type``: ``IntType`` of the elements on each stream;
- ``in_elems`` / ``out_elems``: elements per frame on each stream (C order);
- ``in_lanes`` / ``out_lanes``: elements per stream word (the folding);
- ``cycles()``: clock cycles per frame in steady state (initiation interval).

``reference`` takes and returns int64 arrays of shape (frames, elems).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, stream

from ..dtypes import IntType
from ..errors import SpecError


def lane_shape(dtype: IntType):
    return signed(dtype.bits) if dtype.signed else unsigned(dtype.bits)


def lane_layout(dtype: IntType, lanes: int) -> data.ArrayLayout:
    return data.ArrayLayout(lane_shape(dtype), lanes)


def lane_stream(dtype: IntType, lanes: int) -> stream.Signature:
    """A stream whose payload is ``lanes`` elements of ``dtype``, lane 0 in the low bits."""
    return stream.Signature(lane_layout(dtype, lanes))


@dataclass(frozen=True)
class Cost:
    """Cycles per frame and resources of one node (estimates)."""

    cycles: int
    lut: int
    ff: int
    bram18: int
    dsp: int

    def as_dict(self) -> dict:
        return {"lut": self.lut, "ff": self.ff, "bram18": self.bram18, "dsp": self.dsp}


def check_positive(name: str, value, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SpecError(f"{what} must be a positive integer, not {value!r}", where=name)
    return value


def check_divides(name: str, fold: int, total: int, fold_name: str, total_name: str):
    if total % fold:
        divisors = [d for d in range(1, total + 1) if total % d == 0]
        shown = ", ".join(map(str, divisors[:12])) + (", ..." if len(divisors) > 12 else "")
        raise SpecError(f"{fold_name}={fold} does not divide {total_name}={total}",
                        where=name, hint=f"choose {fold_name} from {shown}")


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


_ARRAY_MEMO: dict[tuple, tuple[weakref.ref, object]] = {}


def memo_on_array(array: np.ndarray, key, compute: Callable[[], object]):
    """``compute()``, remembered for as long as ``array`` (the same object) lives.

    Folding builds thousands of spec variants that share one weight array
    (``dataclasses.replace``); facts derived from the weights alone are computed once.
    """
    slot = (id(array), key)
    hit = _ARRAY_MEMO.get(slot)
    if hit is not None and hit[0]() is array:
        return hit[1]
    value = compute()
    _ARRAY_MEMO[slot] = (weakref.ref(array, lambda _r, slot=slot: _ARRAY_MEMO.pop(slot, None)),
                         value)
    return value
