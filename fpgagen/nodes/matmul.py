"""Matmul: products of two matrices that both arrive on the stream (attention's QKᵀ, AV).

Integer function. A frame is ``heads`` groups; each group carries, in this order,

1. the buffered operand ``B``: ``cols x inner`` elements (``transpose_b``, e.g. K for
   ``Q Kᵀ``) or ``inner x cols`` elements (not ``transpose_b``, e.g. V for ``A V``),
   row-major as the matrix is written;
2. ``rows`` rows of ``A`` (``rows x inner``, row-major: Q, or the attention weights);

and the output is, group after group, the ``rows x cols`` matrix (row-major, exact)::

    Y = A @ B.T   (transpose_b)          Y = A @ B   (otherwise)

Both operands have the stream's ``in_type``; ``out_type`` must hold the exact
accumulator range ``inner * [min product, max product]`` (:func:`acc_type`).

Folding: ``lanes`` elements per input word. With ``transpose_b``, ``lanes`` consecutive
elements of an A row meet the ``lanes`` matching elements of a B row: one dot product
step per cycle, ``cols * inner / lanes`` steps per A row, one output element per word.
Otherwise one A element multiplies ``lanes`` consecutive columns of a B row: ``cols /
lanes * inner`` steps per A row, ``lanes`` output columns per word.

Hardware: B is written into a ``Memory`` in arrival order (one word per address), the
current A row into a row buffer; then the row's steps issue one per cycle into a
stall-all pipeline (memory reads -> products -> accumulate and emit) while the input
waits. Input and computation take turns, so a frame takes
``heads * (B words + rows * (A row words + steps per row))`` cycles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..dtypes import IntType, smallest_type
from ..errors import SpecError
from ..estimate import adder_luts, memory_cost, mult_cost, mux_luts
from ..hw.primitives import adder_tree
from .base import (
    Cost,
    check_divides,
    check_positive,
    divisors,
    lane_layout,
    lane_shape,
    lane_stream,
)

KIND = "matmul"


def acc_bounds(in_type: IntType, inner: int) -> tuple[int, int]:
    """Least and greatest sum of ``inner`` products of two ``in_type`` values."""
    ends = (in_type.min, in_type.max)
    products = [a * b for a in ends for b in ends]
    return inner * min(products), inner * max(products)


def acc_type(in_type: IntType, inner: int) -> IntType:
    """The narrowest type holding every such sum."""
    return smallest_type(*acc_bounds(in_type, inner))


@dataclass(frozen=True)
class Spec:
    name: str
    rows: int  # rows of A per head
    inner: int  # the summed dimension
    cols: int  # output columns
    in_type: IntType
    out_type: IntType
    transpose_b: bool = True  # Y = A @ B.T with B as cols x inner; else B is inner x cols
    heads: int = 1
    lanes: int = 1

    def __post_init__(self):
        n = self.name
        for what in ("rows", "inner", "cols", "heads", "lanes"):
            check_positive(n, getattr(self, what), what)
        if not isinstance(self.transpose_b, bool):
            raise SpecError(f"transpose_b must be True or False, not {self.transpose_b!r}",
                            where=n)
        check_divides(n, self.lanes, self.inner, "lanes", "inner")
        if not self.transpose_b:
            check_divides(n, self.lanes, self.cols, "lanes", "cols")
        for side, t in (("input", self.in_type), ("output", self.out_type)):
            if t.bipolar:
                raise SpecError(f"matmul {side} type cannot be bipolar", where=n,
                                hint="carry bipolar operands as int2")
        lo, hi = acc_bounds(self.in_type, self.inner)
        if not self.out_type.contains([lo, hi]):
            raise SpecError(f"sums of {self.inner} products of {self.in_type} span "
                            f"[{lo}, {hi}], which does not fit the output type "
                            f"{self.out_type}", where=n,
                            hint=f"use {acc_type(self.in_type, self.inner)} or wider")

    # ---- stream view ---------------------------------------------------------
    @property
    def in_elems(self) -> int:
        return self.heads * (self.cols + self.rows) * self.inner

    @property
    def out_elems(self) -> int:
        return self.heads * self.rows * self.cols

    @property
    def in_lanes(self) -> int:
        return self.lanes

    @property
    def out_lanes(self) -> int:
        return 1 if self.transpose_b else self.lanes

    @property
    def b_words(self) -> int:
        return self.cols * self.inner // self.lanes

    @property
    def a_words(self) -> int:
        return self.inner // self.lanes

    @property
    def groups(self) -> int:
        """Output words per A row."""
        return self.cols // self.out_lanes

    @property
    def steps(self) -> int:
        """Accumulation steps per output word."""
        return self.a_words if self.transpose_b else self.inner

    def cycles(self) -> int:
        return self.heads * (self.b_words + self.rows * (self.a_words
                                                         + self.groups * self.steps))


def reference(spec: Spec, x: np.ndarray) -> np.ndarray:
    s = spec
    frames = x.shape[0]
    v = np.asarray(x, dtype=np.int64).reshape(frames, s.heads, -1)
    split = s.cols * s.inner
    b, a = v[..., :split], v[..., split:].reshape(frames, s.heads, s.rows, s.inner)
    if s.transpose_b:
        b = b.reshape(frames, s.heads, s.cols, s.inner).swapaxes(-1, -2)
    else:
        b = b.reshape(frames, s.heads, s.inner, s.cols)
    return (a @ b).reshape(frames, s.out_elems)


# ---- hardware ---------------------------------------------------------------------


def _counter(n: int, name: str) -> Signal:
    return Signal(range(max(n, 2)), name=name)


class Component(wiring.Component):
    """Load B, then per A row: load it, issue its steps (see the module docstring).

    The step pipeline (issue -> memory reads (S1) -> products (S2) -> accumulate and
    output register) advances only when the output register can take a value.
    """

    def __init__(self, spec: Spec):
        self.spec = spec
        super().__init__({
            "i": In(lane_stream(spec.in_type, spec.lanes)),
            "o": Out(lane_stream(spec.out_type, spec.out_lanes)),
        })

    def elaborate(self, platform):
        s = self.spec
        m = Module()
        lanes, out_lanes = s.lanes, s.out_lanes
        word_bits = lanes * s.in_type.bits
        in_layout = lane_layout(s.in_type, lanes)

        m.submodules.b = bmem = Memory(shape=unsigned(word_bits), depth=s.b_words, init=[])
        m.submodules.a_row = amem = Memory(shape=unsigned(word_bits), depth=s.a_words,
                                           init=[])
        bw, aw = bmem.write_port(), amem.write_port()
        br, ar = bmem.read_port(domain="sync"), amem.read_port(domain="sync")

        # ---- input: B words, then an A row; computing blocks the input ------------
        load_b, load_a = Signal(init=1), Signal()  # neither: computing a row
        loaded = _counter(max(s.b_words, s.a_words), "loaded")
        row = _counter(s.rows, "row")
        accept = Signal()
        m.d.comb += [self.i.ready.eq(load_b | load_a), accept.eq(self.i.valid & self.i.ready),
                     bw.addr.eq(loaded), bw.data.eq(self.i.payload), bw.en.eq(accept & load_b),
                     aw.addr.eq(loaded), aw.data.eq(self.i.payload), aw.en.eq(accept & load_a)]
        b_done = accept & load_b & (loaded == s.b_words - 1)
        a_done = accept & load_a & (loaded == s.a_words - 1)
        with m.If(accept):
            m.d.sync += loaded.eq(Mux(b_done | a_done, 0, loaded + 1))
        with m.If(b_done):
            m.d.sync += [load_b.eq(0), load_a.eq(1)]
        with m.If(a_done):
            m.d.sync += load_a.eq(0)

        # ---- issue: (group, step) of the row -------------------------------------
        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)
        group, step = _counter(s.groups, "group"), _counter(s.steps, "step")
        baddr = _counter(s.b_words, "b_addr")
        lane = _counter(lanes, "a_lane")  # which A element (not transpose_b)
        aaddr = _counter(s.a_words, "a_addr")
        issue = Signal()
        m.d.comb += [issue.eq(advance & ~load_b & ~load_a),
                     br.addr.eq(baddr), br.en.eq(advance),
                     ar.addr.eq(aaddr), ar.en.eq(advance)]
        last_step, last_group = step == s.steps - 1, group == s.groups - 1
        with m.If(issue):
            m.d.sync += step.eq(Mux(last_step, 0, step + 1))
            with m.If(last_step):
                m.d.sync += group.eq(Mux(last_group, 0, group + 1))
            if s.transpose_b:  # B row-major cols x inner: addresses in order
                m.d.sync += [baddr.eq(Mux(last_step & last_group, 0, baddr + 1)),
                             aaddr.eq(Mux(last_step, 0, aaddr + 1))]
            else:  # B inner x cols: address step * groups + group
                m.d.sync += baddr.eq(Mux(last_step, Mux(last_group, 0, group + 1),
                                         baddr + s.groups))
                m.d.sync += lane.eq(Mux(lane == lanes - 1, 0, lane + 1))
                with m.If(lane == lanes - 1):
                    m.d.sync += aaddr.eq(Mux(aaddr == s.a_words - 1, 0, aaddr + 1))
            with m.If(last_step & last_group):  # the row is issued: next input
                m.d.sync += row.eq(Mux(row == s.rows - 1, 0, row + 1))
                with m.If(row == s.rows - 1):
                    m.d.sync += load_b.eq(1)
                with m.Else():
                    m.d.sync += load_a.eq(1)

        # ---- S1: operands read; products ------------------------------------------
        v1, first1, last1 = Signal(), Signal(), Signal()
        lane1 = _counter(lanes, "a_lane1")
        with m.If(advance):
            m.d.sync += [v1.eq(issue), first1.eq(step == 0), last1.eq(last_step),
                         lane1.eq(lane)]
        b1, a1 = in_layout(br.data), in_layout(ar.data)
        acc_shape = lane_shape(acc_type(s.in_type, s.inner))
        if s.transpose_b:
            terms = [adder_tree([a1[p] * b1[p] for p in range(lanes)])]
        else:
            a_elem = a1[0]
            for p in range(1, lanes):
                a_elem = Mux(lane1 == p, a1[p], a_elem)
            terms = [a_elem * b1[p] for p in range(lanes)]

        # ---- S2: accumulate; the row's last step goes out --------------------------
        v2, first2, last2 = Signal(), Signal(), Signal()
        term2 = [Signal(acc_shape, name=f"term2_{p}") for p in range(out_lanes)]
        acc = [Signal(acc_shape, name=f"acc_{p}") for p in range(out_lanes)]
        with m.If(advance):
            m.d.sync += [v2.eq(v1), first2.eq(first1), last2.eq(last1)]
            m.d.sync += [t.eq(v) for t, v in zip(term2, terms)]
        y = Signal(lane_layout(s.out_type, out_lanes))
        for p in range(out_lanes):
            acc_next = Signal(acc_shape, name=f"acc_next_{p}")
            m.d.comb += [acc_next.eq(Mux(first2, 0, acc[p]) + term2[p]), y[p].eq(acc_next)]
            with m.If(advance & v2):
                m.d.sync += acc[p].eq(acc_next)
        with m.If(advance):
            m.d.sync += self.o.valid.eq(v2 & last2)
            with m.If(v2 & last2):
                m.d.sync += self.o.payload.eq(y)
        return m


def fold_options(spec: Spec) -> list[dict]:
    legal = [d for d in divisors(spec.inner) if spec.transpose_b or spec.cols % d == 0]
    return [{"lanes": d} for d in legal]


def fill_words(spec: Spec) -> int:
    """The whole buffered operand B and one row of A, then the pipeline registers."""
    return spec.b_words + spec.a_words + 3


def estimate(spec: Spec, family: str) -> Cost:
    s = spec
    ib, lanes = s.in_type.bits, s.lanes
    acc_bits = acc_type(s.in_type, s.inner).bits
    ml, md = mult_cost(ib, ib, family)
    lut, dsp = lanes * ml, lanes * md
    if s.transpose_b:
        lut += (lanes - 1) * adder_luts(acc_bits, family) + adder_luts(acc_bits, family)
    else:
        lut += mux_luts(ib, lanes, family) + lanes * adder_luts(acc_bits, family)
    bl, bb = memory_cost(lanes * ib, s.b_words, family)
    al, ab = memory_cost(lanes * ib, s.a_words, family)
    lut += bl + al + 30  # control
    ff = 2 * s.out_lanes * acc_bits + s.out_lanes * s.out_type.bits + lanes * ib
    ff += 2 * max(1, s.b_words.bit_length()) + 3 * max(1, s.inner.bit_length()) + 8
    return Cost(cycles=s.cycles(), lut=int(lut), ff=int(ff), bram18=bb + ab, dsp=dsp)
