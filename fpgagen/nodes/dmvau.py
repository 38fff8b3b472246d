"""Differential MVAU: an MVAU fed the deltas of its input vectors (``delta.py``).

Integer function: the plain MVAU's (``mvau.py``), computed differentially. Per frame
of ``vectors`` input vectors, with ``d[t] = x[t] - x[t-1]`` the deltas the encoder
sends (``x[-1] = 0``)::

    acc[t] = acc[t-1] + W @ d[t]        (acc[-1] = 0; int64, exact)
           = W @ x[t]
    out[t] = the MVAU's output stage of acc[t]   (raw accumulator, or threshold count)

Exact because the sum happens on integers before any rounding, so its outputs are
identical to the plain MVAU's. ``reference`` takes the deltas (the encoder's golden
groups, ``delta.group_values``) and accumulates them (it is tested against
``mvau.reference`` of the same spec).

Hardware: one wire entry (input group ``c``: the ``simd`` deltas ``d`` of channels
``c*simd ...``) at a time updates every output accumulator, ``pe`` per cycle:
``acc[g*pe + p] += sum_k W[g*pe + p, c*simd + k] * d[k]`` for the ``nf = mh / pe``
output groups ``g``, weights read from the MVAU's weight memory exactly as its SIMD
step reads them (address ``g * sf + c``, ``sf = mw / simd``). A token's last entry (or
its end word) is followed by a pass over the output groups that sends each group's
accumulators through the MVAU's output stage (its threshold memory and comparisons).
Input groups whose deltas are all zero never arrive, so they cost no cycle and no
multiply. The accumulators live in registers (at most ``REGISTER_WORDS`` groups) or a
memory; a frame's first pass reads them as zero.

Cycles per token: ``nf`` per narrow entry, ``nf + 1`` per wide one (its first word is
taken alone), and ``nf`` for the output pass; ``cycles()`` is the worst case (every
group nonzero and wide: the plain MVAU's ``sf * nf`` plus escapes and the output
pass), ``cycles_for`` the figure for given deltas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..dtypes import IntType
from ..estimate import adder_luts, adder_tree_luts, dsp_sum_luts, memory, mult_cost
from ..hw import thresholds
from ..hw.primitives import REGISTER_WORDS, adder_tree, running_words
from ..hw.thresholds import ThresholdRead
from . import mvau
from .base import Cost, check_positive, lane_layout, lane_shape, lane_stream, memo_on_array
from .delta import DeltaFormat, dense, fitting_groups, link_stats

KIND = "dmvau"


@dataclass(frozen=True, eq=False)
class Spec:
    name: str
    mw: int  # input elements per vector
    mh: int  # output channels per vector
    weights: np.ndarray  # (mh, mw) integers of weight_type
    x_type: IntType  # the input vectors' element type (their deltas arrive)
    weight_type: IntType
    out_type: IntType
    narrow_bits: int  # the delta stream's format (``delta.DeltaFormat``)
    thresholds: np.ndarray | None = None  # (mh, levels) ascending, accumulator domain
    out_base: int = 0
    vectors: int = 1  # input vectors per frame
    pe: int = 1
    simd: int = 1  # input channels per entry (the delta stream's group)

    def __post_init__(self):
        check_positive(self.name, self.narrow_bits, "narrow_bits")
        plain = self.plain  # the MVAU's own checks and messages, thresholds clipped
        object.__setattr__(self, "weights", plain.weights)
        object.__setattr__(self, "thresholds", plain.thresholds)
        self.fmt.check(self.name)

    @property
    def plain(self) -> mvau.Spec:
        """The MVAU this unit computes exactly, with the same folding."""
        return mvau.Spec(self.name, self.mw, self.mh, self.weights, self.x_type,
                         self.weight_type, self.out_type, thresholds=self.thresholds,
                         out_base=self.out_base, vectors=self.vectors, pe=self.pe,
                         simd=self.simd)

    @property
    def fmt(self) -> DeltaFormat:
        return DeltaFormat(self.mw, self.x_type, self.narrow_bits, self.simd)

    # ---- stream view ---------------------------------------------------------
    @property
    def in_type(self) -> IntType:
        return self.fmt.word_type

    @property
    def in_elems(self) -> int:
        """The groups the input stream stands for (its words depend on the data)."""
        return self.vectors * self.sf

    @property
    def out_elems(self) -> int:
        return self.vectors * self.mh

    @property
    def in_lanes(self) -> int:
        return 1

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
        """Worst case: every group nonzero and wide (if any can be), then the outputs."""
        return self.vectors * (self.sf * (self.nf + self.fmt.escapes) + self.nf)

    def cycles_for(self, d: np.ndarray) -> np.ndarray:
        """Cycles per frame for deltas d (frames, vectors * mw)."""
        stats = link_stats(self.fmt, d, self.vectors)
        return (stats["nonzero_groups"] * self.nf + stats["wide_groups"] + self.nf).sum(axis=1)

    @property
    def acc_type(self) -> IntType:
        return self.plain.acc_type

    @property
    def levels(self) -> int:
        return 0 if self.thresholds is None else int(self.thresholds.shape[1])


def reference(spec: Spec, groups: np.ndarray) -> np.ndarray:
    """From the encoder's golden groups (``delta.group_values``)."""
    frames = groups.shape[0]
    steps = dense(spec.fmt, groups).reshape(frames, spec.vectors, spec.mw)
    acc = np.cumsum(steps @ spec.weights.T, axis=1)  # acc[t] = acc[t-1] + W d[t]
    return mvau.output_stage(spec.plain, acc).reshape(frames, spec.out_elems)


# ---- hardware ---------------------------------------------------------------------


class Component(wiring.Component):
    """Decode -> issue (one group of ``pe`` accumulators per cycle: weight, accumulator
    and threshold reads) -> S1 (accumulate, or activate and emit) -> output register.

    Stall-all: issue, S1 and every read port advance only when the output register
    can take a value (``~o.valid | o.ready``).
    """

    def __init__(self, spec: Spec):
        self.spec = spec
        super().__init__({
            "i": In(lane_stream(spec.in_type, 1)),
            "o": Out(lane_stream(spec.out_type, spec.pe)),
        })

    def elaborate(self, platform):
        s, f = self.spec, self.spec.fmt
        m = Module()
        nf, pe, simd, sf = s.nf, s.pe, s.simd, s.sf
        acc_shape = lane_shape(s.acc_type)
        acc_layout = data.ArrayLayout(acc_shape, pe)
        d_shape = lane_shape(f.delta_type)
        d_layout = data.ArrayLayout(d_shape, simd)

        adv = Signal()
        m.d.comb += adv.eq(~self.o.valid | self.o.ready)

        # ---- decode: the entry being worked on -------------------------------
        word = self.i.payload[0]
        narrow = Signal(data.ArrayLayout(lane_shape(IntType(f.narrow_bits, True)), simd))
        m.d.comb += narrow.eq(word[:f.value_bits])
        wide = Signal(d_layout)  # a wide entry's second word
        m.d.comb += wide.eq(word[:simd * f.delta_type.bits])
        w_index, w_wide, w_last = word[f.index_at:f.wide_at], word[f.wide_at], word[f.last_at]
        w_nonzero = word[:f.value_bits] != 0
        half, h_index, h_last = Signal(), Signal(f.index_bits), Signal()  # a wide entry's first word
        c_valid, c_entry, c_closes = Signal(), Signal(), Signal()
        c_index, c_d = Signal(f.index_bits), Signal(d_layout)

        g = Signal(range(max(nf, 2)))
        g_base = Signal(range(max(nf * sf, 2)))  # g * sf
        ending = Signal()  # the token's output pass follows its last entry
        token = Signal(range(max(s.vectors, 2)))
        fresh = Signal(init=1)  # the frame's first pass: accumulators read as zero

        issue, last_g, out_pass, done = Signal(), Signal(), Signal(), Signal()
        m.d.comb += [
            issue.eq(adv & c_valid),
            last_g.eq(g == nf - 1),
            out_pass.eq(ending | ~c_entry),
            done.eq(issue & last_g & (out_pass | ~c_closes)),
            self.i.ready.eq(~c_valid | done),
        ]
        with m.If(issue):
            m.d.sync += [g.eq(Mux(last_g, 0, g + 1)), g_base.eq(Mux(last_g, 0, g_base + sf))]
            with m.If(last_g):
                m.d.sync += [ending.eq(~out_pass & c_closes), fresh.eq(0)]
                with m.If(out_pass):
                    m.d.sync += token.eq(Mux(token == s.vectors - 1, 0, token + 1))
                    with m.If(token == s.vectors - 1):
                        m.d.sync += fresh.eq(1)
        with m.If(self.i.valid & self.i.ready):
            with m.If(half):
                m.d.sync += [half.eq(0), c_valid.eq(1), c_entry.eq(1), c_closes.eq(h_last),
                             c_index.eq(h_index), c_d.eq(wide)]
            with m.Elif(w_wide):
                m.d.sync += [half.eq(1), h_index.eq(w_index), h_last.eq(w_last),
                             c_valid.eq(0)]
            with m.Else():
                m.d.sync += [c_valid.eq(w_nonzero | w_last), c_entry.eq(w_nonzero),
                             c_closes.eq(w_last), c_index.eq(w_index)]
                m.d.sync += [c_d[k].eq(narrow[k]) for k in range(simd)]
        with m.Elif(done):
            m.d.sync += c_valid.eq(0)

        # ---- reads: weights of input group c, accumulators and thresholds of group g
        w1 = mvau.weight_memory(m, s.weights, s.weight_type, pe, simd, g_base + c_index, adv)
        thr = None
        if s.thresholds is not None:
            thr = ThresholdRead(m, threshold_plan(s), g, adv)

        # ---- S1: accumulate (entry) or activate and emit (output pass) -----------
        v1, out1, fresh1 = Signal(), Signal(), Signal()
        d1 = Signal(d_layout)
        g1 = Signal.like(g)
        with m.If(adv):
            m.d.sync += [v1.eq(issue), out1.eq(out_pass), fresh1.eq(fresh), d1.eq(c_d),
                         g1.eq(g)]
        updated = Signal(acc_layout)
        running = running_words(m, acc_layout, nf, g, adv, g1, adv & v1, updated)
        y = Signal(lane_layout(s.out_type, pe))
        for p in range(pe):
            base = Mux(fresh1, 0, running[p])
            terms = []
            for k in range(simd):
                wv, dv = w1[p][k], d1[k]
                terms.append(Mux(wv, dv, -dv) if s.weight_type.bipolar else dv * wv)
            m.d.comb += updated[p].eq(Mux(out1, base, base + adder_tree(terms)))
            if s.thresholds is None:
                m.d.comb += y[p].eq(updated[p])
            else:
                count = thr.count(p, updated[p], thr.reads[p] if thr.reads else None)
                m.d.comb += y[p].eq(thresholds.with_base(count, s.out_type, s.out_base))

        with m.If(adv):
            m.d.sync += self.o.valid.eq(v1 & out1)
            with m.If(v1 & out1):
                m.d.sync += self.o.payload.eq(y)
        return m


def threshold_plan(spec: Spec) -> thresholds.Plan:
    """The thresholds as the hardware holds them (the accumulators are the MVAU's)."""
    return memo_on_array(spec.thresholds, ("threshold_plan", spec.pe), lambda: thresholds.plan(
        spec.thresholds, spec.pe, *spec.plain.acc_range))


def fold_options(spec: Spec) -> list[dict]:
    """The MVAU's, with the groups whose wire words fit; the encoder feeding it takes
    the same SIMD (``passes/differential.match_groups``)."""
    groups = set(fitting_groups(spec.mw, spec.x_type, spec.narrow_bits))
    return [o for o in mvau.fold_options(spec.plain) if o["simd"] in groups]


def fill_words(spec: Spec) -> int:
    """A whole token's entries, then the decode, S1 and output registers."""
    return spec.sf + 3


def estimate(spec: Spec, family: str) -> Cost:
    s, f = spec, spec.fmt
    acc_bits = s.acc_type.bits
    wbits = 1 if s.weight_type.bipolar else s.weight_type.bits
    dbits = f.delta_type.bits
    ml, md = mult_cost(dbits, wbits, family)
    tree = dsp_sum_luts(s.simd, acc_bits, dbits + wbits, family) if md else adder_tree_luts(
        s.simd, acc_bits, family)
    lut = s.pe * (s.simd * ml + tree  # products, sum
                  + adder_luts(acc_bits, family) + acc_bits)  # accumulate, zero/pass
    dsp = s.pe * s.simd * md
    # decode and entry registers, S1, output word, counters
    ff = (f.index_bits * 2 + s.simd * dbits * 2 + 8 + s.pe * s.out_type.bits
          + 2 * max(1, (s.nf * s.sf).bit_length()) + max(1, s.vectors.bit_length()))
    wl, wf, wb = memory(s.pe * s.simd * wbits, s.nf * s.sf, family, writable=False)
    plan = None if s.thresholds is None else threshold_plan(s)
    tl, tf, tb = mvau.threshold_cost(plan, acc_bits, s.out_type.bits, family)
    if s.nf <= REGISTER_WORDS:
        al, af, ab = 0, s.nf * s.pe * acc_bits, 0
    else:
        al, af, ab = memory(s.pe * acc_bits, s.nf, family)
    lut += wl + tl + al + adder_luts(f.index_bits + s.nf.bit_length(), family) + 30
    ff += wf + tf + af
    return Cost(cycles=s.cycles(), lut=int(lut), ff=int(ff), bram18=wb + tb + ab, dsp=dsp)
