"""VVAU: vector-vector-activation unit (a depthwise convolution after lowering).

A depthwise convolution (``group == in_channels == out_channels``) lowers to a sliding
window (``swg.py``: each output pixel's window in ``(kh, kw, c)`` order) and this unit.
Integer function, per output pixel (``vectors`` of them per frame) whose input is
``positions x channels`` elements, position major (``positions = k_h * k_w``)::

    acc[c] = sum_p W[c, p] * x[p, c]                  (int64, exact)
    out[c] = acc[c]                                   if thresholds is None
    out[c] = out_base + #{k : acc[c] >= T[c, k]}      otherwise (bipolar: -1 + 2*count)

Each channel only meets its own weights: unlike the MVAU there is no input vector to
replay, every input element is used exactly once. Folding: ``pe`` channels per word on
both streams (lane ``l`` of group ``g`` is channel ``g * pe + l``), so a frame takes
``vectors * positions * channels / pe`` cycles, one input word per cycle. There is no
``simd`` (positions per cycle): position-major words hold several positions only
when ``pe == channels``, and the sliding window feeding the unit delivers at most
``channels`` elements per cycle anyway.

Hardware: the weights of word ``(position, group)`` sit at address
``position * nf + group`` of one memory, in input order, so a wrapping counter reads
them. The ``nf = channels / pe`` running sums of a pixel live in registers (at most
``REGISTER_WORDS`` words) or a memory read one stage ahead; the thresholds of a group in
a memory of depth ``nf``. When weights and inputs are both bipolar, each product is an
XNOR bit and the unit counts them (``acc = 2*P - positions``), thresholds moved to the
count domain as in the MVAU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..dtypes import IntType, smallest_type
from ..errors import SpecError
from ..estimate import (
    accumulated_product_luts,
    adder_luts,
    compare_luts,
    constant_compare_luts,
    memory,
    mult_cost,
    popcount_luts,
    threshold_rom,
)
from ..hw.primitives import REGISTER_WORDS, adder_tree, pack_words, running_words
from .base import (
    Cost,
    ReduceStream,
    check_divides,
    check_positive,
    clip_kept,
    divisors,
    lane_layout,
    lane_shape,
    lane_stream,
    memo_on_array,
)
from .mvau import acc_bounds
from .thresholding import multithreshold

KIND = "vvau"


@dataclass(frozen=True, eq=False)
class Spec(ReduceStream):
    name: str
    channels: int
    positions: int  # window elements per channel (k_h * k_w)
    weights: np.ndarray  # (channels, positions) integers of weight_type
    in_type: IntType
    weight_type: IntType
    out_type: IntType
    thresholds: np.ndarray | None = None  # (channels, levels) ascending, accumulator domain
    out_base: int = 0  # output value when no threshold is reached (int outputs)
    vectors: int = 1  # output pixels per frame
    pe: int = 1  # channels per stream word

    def __post_init__(self):
        n = self.name
        for what in ("channels", "positions", "vectors", "pe"):
            check_positive(n, getattr(self, what), what)
        w = np.asarray(self.weights, dtype=np.int64)
        object.__setattr__(self, "weights", w)
        if w.shape != (self.channels, self.positions):
            raise SpecError(f"weights have shape {w.shape}, expected (channels, positions) = "
                            f"({self.channels}, {self.positions})", where=n,
                            hint="one row of k_h * k_w weights per channel, (kh, kw) order")
        if not memo_on_array(w, ("fits", self.weight_type), lambda: self.weight_type.contains(w)):
            raise SpecError(f"weights do not fit {self.weight_type}", where=n)
        check_divides(n, self.pe, self.channels, "PE", "channels")
        lo, hi = self.acc_range
        if self.thresholds is None:
            if not self.out_type.contains([lo, hi]) or self.out_type.bipolar:
                raise SpecError(f"accumulator range [{lo}, {hi}] does not fit the output "
                                f"type {self.out_type}", where=n,
                                hint=f"use {self.acc_type} or wider")
            return
        t = np.asarray(self.thresholds, dtype=np.int64)
        if t.ndim != 2 or t.shape[0] != self.channels or t.shape[1] < 1:
            raise SpecError(f"thresholds have shape {t.shape}, expected ({self.channels}, "
                            f"levels) with levels >= 1", where=n)
        if np.any(np.diff(t, axis=1) < 0):
            raise SpecError("thresholds must be ascending in each channel", where=n,
                            hint="sort each row; a descending row means a negative scale")
        t = clip_kept(t, lo, hi + 1)  # beyond the reachable range they are all alike
        object.__setattr__(self, "thresholds", t)
        levels = t.shape[1]
        if not (self.out_type.contains(self._level(0))
                and self.out_type.contains(self._level(levels))):
            raise SpecError(f"{levels} thresholds from base {self.out_base} do not fit the "
                            f"output type {self.out_type}", where=n,
                            hint="a bipolar output takes exactly one threshold per channel"
                            if self.out_type.bipolar else "widen the output type")

    def _level(self, count):
        return 2 * count - 1 if self.out_type.bipolar else self.out_base + count

    # ---- stream view ---------------------------------------------------------
    @property
    def reductions(self) -> int:
        return self.vectors

    # ---- derived widths ------------------------------------------------------
    @property
    def xnor(self) -> bool:
        return self.in_type.bipolar and self.weight_type.bipolar

    @property
    def acc_range(self) -> tuple[int, int]:
        """Exact reachable accumulator range over all channels for inputs of in_type."""
        lo, hi = acc_bounds(self.weights, self.in_type)  # per channel, over its positions
        return int(lo.min()), int(hi.max())

    @property
    def acc_type(self) -> IntType:
        return smallest_type(*self.acc_range)

    @property
    def levels(self) -> int:
        return 0 if self.thresholds is None else int(self.thresholds.shape[1])


def reference(spec: Spec, x: np.ndarray) -> np.ndarray:
    s = spec
    frames = x.shape[0]
    v = np.asarray(x, dtype=np.int64).reshape(frames, s.vectors, s.positions, s.channels)
    acc = np.einsum("fvpc,cp->fvc", v, s.weights)
    out = acc if s.thresholds is None else s._level(multithreshold(acc, s.thresholds))
    return out.reshape(frames, s.out_elems).astype(np.int64)


# ---- hardware ---------------------------------------------------------------------


class Component(wiring.Component):
    """Stall-all pipeline: accept + weight read (S0) -> products (S1) -> accumulate,
    activate (S2) -> output register.

    Every stage register and memory read port advances only when the output register
    can take a value (``~o.valid | o.ready``), so nothing is dropped or duplicated under
    backpressure; one input word is taken per cycle.
    """

    def __init__(self, spec: Spec):
        self.spec = spec
        super().__init__({
            "i": In(lane_stream(spec.in_type, spec.pe)),
            "o": Out(lane_stream(spec.out_type, spec.pe)),
        })

    def _acc_shape(self):
        s = self.spec
        return unsigned((s.positions + 1).bit_length()) if s.xnor else lane_shape(s.acc_type)

    def elaborate(self, platform):
        s = self.spec
        m = Module()
        nf, pe = s.nf, s.pe
        acc_shape = self._acc_shape()
        acc_layout = data.ArrayLayout(acc_shape, pe)

        advance = Signal()
        accept = Signal()
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance),
            accept.eq(self.i.valid & advance),
        ]

        # ---- S0: counters, weight address ----------------------------------------
        word = Signal(range(max(nf, 2)))
        position = Signal(range(max(s.positions, 2)))
        waddr = Signal(range(max(nf * s.positions, 2)))
        last_word = word == nf - 1
        with m.If(accept):
            m.d.sync += [word.eq(Mux(last_word, 0, word + 1)),
                         waddr.eq(Mux(waddr == nf * s.positions - 1, 0, waddr + 1))]
            with m.If(last_word):
                m.d.sync += position.eq(Mux(position == s.positions - 1, 0, position + 1))

        wbits = 1 if s.weight_type.bipolar else s.weight_type.bits
        w_shape = unsigned(1) if s.weight_type.bipolar else lane_shape(s.weight_type)
        # word position * nf + g holds group g's pe weights at that position, in input order
        tiles = s.weight_type.encode(s.weights.T).reshape(s.positions * nf, pe)
        m.submodules.weights = wmem = Memory(shape=unsigned(pe * wbits),
                                             depth=s.positions * nf,
                                             init=pack_words(tiles, wbits))
        wport = wmem.read_port(domain="sync")
        m.d.comb += [wport.addr.eq(waddr), wport.en.eq(advance)]
        w1 = data.ArrayLayout(w_shape, pe)(wport.data)

        # ---- S1: the accepted word and its weights: products ---------------------
        v1, first1, last1 = Signal(), Signal(), Signal()
        word1 = Signal.like(word)
        x1 = Signal(lane_layout(s.in_type, pe))
        with m.If(advance):
            m.d.sync += v1.eq(accept)
            with m.If(accept):
                m.d.sync += [x1.eq(self.i.payload), first1.eq(position == 0),
                             last1.eq(position == s.positions - 1), word1.eq(word)]
        products = []
        for lane in range(pe):
            xv, wv = x1[lane], w1[lane]
            if s.xnor:
                products.append(~(xv ^ wv))
            elif s.weight_type.bipolar:
                products.append(Mux(wv, xv, -xv))
            elif s.in_type.bipolar:
                products.append(Mux(xv, wv, -wv))
            else:
                products.append(xv * wv)

        # ---- S2: accumulate, activate, emit --------------------------------------
        v2, first2, last2 = Signal(), Signal(), Signal()
        product2 = Signal(acc_layout)  # each product lies in the accumulator range
        with m.If(advance):
            m.d.sync += [v2.eq(v1), first2.eq(first1), last2.eq(last1)]
            m.d.sync += [product2[lane].eq(p) for lane, p in enumerate(products)]

        updated = Signal(acc_layout)
        write = Signal()
        m.d.comb += write.eq(advance & v2)
        word2 = Signal.like(word)  # S2's word
        with m.If(advance):
            m.d.sync += word2.eq(word1)
        running = running_words(m, acc_layout, nf, word1, advance, word2, write, updated)
        for lane in range(pe):
            m.d.comb += updated[lane].eq(Mux(first2, 0, running[lane]) + product2[lane])

        y = Signal(lane_layout(s.out_type, pe))
        if s.thresholds is None:
            for lane in range(pe):
                acc = updated[lane]
                m.d.comb += y[lane].eq(acc * 2 - s.positions if s.xnor else acc)
        else:
            thr_type, words = threshold_words(s)
            row_bits = s.levels * thr_type.bits
            m.submodules.thresholds = tmem = Memory(shape=unsigned(pe * row_bits), depth=nf,
                                                    init=words)
            tport = tmem.read_port(domain="sync")  # read with S1's word, used in S2
            m.d.comb += [tport.addr.eq(word1), tport.en.eq(advance)]
            thr_layout = data.ArrayLayout(lane_shape(thr_type), s.levels)
            for lane in range(pe):
                row = thr_layout(tport.data[lane * row_bits:(lane + 1) * row_bits])
                count = adder_tree([updated[lane] >= row[k] for k in range(s.levels)])
                if s.out_type.bipolar:
                    m.d.comb += y[lane].eq(count)
                else:
                    m.d.comb += y[lane].eq(count + Const(s.out_base,
                                                         signed(s.out_type.bits + 1)))

        with m.If(advance):
            m.d.sync += self.o.valid.eq(v2 & last2)
            with m.If(v2 & last2):
                m.d.sync += self.o.payload.eq(y)
        return m


def threshold_words(spec: Spec) -> tuple[IntType, list[int]]:
    """The thresholds as the hardware holds them: their type, and one memory word per
    channel group (channel ``g * pe + l``'s row in field ``l``), in the accumulator's
    domain (the XNOR count ``P`` when bipolar: ``2P - positions >= T`` <=>
    ``P >= ceil((T + positions) / 2)``)."""
    s = spec
    t = s.thresholds
    if s.xnor:
        t = np.clip(-((-(t + s.positions)) // 2), 0, s.positions + 1)
    thr_type = smallest_type(min(int(t.min()), 0), int(t.max()))
    return thr_type, pack_words(thr_type.encode(t).reshape(s.nf, -1), thr_type.bits)


def _varying_bits(words: list[int], width: int) -> int:
    """Bits of a ROM that differ between its words: the others are constants in logic."""
    same = ~0
    for w in words[1:]:
        same &= ~(w ^ words[0])
    return width - bin(same & ((1 << width) - 1)).count("1")


def fold_options(spec: Spec) -> list[dict]:
    return [{"pe": pe} for pe in divisors(spec.channels)]


def fill_words(spec: Spec) -> int:
    """A whole window, then the product, accumulate and output registers."""
    return spec.positions * spec.nf + 3


def estimate(spec: Spec, family: str) -> Cost:
    """Cycles exactly (one word per cycle). Resources: against Yosys on xc7, over eight
    4-, 8-bit and XNOR configurations (1 to 32 channels per word), LUTs came out within
    -23%..+37% and flip-flops within -0%..+96% (the threshold read register is at times
    merged into the address)."""
    s = spec
    acc_bits = (s.positions + 1).bit_length() if s.xnor else s.acc_type.bits  # as built
    wbits = 1 if s.weight_type.bipolar else s.weight_type.bits
    depth = s.positions * s.nf
    lut = dsp = 0
    if not s.xnor:  # an XNOR bit merges into the counter's LUTs
        ml, md = mult_cost(s.in_type.bits, wbits, family, constant_weights=depth == 1)
        if md or depth == 1 or s.weight_type.bipolar or s.in_type.bipolar:
            lut += s.pe * ml
            dsp += s.pe * md
        else:  # a LUT product into its accumulator
            lut += s.pe * accumulated_product_luts(s.in_type.bits, wbits, family)
    lut += s.pe * adder_luts(acc_bits, family)  # accumulator (the restart merges into it)
    # stage registers: input word, products, output word; counters and valid bits
    ff = (s.pe * (s.in_type.bits + acc_bits + s.out_type.bits) + 6
          + max(1, s.nf.bit_length()) * 3 + max(1, s.positions.bit_length())
          + max(1, depth.bit_length()))
    wl, wf, wb = memory(s.pe * wbits, depth, family, writable=False)
    lut, ff, bram = lut + wl, ff + wf, wb
    if s.nf <= REGISTER_WORDS:
        ff += s.nf * s.pe * acc_bits
    else:
        rl, rf, rb = memory(s.pe * acc_bits, s.nf, family)
        lut, ff, bram = lut + rl, ff + rf, bram + rb
    if s.thresholds is not None:
        lut += s.pe * _activation_luts(s, acc_bits, family)
        lut, ff, bram = (a + b for a, b in zip((lut, ff, bram),
                                               _threshold_memory(s, family)))
    lut += 20  # control
    return Cost(cycles=s.cycles(), lut=int(lut), ff=int(ff), bram18=bram, dsp=dsp)


def _activation_luts(s: Spec, acc_bits: int, family: str) -> int:
    """One channel's comparisons and the tree counting them (and adding the base).

    Measured on xc7 (11-bit accumulators, 15 thresholds): a comparison with a constant
    (one channel group) takes about a LUT per LUT-input's worth of bits, one with a
    threshold read from memory the carry chain of ``compare_luts``.
    """
    if s.nf == 1:
        compare = constant_compare_luts(acc_bits, family)
    else:
        compare = compare_luts(acc_bits, family)
    count = popcount_luts(s.levels, family, constant_weights=True)  # as thresholding's
    return s.levels * compare + count + adder_luts(s.out_type.bits, family)


def _threshold_memory(s: Spec, family: str) -> tuple[int, int, float]:
    """(luts, ffs, bram18) of the threshold memory: outside block RAM only the bits that
    differ between channel groups cost logic and a read register, which Yosys keeps."""
    thr_type, words = memo_on_array(s.thresholds, ("vvau_words", s.xnor, s.positions, s.pe),
                                    lambda: threshold_words(s))
    width = s.pe * s.levels * thr_type.bits
    lut, ff, bram = threshold_rom(width, s.nf, family)
    if bram:
        return lut, ff, bram
    varying = memo_on_array(s.thresholds, ("vvau_varying", s.xnor, s.positions, s.pe),
                            lambda: _varying_bits(words, width))
    return threshold_rom(varying, s.nf, family)
