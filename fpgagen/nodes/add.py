"""Add: the elementwise sum of two streams of the same shape (the join of a residual).

Integer function, per element::

    out = ka * a + kb * b

with integers ``ka`` and ``kb``, one per input tensor: the frontend picks them so that
both terms are in one scale (e.g. ``ka = 1, kb = 2`` when b's scale is twice a's). The
output type is the exact range of that sum; a following ``thresholding`` node
requantizes it. Bipolar inputs count as -1 / +1.

Both streams carry ``vectors * channels`` elements per frame, channel-minor; folding:
``pe`` elements per word on both inputs and the output. Ports ``a``, ``b`` and ``o``.

Hardware: a word of each input is taken in the same cycle, only when both are there
and the output register can take the sum; one word per cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..dtypes import MAX_BITS, IntType, smallest_type
from ..errors import SpecError
from ..estimate import adder_luts
from .base import (
    Cost,
    Port,
    SameShapeStream,
    check_divides,
    check_positive,
    divisors,
    lane_layout,
    lane_stream,
    lane_value,
)

KIND = "add"
ADAPTS_LANES = True  # cheap to widen: folding matches its neighbours' words (fold.py)


def _check_int(name: str, value, what: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise SpecError(f"{what} must be an integer, not {value!r}", where=name)
    return int(value)


def term_range(dtype: IntType, k: int) -> tuple[int, int]:
    """The least and greatest ``k * x`` over the values ``x`` of ``dtype``."""
    ends = (k * dtype.min, k * dtype.max)
    return min(ends), max(ends)


@dataclass(frozen=True)
class Spec(SameShapeStream):
    name: str
    channels: int
    a_type: IntType
    b_type: IntType
    ka: int = 1
    kb: int = 1
    vectors: int = 1  # channel vectors per frame (pixels)
    pe: int = 1

    in_ports = ("a", "b")

    def __post_init__(self):
        n = self.name
        for what in ("channels", "vectors", "pe"):
            check_positive(n, getattr(self, what), what)
        check_divides(n, self.pe, self.channels, "PE", "channels")
        for what in ("ka", "kb"):
            object.__setattr__(self, what, _check_int(n, getattr(self, what), what))
        if self.out_type.bits > MAX_BITS:
            raise SpecError(f"the sum {self.ka}*a + {self.kb}*b needs {self.out_type.bits} "
                            f"bits, more than the {MAX_BITS} supported on chip", where=n,
                            hint="use smaller multipliers ka and kb: rescale the branches")

    # ---- stream view ---------------------------------------------------------
    def port(self, name: str) -> Port:
        dtype = {"a": self.a_type, "b": self.b_type, "o": self.out_type}.get(name)
        if dtype is None:
            raise KeyError(f"add has no port {name!r}")
        return Port(dtype, self.pe, self.vectors * self.channels)

    @property
    def out_type(self) -> IntType:
        (alo, ahi), (blo, bhi) = term_range(self.a_type, self.ka), term_range(self.b_type,
                                                                               self.kb)
        return smallest_type(alo + blo, ahi + bhi)

    @property
    def frame_elems(self) -> int:
        return self.vectors * self.channels

    def cycles(self) -> int:
        return self.vectors * self.channels // self.pe


def reference(spec: Spec, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.int64).reshape(-1, spec.in_elems)
    b = np.asarray(b, dtype=np.int64).reshape(-1, spec.in_elems)
    return spec.ka * a + spec.kb * b


# ---- hardware ---------------------------------------------------------------------


class Component(wiring.Component):
    def __init__(self, spec: Spec):
        self.spec = spec
        super().__init__({
            "a": In(lane_stream(spec.a_type, spec.pe)),
            "b": In(lane_stream(spec.b_type, spec.pe)),
            "o": Out(lane_stream(spec.out_type, spec.pe)),
        })

    def elaborate(self, platform):
        s = self.spec
        m = Module()
        advance, fire = Signal(), Signal()
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            fire.eq(self.a.valid & self.b.valid & advance),
            # ready may wait for valid (never the other way round): no combinational loop
            self.a.ready.eq(self.b.valid & advance),
            self.b.ready.eq(self.a.valid & advance),
        ]
        total = Signal(lane_layout(s.out_type, s.pe))
        for p in range(s.pe):
            a = lane_value(self.a.payload[p], s.a_type)
            b = lane_value(self.b.payload[p], s.b_type)
            m.d.comb += total[p].eq(a * s.ka + b * s.kb)
        with m.If(advance):
            m.d.sync += self.o.valid.eq(fire)
            with m.If(fire):
                m.d.sync += self.o.payload.eq(total)
        return m


def fold_options(spec: Spec) -> list[dict]:
    return [{"pe": pe} for pe in divisors(spec.channels)]


def _constant_multiply_luts(k: int, bits: int, family: str) -> int:
    """Shift-and-add: one adder per set bit of |k| beyond the first (a negation for k < 0)."""
    adds = max(0, bin(abs(k)).count("1") - 1) + (k < 0)
    return adds * adder_luts(bits, family)


def estimate(spec: Spec, family: str) -> Cost:
    s = spec
    bits = s.out_type.bits
    lut = s.pe * (adder_luts(bits, family) + _constant_multiply_luts(s.ka, bits, family)
                  + _constant_multiply_luts(s.kb, bits, family)) + 3
    return Cost(cycles=s.cycles(), lut=int(lut), ff=s.pe * bits + 1, bram18=0, dsp=0)
