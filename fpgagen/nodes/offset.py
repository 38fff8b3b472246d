"""Offset: a constant integer added at each position of a frame (ViT position embeddings).

Integer function, per frame of ``vectors * channels`` elements (channel minor)::

    out[i] = k * x[i] + offsets[i]        i = 0 .. vectors * channels - 1

``offsets`` holds one integer per element of a frame (for a ViT: the position
embedding of token ``v``, channel ``c`` at ``i = v * channels + c``, quantized to the
scale of ``k * x``); ``k`` is a small non-zero integer that puts ``x`` in that scale,
as the ``ka`` of an ``add``. The output type is the exact range of ``k * x + offsets``;
a following ``thresholding`` node requantizes it. A bipolar input counts as -1 / +1.

Folding: ``pe`` elements per word (``pe`` divides ``channels``), one word per cycle.
Hardware: the offsets sit in a read-only memory of ``vectors * channels / pe`` words of
``pe`` lanes, read in frame order by a word counter that wraps at the end of the frame
(a reset restarts it at position 0); stall-all pipeline of an input register (with the
memory read) and the output register.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..dtypes import MAX_BITS, IntType, smallest_type
from ..errors import SpecError
from ..estimate import adder_luts, memory
from ..hw.primitives import pack_words
from .add import _check_int, _constant_multiply_luts, term_range
from .base import (
    Cost,
    SameShapeStream,
    check_divides,
    check_positive,
    divisors,
    lane_layout,
    lane_shape,
    lane_stream,
    lane_value,
)

KIND = "offset"
ADAPTS_LANES = True  # cheap to widen: folding matches its neighbours' words (fold.py)


@dataclass(frozen=True, eq=False)
class Spec(SameShapeStream):
    name: str
    channels: int
    in_type: IntType
    offsets: np.ndarray  # (vectors * channels,) integers, one per element of a frame
    k: int = 1
    vectors: int = 1  # channel vectors per frame (tokens)
    pe: int = 1

    def __post_init__(self):
        n = self.name
        for what in ("channels", "vectors", "pe"):
            check_positive(n, getattr(self, what), what)
        check_divides(n, self.pe, self.channels, "PE", "channels")
        k = _check_int(n, self.k, "k")
        if k == 0:
            raise SpecError("k must not be 0", where=n,
                            hint="an input multiplied by 0 is a constant: fold it into "
                            "the next layer instead")
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "offsets", self._checked_offsets())
        lo, hi = self.out_range
        try:
            bits = smallest_type(lo, hi).bits
        except SpecError:  # wider than any IntType
            bits = None
        if bits is None or bits > MAX_BITS:
            raise SpecError(f"{k}*x + offsets spans [{lo}, {hi}], which needs "
                            f"{bits or 'more than 64'} bits, more than the {MAX_BITS} "
                            "supported on chip", where=n,
                            hint="use a smaller k or smaller offsets: quantize the "
                            "embedding at a coarser scale")

    def _checked_offsets(self) -> np.ndarray:
        """``offsets`` as a flat int64 array: (frame elements,) or (vectors, channels)."""
        n, t = self.name, np.asarray(self.offsets)
        flat, grid = (self.vectors * self.channels,), (self.vectors, self.channels)
        if t.shape not in (flat, grid):
            raise SpecError(f"offsets have shape {t.shape}, expected {flat} or {grid}: one "
                            "per element of a frame (vectors x channels)", where=n)
        if not np.issubdtype(t.dtype, np.integer):
            raise SpecError(f"offsets must be integers, not {t.dtype}", where=n,
                            hint="quantize them to the output's integer grid first, e.g. "
                            "np.rint(embedding / scale).astype(np.int64)")
        if t.dtype == np.uint64 and t.size and int(t.max()) > np.iinfo(np.int64).max:
            raise SpecError(f"offsets reach {int(t.max())}, beyond 64-bit integers", where=n)
        if t.dtype != np.int64 or t.shape != flat:
            t = t.astype(np.int64).reshape(flat)
        return t

    # ---- derived ---------------------------------------------------------------
    @property
    def out_range(self) -> tuple[int, int]:
        """The least and greatest output (each position takes every input value)."""
        klo, khi = term_range(self.in_type, self.k)
        return klo + int(self.offsets.min()), khi + int(self.offsets.max())

    @property
    def out_type(self) -> IntType:
        return smallest_type(*self.out_range)

    @property
    def offset_type(self) -> IntType:
        """The type the memory stores the offsets in."""
        return smallest_type(min(int(self.offsets.min()), 0), int(self.offsets.max()))

    # ---- stream view -------------------------------------------------------------
    @property
    def frame_elems(self) -> int:
        return self.vectors * self.channels

    @property
    def words(self) -> int:
        """Memory words: one per stream word of a frame."""
        return self.frame_elems // self.pe

    def cycles(self) -> int:
        return self.words


def reference(spec: Spec, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64).reshape(-1, spec.in_elems)
    return spec.k * x + spec.offsets


# ---- hardware ---------------------------------------------------------------------


class Component(wiring.Component):
    """Stall-all pipeline: accept + offset read (S1) -> ``k*x + offset`` -> output reg.

    Both registers, the memory read port and the word counter advance only when the
    output register can take a value (``~o.valid | o.ready``); ``i.ready`` depends on
    the output side alone. One word per cycle.
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
        advance, take = Signal(), Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance),
                     take.eq(advance & self.i.valid)]

        # the position of the word being taken: its offsets arrive with it in S1
        word = Signal(range(s.words))
        with m.If(take):
            m.d.sync += word.eq(Mux(word == s.words - 1, 0, word + 1))
        off_type = s.offset_type
        rows = off_type.encode(s.offsets).reshape(s.words, s.pe)
        m.submodules.offsets = rom = Memory(shape=unsigned(s.pe * off_type.bits),
                                            depth=s.words, init=pack_words(rows, off_type.bits))
        port = rom.read_port(domain="sync")
        m.d.comb += [port.addr.eq(word), port.en.eq(advance)]
        offsets = data.ArrayLayout(lane_shape(off_type), s.pe)(port.data)

        v1 = Signal()
        x1 = Signal(lane_layout(s.in_type, s.pe))
        with m.If(advance):
            m.d.sync += v1.eq(self.i.valid)
            with m.If(self.i.valid):
                m.d.sync += x1.eq(self.i.payload)

        y = Signal(lane_layout(s.out_type, s.pe))
        for p in range(s.pe):
            m.d.comb += y[p].eq(lane_value(x1[p], s.in_type) * s.k + offsets[p])
        with m.If(advance):
            m.d.sync += self.o.valid.eq(v1)
            with m.If(v1):
                m.d.sync += self.o.payload.eq(y)
        return m


def fold_options(spec: Spec) -> list[dict]:
    return [{"pe": pe} for pe in divisors(spec.channels)]


def estimate(spec: Spec, family: str) -> Cost:
    s = spec
    bits = s.out_type.bits
    rom_lut, rom_ff, bram = memory(s.pe * s.offset_type.bits, s.words, family, writable=False)
    counter_bits = max(1, (s.words - 1).bit_length())
    lut = (s.pe * (adder_luts(bits, family) + _constant_multiply_luts(s.k, bits, family))
           + rom_lut + adder_luts(counter_bits, family) + 3)
    ff = s.pe * (s.in_type.bits + bits) + counter_bits + 2 + rom_ff
    return Cost(cycles=s.cycles(), lut=int(lut), ff=int(ff), bram18=bram, dsp=0)
