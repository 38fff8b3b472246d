"""Softmax: integer softmax of rows of scores, with a LUT exponent unit.

Integer function, per row ``s`` of ``n`` scores of ``in_type``::

    d    = max(s) - s                        (0 <= d <= in_type.max - in_type.min)
    dd   = min(d, depth - 1)                 (beyond the table the last entry holds)
    e    = T[dd]                                            variant "single"
    e    = (H[dd >> k] * L[dd & (2**k - 1)]) >> m           variant "split"
    R    = floor((2**31 - 1) / sum(e))       (one reciprocal per row; sum >= e(0) >= 1)
    out  = min((e * R) >> shift, out_type.max)

All values are non-negative, so every division and shift is a floor. ``T`` (or the
tables ``H`` of ``depth / 2**k`` and ``L`` of ``2**k`` entries and the multiply) is the
exponent unit: :func:`exp_tables` builds them from the scores' float scale, so that
``e ~ exp(-d * scale) * (2**width - 1)``; with ``shift = 31 - f`` the output is the
softmax in steps of ``2**-f`` (:func:`output_shift`).

The stream carries ``rows * n`` scores per frame, row after row, ``pe`` per word.

Hardware: the max needs the whole row before the first exponent, so rows are buffered
in a ``Memory`` split into ``BANKS`` banks of one row, which four stages take in turn
(``hw.sequential.BankRing``), each working on a different row at the same time:

1. *write*: accepts a row (one word per cycle), stores it, keeps the running max;
2. *sum*: reads the row back, looks up the exponents, adds them (one word per cycle);
3. *reciprocal*: a restoring divider by the row sum, ``steps`` quotient bits per cycle,
   ``steps`` chosen so that it keeps up with a row (``recip_cycles() <= words``);
4. *output*: reads the row a third time, looks the exponents up again, multiplies by
   ``R``, shifts, saturates (a stall-all pipeline: the only stage the output can stall).

A row of ``W = n / pe`` words takes ``W`` cycles in stages 1, 2 and 4 and
``recip_cycles()`` in stage 3, so in steady state a row leaves every
``max(W, recip_cycles())`` cycles; five banks keep all four stages busy (a row spends
about ``3W + recip_cycles() + 5`` cycles in the ring) except for rows of 1 to 3 words,
where the ring adds up to 10%. Estimated cycles per frame: ``rows * row_cycles()``
(equal to the simulated steady state for rows of 4 words or more).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..dtypes import IntType
from ..errors import SpecError
from ..estimate import adder_luts, compare_luts, memory_cost, mult_cost, mux_luts
from ..hw.primitives import adder_tree, rom_read_port
from ..hw.sequential import (
    BankRing,
    ConstantDivider,
    bank_depth,
    memory_address,
    per_bank,
    select,
    unit_cycles,
)
from . import table
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

KIND = "softmax"
VARIANTS = ("single", "split")
RECIP_NUMERATOR = 2**31 - 1
BANKS = 5
MAX_TABLE_DEPTH = 1 << 16
STATES = ("empty", "written", "summed", "divided")


def _table(value, name: str, what: str) -> np.ndarray:
    t = np.asarray(value)
    if t.ndim != 1 or len(t) < 1 or len(t) > MAX_TABLE_DEPTH:
        raise SpecError(f"{what} must be a 1-D table of 1 to {MAX_TABLE_DEPTH} entries, "
                        f"not shape {t.shape}", where=name)
    if not np.issubdtype(t.dtype, np.integer) or np.any(t < 0) or np.any(t >= 1 << 32):
        raise SpecError(f"{what} entries must be integers in [0, 2**32)", where=name,
                        hint="build the tables with exp_tables")
    return t.astype(np.int64)


@dataclass(frozen=True, eq=False)
class Spec(SameShapeStream):
    name: str
    n: int  # scores per row
    in_type: IntType
    out_type: IntType  # unsigned
    shift: int  # out = (e * R) >> shift
    variant: str = "single"
    exp_table: np.ndarray | None = None  # single: e = T[dd]
    exp_hi: np.ndarray | None = None  # split: e = (H[dd >> k] * L[dd & mask]) >> m
    exp_lo: np.ndarray | None = None  # (2**split_bits,)
    split_bits: int = 0  # k
    split_shift: int = 0  # m
    rows: int = 1  # rows per frame
    pe: int = 1  # scores per stream word

    def __post_init__(self):
        name = self.name
        for what in ("n", "rows", "pe"):
            check_positive(name, getattr(self, what), what)
        check_divides(name, self.pe, self.n, "PE", "n (row length)")
        if self.in_type.bipolar:
            raise SpecError("softmax scores cannot be bipolar", where=name,
                            hint="scores are integers of at least 2 bits")
        if self.out_type.bipolar or self.out_type.signed:
            raise SpecError(f"softmax output type {self.out_type} is not unsigned", where=name,
                            hint="probabilities are non-negative: use e.g. uint8")
        if self.variant not in VARIANTS:
            raise SpecError(f"exponent unit variant {self.variant!r} is not supported",
                            where=name, hint="use 'single' (one table) or 'split' "
                            "(two small tables and a multiply)")
        if self.variant == "single":
            if self.exp_table is None:
                raise SpecError("the single-table variant needs exp_table", where=name,
                                hint="build it with exp_tables(scale, in_type)")
            object.__setattr__(self, "exp_table", _table(self.exp_table, name, "exp_table"))
        else:
            if self.exp_hi is None or self.exp_lo is None:
                raise SpecError("the split variant needs exp_hi and exp_lo", where=name,
                                hint="build them with exp_tables(..., variant='split')")
            for what in ("split_bits", "split_shift"):
                v = getattr(self, what)
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 32:
                    raise SpecError(f"{what} must be an integer in [0, 32], not {v!r}",
                                    where=name)
            object.__setattr__(self, "exp_hi", _table(self.exp_hi, name, "exp_hi"))
            object.__setattr__(self, "exp_lo", _table(self.exp_lo, name, "exp_lo"))
            if len(self.exp_lo) != 1 << self.split_bits:
                raise SpecError(f"exp_lo has {len(self.exp_lo)} entries, expected "
                                f"2**split_bits = {1 << self.split_bits}", where=name)
        if not isinstance(self.shift, int) or isinstance(self.shift, bool) or \
                not 0 <= self.shift <= 62:
            raise SpecError(f"shift must be an integer in [0, 62], not {self.shift!r}",
                            where=name)
        e = self.exp_values()
        if e[0] < 1:
            raise SpecError("the exponent of d = 0 (the row's maximum) is 0, so a row's "
                            "sum could be 0", where=name,
                            hint="the first table entry must be positive")
        if self.n * self.e_max > RECIP_NUMERATOR:
            raise SpecError(f"a row of {self.n} exponents up to {self.e_max} may sum past "
                            f"2**31 - 1, making the reciprocal 0", where=name,
                            hint="use a narrower exponent table")

    # ---- the exponent unit ---------------------------------------------------
    @property
    def d_max(self) -> int:
        return self.in_type.max - self.in_type.min

    @property
    def depth(self) -> int:
        """Distinct exponents: ``d`` is clipped to ``depth - 1``."""
        if self.variant == "single":
            return len(self.exp_table)
        return len(self.exp_hi) << self.split_bits

    def exp_values(self) -> np.ndarray:
        """``e`` for every reachable ``d`` up to the clip point (0 .. min(depth, d_max+1)-1)."""
        return exp_of(self, np.arange(min(self.depth, self.d_max + 1), dtype=np.int64))

    @property
    def e_max(self) -> int:
        return int(self.exp_values().max())

    @property
    def e_bits(self) -> int:
        return max(1, self.e_max.bit_length())

    @property
    def sum_bits(self) -> int:
        return (self.n * self.e_max).bit_length()

    @property
    def recip_bits(self) -> int:
        """Bits of ``R``: the sum is at least ``e(0)``, the maximum's own exponent."""
        return max(1, (RECIP_NUMERATOR // int(self.exp_values()[0])).bit_length())

    # ---- stream view ---------------------------------------------------------
    @property
    def frame_elems(self) -> int:
        return self.rows * self.n

    @property
    def words(self) -> int:
        return self.n // self.pe

    @property
    def recip_steps(self) -> int:
        """Quotient bits per cycle: the divider (plus its hand-over cycle) keeps up with a row."""
        return math.ceil(self.recip_bits / max(1, self.words - 2))

    def recip_cycles(self) -> int:
        return unit_cycles(self.recip_bits, self.recip_steps) + 1

    def row_cycles(self) -> int:
        # a row spends about 3W + recip_cycles() + 5 cycles in the ring of BANKS rows
        ring = (3 * self.words + self.recip_cycles() + 5) // BANKS
        return max(self.words, self.recip_cycles(), ring)

    def cycles(self) -> int:
        return self.rows * self.row_cycles()


def exp_of(spec: Spec, d: np.ndarray) -> np.ndarray:
    """The exponent unit: ``e`` for non-negative ``d`` (int64 in, int64 out)."""
    dd = np.minimum(np.asarray(d, dtype=np.int64), spec.depth - 1)
    if spec.variant == "single":
        return spec.exp_table[dd]
    k = spec.split_bits
    return (spec.exp_hi[dd >> k] * spec.exp_lo[dd & ((1 << k) - 1)]) >> spec.split_shift


def reference(spec: Spec, x: np.ndarray) -> np.ndarray:
    frames = x.shape[0]
    s = np.asarray(x, dtype=np.int64).reshape(frames, spec.rows, spec.n)
    e = exp_of(spec, s.max(axis=-1, keepdims=True) - s)
    recip = RECIP_NUMERATOR // e.sum(axis=-1, keepdims=True)  # both positive: a floor
    out = np.minimum((e * recip) >> spec.shift, spec.out_type.max)
    return out.reshape(frames, spec.out_elems)


def exp_tables(score_scale: float, in_type: IntType, *, variant: str = "single",
               depth: int = 256, width: int = 16, split_bits: int = 4) -> dict:
    """Spec fields of an exponent unit for scores of ``in_type`` with float ``score_scale``.

    ``e(d) ~ exp(-d * score_scale) * (2**width - 1)``, rounded half to even in float64.
    Single: ``T`` of ``min(depth, d_max + 1)`` entries of ``width`` bits. Split: ``H`` of
    ``ceil(min(depth, d_max + 1) / 2**split_bits)`` and ``L`` of ``2**split_bits``
    entries, both ``width`` bits, and ``m = width``.
    """
    if not (np.isfinite(score_scale) and score_scale > 0):
        raise SpecError(f"the score scale must be positive and finite, not {score_scale!r}")
    if variant not in VARIANTS:
        raise SpecError(f"exponent unit variant {variant!r} is not supported",
                        hint="use 'single' or 'split'")
    top = float((1 << width) - 1)
    reach = min(depth, in_type.max - in_type.min + 1)

    def quantized(d):
        return np.rint(np.exp(-np.asarray(d, dtype=np.float64) * score_scale) * top
                       ).astype(np.int64)

    if variant == "single":
        return {"variant": "single", "exp_table": quantized(np.arange(reach))}
    step = 1 << split_bits
    return {"variant": "split", "exp_hi": quantized(np.arange(-(-reach // step)) * step),
            "exp_lo": quantized(np.arange(step)), "split_bits": split_bits,
            "split_shift": width}


def output_shift(frac_bits: int) -> int:
    """``shift`` for outputs in steps of ``2**-frac_bits``: ``R ~ 2**31 / sum``."""
    return 31 - frac_bits


# ---- hardware ---------------------------------------------------------------------


class Component(wiring.Component):
    """The four-stage row ring of the module docstring."""

    def __init__(self, spec: Spec):
        self.spec = spec
        super().__init__({
            "i": In(lane_stream(spec.in_type, spec.pe)),
            "o": Out(lane_stream(spec.out_type, spec.pe)),
        })

    def _lookup(self, m: Module, name: str, d, enable):
        """Exponent of ``d`` (>= 0): read ports addressed now, the value a cycle later.

        Each lookup reads tables of its own (``name``_exp, or ``name``_exp_hi/_lo).
        """
        s = self.spec
        dd = Mux(d > s.depth - 1, s.depth - 1, d)

        def port(table: str, t: np.ndarray):
            bits = max(1, int(t.max()).bit_length())
            return rom_read_port(m, f"{name}_{table}", unsigned(bits), t.tolist())

        if s.variant == "single":
            p = port("exp", s.exp_table)
            m.d.comb += [p.addr.eq(dd), p.en.eq(enable)]
            return p.data
        hi, lo = port("exp_hi", s.exp_hi), port("exp_lo", s.exp_lo)
        k = s.split_bits
        m.d.comb += [hi.addr.eq(dd >> k), lo.addr.eq(dd[:k] if k else 0),
                     hi.en.eq(enable), lo.en.eq(enable)]
        return (hi.data * lo.data) >> s.split_shift

    def elaborate(self, platform):
        s = self.spec
        m = Module()
        pe, words = s.pe, s.words
        in_layout = lane_layout(s.in_type, pe)
        score = lane_shape(s.in_type)

        ring = BankRing(m, BANKS, STATES)
        row_max = [Signal(score, name=f"row_max_{b}") for b in range(BANKS)]
        row_sum = [Signal(s.sum_bits, name=f"row_sum_{b}") for b in range(BANKS)]
        recip = [Signal(s.recip_bits, name=f"recip_{b}") for b in range(BANKS)]

        m.submodules.rows = buf = Memory(shape=unsigned(pe * s.in_type.bits),
                                         depth=bank_depth(words, BANKS), init=[])

        def counter(name):
            return Signal(range(max(words, 2)), name=name)

        # ---- 1. write: store the row, running max ---------------------------------
        wa, ba = counter("write_word"), ring.counter("write_bank")
        accept = Signal()
        m.d.comb += [self.i.ready.eq(ring.is_(ba, "empty")),
                     accept.eq(self.i.valid & self.i.ready)]
        wport = buf.write_port()
        m.d.comb += [wport.addr.eq(memory_address(wa, ba, words)),
                     wport.data.eq(self.i.payload), wport.en.eq(accept)]
        lanes = [self.i.payload[p] for p in range(pe)]
        word_max = lanes[0]
        for v in lanes[1:]:
            word_max = Mux(v > word_max, v, word_max)
        running = Signal(score)
        new_max = Signal(score)
        m.d.comb += new_max.eq(Mux((wa == 0) | (word_max > running), word_max, running))
        row_done = accept & (wa == words - 1)
        with m.If(accept):
            m.d.sync += [running.eq(new_max), wa.eq(Mux(wa == words - 1, 0, wa + 1))]
        with m.If(row_done):
            m.d.sync += ba.eq(ring.step(ba))
        per_bank(m, row_max, row_done, ba, new_max)
        ring.move(row_done, ba, "written")

        # ---- 2. sum: read back, exponents, add (never stalls) ---------------------
        wb, bb = counter("sum_word"), ring.counter("sum_bank")
        issue_b = Signal()
        m.d.comb += issue_b.eq(ring.is_(bb, "written"))
        with m.If(issue_b):
            m.d.sync += wb.eq(Mux(wb == words - 1, 0, wb + 1))
            with m.If(wb == words - 1):
                m.d.sync += bb.eq(ring.step(bb))
        rport_b = buf.read_port(domain="sync")
        m.d.comb += [rport_b.addr.eq(memory_address(wb, bb, words)), rport_b.en.eq(1)]
        vb1, first_b1, last_b1 = Signal(), Signal(), Signal()
        bank_b1 = ring.counter("sum_bank1")
        m.d.sync += [vb1.eq(issue_b), first_b1.eq(wb == 0), last_b1.eq(wb == words - 1),
                     bank_b1.eq(bb)]
        scores_b = in_layout(rport_b.data)
        max_b = select(m, row_max, bank_b1, "max_b")
        exps_b = [self._lookup(m, f"b{p}", max_b - scores_b[p], 1) for p in range(pe)]
        vb2, first_b2, last_b2 = Signal(), Signal(), Signal()
        bank_b2 = ring.counter("sum_bank2")
        m.d.sync += [vb2.eq(vb1), first_b2.eq(first_b1), last_b2.eq(last_b1),
                     bank_b2.eq(bank_b1)]
        acc = Signal(s.sum_bits)
        acc_next = Signal(s.sum_bits)
        m.d.comb += acc_next.eq(Mux(first_b2, 0, acc) + adder_tree(exps_b))
        with m.If(vb2):
            m.d.sync += acc.eq(acc_next)
        per_bank(m, row_sum, vb2 & last_b2, bank_b2, acc_next)
        ring.move(vb2 & last_b2, bank_b2, "summed")

        # ---- 3. reciprocal: one division per row ----------------------------------
        m.submodules.divider = div = ConstantDivider(RECIP_NUMERATOR, s.sum_bits,
                                                     s.recip_bits, s.recip_steps)
        bd = ring.counter("recip_bank")
        m.d.comb += [div.start.eq(ring.is_(bd, "summed") & ~div.busy & ~div.done),
                     div.divisor.eq(select(m, row_sum, bd, "divisor"))]
        with m.If(div.done):
            m.d.sync += bd.eq(ring.step(bd))
        per_bank(m, recip, div.done, bd, div.result)
        ring.move(div.done, bd, "divided")

        # ---- 4. output: read again, e * R >> shift (stall-all pipeline) -----------
        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)
        wc, bc = counter("out_word"), ring.counter("out_bank")
        issue_c = Signal()
        m.d.comb += issue_c.eq(advance & ring.is_(bc, "divided"))
        with m.If(issue_c):
            m.d.sync += wc.eq(Mux(wc == words - 1, 0, wc + 1))
            with m.If(wc == words - 1):
                m.d.sync += bc.eq(ring.step(bc))
        rport_c = buf.read_port(domain="sync")
        m.d.comb += [rport_c.addr.eq(memory_address(wc, bc, words)), rport_c.en.eq(advance)]
        vc1, last_c1, vc2, last_c2 = Signal(), Signal(), Signal(), Signal()
        bank_c1, bank_c2 = ring.counter("out_bank1"), ring.counter("out_bank2")
        with m.If(advance):
            m.d.sync += [vc1.eq(issue_c), last_c1.eq(wc == words - 1), bank_c1.eq(bc),
                         vc2.eq(vc1), last_c2.eq(last_c1), bank_c2.eq(bank_c1)]
        scores_c = in_layout(rport_c.data)
        max_c = select(m, row_max, bank_c1, "max_c")
        exps_c = [self._lookup(m, f"c{p}", max_c - scores_c[p], advance)
                  for p in range(pe)]
        r_c = select(m, recip, bank_c2, "recip_c")
        y = Signal(lane_layout(s.out_type, pe))
        top = s.out_type.max
        for p in range(pe):
            scaled = (exps_c[p] * r_c) >> s.shift
            m.d.comb += y[p].eq(Mux(scaled > top, top, scaled))
        with m.If(advance):
            m.d.sync += self.o.valid.eq(vc2)
            with m.If(vc2):
                m.d.sync += self.o.payload.eq(y)
        # the row's last word is in the output register: no stage reads its bank now
        ring.move(advance & vc2 & last_c2, bank_c2, "empty")
        return m


def fold_options(spec: Spec) -> list[dict]:
    return [{"pe": pe} for pe in divisors(spec.n)]


def fill_words(spec: Spec) -> int:
    """Every bank of the ring may hold a row before the first of them leaves."""
    return BANKS * spec.words + 2


def _exp_unit_cost(depth_hi: int, hi_bits: int, lo_depth: int, lo_bits: int,
                   family: str, tables: tuple | None = None) -> Cost:
    """One lookup: a table (or two tables and a multiply) of the given shape; with
    ``tables`` (their contents: the variant built) the ROMs are costed from them."""
    def rom(i: int, bits: int, depth: int) -> tuple[int, float]:
        if tables is not None:
            return table.rom_cost(tables[i], family)
        return memory_cost(bits, depth, family, writable=False)

    lut, bram = rom(0, hi_bits, depth_hi)
    dsp = 0
    if lo_depth:
        ll, lb = rom(1, lo_bits, lo_depth)
        ml, md = mult_cost(hi_bits, lo_bits, family)
        lut, bram, dsp = lut + ll + ml, bram + lb, md
    lut += compare_luts(max(1, (depth_hi * max(1, lo_depth)).bit_length()), family)  # clip
    return Cost(cycles=0, lut=int(lut), ff=0, bram18=bram, dsp=dsp)


def exp_unit_costs(spec: Spec, family: str) -> dict[str, Cost]:
    """The exponent unit (one lookup port) in each variant, for this spec's depth and
    exponent width; the split uses ``k = ceil(log2(depth) / 2)`` unless the spec is split."""
    s = spec
    width = s.e_bits
    if s.variant == "split":
        k = s.split_bits
        hi_bits = max(1, int(s.exp_hi.max()).bit_length())
        lo_bits = max(1, int(s.exp_lo.max()).bit_length())
    else:
        k = math.ceil(max(1, (s.depth - 1).bit_length()) / 2)
        hi_bits = lo_bits = width
    built = (s.exp_table,) if s.variant == "single" else (s.exp_hi, s.exp_lo)
    return {
        "single": _exp_unit_cost(s.depth, width, 0, 0, family,
                                 built if s.variant == "single" else None),
        "split": _exp_unit_cost(-(-s.depth // (1 << k)), hi_bits, 1 << k, lo_bits, family,
                                built if s.variant == "split" else None),
    }


def exp_unit_report(spec: Spec, family: str) -> dict:
    """The report's view of the exponent unit: the variant built, and both variants'
    resources (one lookup port) for this spec's table depth and exponent width."""
    costs = exp_unit_costs(spec, family)
    return {"node": spec.name, "variant": spec.variant, "depth": spec.depth,
            "exp_bits": spec.e_bits,
            "choices": {v: {"lut": c.lut, "ff": c.ff, "bram18": c.bram18, "dsp": c.dsp}
                        for v, c in costs.items()}}


def estimate(spec: Spec, family: str) -> Cost:
    s = spec
    pe, ib = s.pe, s.in_type.bits
    unit = exp_unit_costs(s, family)[s.variant]
    lookups = 2 * pe  # the sum and output stages each look up every score
    lut, bram, dsp = unit.lut * lookups, unit.bram18 * lookups, unit.dsp * lookups
    ml, mb = memory_cost(pe * ib, bank_depth(s.words, BANKS), family)
    lut, bram = lut + 2 * ml, bram + 2 * mb  # two read ports: two copies
    lut += 2 * pe * (adder_luts(ib + 1, family))  # d = max - s in two stages
    lut += pe * (compare_luts(ib, family) + mux_luts(ib, 2, family))  # running max
    lut += pe * adder_luts(s.sum_bits, family)  # sum tree + accumulator
    lut += s.recip_steps * adder_luts(s.sum_bits + 1, family) * 2  # divider steps
    ol, od = mult_cost(s.e_bits, s.recip_bits, family)
    lut, dsp = lut + pe * (ol + compare_luts(s.out_type.bits, family)), dsp + pe * od
    lut += 3 * BANKS * mux_luts(max(ib, s.sum_bits, s.recip_bits), 2, family) + 40  # control
    ff = BANKS * (ib + s.sum_bits + s.recip_bits + 2) + 2 * s.sum_bits + s.recip_bits
    ff += pe * (2 * s.e_bits + s.out_type.bits + ib) + 6 * max(1, s.words.bit_length()) + 20
    return Cost(cycles=s.cycles(), lut=int(lut), ff=int(ff), bram18=bram, dsp=dsp)
