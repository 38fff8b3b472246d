"""Select: a contiguous range of the vectors of every frame (a ViT's class token).

Integer function, per frame of ``vectors`` vectors of ``channels`` elements (channel
minor)::

    out = x[start], x[start + 1], ..., x[start + count - 1]

The other vectors are read and dropped. Elements keep their type.

Folding: ``pe`` elements per word on both streams (``pe`` divides ``channels``); the
node reads one input word per cycle, the whole frame. Hardware: a word counter over
the input frame (it wraps at the end of the frame; a reset restarts it at word 0);
words in the range go to the output register, the others are accepted without output,
whether or not the output register is free.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..dtypes import IntType
from ..errors import SpecError
from ..estimate import adder_luts, compare_luts
from .base import Cost, check_divides, check_positive, divisors, lane_stream

KIND = "select"
ADAPTS_LANES = True  # cheap to widen: folding matches its neighbours' words (fold.py)


@dataclass(frozen=True)
class Spec:
    name: str
    channels: int
    dtype: IntType
    vectors: int  # input vectors per frame (tokens)
    start: int  # first vector kept
    count: int = 1  # vectors kept
    pe: int = 1

    def __post_init__(self):
        n = self.name
        for what in ("channels", "vectors", "count", "pe"):
            check_positive(n, getattr(self, what), what)
        check_divides(n, self.pe, self.channels, "PE", "channels")
        if not isinstance(self.start, int) or isinstance(self.start, bool) or self.start < 0:
            raise SpecError(f"start must be a non-negative integer, not {self.start!r}",
                            where=n)
        if self.start + self.count > self.vectors:
            raise SpecError(f"vectors {self.start} .. {self.start + self.count - 1} reach "
                            f"beyond the {self.vectors} vectors of a frame", where=n,
                            hint=f"start + count must be at most vectors={self.vectors}")

    # ---- stream view -------------------------------------------------------------
    @property
    def in_type(self) -> IntType:
        return self.dtype

    @property
    def out_type(self) -> IntType:
        return self.dtype

    @property
    def in_elems(self) -> int:
        return self.vectors * self.channels

    @property
    def out_elems(self) -> int:
        return self.count * self.channels

    @property
    def in_lanes(self) -> int:
        return self.pe

    @property
    def out_lanes(self) -> int:
        return self.pe

    @property
    def nf(self) -> int:
        """Words per vector."""
        return self.channels // self.pe

    @property
    def in_words(self) -> int:
        return self.vectors * self.nf

    @property
    def kept_words(self) -> range:
        """The input words of a frame that go to the output."""
        return range(self.start * self.nf, (self.start + self.count) * self.nf)

    def cycles(self) -> int:
        return self.in_words


def reference(spec: Spec, x: np.ndarray) -> np.ndarray:
    s = spec
    v = np.asarray(x, dtype=np.int64).reshape(-1, s.vectors, s.channels)
    return v[:, s.start:s.start + s.count].reshape(-1, s.out_elems)


# ---- hardware ---------------------------------------------------------------------


class Component(wiring.Component):
    """One output register behind a word counter; a dropped word needs no free register,
    so ``i.ready`` waits for the output side only on kept words."""

    def __init__(self, spec: Spec):
        self.spec = spec
        super().__init__({
            "i": In(lane_stream(spec.dtype, spec.pe)),
            "o": Out(lane_stream(spec.dtype, spec.pe)),
        })

    def elaborate(self, platform):
        s = self.spec
        m = Module()
        word = Signal(range(s.in_words))
        keep, advance, take = Signal(), Signal(), Signal()
        m.d.comb += [
            keep.eq((word >= s.kept_words.start) & (word < s.kept_words.stop)),
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance | ~keep),
            take.eq(self.i.ready & self.i.valid),
        ]
        with m.If(take):
            m.d.sync += word.eq(Mux(word == s.in_words - 1, 0, word + 1))
        with m.If(advance):
            m.d.sync += self.o.valid.eq(take & keep)
            with m.If(take & keep):
                m.d.sync += self.o.payload.eq(self.i.payload)
        return m


def fold_options(spec: Spec) -> list[dict]:
    return [{"pe": pe} for pe in divisors(spec.channels)]


def fill_words(spec: Spec) -> int:
    """The words before the range, then the output register and the word it waits on.

    Counted in frame position (``nodes.frame_lag``, ``tests/test_dag.py``): the dropped
    words after the range stand for the frame positions of the next frame's output."""
    return spec.kept_words.start + 2


def frame_lag(spec: Spec) -> tuple[Fraction, Fraction]:
    """Output word ``k`` needs input words ``start_word + k + 1``: the most at the first
    kept word, the least at the last (the rest of the frame is not needed by it)."""
    s = spec
    first, kept = s.kept_words.start, len(s.kept_words)
    return (Fraction(first + kept, s.in_words) - 1,
            Fraction(first + 1, s.in_words) - Fraction(1, kept))


def estimate(spec: Spec, family: str) -> Cost:
    s = spec
    counter_bits = max(1, (s.in_words - 1).bit_length())
    lut = adder_luts(counter_bits, family) + 2 * compare_luts(counter_bits, family) + 3
    ff = s.pe * s.dtype.bits + counter_bits + 1
    return Cost(cycles=s.cycles(), lut=int(lut), ff=int(ff), bram18=0, dsp=0)
