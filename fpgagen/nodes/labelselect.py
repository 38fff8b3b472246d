"""LabelSelect: the index of the largest of ``classes`` values per frame (top-1).

Integer function: ``out = argmax(x)`` over the frame's ``classes`` values, ties going
to the lowest index (exactly ``np.argmax``). The output is one element per frame of
the narrowest unsigned type holding ``classes - 1``.

Folding: ``pe`` values per input word, so a frame takes ``classes / pe`` cycles. Each
word is reduced by a tree (the right half wins only when strictly larger) into a
register stage, then merged into the running best; the last word of a frame writes
the index to the output register.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..dtypes import IntType, smallest_type
from ..errors import SpecError
from ..estimate import adder_luts, compare_luts, mux_luts
from .base import Cost, check_divides, check_positive, divisors, lane_shape, lane_stream

KIND = "labelselect"


@dataclass(frozen=True)
class Spec:
    name: str
    classes: int
    in_type: IntType
    pe: int = 1
    k: int = 1  # how many top labels; only top-1 is supported

    def __post_init__(self):
        n = self.name
        for what in ("classes", "pe", "k"):
            check_positive(n, getattr(self, what), what)
        if self.k != 1:
            raise SpecError(f"k={self.k} is not supported, only k=1 (top-1)", where=n,
                            hint="take the top-k on the host from the logits")
        check_divides(n, self.pe, self.classes, "PE", "classes")

    # ---- stream view ---------------------------------------------------------
    @property
    def out_type(self) -> IntType:
        return smallest_type(0, self.classes - 1)

    @property
    def in_elems(self) -> int:
        return self.classes

    @property
    def out_elems(self) -> int:
        return self.k

    @property
    def in_lanes(self) -> int:
        return self.pe

    @property
    def out_lanes(self) -> int:
        return 1

    @property
    def nf(self) -> int:
        return self.classes // self.pe

    def cycles(self) -> int:
        return self.nf


def reference(spec: Spec, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64).reshape(-1, spec.classes)
    return np.argmax(x, axis=1).astype(np.int64).reshape(-1, 1)


# ---- hardware ---------------------------------------------------------------------


class Component(wiring.Component):
    """Word reduction (S1 register) -> merge with the running best -> output register.

    S1 moves on whenever its word is taken; only a frame's last word waits for the
    output register to be free, so a stalled consumer holds the input back only at
    frame ends.
    """

    def __init__(self, spec: Spec):
        self.spec = spec
        super().__init__({
            "i": In(lane_stream(spec.in_type, spec.pe)),
            "o": Out(lane_stream(spec.out_type, 1)),
        })

    def elaborate(self, platform):
        s = self.spec
        m = Module()
        val_shape, idx_shape = lane_shape(s.in_type), lane_shape(s.out_type)

        # ---- S1: best of one word, with its global index ------------------------
        v1, first1, last1 = Signal(), Signal(), Signal()
        val1 = Signal(val_shape)
        idx1 = Signal(idx_shape)
        take1 = Signal()  # S1's word is merged this cycle
        m.d.comb += [
            take1.eq(v1 & (~last1 | ~self.o.valid | self.o.ready)),
            self.i.ready.eq(~v1 | take1),
        ]

        level = [(self.i.payload[p], Const(p, idx_shape)) for p in range(s.pe)]
        while len(level) > 1:  # left operands hold the lower indices: ties keep them
            nxt = []
            for (a_val, a_idx), (b_val, b_idx) in zip(level[0::2], level[1::2]):
                b_wins = b_val > a_val
                nxt.append((Mux(b_wins, b_val, a_val), Mux(b_wins, b_idx, a_idx)))
            if len(level) % 2:
                nxt.append(level[-1])
            level = nxt
        best_val, best_lane = level[0]

        word = Signal(range(max(s.nf, 2)))
        base = Signal(idx_shape)  # index of the word's lane 0
        last = word == s.nf - 1
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                word.eq(Mux(last, 0, word + 1)),
                base.eq(Mux(last, 0, base + s.pe)),
                val1.eq(best_val),
                idx1.eq(base + best_lane),
                first1.eq(word == 0),
                last1.eq(last),
            ]
        with m.If(self.i.ready):
            m.d.sync += v1.eq(self.i.valid)

        # ---- S2: running best of the frame, output register ---------------------
        run_val = Signal(val_shape)
        run_idx = Signal(idx_shape)
        new_wins = first1 | (val1 > run_val)
        merged_val = Mux(new_wins, val1, run_val)
        merged_idx = Mux(new_wins, idx1, run_idx)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take1):
            m.d.sync += [run_val.eq(merged_val), run_idx.eq(merged_idx)]
            with m.If(last1):
                m.d.sync += [self.o.payload[0].eq(merged_idx), self.o.valid.eq(1)]
        return m


def fold_options(spec: Spec) -> list[dict]:
    return [{"pe": pe} for pe in divisors(spec.classes)]


def fill_words(spec: Spec) -> int:
    """The whole frame: the index is known after the last value."""
    return spec.nf + 2


def estimate(spec: Spec, family: str) -> Cost:
    s = spec
    vb, ib = s.in_type.bits, s.out_type.bits
    compares = s.pe  # pe - 1 in the word tree, one merge
    lut = compares * (compare_luts(vb, family) + mux_luts(vb + ib, 2, family))
    lut += 2 * adder_luts(ib, family) + 8  # word base, index add, control
    ff = 2 * (vb + ib) + ib + max(1, s.nf.bit_length()) + ib + 4
    return Cost(cycles=s.cycles(), lut=int(lut), ff=int(ff), bram18=0, dsp=0)
