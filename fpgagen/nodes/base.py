"""What every node kind shares: stream signatures, the cost record, fold checks.

Every node-kind module holds four things side by side: its spec dataclass, a
``reference(spec, x)`` golden model, an Amaranth ``wiring.Component`` built from the
spec, and ``estimate(spec, family)``. Specs expose the stream view of the node:

- ``in_type`` / ``out_type``: ``IntType`` of the elements on each stream;
- ``in_elems`` / ``out_elems``: elements per frame on each stream (C order);
- ``in_lanes`` / ``out_lanes``: elements per stream word (the folding);
- ``cycles()``: clock cycles per frame in steady state (initiation interval).

``reference`` takes and returns int64 arrays of shape (frames, elems).

Ports. A kind's streams are named by two optional attributes of its spec:
``in_ports`` (default ``("i",)``) and ``out_ports`` (default ``("o",)``). They are the
Amaranth component's port names, in the order of the IR node's ``inputs`` and
``outputs``. ``port(spec, name)`` gives a port's ``Port(dtype, lanes, elems)``: from
the spec's own ``port(name)`` method if it has one (kinds whose ports differ, e.g. an
add of an int4 and a uint4 stream), else from the ``in_*`` attributes for every input
port and the ``out_*`` attributes for every output port (all single-port kinds, and
kinds whose ports all look alike, e.g. the duplicator). A multi-input kind's
``reference(spec, a, b, ...)`` takes one array per input port; a multi-output kind
returns a tuple of arrays, one per output port (``nodes.reference_outputs`` always
gives the tuple).

Optional per kind: ``fill_words(spec)``, the most input words (of its first input
port) the node takes ahead of the output word they lead to, when its output is never
held back: its line buffer, input vector or window, and pipeline registers. The FIFO
pass sizes the skip path of a fork/join from these figures (``passes/fifos.py``);
kinds without it hold a couple of pipeline words (``DEFAULT_FILL_WORDS``). A kind that
buffers more must declare it, or skip paths around it deadlock; ``tests/test_dag.py``
measures every kind of ``NODE_CASES`` against its figure. Optional too:
``frame_lag(spec)``, the least and most over its output words ``k`` of ``need(k) /
input words - (k + 1) / output words`` (``need(k)``: input words it must take before word
``k`` leaves), a pair of fractions of a frame. What a skip path must hold is set by the
most its other branch must hold back, not by what it may buffer. By default the least
is 0 and the most ``fill_words / input words`` for a kind that declares ``fill_words``,
else 0 (a word leaves once it has arrived); that holds for every kind whose output
advances no faster than its input (a strided sliding window does not: it declares its
own).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Const, Mux, signed, unsigned
from amaranth.lib import data, stream

from ..dtypes import IntType
from ..errors import SpecError

DEFAULT_FILL_WORDS = 2  # an input register and an output register


@dataclass(frozen=True)
class Port:
    """One stream of a node: element type, elements per word, elements per frame."""

    dtype: IntType
    lanes: int
    elems: int

    @property
    def words(self) -> int:
        """Stream words per frame."""
        return self.elems // self.lanes


def in_ports(spec) -> tuple[str, ...]:
    return tuple(getattr(spec, "in_ports", ("i",)))


def out_ports(spec) -> tuple[str, ...]:
    return tuple(getattr(spec, "out_ports", ("o",)))


def port(spec, name: str) -> Port:
    """The stream view of port ``name`` of a node (see the module docstring)."""
    if hasattr(spec, "port"):
        return spec.port(name)
    if name in in_ports(spec):
        return Port(spec.in_type, spec.in_lanes, spec.in_elems)
    if name in out_ports(spec):
        return Port(spec.out_type, spec.out_lanes, spec.out_elems)
    raise KeyError(f"{type(spec).__name__} has no port {name!r}")


def lane_value(raw, dtype: IntType):
    """A lane's integer value in a shape arithmetic can use (a bipolar bit is -1 or +1)."""
    if dtype.bipolar:
        return Mux(raw, Const(1, signed(2)), Const(-1, signed(2)))
    return raw


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


def clip_kept(array: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``array`` clipped to ``[lo, hi]``, the same object when nothing is outside: the
    spec variants folding builds then share their thresholds, and with them what
    ``memo_on_array`` remembers (a new clipped copy per variant made resnet18_4w4a's
    folding recount its threshold ROMs for every candidate)."""
    if array.size and (array.min() < lo or array.max() > hi):
        return np.clip(array, lo, hi)
    return array


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
    # the callback keeps the dict itself: at interpreter exit module globals are None
    _ARRAY_MEMO[slot] = (weakref.ref(array, lambda _r, slot=slot, memo=_ARRAY_MEMO:
                                     memo.pop(slot, None)), value)
    return value


class SameShapeStream:
    """Stream view of a kind whose output stream has its input's shape and word width.

    The spec gives ``frame_elems`` (elements per frame) and ``pe`` (elements per word).
    """

    @property
    def in_elems(self) -> int:
        return self.frame_elems

    @property
    def out_elems(self) -> int:
        return self.frame_elems

    @property
    def in_lanes(self) -> int:
        return self.pe

    @property
    def out_lanes(self) -> int:
        return self.pe


class ReduceStream:
    """Stream view of a kind that reduces ``positions`` values per channel to one.

    The input is ``reductions`` groups of ``positions`` x ``channels`` elements
    (position major), the output ``reductions`` x ``channels``; ``pe`` channels per word
    on both sides, one input word per cycle.
    """

    @property
    def in_elems(self) -> int:
        return self.reductions * self.positions * self.channels

    @property
    def out_elems(self) -> int:
        return self.reductions * self.channels

    @property
    def in_lanes(self) -> int:
        return self.pe

    @property
    def out_lanes(self) -> int:
        return self.pe

    @property
    def nf(self) -> int:
        return self.channels // self.pe

    def cycles(self) -> int:
        return self.reductions * self.positions * self.nf
