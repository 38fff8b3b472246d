"""Pool: reduce each window's positions to one value per channel (max or sum).

Integer function: the input frame is ``windows`` groups of ``positions x channels``
elements (position major, channel minor: a sliding window's output with
``positions = k_h * k_w``, or a whole NHWC image with ``windows = 1`` for a global
pool). The output is ``windows x channels``::

    max: out[w, c] = max_p x[w, p, c]      (bipolar: OR of the bits, i.e. the max)
    sum: out[w, c] = sum_p x[w, p, c]      (exact; an average's division and
                                            truncation are a following thresholding)

Folding: ``pe`` channels per word on both streams; a frame takes
``windows * positions * channels / pe`` cycles. The running values of the
``channels / pe`` words of a position sit in a memory read one word ahead (registers
when there are at most ``REGISTER_WORDS`` of them: a memory read in the cycle of the
previous write of the same word would see the old value).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..dtypes import IntType, smallest_type
from ..errors import SpecError
from ..estimate import adder_luts, compare_luts, lut_inputs, memory_cost, mux_luts
from ..hw.primitives import REGISTER_WORDS, running_words
from .base import (
    Cost,
    ReduceStream,
    check_divides,
    check_positive,
    divisors,
    lane_layout,
    lane_stream,
)

KIND = "pool"
ADAPTS_LANES = True  # cheap to widen: folding matches its neighbours' words (fold.py)
MODES = ("max", "sum")


def sum_type(in_type: IntType, positions: int) -> IntType:
    """The narrowest type holding the sum of ``positions`` values of ``in_type``."""
    return smallest_type(positions * in_type.min, positions * in_type.max)


@dataclass(frozen=True)
class Spec(ReduceStream):
    name: str
    channels: int
    positions: int  # values reduced into each output (window size)
    mode: str  # "max" or "sum"
    in_type: IntType
    out_type: IntType
    windows: int = 1  # outputs per channel per frame
    pe: int = 1  # channels per stream word

    def __post_init__(self):
        n = self.name
        for what in ("channels", "positions", "windows", "pe"):
            check_positive(n, getattr(self, what), what)
        check_divides(n, self.pe, self.channels, "PE", "channels")
        if self.mode not in MODES:
            raise SpecError(f"pool mode {self.mode!r} is not supported", where=n,
                            hint="use 'max' or 'sum' (an average is a sum and a thresholding)")
        if self.mode == "max" and self.out_type != self.in_type:
            raise SpecError(f"a max pool's output type {self.out_type} differs from its "
                            f"input type {self.in_type}", where=n,
                            hint="the maximum of values is one of them: use the input type")
        if self.mode == "sum":
            lo, hi = self.positions * self.in_type.min, self.positions * self.in_type.max
            if self.out_type.bipolar or not self.out_type.contains([lo, hi]):
                raise SpecError(f"sums of {self.positions} values of {self.in_type} span "
                                f"[{lo}, {hi}], which does not fit the output type "
                                f"{self.out_type}", where=n,
                                hint=f"use {sum_type(self.in_type, self.positions)} or wider")

    # ---- stream view ---------------------------------------------------------
    @property
    def reductions(self) -> int:
        return self.windows


def reference(spec: Spec, x: np.ndarray) -> np.ndarray:
    s = spec
    frames = x.shape[0]
    v = np.asarray(x, dtype=np.int64).reshape(frames, s.windows, s.positions, s.channels)
    out = v.max(axis=2) if s.mode == "max" else v.sum(axis=2)
    return out.reshape(frames, s.out_elems)


# ---- hardware ---------------------------------------------------------------------


class Component(wiring.Component):
    """Stall-all pipeline: accept + running-value read -> combine, write back, emit.

    The counters, the running-value read port, the S1 register and the output register
    advance only when the output register can take a value (``~o.valid | o.ready``).
    """

    def __init__(self, spec: Spec):
        self.spec = spec
        super().__init__({
            "i": In(lane_stream(spec.in_type, spec.pe)),
            "o": Out(lane_stream(spec.out_type, spec.pe)),
        })

    def _lane_value(self, raw):
        """A lane's integer value, in a shape arithmetic can use."""
        if self.spec.in_type.bipolar and self.spec.mode == "sum":
            return Mux(raw, Const(1, signed(2)), Const(-1, signed(2)))
        return raw  # a bipolar max is the max of the bits (1 = +1)

    def elaborate(self, platform):
        s = self.spec
        m = Module()
        nf, pe = s.nf, s.pe
        acc_layout = lane_layout(s.out_type, pe)

        advance = Signal()
        accept = Signal()
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance),
            accept.eq(self.i.valid & advance),
        ]

        # ---- issue: position counters --------------------------------------------
        word = Signal(range(max(nf, 2)))
        position = Signal(range(max(s.positions, 2)))
        last_word = word == nf - 1
        with m.If(accept):
            m.d.sync += word.eq(Mux(last_word, 0, word + 1))
            with m.If(last_word):
                m.d.sync += position.eq(Mux(position == s.positions - 1, 0, position + 1))

        # ---- S1: the accepted word, its running value, combine -------------------
        v1, first1, last1 = Signal(), Signal(), Signal()
        x1 = Signal(lane_layout(s.in_type, pe))
        with m.If(advance):
            m.d.sync += v1.eq(accept)
            with m.If(accept):
                m.d.sync += [x1.eq(self.i.payload), first1.eq(position == 0),
                             last1.eq(position == s.positions - 1)]

        updated = Signal(acc_layout)
        write = Signal()
        m.d.comb += write.eq(advance & v1)
        word1 = Signal(range(nf))  # S1's word
        with m.If(advance & accept):
            m.d.sync += word1.eq(word)
        running = running_words(m, acc_layout, nf, word, advance, word1, write, updated)

        for p in range(pe):
            x = self._lane_value(x1[p])
            if s.mode == "max":
                combined = Mux(x > running[p], x, running[p])
            else:
                combined = running[p] + x
            m.d.comb += updated[p].eq(Mux(first1, x, combined))

        with m.If(advance):
            m.d.sync += self.o.valid.eq(v1 & last1)
            with m.If(v1 & last1):
                m.d.sync += self.o.payload.eq(updated)
        return m


def fold_options(spec: Spec) -> list[dict]:
    return [{"pe": pe} for pe in divisors(spec.channels)]


def fill_words(spec: Spec) -> int:
    """A whole window, then the combine and output registers."""
    return spec.positions * spec.nf + 2


def estimate(spec: Spec, family: str) -> Cost:
    s = spec
    in_bits, acc_bits = s.in_type.bits, s.out_type.bits
    if s.mode == "max":
        lut = s.pe * running_max_luts(in_bits, family)
    else:  # the first position starts afresh: a 2:1 mux before the adder
        lut = s.pe * (adder_luts(acc_bits, family) + mux_luts(acc_bits, 2, family))
    width = s.pe * acc_bits
    ff = s.pe * in_bits + width + 2 * max(1, s.nf.bit_length()) + \
        max(1, s.positions.bit_length()) + 3
    bram = 0
    if s.nf <= REGISTER_WORDS:
        ff += s.nf * width
    else:
        mem_lut, bram = memory_cost(width, s.nf, family)
        lut += mem_lut
        ff += width  # the read port's register (distributed RAM reads asynchronously)
    lut += 10  # control
    return Cost(cycles=s.cycles(), lut=int(lut), ff=int(ff), bram18=bram, dsp=0)


def running_max_luts(bits: int, family: str) -> int:
    """One lane's running maximum of ``bits``-bit values that restarts at each window.

    Each stored bit is the new value's or the old one's, picked by the comparison and
    the restart: a LUT per bit, and when both words and the restart fit one LUT
    (``2 * bits + 1`` inputs) the comparison folds into it. Otherwise the comparison
    is its own: on LUT6 a carry chain of ``bits / 2`` LUTs; on ECP5 and iCE40 about a
    LUT per bit, in LUT4s or beside a carry chain. Measured in Yosys on 16-lane max
    pools (LUTs per lane, control aside): xc7 2.0 / 4.0 / 5.6 / 14 at 2 / 3 / 4 / 8
    bits; ECP5 1.1 / 3.0 / 5.0 / 8.9 / 12.9 / 18.9 at 1 / 2 / 3 / 4 / 6 / 8 bits;
    iCE40 3.1 / 9.1 at 2 / 4 bits. CNV's 64-lane 2-bit pool: 138 LUTs in Yosys."""
    if 2 * bits + 1 <= lut_inputs(family):
        return bits
    compare = compare_luts(bits, family) if lut_inputs(family) == 6 else bits
    return compare + bits
