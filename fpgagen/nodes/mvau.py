"""MVAU: matrix-vector-activation unit (a fully-connected layer, or a conv after lowering).

Integer function (per input vector ``x`` of ``mw`` elements)::

    acc[c] = sum_i W[c, i] * x[i]                     (int64, exact)
    out[c] = acc[c]                                   if thresholds is None
    out[c] = out_base + #{k : acc[c] >= T[c, k]}      otherwise (bipolar: -1 + 2*count)

Folding: ``pe`` output channels and ``simd`` input elements per cycle, so one vector
takes ``(mh/pe) * (mw/simd)`` cycles. Weights sit in a memory of that depth read once
per cycle; the input vector is buffered and replayed for each group of ``pe`` outputs.
When both operands are bipolar the dot product is XNOR-popcount and the thresholds are
moved to the popcount domain (``acc = 2*P - mw``).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..dtypes import IntType, smallest_type
from ..errors import SpecError
from ..estimate import (
    adder_luts,
    adder_tree_luts,
    compare_luts,
    constant_dot_product_luts,
    constant_thresholds_luts,
    control_luts,
    distinct_rom_bits,
    dot_product_luts,
    dsp_sum_luts,
    lut_inputs,
    memory,
    mult_cost,
    popcount_luts,
    registered_rom_bits,
    rom_logic_luts,
    threshold_rom,
    uses_dsp,
    varying_rom_bits,
)
from ..hw import thresholds
from ..hw.primitives import adder_tree, pack_words, popcount
from ..hw.thresholds import ThresholdRead
from .base import (
    Cost,
    check_divides,
    check_positive,
    clip_kept,
    divisors,
    lane_shape,
    lane_stream,
    memo_on_array,
)

KIND = "mvau"


@dataclass(frozen=True, eq=False)
class Spec:
    name: str
    mw: int  # input elements per vector
    mh: int  # output channels per vector
    weights: np.ndarray  # (mh, mw) integers of weight_type
    in_type: IntType
    weight_type: IntType
    out_type: IntType
    thresholds: np.ndarray | None = None  # (mh, levels) ascending, accumulator domain
    out_base: int = 0  # output value when no threshold is reached (int outputs)
    vectors: int = 1  # input vectors per frame (pixels for a convolution)
    pe: int = 1
    simd: int = 1

    def __post_init__(self):
        n = self.name
        for what in ("mw", "mh", "vectors", "pe", "simd"):
            check_positive(n, getattr(self, what), what)
        w = np.asarray(self.weights, dtype=np.int64)
        object.__setattr__(self, "weights", w)
        if w.shape != (self.mh, self.mw):
            raise SpecError(f"weights have shape {w.shape}, expected ({self.mh}, {self.mw})",
                            where=n)
        if not memo_on_array(w, ("fits", self.weight_type), lambda: self.weight_type.contains(w)):
            raise SpecError(f"weights do not fit {self.weight_type}", where=n)
        check_divides(n, self.pe, self.mh, "PE", "MH (output channels)")
        check_divides(n, self.simd, self.mw, "SIMD", "MW (input elements)")
        if self.thresholds is not None:
            t = np.asarray(self.thresholds, dtype=np.int64)
            if t.ndim != 2 or t.shape[0] != self.mh or t.shape[1] < 1:
                raise SpecError(f"thresholds have shape {t.shape}, expected ({self.mh}, levels)",
                                where=n)
            if np.any(np.diff(t, axis=1) < 0):
                raise SpecError("thresholds must be ascending in each channel", where=n)
            lo, hi = self.acc_range
            t = clip_kept(t, lo, hi + 1)  # beyond the reachable range they are all alike
            object.__setattr__(self, "thresholds", t)
            top = self._level(t.shape[1])
            if not (self.out_type.contains(self._level(0)) and self.out_type.contains(top)):
                raise SpecError(f"{t.shape[1]} thresholds from base {self.out_base} "
                                f"do not fit the output type {self.out_type}", where=n)
        else:
            lo, hi = self.acc_range
            if not (self.out_type.contains(lo) and self.out_type.contains(hi)):
                raise SpecError(f"accumulator range [{lo}, {hi}] does not fit the output "
                                f"type {self.out_type}", where=n)

    def _level(self, count):
        return 2 * count - 1 if self.out_type.bipolar else self.out_base + count

    # ---- stream view ---------------------------------------------------------
    @property
    def in_elems(self) -> int:
        return self.vectors * self.mw

    @property
    def out_elems(self) -> int:
        return self.vectors * self.mh

    @property
    def in_lanes(self) -> int:
        return self.simd

    @property
    def out_lanes(self) -> int:
        return self.pe

    @property
    def nf(self) -> int:
        return self.mh // self.pe

    @property
    def sf(self) -> int:
        return self.mw // self.simd

    def cycles(self) -> int:
        return self.vectors * self.nf * self.sf

    # ---- derived widths ------------------------------------------------------
    @property
    def xnor(self) -> bool:
        return self.in_type.bipolar and self.weight_type.bipolar

    @property
    def acc_range(self) -> tuple[int, int]:
        """Exact reachable accumulator range over all channels for inputs of in_type."""
        lo, hi = acc_bounds(self.weights, self.in_type)
        return int(lo.min()), int(hi.max())

    @property
    def acc_type(self) -> IntType:
        return smallest_type(*self.acc_range)

    @property
    def levels(self) -> int:
        return 0 if self.thresholds is None else int(self.thresholds.shape[1])


def acc_bounds(weights: np.ndarray, in_type: IntType) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel, the least and greatest accumulator inputs of in_type reach."""
    def compute():
        w = np.asarray(weights, dtype=np.int64)
        xlo, xhi = in_type.min, in_type.max
        return (np.minimum(w * xlo, w * xhi).sum(axis=1),
                np.maximum(w * xlo, w * xhi).sum(axis=1))
    return memo_on_array(weights, ("acc", in_type), compute)


def reference(spec: Spec, x: np.ndarray) -> np.ndarray:
    frames = x.shape[0]
    v = np.asarray(x, dtype=np.int64).reshape(frames, spec.vectors, spec.mw)
    return output_stage(spec, v @ spec.weights.T).reshape(frames, spec.out_elems)


def output_stage(spec: Spec, acc: np.ndarray) -> np.ndarray:
    """Accumulators (..., mh) -> outputs: the raw accumulator, or the threshold count."""
    if spec.thresholds is None:
        return acc.astype(np.int64)
    count = (acc[..., None] >= spec.thresholds).sum(axis=-1)
    return spec._level(count).astype(np.int64)


# ---- hardware ---------------------------------------------------------------------


class Component(wiring.Component):
    """Stall-all pipeline: issue -> memory read (S1) -> dot product (S2) -> output reg.

    Every stage register and every memory read port advances only when the output
    register can take a value (``~o.valid | o.ready``), so nothing is dropped or
    duplicated under backpressure. One (nf, sf) beat issues per cycle.
    """

    def __init__(self, spec: Spec):
        self.spec = spec
        super().__init__({
            "i": In(lane_stream(spec.in_type, spec.simd)),
            "o": Out(lane_stream(spec.out_type, spec.pe)),
        })

    def _acc_shape(self):
        s = self.spec
        if s.xnor:
            return unsigned((s.mw + 1).bit_length())
        return lane_shape(s.acc_type)

    def elaborate(self, platform):
        s = self.spec
        m = Module()
        nf, sf, pe, simd = s.nf, s.sf, s.pe, s.simd
        in_shape = lane_shape(s.in_type)
        x_layout = data.ArrayLayout(in_shape, simd)
        acc_shape = self._acc_shape()

        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)

        # ---- issue stage: counters and memory addresses -------------------------
        nf_i = Signal(range(max(nf, 2)))
        sf_i = Signal(range(max(sf, 2)))
        waddr = Signal(range(max(nf * sf, 2)))
        from_stream = Signal()
        issue = Signal()
        m.d.comb += [
            from_stream.eq(nf_i == 0),
            issue.eq(advance & (~from_stream | self.i.valid)),
            self.i.ready.eq(advance & from_stream),
        ]
        with m.If(issue):
            m.d.sync += waddr.eq(Mux(waddr == nf * sf - 1, 0, waddr + 1))
            with m.If(sf_i == sf - 1):
                m.d.sync += sf_i.eq(0)
                m.d.sync += nf_i.eq(Mux(nf_i == nf - 1, 0, nf_i + 1))
            with m.Else():
                m.d.sync += sf_i.eq(sf_i + 1)

        w1 = weight_memory(m, s.weights, s.weight_type, pe, simd, waddr, advance)

        # input buffer, replayed for nf > 0
        x_stream = Signal(x_layout)
        if nf > 1:
            m.submodules.inbuf = bmem = Memory(shape=unsigned(simd * in_shape.width),
                                               depth=sf, init=[])
            bw = bmem.write_port()
            br = bmem.read_port(domain="sync")
            m.d.comb += [
                bw.addr.eq(sf_i), bw.data.eq(self.i.payload), bw.en.eq(issue & from_stream),
                br.addr.eq(sf_i), br.en.eq(advance),
            ]

        # thresholds: one memory, word nf holding PE p's row (or offset) in field p
        thr = None
        if s.thresholds is not None:
            thr = ThresholdRead(m, threshold_plan(s), nf_i, advance)
        thr_reads = thr.reads if thr is not None else []

        # ---- S1: operands available, dot products -------------------------------
        v1, first1, last1, fs1 = Signal(), Signal(), Signal(), Signal()
        with m.If(advance):
            m.d.sync += [v1.eq(issue), first1.eq(sf_i == 0), last1.eq(sf_i == sf - 1),
                         fs1.eq(from_stream)]
            with m.If(issue & from_stream):
                m.d.sync += x_stream.eq(self.i.payload)
        x1 = Signal(x_layout)
        if nf > 1:
            m.d.comb += x1.eq(Mux(fs1, x_stream.as_value(), br.data))
        else:
            m.d.comb += x1.eq(x_stream)

        dots = []
        for p in range(pe):
            if s.xnor:
                # a named signal: slicing an unnamed expression per 3-bit group
                # re-emits it each time (generation time grows with PE * SIMD^2)
                bits = Signal(simd, name=f"xnor_{p}")
                m.d.comb += bits.eq(~(x1.as_value() ^ w1[p].as_value()))
                dots.append(popcount(m, bits))
            else:
                terms = []
                for k in range(simd):
                    xv, wv = x1[k], w1[p][k]
                    if s.weight_type.bipolar:
                        terms.append(Mux(wv, xv, -xv))
                    elif s.in_type.bipolar:
                        terms.append(Mux(xv, wv, -wv))
                    else:
                        terms.append(xv * wv)
                dots.append(adder_tree(terms))

        # ---- S2: accumulate, activate, emit -------------------------------------
        v2, first2, last2 = Signal(), Signal(), Signal()
        dot2 = [Signal(acc_shape, name=f"dot2_{p}") for p in range(pe)]
        acc = [Signal(acc_shape, name=f"acc_{p}") for p in range(pe)]
        thr2 = [Signal(thr.shape, name=f"thr2_{p}") for p in range(len(thr_reads))]
        with m.If(advance):
            m.d.sync += [v2.eq(v1), first2.eq(first1), last2.eq(last1)]
            m.d.sync += [d.eq(v) for d, v in zip(dot2, dots)]
            m.d.sync += [t.eq(row) for t, row in zip(thr2, thr_reads)]

        out_shape = lane_shape(s.out_type)
        y = Signal(data.ArrayLayout(out_shape, pe))
        for p in range(pe):
            acc_next = Signal(acc_shape, name=f"acc_next_{p}")
            m.d.comb += acc_next.eq(Mux(first2, 0, acc[p]) + dot2[p])
            with m.If(advance & v2):
                m.d.sync += acc[p].eq(acc_next)
            if s.thresholds is None:
                if s.xnor:
                    m.d.comb += y[p].eq(acc_next * 2 - s.mw)
                else:
                    m.d.comb += y[p].eq(acc_next)
            else:
                count = thr.count(p, acc_next, thr2[p] if thr2 else None)
                m.d.comb += y[p].eq(thresholds.with_base(count, s.out_type, s.out_base))

        with m.If(advance):
            m.d.sync += self.o.valid.eq(v2 & last2)
            with m.If(v2 & last2):
                m.d.sync += self.o.payload.eq(y)
        return m


def weight_tiles(weights: np.ndarray, weight_type: IntType, pe: int, simd: int
                 ) -> np.ndarray:
    """The weight memory's words (``weight_memory``) as raw lane values, nf * sf x
    pe * simd."""
    mh, mw = weights.shape
    nf, sf = mh // pe, mw // simd
    return weight_type.encode(weights).reshape(nf, pe, sf, simd).transpose(0, 2, 1, 3) \
        .reshape(nf * sf, -1)


def weight_memory(m: Module, weights: np.ndarray, weight_type: IntType, pe: int, simd: int,
                  addr, en) -> list:
    """The weights in one memory read at ``addr`` (synchronous, enabled by ``en``); returns
    each PE's SIMD weights (raw: a bipolar weight is its bit) as an array view.

    Word ``g * sf + k`` holds, in field ``p``, the weights of output ``g * pe + p`` at
    inputs ``k * simd ...``: a single wide memory keeps the Verilog (one init line per
    word) and the BRAM count small.
    """
    mh, mw = weights.shape
    nf, sf = mh // pe, mw // simd
    wbits = 1 if weight_type.bipolar else weight_type.bits
    w_shape = unsigned(1) if weight_type.bipolar else lane_shape(weight_type)
    tiles = weight_tiles(weights, weight_type, pe, simd)
    m.submodules.weights = wmem = Memory(shape=unsigned(pe * simd * wbits), depth=nf * sf,
                                         init=pack_words(tiles, wbits))
    wport = wmem.read_port(domain="sync")
    m.d.comb += [wport.addr.eq(addr), wport.en.eq(en)]
    row_bits = simd * wbits
    row_layout = data.ArrayLayout(w_shape, simd)
    return [row_layout(wport.data[p * row_bits:(p + 1) * row_bits]) for p in range(pe)]


def threshold_plan(spec: Spec) -> thresholds.Plan:
    """The thresholds as the hardware holds them, in the accumulator's domain (the
    popcount ``P`` in XNOR mode: ``2P - mw >= T  <=>  P >= ceil((T + mw) / 2)``)."""
    def make():
        t = spec.thresholds
        if spec.xnor:
            t = np.clip(-((-(t + spec.mw)) // 2), 0, spec.mw + 1)
            return thresholds.plan(t, spec.pe, 0, spec.mw)
        return thresholds.plan(t, spec.pe, *spec.acc_range)
    return memo_on_array(spec.thresholds, ("threshold_plan", spec.xnor, spec.mw, spec.pe), make)


def fold_options(spec: Spec) -> list[dict]:
    return [{"pe": pe, "simd": simd} for pe in divisors(spec.mh) for simd in divisors(spec.mw)]


def fill_words(spec: Spec) -> int:
    """A whole input vector, then the read, dot-product and output registers."""
    return spec.sf + 3


def frame_lag(spec: Spec) -> tuple[Fraction, Fraction]:
    """Word ``k`` of vector ``v`` leaves once the whole vector has arrived: at most one
    vector ahead (its registers delay words, they do not make them wait for input)."""
    return Fraction(0), Fraction(1, spec.vectors)


def burst_words(spec: Spec) -> int:
    """An input vector is read in SF words, then replayed from the input buffer for the
    other NF - 1 row groups while the input stream waits."""
    return spec.sf if spec.nf > 1 else 0


def estimate(spec: Spec, family: str) -> Cost:
    s = spec
    acc_bits = (s.mw + 1).bit_length() if s.xnor else s.acc_type.bits  # as the hardware
    wbits = 1 if s.weight_type.bipolar else s.weight_type.bits
    constant_weights = s.nf * s.sf == 1  # one weight word: constants folded into logic
    lut = dsp = 0
    if s.xnor:
        lut += s.pe * popcount_luts(s.simd, family, constant_weights=constant_weights)
    elif (constant_weights and lut_inputs(family) == 4 and not s.weight_type.bipolar
          and not s.in_type.bipolar and not uses_dsp(s.in_type.bits, wbits, family)):
        # LUT4, products of constants: maccmap adds x once per set weight bit
        set_bits = memo_on_array(s.weights, ("set_bits", wbits),
                                 lambda: int(_weight_bits(s, wbits).sum()))
        lut += constant_dot_product_luts(set_bits, s.in_type.bits, family,
                                         a_signed=s.in_type.signed)
    elif (constant_weights or uses_dsp(s.in_type.bits, wbits, family)
          or s.weight_type.bipolar or s.in_type.bipolar):  # a conditional negate, no product
        ml, md = mult_cost(s.in_type.bits, wbits, family, constant_weights=constant_weights)
        negate = not (constant_weights or md)  # bipolar: the negation merges into the tree
        tree = (dsp_sum_luts(s.simd, acc_bits, _product_bits(s, wbits), family) if md
                else adder_tree_luts(s.simd, acc_bits, family,
                                     _product_bits(s, wbits) if negate else None))
        lut += s.pe * (s.simd * ml + tree)
        dsp += s.pe * s.simd * md
    else:  # LUT products and their sum: one multiply-accumulate in Yosys
        lut += dot_product_luts(s.pe, s.simd, s.in_type.bits, wbits, acc_bits, family,
                                a_signed=s.in_type.signed)
    lut += s.pe * adder_luts(acc_bits, family)  # accumulator
    # stage registers: input word, dot products and accumulators, output word, control
    ff = (s.simd * s.in_type.bits + 2 * s.pe * acc_bits + s.pe * s.out_type.bits + 8
          + 3 * max(1, (s.nf * s.sf).bit_length()))
    wl, wf, wb = memory(s.pe * s.simd * wbits, s.nf * s.sf, family, writable=False)
    if not wb and not constant_weights:  # in logic: the read register holds the data
        wf = memo_on_array(s.weights, ("registered_bits", s.pe, s.simd, wbits),
                           lambda: registered_rom_bits(_weight_bits(s, wbits)))
    tl, tf, tb = threshold_cost(threshold_plan(s) if s.levels else None, acc_bits,
                                s.out_type.bits, family)
    bl, bf, bb = (memory(s.simd * s.in_type.bits, s.sf, family, single_port=True)
                  if s.nf > 1 else (0, 0, 0))
    if (wl and not wb and not s.xnor and not dsp and s.simd > 1 and lut_inputs(family) == 6
            and s.nf * s.sf > ROM_SLICE_WORDS):
        lut += wl  # the wide ROM's multiplexers again in the products (see below)
    lut += wl + tl + bl + control_luts(30, family)
    ff += wf + tf + bf
    return Cost(cycles=s.cycles(), lut=int(lut), ff=int(ff), bram18=wb + tb + bb, dsp=dsp)


# Weights from a ROM in logic deeper than one LUT6 (its slices joined by MUXF7/F8) that
# feed multi-bit products in LUTs cost about twice the ROM in Yosys: the products cannot
# absorb a MUXF output and ABC rebuilds part of the ROM's selection in them. Fitted on
# xc7 nodes with 192-word ROMs: CNV-2w2a's int2 x int2 (mvau2, -32% without it, -14%
# with), CNV-1w2a's int2 x bipolar (-18% -> -9%), digits_cnn's int4 x int4 (-12% ->
# +4%); XNOR products (CNV-1w1a), ROMs of one slice (the ViT's 32 words) and a single
# product into its accumulator (digits_cnn's last MVAU, 640 words) need none.
ROM_SLICE_WORDS = 64


def _weight_bits(s: Spec, wbits: int) -> np.ndarray:
    """The weight memory's contents as 0/1 bits, a word per row (columns in any order)."""
    tiles = weight_tiles(s.weights, s.weight_type, s.pe, s.simd).astype(np.int64)
    return ((tiles[..., None] >> np.arange(wbits)) & 1).reshape(len(tiles), -1)


def _product_bits(s: Spec, wbits: int) -> int:
    """Width of one product: a conditional negate widens the input by a bit."""
    if s.weight_type.bipolar or s.in_type.bipolar:
        return max(s.in_type.bits, wbits) + 1
    return s.in_type.bits + wbits


# Threshold ROMs in logic of at most this many words: bits with equal columns are built
# once and their registers merge. Measured on the ViT's 255-level patch embedding, the
# same in synth_ecp5 and synth_xilinx: at 8 words (PE 4) 731-733 FFs for 10,200 bits
# (250 distinct columns); at 32 words (PE 1) 2,385 FFs for 2,550 bits, as many as the
# full width that deeper ROMs are costed at (LFC-2w2a's 256-word ones included).
MERGED_ROM_WORDS = 16


def _rom_bits(plan: thresholds.Plan, t_bits: int) -> np.ndarray:
    """The threshold memory's contents, a word per group of ``pe`` rows, as 0/1 bits."""
    t = plan.thresholds.reshape(plan.groups, -1) & ((1 << t_bits) - 1)
    return ((t[..., None] >> np.arange(t_bits)) & 1).reshape(plan.groups, -1)


def _distinct_bits(plan: thresholds.Plan, t_bits: int) -> int:
    return distinct_rom_bits(_rom_bits(plan, t_bits))


def threshold_cost(plan: thresholds.Plan | None, acc_bits: int, out_bits: int, family: str
                   ) -> tuple[int, int, float]:
    """(luts, ffs, bram18) of the comparisons, the threshold memory and the thresholds'
    stage register (none without thresholds: ``plan`` None)."""
    if plan is None:
        return 0, 0, 0
    pe, levels, nf = plan.pe, plan.levels, plan.groups
    if plan.mode == "offsets":  # acc - offset against constants
        off_bits = plan.stored_type.bits
        x_bits = plan.compare_bits(acc_bits)
        lut = pe * (adder_luts(x_bits, family)
                    + constant_thresholds_luts(levels, x_bits, out_bits, family))
        tl, tf, tb = memory(pe * off_bits, nf, family, writable=False)
        return lut + tl, tf, tb
    if plan.mode == "constants":  # one group: compares with constants in the logic
        return pe * constant_thresholds_luts(levels, acc_bits, out_bits, family), 0, 0
    t_bits = plan.stored_type.bits  # as the memory holds them (clipped to the range)
    lut = pe * levels * compare_luts(acc_bits, family)
    # its read register and the stage register beside the dot products merge
    tl, tf, tb = threshold_rom(pe * levels * t_bits, nf, family, sync_read=False)
    if tb:  # block RAM holds the bits that vary (LFC-2w2a's first: 1 BRAM18, not 2)
        tl, tf, tb = threshold_rom(memo_on_array(
            plan.thresholds, ("varying_bits", pe, t_bits),
            lambda: varying_rom_bits(_rom_bits(plan, t_bits))), nf, family, sync_read=False)
    stored = pe * levels * t_bits  # thresholds beside their dot products: a register
    if not tb and nf <= MERGED_ROM_WORDS:  # in logic, each distinct bit once
        stored = memo_on_array(plan.thresholds, ("rom_bits", pe, t_bits),
                               lambda: _distinct_bits(plan, t_bits))
        tl = rom_logic_luts(1, nf, family) * stored if tl else 0
    if nf > 1:  # one threshold word is constants, its register folds away
        tf += stored
    return lut + tl, tf, tb
