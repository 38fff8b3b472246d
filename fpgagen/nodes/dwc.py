"""DWC: data-width converter between two foldings of the same stream.

Integer function: the identity. Only the number of elements per stream word changes,
from ``in_lanes`` to ``out_lanes``; element order is kept (lane 0 is the earliest).

- ``out_lanes = k * in_lanes``: gather k words into one;
- ``in_lanes = k * out_lanes``: split each word into k;
- otherwise: gather to ``lcm(in_lanes, out_lanes)`` lanes, then split;
- equal lanes: a single register stage.

Both directions run at full rate: the gatherer emits a word while collecting the
next, the splitter takes the next word while emitting the last piece, so a frame
takes ``max(in words, out words)`` cycles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..dtypes import IntType
from ..estimate import adder_luts, control_luts, mux_luts
from .base import Cost, check_divides, check_positive, divisors, lane_stream

KIND = "dwc"


@dataclass(frozen=True)
class Spec:
    name: str
    elems: int  # elements per frame
    dtype: IntType
    in_lanes: int
    out_lanes: int

    def __post_init__(self):
        n = self.name
        for what in ("elems", "in_lanes", "out_lanes"):
            check_positive(n, getattr(self, what), what)
        check_divides(n, self.in_lanes, self.elems, "in_lanes", "elems")
        check_divides(n, self.out_lanes, self.elems, "out_lanes", "elems")
        # so lcm(in_lanes, out_lanes) divides elems too: words never straddle frames

    @property
    def lcm(self) -> int:
        return math.lcm(self.in_lanes, self.out_lanes)

    # ---- stream view ---------------------------------------------------------
    @property
    def in_type(self) -> IntType:
        return self.dtype

    @property
    def out_type(self) -> IntType:
        return self.dtype

    @property
    def in_elems(self) -> int:
        return self.elems

    @property
    def out_elems(self) -> int:
        return self.elems

    def cycles(self) -> int:
        return self.elems // min(self.in_lanes, self.out_lanes)


def reference(spec: Spec, x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.int64).reshape(-1, spec.elems)


# ---- hardware ---------------------------------------------------------------------


class Gather(wiring.Component):
    """``factor`` words of ``lanes`` in -> one word of ``lanes * factor`` out."""

    def __init__(self, dtype: IntType, lanes: int, factor: int):
        self.factor = factor
        super().__init__({
            "i": In(lane_stream(dtype, lanes)),
            "o": Out(lane_stream(dtype, lanes * factor)),
        })

    def elaborate(self, platform):
        m = Module()
        k, width = self.factor, len(self.i.payload.as_value())
        piece = Signal(range(k))
        held = Signal((k - 1) * width)  # earlier pieces, the oldest in the low bits
        last = piece == k - 1
        # Only the completing piece needs the output register to be free.
        m.d.comb += self.i.ready.eq(~last | ~self.o.valid | self.o.ready)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += piece.eq(Mux(last, 0, piece + 1))
            with m.If(last):
                m.d.sync += [self.o.payload.eq(Cat(held, self.i.payload)), self.o.valid.eq(1)]
            with m.Else():
                m.d.sync += held.eq(Cat(held[width:], self.i.payload))
        return m


class Split(wiring.Component):
    """One word of ``lanes * factor`` in -> ``factor`` words of ``lanes`` out."""

    def __init__(self, dtype: IntType, lanes: int, factor: int):
        self.factor = factor
        super().__init__({
            "i": In(lane_stream(dtype, lanes * factor)),
            "o": Out(lane_stream(dtype, lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        k, width = self.factor, len(self.o.payload.as_value())
        full = Signal()
        piece = Signal(range(k))
        word = Signal(k * width)  # the pieces still to emit, the next in the low bits
        last = piece == k - 1
        m.d.comb += [
            self.o.valid.eq(full),
            self.o.payload.eq(word[:width]),
            # the next word enters while the last piece leaves
            self.i.ready.eq(~full | (self.o.ready & last)),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [word.eq(word >> width), piece.eq(Mux(last, 0, piece + 1))]
            with m.If(last):
                m.d.sync += full.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [word.eq(self.i.payload), full.eq(1)]
        return m


class Component(wiring.Component):
    def __init__(self, spec: Spec):
        self.spec = spec
        super().__init__({
            "i": In(lane_stream(spec.dtype, spec.in_lanes)),
            "o": Out(lane_stream(spec.dtype, spec.out_lanes)),
        })

    def elaborate(self, platform):
        s = self.spec
        m = Module()
        stages = []
        if s.lcm > s.in_lanes:
            stages.append(Gather(s.dtype, s.in_lanes, s.lcm // s.in_lanes))
        if s.lcm > s.out_lanes:
            stages.append(Split(s.dtype, s.out_lanes, s.lcm // s.out_lanes))
        if not stages:  # same folding: one register stage, so every node has a clock
            m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
            with m.If(self.i.ready):
                m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
            return m
        for n, stage in enumerate(stages):
            m.submodules[type(stage).__name__.lower()] = stage
            if n:
                wiring.connect(m, stages[n - 1].o, stage.i)
        wiring.connect(m, wiring.flipped(self.i), stages[0].i)
        wiring.connect(m, stages[-1].o, wiring.flipped(self.o))
        return m


def fold_options(spec: Spec) -> list[dict]:
    """Lane pairs this converter can join: any two divisors of the frame."""
    e = spec.elems
    return [{"in_lanes": a, "out_lanes": b} for a in divisors(e) for b in divisors(e)]


def fill_words(spec: Spec) -> int:
    """The pieces of one gathered word, and the word being split."""
    return spec.lcm // spec.in_lanes + 1


def estimate(spec: Spec, family: str) -> Cost:
    s = spec
    bits = s.dtype.bits
    lut = ff = 0
    if s.in_lanes == s.out_lanes:
        ff += s.in_lanes * bits + 1
    if s.lcm > s.in_lanes:  # gather: held pieces + output register, clock-enabled
        k = s.lcm // s.in_lanes
        ff += s.lcm * bits + (k - 1) * s.in_lanes * bits + max(1, k.bit_length()) + 1
        lut += adder_luts(max(1, k.bit_length()), family) + control_luts(3, family)
    if s.lcm > s.out_lanes:  # split: a loadable shift register
        k = s.lcm // s.out_lanes
        ff += s.lcm * bits + max(1, k.bit_length()) + 1
        lut += (mux_luts(s.lcm * bits, 2, family) + adder_luts(max(1, k.bit_length()), family)
                + control_luts(3, family))
    return Cost(cycles=s.cycles(), lut=int(lut), ff=int(ff), bram18=0, dsp=0)
