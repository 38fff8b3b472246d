"""LayerNorm: integer layer normalisation of vectors, exact square root, dyadic affine.

Integer function, per vector ``x`` of ``d`` integers of ``in_type``, element ``c``::

    S1   = sum x,   S2 = sum x**2
    V    = d * S2 - S1**2 + var_offset       (>= 0; d**2 * variance, plus an epsilon)
    r    = isqrt(V)                          (exact floor square root)
    inv  = floor(2**frac_bits / r)           (0 when r == 0, see below)
    n    = ((d * x - S1) * inv) >> norm_shift
    y[c] = sat_out((n * multipliers[c] + biases[c] + 2**(affine_shift-1)) >> affine_shift)

``>>`` is the floor (arithmetic) shift, also of negative values; ``inv`` divides
positive numbers only. ``r == 0`` means ``V == 0``, so every element equals the mean
and ``d * x - S1 == 0``: then ``n = 0`` whatever ``inv`` is, and ``inv`` is taken as 0.
With ``var_offset = 0`` the normalised value is ``n ~ (x - mean) / std *
2**(frac_bits - norm_shift)``; ``var_offset`` is LayerNorm's epsilon in units of
``V`` (``d**2 * eps / scale**2``). The affine rounds half up (the term
``2**(affine_shift - 1)``; none when ``affine_shift == 0``) and saturates to ``out_type``.

The stream carries ``vectors * d`` elements per frame, vector after vector, ``pe``
per word. Hardware: the statistics need the whole vector before the first output, so
vectors are buffered in a ``Memory`` of ``BANKS`` banks which three stages take in
turn (``hw.sequential.BankRing``):

1. *write*: accepts a vector (one word per cycle), stores it, sums ``x`` and ``x**2``;
2. *statistics*: ``V``, then ``r`` with a digit-by-digit square root
   (``root_bits`` bits) and ``inv`` with a restoring divider (``frac_bits + 1`` bits),
   ``steps`` bits per cycle each, ``steps`` chosen so that the stage keeps up with a
   vector: ``stats_cycles() = 2 + ceil(root_bits/steps) + 2 + ceil((frac_bits+1)/steps)
   + 1 <= W`` when possible;
3. *output*: reads the vector back, normalises, applies the affine (a stall-all
   pipeline).

A vector of ``W = d / pe`` words leaves every ``max(W, stats_cycles())`` cycles in
steady state: estimated cycles per frame ``vectors * vector_cycles()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..dtypes import IntType, smallest_type
from ..errors import SpecError
from ..estimate import (
    adder_luts,
    compare_luts,
    control_luts,
    dsp_tiles,
    memory,
    mult_cost,
    mux_luts,
    threshold_rom,
)
from ..hw.primitives import adder_tree, pack_words
from ..hw.sequential import (
    BankRing,
    ConstantDivider,
    Isqrt,
    bank_depth,
    memory_address,
    padded_bits,
    per_bank,
    select,
    unit_cycles,
)
from .base import (
    Cost,
    SameShapeStream,
    check_divides,
    check_positive,
    divisors,
    lane_layout,
    lane_shape,
    lane_stream,
)

KIND = "layernorm"
BANKS = 4
STATES = ("empty", "written", "ready")
CONTROL_LUTS = 40  # counters, bank states, handshakes (xc7)
INT64_SAFE = 1 << 62  # every intermediate of the golden model stays below this


def isqrt(v: np.ndarray) -> np.ndarray:
    """Exact ``floor(sqrt(v))`` of non-negative int64 values below ``2**62``."""
    v = np.asarray(v, dtype=np.int64)
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    for _ in range(2):  # float64 is off by at most one here
        r = np.where(r * r > v, r - 1, r)
        r = np.where((r + 1) * (r + 1) <= v, r + 1, r)
    return r


def _check_shift(name: str, value, what: str, top: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
        raise SpecError(f"{what} must be an integer in [0, {top}], not {value!r}", where=name)
    return value


@dataclass(frozen=True, eq=False)
class Spec(SameShapeStream):
    name: str
    d: int  # elements per vector (channels)
    in_type: IntType
    out_type: IntType
    frac_bits: int  # F: inv = floor(2**F / r)
    norm_shift: int  # G: n = ((d*x - S1) * inv) >> G
    multipliers: np.ndarray  # (d,) M[c]
    biases: np.ndarray  # (d,) B[c], added before the affine shift
    affine_shift: int  # k
    var_offset: int = 0  # added to V (epsilon)
    vectors: int = 1  # vectors per frame (tokens)
    pe: int = 1  # elements per stream word

    def __post_init__(self):
        n = self.name
        for what in ("d", "vectors", "pe"):
            check_positive(n, getattr(self, what), what)
        check_divides(n, self.pe, self.d, "PE", "d (vector length)")
        for side, t in (("input", self.in_type), ("output", self.out_type)):
            if t.bipolar:
                raise SpecError(f"layernorm {side} type cannot be bipolar", where=n)
        _check_shift(n, self.frac_bits, "frac_bits", 48)
        _check_shift(n, self.norm_shift, "norm_shift", 96)
        _check_shift(n, self.affine_shift, "affine_shift", 48)
        if not isinstance(self.var_offset, int) or isinstance(self.var_offset, bool) or \
                self.var_offset < 0:
            raise SpecError(f"var_offset must be a non-negative integer, not "
                            f"{self.var_offset!r}", where=n)
        for what in ("multipliers", "biases"):
            a = np.asarray(getattr(self, what))
            if a.shape != (self.d,) or not np.issubdtype(a.dtype, np.integer):
                raise SpecError(f"{what} must be {self.d} integers (one per element), not "
                                f"shape {a.shape} of {a.dtype}", where=n)
            object.__setattr__(self, what, a.astype(np.int64))
        if self.v_max >= INT64_SAFE or self.diff_max << self.frac_bits >= INT64_SAFE:
            raise SpecError(f"vectors of {self.d} values of {self.in_type} with "
                            f"frac_bits={self.frac_bits} overflow 62-bit intermediates",
                            where=n, hint="use fewer frac_bits or a narrower input")
        lo, hi = self.n_range
        m = int(np.abs(self.multipliers).max())
        if max(-lo, hi) * m + int(np.abs(self.biases).max()) + (1 << self.affine_shift) \
                >= INT64_SAFE:
            raise SpecError("the affine n * M + B overflows 62-bit intermediates", where=n,
                            hint="use a larger norm_shift or smaller multipliers")

    # ---- ranges and widths ----------------------------------------------------
    @property
    def diff_max(self) -> int:
        """Largest ``|d * x - S1|``: one element at one end, the rest at the other."""
        return (self.d - 1) * (self.in_type.max - self.in_type.min)

    @property
    def s1_type(self) -> IntType:
        return smallest_type(self.d * self.in_type.min, self.d * self.in_type.max)

    @property
    def s2_max(self) -> int:
        return self.d * max(self.in_type.min ** 2, self.in_type.max ** 2)

    @property
    def v_max(self) -> int:
        return self.d * self.s2_max + self.var_offset

    @property
    def root_bits(self) -> int:
        return max(1, (self.v_max.bit_length() + 1) // 2)

    @property
    def n_range(self) -> tuple[int, int]:
        top = self.diff_max << self.frac_bits
        return (-top) >> self.norm_shift, top >> self.norm_shift

    # ---- stream view ---------------------------------------------------------
    @property
    def frame_elems(self) -> int:
        return self.vectors * self.d

    @property
    def words(self) -> int:
        return self.d // self.pe

    @property
    def steps(self) -> int:
        """Bits per cycle of the square root and the divider (see the module docstring)."""
        widest = max(self.root_bits, self.frac_bits + 1)
        for steps in range(1, widest + 1):
            if self._stats_cycles(steps) <= self.words:
                return steps
        return widest

    def _stats_cycles(self, steps: int) -> int:
        return unit_cycles(self.root_bits, steps) + unit_cycles(self.frac_bits + 1, steps) + 1

    def stats_cycles(self) -> int:
        return self._stats_cycles(self.steps)

    def vector_cycles(self) -> int:
        # a vector spends about 2W + stats_cycles() + 5 cycles in the ring of BANKS
        ring = (2 * self.words + self.stats_cycles() + 5) // BANKS
        return max(self.words, self.stats_cycles(), ring)

    def cycles(self) -> int:
        return self.vectors * self.vector_cycles()


def normalise(spec: Spec, x: np.ndarray) -> np.ndarray:
    """``n`` of the module docstring for ``x`` of shape (..., d)."""
    x = np.asarray(x, dtype=np.int64)
    s1 = x.sum(axis=-1, keepdims=True)
    v = spec.d * (x * x).sum(axis=-1, keepdims=True) - s1 * s1 + spec.var_offset
    r = isqrt(v)
    inv = np.where(r > 0, (1 << spec.frac_bits) // np.maximum(r, 1), 0)  # positive / positive
    return ((spec.d * x - s1) * inv) >> spec.norm_shift


def reference(spec: Spec, x: np.ndarray) -> np.ndarray:
    frames = x.shape[0]
    n = normalise(spec, np.asarray(x, dtype=np.int64).reshape(frames, spec.vectors, spec.d))
    k = spec.affine_shift
    y = (n * spec.multipliers + spec.biases + ((1 << k) >> 1)) >> k
    y = np.clip(y, spec.out_type.min, spec.out_type.max)
    return y.reshape(frames, spec.out_elems)


# ---- hardware ---------------------------------------------------------------------


class Component(wiring.Component):
    """The three-stage vector ring of the module docstring."""

    def __init__(self, spec: Spec):
        self.spec = spec
        super().__init__({
            "i": In(lane_stream(spec.in_type, spec.pe)),
            "o": Out(lane_stream(spec.out_type, spec.pe)),
        })

    def elaborate(self, platform):
        s = self.spec
        m = Module()
        pe, words = s.pe, s.words
        in_layout = lane_layout(s.in_type, pe)
        s1_shape = lane_shape(s.s1_type)
        s2_bits = max(1, s.s2_max.bit_length())

        ring = BankRing(m, BANKS, STATES)
        sum1 = [Signal(s1_shape, name=f"sum1_{b}") for b in range(BANKS)]
        sum2 = [Signal(s2_bits, name=f"sum2_{b}") for b in range(BANKS)]
        inv = [Signal(s.frac_bits + 1, name=f"inv_{b}") for b in range(BANKS)]

        m.submodules.vectors = buf = Memory(shape=unsigned(pe * s.in_type.bits),
                                            depth=bank_depth(words, BANKS), init=[])

        def counter(name):
            return Signal(range(max(words, 2)), name=name)

        # ---- 1. write: store the vector, sums of x and x**2 -------------------------
        wa, ba = counter("write_word"), ring.counter("write_bank")
        accept = Signal()
        m.d.comb += [self.i.ready.eq(ring.is_(ba, "empty")),
                     accept.eq(self.i.valid & self.i.ready)]
        wport = buf.write_port()
        m.d.comb += [wport.addr.eq(memory_address(wa, ba, words)),
                     wport.data.eq(self.i.payload), wport.en.eq(accept)]
        lanes = [self.i.payload[p] for p in range(pe)]
        run1, run2 = Signal(s1_shape), Signal(s2_bits)
        new1, new2 = Signal(s1_shape), Signal(s2_bits)
        first = wa == 0
        m.d.comb += [new1.eq(Mux(first, 0, run1) + adder_tree(lanes)),
                     new2.eq(Mux(first, 0, run2) + adder_tree([v * v for v in lanes]))]
        done_a = accept & (wa == words - 1)
        with m.If(accept):
            m.d.sync += [run1.eq(new1), run2.eq(new2),
                         wa.eq(Mux(wa == words - 1, 0, wa + 1))]
        with m.If(done_a):
            m.d.sync += ba.eq(ring.step(ba))
        per_bank(m, sum1, done_a, ba, new1)
        per_bank(m, sum2, done_a, ba, new2)
        ring.move(done_a, ba, "written")

        # ---- 2. statistics: V, r = isqrt(V), inv = 2**F // r --------------------------
        vbits = max(1, s.v_max.bit_length())
        m.submodules.isqrt = root = Isqrt(vbits, s.steps)
        m.submodules.divider = div = ConstantDivider(1 << s.frac_bits, root.rbits,
                                                     s.frac_bits + 1, s.steps)
        bd = ring.counter("stats_bank")
        working = Signal()
        s1_d = select(m, sum1, bd, "sum1_stats")
        variance = s.d * select(m, sum2, bd, "sum2_stats") - s1_d * s1_d + s.var_offset
        start = Signal()
        m.d.comb += [start.eq(ring.is_(bd, "written") & ~working),
                     root.start.eq(start), root.value.eq(variance[:vbits]),
                     div.start.eq(root.done), div.divisor.eq(root.result)]
        with m.If(start):
            m.d.sync += working.eq(1)
        with m.If(div.done):
            m.d.sync += [working.eq(0), bd.eq(ring.step(bd))]
        # r == 0: every element is the mean, n = 0 whatever inv is (inv = 0)
        per_bank(m, inv, div.done, bd, Mux(root.result == 0, 0, div.result))
        ring.move(div.done, bd, "ready")

        # ---- 3. output: normalise and affine (stall-all pipeline) -------------------
        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)
        wc, bc = counter("out_word"), ring.counter("out_bank")
        issue = Signal()
        m.d.comb += issue.eq(advance & ring.is_(bc, "ready"))
        with m.If(issue):
            m.d.sync += wc.eq(Mux(wc == words - 1, 0, wc + 1))
            with m.If(wc == words - 1):
                m.d.sync += bc.eq(ring.step(bc))
        rport = buf.read_port(domain="sync")
        m.d.comb += [rport.addr.eq(memory_address(wc, bc, words)), rport.en.eq(advance)]

        v1, last1, v2, last2 = Signal(), Signal(), Signal(), Signal()
        word1 = counter("out_word1")
        bank1, bank2 = ring.counter("out_bank1"), ring.counter("out_bank2")
        with m.If(advance):
            m.d.sync += [v1.eq(issue), last1.eq(wc == words - 1), bank1.eq(bc), word1.eq(wc),
                         v2.eq(v1), last2.eq(last1), bank2.eq(bank1)]

        # P1: n for each lane; the per-element constants are read for P2
        x1 = in_layout(rport.data)
        n_shape = lane_shape(smallest_type(*s.n_range))
        n2 = [Signal(n_shape, name=f"n2_{p}") for p in range(pe)]
        s1_c, inv_c = select(m, sum1, bank1, "sum1_out"), select(m, inv, bank1, "inv_out")
        with m.If(advance):
            for p in range(pe):
                m.d.sync += n2[p].eq(((s.d * x1[p] - s1_c) * inv_c) >> s.norm_shift)
        mult_type = smallest_type(min(int(s.multipliers.min()), 0), int(s.multipliers.max()))
        bias_type = smallest_type(min(int(s.biases.min()), 0), int(s.biases.max()))
        consts = {}
        for what, values, dtype in (("multipliers", s.multipliers, mult_type),
                                    ("biases", s.biases, bias_type)):
            rows = dtype.encode(values).reshape(words, pe)
            m.submodules[what] = rom = Memory(shape=unsigned(pe * dtype.bits), depth=words,
                                              init=pack_words(rows, dtype.bits))
            port = rom.read_port(domain="sync")
            m.d.comb += [port.addr.eq(word1), port.en.eq(advance)]
            consts[what] = data.ArrayLayout(lane_shape(dtype), pe)(port.data)

        # P2: affine, round, saturate
        k = s.affine_shift
        lo, hi = s.out_type.min, s.out_type.max
        y = Signal(lane_layout(s.out_type, pe))
        for p in range(pe):
            scaled = Signal(signed(n_shape.width + mult_type.bits + bias_type.bits + k + 4),
                            name=f"scaled_{p}")
            m.d.comb += scaled.eq((n2[p] * consts["multipliers"][p] + consts["biases"][p]
                                   + ((1 << k) >> 1)) >> k)
            m.d.comb += y[p].eq(Mux(scaled < lo, lo, Mux(scaled > hi, hi, scaled)))
        with m.If(advance):
            m.d.sync += self.o.valid.eq(v2)
            with m.If(v2):
                m.d.sync += self.o.payload.eq(y)
        ring.move(advance & v2 & last2, bank2, "empty")
        return m


def fold_options(spec: Spec) -> list[dict]:
    return [{"pe": pe} for pe in divisors(spec.d)]


def fill_words(spec: Spec) -> int:
    """Every bank of the ring may hold a vector before the first of them leaves."""
    return BANKS * spec.words + 2


def _product(a_bits: int, a_signed: bool, b_bits: int, b_signed: bool, family: str
             ) -> tuple[int, int]:
    """(luts, dsp) of one product: DSP tiles as Yosys splits it, else LUTs."""
    tiles = dsp_tiles(a_bits, b_bits, family, a_signed=a_signed, b_signed=b_signed)
    return (0, tiles) if tiles else (mult_cost(a_bits, b_bits, family)[0], 0)


def _constant_product(constant: int, bits: int, signed: bool, family: str) -> tuple[int, int]:
    """``constant * x``: a power of two is a shift (Yosys' opt_expr), any other constant
    a product like a variable one."""
    if constant & (constant - 1) == 0:
        return 0, 0
    return _product(constant.bit_length(), False, bits, signed, family)


def _varies(values: np.ndarray) -> bool:
    return len(np.unique(values)) > 1


def products(spec: Spec, family: str) -> dict[str, tuple[int, int]]:
    """(luts, dsp) of each product of the datapath, per lane (``pe`` lanes) or once."""
    s = spec
    x_bits, x_signed = s.in_type.bits, s.in_type.signed
    s1_bits, s2_bits = s.s1_type.bits, max(1, s.s2_max.bit_length())
    n_bits = smallest_type(*s.n_range).bits
    m_type = smallest_type(min(int(s.multipliers.min()), 0), int(s.multipliers.max()))
    return {
        "x**2": _product(x_bits, x_signed, x_bits, x_signed, family),
        "d*x": _constant_product(s.d, x_bits, x_signed, family),
        "S1**2": _product(s1_bits, True, s1_bits, True, family),
        "d*S2": _constant_product(s.d, s2_bits, False, family),
        "(d*x-S1)*inv": _product(s1_bits + 1, True, s.frac_bits + 1, False, family),
        "n*M": _product(n_bits, True, m_type.bits, m_type.signed, family),
    }


PER_LANE = ("x**2", "d*x", "(d*x-S1)*inv", "n*M")


def isqrt_luts(value_bits: int, steps: int, family: str) -> int:
    """``hw.sequential.Isqrt``: per step and root bit a compare, a subtract and a
    select; per root bit the load of its registers. Measured alone on xc7 (root bits
    10..24, steps 1..8): 3.6 LUTs per bit per step, 1.2 per bit, 33 more."""
    root_bits = max(1, math.ceil(value_bits / 2))
    steps = max(1, min(steps, root_bits))
    rbits = padded_bits(root_bits, steps)
    return control_luts(math.ceil(3.6 * steps * rbits + 1.2 * rbits) + 33, family)


def divider_luts(divisor_bits: int, quotient_bits: int, steps: int, family: str) -> int:
    """``hw.sequential.ConstantDivider``: per step and divisor bit a compare, a subtract
    and a select (its numerator is a constant: loads are free). Measured alone on xc7
    (divisor bits 14..20, steps 1..8): 3.2 LUTs per bit per step, 26 more."""
    unit_steps = max(1, min(steps, quotient_bits))
    return control_luts(math.ceil(3.2 * unit_steps * divisor_bits) + 26, family)


def estimate(spec: Spec, family: str) -> Cost:
    """Part by part, as Yosys builds the hardware above (docs/calibration.md)."""
    s = spec
    pe, ib = s.pe, s.in_type.bits
    s1_bits, s2_bits = s.s1_type.bits, max(1, s.s2_max.bit_length())
    f1 = s.frac_bits + 1
    n_bits = smallest_type(*s.n_range).bits
    m_bits = smallest_type(min(int(s.multipliers.min()), 0), int(s.multipliers.max())).bits
    b_bits = smallest_type(min(int(s.biases.min()), 0), int(s.biases.max())).bits
    vbits = max(1, s.v_max.bit_length())
    # memories: the vector buffer; the per-element constants, a ROM of the columns
    # that vary (constant ones are folded), its data registered (a LUT per bit); a
    # ROM of a few words merges into the LUTs that use it (as ``threshold_rom``)
    lut, _, bram = memory(pe * ib, bank_depth(s.words, BANKS), family, sync_read=False)
    bias_varies = _varies(s.biases)
    rom_bits = pe * (m_bits * _varies(s.multipliers) + b_bits * bias_varies)
    rl, _, rb = threshold_rom(rom_bits, s.words, family)
    lut, bram = lut + rl + (rom_bits if rl or rb else 0), bram + rb
    # products: DSP tiles (their partial sums in the DSP cascade) or LUTs
    prods = products(s, family)
    lanes = {what: pe if what in PER_LANE else 1 for what in prods}
    lut += sum(lanes[what] * pl for what, (pl, _) in prods.items())
    dsp = sum(lanes[what] * pd for what, (_, pd) in prods.items())
    # 1. write: S1 accumulates through an adder tree; x**2 accumulates in the DSPs'
    # post-adders (in LUTs when the squares are LUT products)
    lut += pe * adder_luts(s1_bits, family)
    if not prods["x**2"][1]:
        lut += pe * adder_luts(s2_bits, family)
    # 2. statistics: V = d*S2 - S1**2 (+ var_offset: a third operand), the units, the
    # inv register's zero select; the per-bank sums and inv read through 4:1 selects
    lut += adder_luts(vbits, family) * (2 if s.var_offset else 1)
    lut += isqrt_luts(vbits, s.steps, family)
    root_steps = max(1, min(s.steps, s.root_bits))
    lut += divider_luts(padded_bits(s.root_bits, root_steps), f1, s.steps, family)
    lut += f1 + mux_luts(2 * s1_bits + s2_bits + f1, BANKS, family)
    # 3. output per lane: d*x - S1; the affine n*M + B + round: in one DSP its
    # post-adder takes B and a LUT adder the rounding constant above the shift;
    # a split or LUT product sums all its operands in LUTs; the saturation
    k = s.affine_shift
    wide = n_bits + m_bits + 1
    above = max(1, wide - k)
    if prods["n*M"][1] == 1:
        affine = adder_luts(above, family) if k and bias_varies else 0
    else:
        operands = 1 + bool(bias_varies or s.biases.any()) + bool(k)
        affine = (operands - 1) * adder_luts(wide, family)
    lut += pe * (adder_luts(s1_bits + 1, family) + affine
                 + 2 * compare_luts(above, family) + s.out_type.bits)
    lut += control_luts(CONTROL_LUTS, family)
    ff = BANKS * (s1_bits + s2_bits + f1 + 3) + s1_bits + s2_bits
    ff += 3 * s.root_bits + 3 * f1 + 2 * vbits
    ff += pe * (n_bits + s.out_type.bits) + 6 * max(1, s.words.bit_length()) + 16
    return Cost(cycles=s.cycles(), lut=int(lut), ff=int(ff), bram18=bram, dsp=dsp)
