"""Prefix: constant vectors put in front of every frame (a ViT's class token).

Integer function, per frame of ``vectors`` input vectors of ``channels`` elements
(channel minor)::

    out = prefix[0], ..., prefix[k - 1], x[0], ..., x[vectors - 1]

``prefix`` holds ``k >= 1`` constant vectors of ``channels`` integers (for a ViT: the
class token, quantized to the input's scale); the output frame has ``k + vectors``
vectors. The output type is the smallest holding both the input type and the prefix
values (bipolar stays bipolar when every prefix value is -1 or +1; otherwise a
bipolar input counts as -1 / +1).

Folding: ``pe`` elements per word on both streams (``pe`` divides ``channels``), one
output word per cycle. Hardware: the prefix sits in a read-only memory of
``k * channels / pe`` words; a word counter over the output frame reads it for the
first words of a frame, then passes the input through; it wraps at the end of the
frame and a reset restarts it at the prefix. The prefix leaves only once the frame's
first input word is offered (it waits, not taken, until the prefix is out): no output
runs ahead of its frame, so an idle input leaves the output idle. Stall-all pipeline
of an input register (with the memory read) and the output register.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..dtypes import BIPOLAR, MAX_BITS, IntType, smallest_type
from ..errors import SpecError
from ..estimate import adder_luts, memory, mux_luts
from ..hw.primitives import pack_words
from .base import (
    Cost,
    check_divides,
    check_positive,
    divisors,
    lane_layout,
    lane_shape,
    lane_stream,
    lane_value,
)

KIND = "prefix"
ADAPTS_LANES = True  # cheap to widen: folding matches its neighbours' words (fold.py)


@dataclass(frozen=True, eq=False)
class Spec:
    name: str
    channels: int
    in_type: IntType
    prefix: np.ndarray  # (k, channels) integers: the vectors put in front of each frame
    vectors: int = 1  # input vectors per frame (tokens)
    pe: int = 1

    def __post_init__(self):
        n = self.name
        for what in ("channels", "vectors", "pe"):
            check_positive(n, getattr(self, what), what)
        check_divides(n, self.pe, self.channels, "PE", "channels")
        object.__setattr__(self, "prefix", self._checked_prefix())
        lo, hi = self.out_range
        if smallest_type(lo, hi).bits > MAX_BITS:
            raise SpecError(f"the input type {self.in_type} and the prefix values together "
                            f"span [{lo}, {hi}], which needs {smallest_type(lo, hi).bits} "
                            f"bits, more than the {MAX_BITS} supported on chip", where=n,
                            hint="quantize the prefix (class token) to a narrower range")

    def _checked_prefix(self) -> np.ndarray:
        """``prefix`` as a (k, channels) int64 array; a flat k * channels is accepted."""
        n, p, c = self.name, np.asarray(self.prefix), self.channels
        if not np.issubdtype(p.dtype, np.integer):
            raise SpecError(f"prefix values must be integers, not {p.dtype}", where=n,
                            hint="quantize them to the input's integer grid first, e.g. "
                            "np.rint(token / scale).astype(np.int64)")
        if p.dtype == np.uint64 and p.size and int(p.max()) > np.iinfo(np.int64).max:
            raise SpecError(f"prefix values reach {int(p.max())}, beyond 64-bit integers",
                            where=n)
        if p.ndim == 1 and p.size % c == 0:
            p = p.reshape(-1, c)
        if p.ndim != 2 or p.shape[1] != c or p.shape[0] < 1:
            raise SpecError(f"prefix has shape {p.shape}, expected (k, {c}) or (k * {c},) "
                            f"with k >= 1: whole vectors of channels={c}", where=n)
        return p.astype(np.int64)

    # ---- derived ---------------------------------------------------------------
    @property
    def prefix_vectors(self) -> int:
        """``k``: the vectors put in front of each frame."""
        return self.prefix.shape[0]

    @property
    def out_range(self) -> tuple[int, int]:
        return (min(self.in_type.min, int(self.prefix.min())),
                max(self.in_type.max, int(self.prefix.max())))

    @property
    def out_type(self) -> IntType:
        if self.in_type.bipolar and BIPOLAR.contains(self.prefix):
            return BIPOLAR
        return smallest_type(*self.out_range)

    # ---- stream view -------------------------------------------------------------
    @property
    def in_elems(self) -> int:
        return self.vectors * self.channels

    @property
    def out_elems(self) -> int:
        return (self.prefix_vectors + self.vectors) * self.channels

    @property
    def in_lanes(self) -> int:
        return self.pe

    @property
    def out_lanes(self) -> int:
        return self.pe

    @property
    def prefix_words(self) -> int:
        """Output words of a frame read from the prefix memory."""
        return self.prefix.size // self.pe

    @property
    def in_words(self) -> int:
        return self.in_elems // self.pe

    @property
    def out_words(self) -> int:
        return self.out_elems // self.pe

    def cycles(self) -> int:
        return self.out_words


def reference(spec: Spec, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64).reshape(-1, spec.in_elems)
    head = np.broadcast_to(spec.prefix.reshape(1, -1), (x.shape[0], spec.prefix.size))
    return np.concatenate([head, x], axis=1)


# ---- hardware ---------------------------------------------------------------------


class Component(wiring.Component):
    """Stall-all pipeline: prefix read or input accept (S1) -> output register.

    The word counter, the memory read port and both registers advance only when the
    output register can take a value (``~o.valid | o.ready``); ``i.ready`` depends on
    the output side and the counter alone (a prefix word waits for ``i.valid``, never
    the other way round). One word per cycle.
    """

    def __init__(self, spec: Spec):
        self.spec = spec
        super().__init__({
            "i": In(lane_stream(spec.in_type, spec.pe)),
            "o": Out(lane_stream(spec.out_type, spec.pe)),
        })

    def elaborate(self, platform):
        s = self.spec
        m = Module()
        out_t = s.out_type
        word = Signal(range(s.out_words))  # position of the next output word in its frame
        in_prefix = Signal()
        advance, take, step = Signal(), Signal(), Signal()
        m.d.comb += [
            in_prefix.eq(word < s.prefix_words),
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance & ~in_prefix),
            take.eq(self.i.ready & self.i.valid),
            step.eq(take | (advance & in_prefix & self.i.valid)),
        ]
        with m.If(step):
            m.d.sync += word.eq(Mux(word == s.out_words - 1, 0, word + 1))

        rows = out_t.encode(s.prefix).reshape(s.prefix_words, s.pe)
        m.submodules.prefix = rom = Memory(shape=unsigned(s.pe * out_t.bits),
                                           depth=s.prefix_words,
                                           init=pack_words(rows, out_t.bits))
        port = rom.read_port(domain="sync")
        # past the prefix the data is not used; address 0 keeps the read in range
        m.d.comb += [port.addr.eq(Mux(in_prefix, word, 0)), port.en.eq(advance)]
        prefix = data.ArrayLayout(lane_shape(out_t), s.pe)(port.data)

        v1, from_prefix1 = Signal(), Signal()
        x1 = Signal(lane_layout(s.in_type, s.pe))
        with m.If(advance):
            m.d.sync += [v1.eq(step), from_prefix1.eq(in_prefix)]
            with m.If(take):
                m.d.sync += x1.eq(self.i.payload)

        y = Signal(lane_layout(out_t, s.pe))
        for p in range(s.pe):
            passed = x1[p] if out_t.bipolar else lane_value(x1[p], s.in_type)
            m.d.comb += y[p].eq(Mux(from_prefix1, prefix[p], passed))
        with m.If(advance):
            m.d.sync += self.o.valid.eq(v1)
            with m.If(v1):
                m.d.sync += self.o.payload.eq(y)
        return m


def fold_options(spec: Spec) -> list[dict]:
    return [{"pe": pe} for pe in divisors(spec.channels)]


def frame_lag(spec: Spec) -> tuple[Fraction, Fraction]:
    """Output word ``k`` needs ``max(1, k - P + 1)`` input words (``P`` prefix words; the
    prefix waits for the frame's first word): the most at the first prefix word, the
    least at the first input word, after the prefix ran ahead of the input."""
    s = spec
    return (Fraction(1, s.in_words) - Fraction(s.prefix_words + 1, s.out_words),
            Fraction(1, s.in_words) - Fraction(1, s.out_words))


def estimate(spec: Spec, family: str) -> Cost:
    s = spec
    out_bits = s.out_type.bits
    rom_lut, rom_ff, bram = memory(s.pe * out_bits, s.prefix_words, family, writable=False)
    counter_bits = max(1, (s.out_words - 1).bit_length())
    lut = (mux_luts(s.pe * out_bits, 2, family) + rom_lut + adder_luts(counter_bits, family)
           + counter_bits + 3)  # the prefix / input choice, counter and its compare
    ff = s.pe * (s.in_type.bits + out_bits) + counter_bits + 3 + rom_ff
    return Cost(cycles=s.cycles(), lut=int(lut), ff=int(ff), bram18=bram, dsp=0)
