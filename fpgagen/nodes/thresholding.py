"""Thresholding: a standalone multi-threshold activation (FINN MultiThreshold).

Integer function (per element ``x`` of channel ``c``)::

    count  = #{k : x >= T[c, k]}
    out    = out_base + count                   (integer outputs)
    out    = -1 + 2 * count                     (bipolar output, one threshold)

The stream carries ``vectors * channels`` elements per frame, channel-minor (element
``v * channels + c``). Folding: ``pe`` channels per word, so a frame takes
``vectors * channels / pe`` cycles. The thresholds of the ``pe`` channels of a word sit
in a memory of depth ``channels / pe`` read once per word (constants when the depth
is 1). Thresholds are clipped to ``[in_type.min, in_type.max + 1]``: beyond the
reachable input range they all act alike, and the clipped ones need fewer bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..dtypes import IntType, smallest_type
from ..errors import SpecError
from ..estimate import (
    adder_luts,
    compare_luts,
    constant_compare_luts,
    constant_thresholds_luts,
    lut_inputs,
    memory,
    popcount_luts,
)
from ..hw import thresholds
from ..hw.thresholds import ThresholdRead
from .base import (
    Cost,
    SameShapeStream,
    check_divides,
    check_positive,
    clip_kept,
    divisors,
    lane_layout,
    lane_stream,
    memo_on_array,
)

KIND = "thresholding"
ADAPTS_LANES = True  # cheap to widen: folding matches its neighbours' words (fold.py)


def multithreshold(x: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Number of thresholds each value reaches; ``x[..., c]`` against ``thresholds[c]``."""
    return (np.asarray(x, dtype=np.int64)[..., None] >= thresholds).sum(axis=-1)


@dataclass(frozen=True, eq=False)
class Spec(SameShapeStream):
    name: str
    channels: int
    in_type: IntType
    out_type: IntType
    thresholds: np.ndarray  # (channels, levels) ascending, in the input's value domain
    out_base: int = 0  # output value when no threshold is reached (ignored for bipolar)
    vectors: int = 1  # channel vectors per frame (pixels)
    pe: int = 1

    def __post_init__(self):
        n = self.name
        for what in ("channels", "vectors", "pe"):
            check_positive(n, getattr(self, what), what)
        check_divides(n, self.pe, self.channels, "PE", "channels")
        t = np.asarray(self.thresholds, dtype=np.int64)
        if t.ndim != 2 or t.shape[0] != self.channels or t.shape[1] < 1:
            raise SpecError(f"thresholds have shape {t.shape}, expected ({self.channels}, "
                            f"levels) with levels >= 1", where=n)
        if np.any(np.diff(t, axis=1) < 0):
            raise SpecError("thresholds must be ascending in each channel", where=n,
                            hint="sort each row; a descending row means a negative scale")
        t = clip_kept(t, self.in_type.min, self.in_type.max + 1)
        object.__setattr__(self, "thresholds", t)
        levels = t.shape[1]
        lowest, highest = self._level(0), self._level(levels)
        if not (self.out_type.contains(lowest) and self.out_type.contains(highest)):
            raise SpecError(f"{levels} thresholds from base {self.out_base} do not fit the "
                            f"output type {self.out_type}", where=n,
                            hint="a bipolar output takes exactly one threshold per channel"
                            if self.out_type.bipolar else "widen the output type")

    def _level(self, count):
        return 2 * count - 1 if self.out_type.bipolar else self.out_base + count

    # ---- stream view ---------------------------------------------------------
    @property
    def frame_elems(self) -> int:
        return self.vectors * self.channels

    @property
    def nf(self) -> int:
        return self.channels // self.pe

    @property
    def levels(self) -> int:
        return int(self.thresholds.shape[1])

    def cycles(self) -> int:
        return self.vectors * self.nf


def reference(spec: Spec, x: np.ndarray) -> np.ndarray:
    frames = x.shape[0]
    v = np.asarray(x, dtype=np.int64).reshape(frames, spec.vectors, spec.channels)
    out = spec._level(multithreshold(v, spec.thresholds))
    return out.reshape(frames, spec.out_elems).astype(np.int64)


# ---- hardware ---------------------------------------------------------------------


class Component(wiring.Component):
    """Stall-all pipeline: accept + threshold read (S1) -> compare/count -> output reg.

    Both registers and the threshold read port advance only when the output register
    can take a value (``~o.valid | o.ready``). One word per cycle.
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
        pe, nf = s.pe, s.nf

        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]

        # ---- S1: the accepted word and the thresholds of its channels -----------
        v1 = Signal()
        x1 = Signal(lane_layout(s.in_type, pe))
        with m.If(advance):
            m.d.sync += v1.eq(self.i.valid)
            with m.If(self.i.valid):
                m.d.sync += x1.eq(self.i.payload)

        fold = Signal(range(max(nf, 2)))
        if nf > 1:
            with m.If(advance & self.i.valid):
                m.d.sync += fold.eq(Mux(fold == nf - 1, 0, fold + 1))
        thr = ThresholdRead(m, threshold_plan(s), fold, advance)

        # ---- compare, count, emit -------------------------------------------------
        y = Signal(lane_layout(s.out_type, pe))
        for p in range(pe):
            count = thr.count(p, x1[p], thr.reads[p] if thr.reads else None)
            m.d.comb += y[p].eq(thresholds.with_base(count, s.out_type, s.out_base))
        with m.If(advance):
            m.d.sync += self.o.valid.eq(v1)
            with m.If(v1):
                m.d.sync += self.o.payload.eq(y)
        return m


def _raw_thresholds(spec: Spec) -> np.ndarray:
    """Thresholds in the lanes' raw domain: a bipolar lane is the bit b, value 2b - 1
    (``2b - 1 >= T  <=>  b >= ceil((T + 1) / 2)``)."""
    t = spec.thresholds
    return -((-(t + 1)) // 2) if spec.in_type.bipolar else t


def threshold_plan(spec: Spec) -> thresholds.Plan:
    """The thresholds as the hardware holds them, in the lanes' raw domain."""
    lo, hi = (0, 1) if spec.in_type.bipolar else (spec.in_type.min, spec.in_type.max)
    return memo_on_array(spec.thresholds, ("threshold_plan", spec.pe), lambda: thresholds.plan(
        _raw_thresholds(spec), spec.pe, lo, hi))


def fold_options(spec: Spec) -> list[dict]:
    return [{"pe": pe} for pe in divisors(spec.channels)]


def _varying(s: Spec, t_type: IntType) -> tuple[int, int]:
    """(thresholds, bits) of the threshold memory that differ between channel groups:
    the others are constants in logic (a network's requantisation often has the same
    thresholds in every channel)."""
    t = np.asarray(t_type.encode(s.thresholds), dtype=np.int64).reshape(s.nf, -1)
    bits = (t[..., None] >> np.arange(t_type.bits)) & 1
    differs = (bits != bits[:1]).any(axis=0)
    return int(differs.any(axis=1).sum()), int(differs.sum())


def estimate(spec: Spec, family: str) -> Cost:
    """Resources: the comparisons (a carry chain each, or against a constant a LUT per
    LUT-input's worth of bits), the count as a popcount of the comparisons' bits, and the
    memory of the thresholds that vary between channel groups; constant thresholds on an
    input no wider than a LUT are one LUT per output bit. Measured on xc7 on the
    255-level requantisation of small_mobilenet and small_resnet's 15-level 5-bit one
    (docs/calibration.md)."""
    s = spec
    plan = threshold_plan(s)
    ff = s.pe * (s.in_type.bits + s.out_type.bits) + max(1, s.nf.bit_length()) + 2
    if plan.mode == "offsets":  # x - offset against constants
        x_bits = plan.compare_bits(s.in_type.bits)
        lut = s.pe * (adder_luts(x_bits, family) + adder_luts(s.out_type.bits, family)
                      + constant_thresholds_luts(s.levels, x_bits, s.out_type.bits, family))
        ml, mf, mb = memory(s.pe * plan.stored_type.bits, s.nf, family, writable=False)
        return Cost(cycles=s.cycles(), lut=int(lut + ml + 8), ff=int(ff + mf), bram18=mb,
                    dsp=0)
    t_type = smallest_type(min(int(s.thresholds.min()), 0), int(s.thresholds.max()))
    t_bits = t_type.bits
    varying, varying_bits = memo_on_array(s.thresholds, ("thr_varying", s.pe),
                                          lambda: _varying(s, t_type))
    constant = s.pe * s.levels - varying
    if not varying and s.in_type.bits <= lut_inputs(family):
        # every output bit a function of one LUT's inputs: ABC collapses the cone
        lut = s.pe * s.out_type.bits
    else:
        lut = (varying * compare_luts(t_bits, family)
               + constant * constant_compare_luts(s.in_type.bits, family))
        lut += s.pe * popcount_luts(s.levels, family, constant_weights=True)  # the count
        lut += s.pe * adder_luts(s.out_type.bits, family)  # + out_base
    ml, mf, mb = memory(s.pe * s.levels * t_bits, s.nf, family, writable=False)
    if not mb:  # in logic: only the bits that vary cost
        ml, mf, mb = memory(varying_bits, s.nf, family, writable=False)
    lut += ml + 8  # control
    ff += mf
    return Cost(cycles=s.cycles(), lut=int(lut), ff=int(ff), bram18=mb, dsp=0)
