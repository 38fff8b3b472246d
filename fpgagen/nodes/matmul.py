"""Matmul: per-head products of two token streams (attention's QKᵀ and AV).

Integer function. Two input ports carry token streams, head-major inside each token:

- port ``b``: ``n_b`` tokens of ``heads * d_b`` elements; elements
  ``[h*d_b, (h+1)*d_b)`` of token ``j`` are row ``j`` of head ``h``'s matrix ``B_h``
  (``n_b x d_b``: K, or V);
- port ``a``: ``rows`` tokens of ``heads * inner`` elements, likewise row ``r`` of
  ``A_h`` (``rows x inner``: Q, or the attention weights).

Per head::

    Y_h = A_h @ B_h.T    transpose_b (QKᵀ):  inner = d_b, cols = n_b
    Y_h = A_h @ B_h      otherwise (AV):     inner = n_b, cols = d_b

and port ``o`` carries, per a-token, ``heads * cols`` elements, head-major
(``[Y_0[r, :], Y_1[r, :], ...]``): splitting into heads and merging them back is this
layout. ``a_type`` and ``b_type`` may differ; ``out_type`` is the exact range of the
sums (:func:`acc_bounds`); a following thresholding node requantizes.

Folding: ``pe`` output columns per word and ``simd`` summed elements per step, so
``pe * simd`` multipliers. Port ``a`` has ``simd`` elements per word, port ``o``
``pe``, port ``b`` ``simd`` (transpose_b) or ``pe`` (otherwise): the d_b side of B.

Hardware: all of one frame's B is written into a memory before its first product;
the memory has ``banks`` word lanes (``pe`` b-tokens with transpose_b, else ``simd``)
so that one read gives the ``pe x simd`` B elements of a step. A-tokens go into a
two-slot buffer, so the next token loads while the current one is computed; each
a-token takes ``steps = heads * cols/pe * inner/simd`` steps through a stall-all
pipeline (memory reads -> products -> accumulate and output register). A frame takes
``b_words + rows * steps`` cycles; with ``pingpong`` B has two buffers, so frame
n+1's B loads while frame n's rows are computed: ``max(b_words, rows * steps)``.

Port ``a`` waits while B is loaded: when both ports come from one fork, the FIFO in
front of ``a`` holds a whole frame of A (two with ``pingpong``, to keep the overlap);
see :func:`input_lead_words` and ``passes/fifos.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..dtypes import MAX_BITS, IntType, smallest_type
from ..errors import SpecError
from ..estimate import (
    accumulated_product_luts,
    adder_luts,
    adder_tree_luts,
    dsp_sum_luts,
    memory_cost,
    mult_cost,
)
from ..hw.primitives import adder_tree
from .base import (
    Cost,
    Port,
    check_divides,
    check_positive,
    divisors,
    lane_layout,
    lane_shape,
    lane_stream,
    lane_value,
)

KIND = "matmul"
PIPELINE_WORDS = 3  # read, product and output registers


def acc_bounds(a_type: IntType, b_type: IntType, inner: int) -> tuple[int, int]:
    """Least and greatest sum of ``inner`` products of an ``a_type`` and a ``b_type``."""
    products = [a * b for a in (a_type.min, a_type.max) for b in (b_type.min, b_type.max)]
    return inner * min(products), inner * max(products)


def acc_type(a_type: IntType, b_type: IntType, inner: int) -> IntType:
    """The narrowest type holding every such sum (the output type)."""
    return smallest_type(*acc_bounds(a_type, b_type, inner))


def _check_bool(name: str, value, what: str):
    if not isinstance(value, bool):
        raise SpecError(f"{what} must be True or False, not {value!r}", where=name)


@dataclass(frozen=True)
class Spec:
    name: str
    rows: int  # a-tokens per frame
    n_b: int  # b-tokens per frame
    d_b: int  # elements of a b-token per head
    a_type: IntType
    b_type: IntType
    transpose_b: bool = True  # Y_h = A_h @ B_h.T (QKᵀ); else A_h @ B_h (AV)
    heads: int = 1
    pe: int = 1  # output columns per word
    simd: int = 1  # summed elements per step
    pingpong: bool = False  # two B buffers: load frame n+1's B during frame n

    in_ports = ("a", "b")

    def __post_init__(self):
        n = self.name
        for what in ("rows", "n_b", "d_b", "heads", "pe", "simd"):
            check_positive(n, getattr(self, what), what)
        _check_bool(n, self.transpose_b, "transpose_b")
        _check_bool(n, self.pingpong, "pingpong")
        for what in ("a_type", "b_type"):
            if not isinstance(getattr(self, what), IntType):
                raise SpecError(f"{what} must be an IntType, not {getattr(self, what)!r}",
                                where=n)
        check_divides(n, self.pe, self.cols, "pe",
                      "cols (n_b with transpose_b)" if self.transpose_b else "cols (d_b)")
        check_divides(n, self.simd, self.inner, "simd",
                      "inner (d_b with transpose_b)" if self.transpose_b else "inner (n_b)")
        if self.out_type.bits > MAX_BITS:
            lo, hi = acc_bounds(self.a_type, self.b_type, self.inner)
            raise SpecError(f"sums of {self.inner} products of {self.a_type} and "
                            f"{self.b_type} span [{lo}, {hi}]: {self.out_type.bits} bits, "
                            f"more than the {MAX_BITS} supported on chip", where=n,
                            hint="narrow the operand types")

    # ---- shapes ----------------------------------------------------------------
    @property
    def inner(self) -> int:
        """The summed dimension per head."""
        return self.d_b if self.transpose_b else self.n_b

    @property
    def cols(self) -> int:
        """Output columns per head."""
        return self.n_b if self.transpose_b else self.d_b

    @property
    def out_type(self) -> IntType:
        return acc_type(self.a_type, self.b_type, self.inner)

    # ---- stream view -----------------------------------------------------------
    def port(self, name: str) -> Port:
        if name == "a":
            return Port(self.a_type, self.simd, self.rows * self.heads * self.inner)
        if name == "b":
            return Port(self.b_type, self.b_lanes, self.n_b * self.heads * self.d_b)
        if name == "o":
            return Port(self.out_type, self.pe, self.out_elems)
        raise KeyError(f"matmul has no port {name!r}")

    @property
    def b_lanes(self) -> int:
        """B elements per word: the d_b side of a step's B elements."""
        return self.simd if self.transpose_b else self.pe

    @property
    def banks(self) -> int:
        """B-tokens side by side in one memory word: the n_b side of a step."""
        return self.pe if self.transpose_b else self.simd

    @property
    def in_lanes(self) -> int:  # port a (report columns)
        return self.simd

    @property
    def in_elems(self) -> int:
        return self.port("a").elems

    @property
    def out_lanes(self) -> int:
        return self.pe

    @property
    def out_elems(self) -> int:
        return self.rows * self.heads * self.cols

    @property
    def token_words(self) -> int:
        """Words of one a-token."""
        return self.heads * self.inner // self.simd

    @property
    def a_words(self) -> int:
        return self.rows * self.token_words

    @property
    def b_words(self) -> int:
        return self.n_b * self.heads * self.d_b // self.b_lanes

    @property
    def b_depth(self) -> int:
        """Memory words of one frame's B (``banks`` b-tokens side by side)."""
        return self.b_words // self.banks

    @property
    def steps(self) -> int:
        """Pipeline steps (memory reads) per a-token."""
        return self.heads * (self.cols // self.pe) * (self.inner // self.simd)

    def cycles(self) -> int:
        compute = self.rows * self.steps
        return max(self.b_words, compute) if self.pingpong else self.b_words + compute


def reference(spec: Spec, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    s = spec
    a = np.asarray(a, dtype=np.int64).reshape(-1, s.rows, s.heads, s.inner).swapaxes(1, 2)
    b = np.asarray(b, dtype=np.int64).reshape(-1, s.n_b, s.heads, s.d_b).swapaxes(1, 2)
    y = a @ (b.swapaxes(-1, -2) if s.transpose_b else b)  # (frames, heads, rows, cols)
    return y.swapaxes(1, 2).reshape(-1, s.out_elems)


# ---- hardware ---------------------------------------------------------------------


def _counter(n: int, name: str) -> Signal:
    return Signal(range(max(n, 2)), name=name)


def _wrap(m: Module, counter: Signal, n: int, when) -> Signal:
    """Count ``counter`` modulo ``n`` when ``when``; returns 'at the last value'."""
    last = Signal(name=f"{counter.name}_last")
    m.d.comb += last.eq(counter == n - 1)
    with m.If(when):
        m.d.sync += counter.eq(Mux(last, 0, counter + 1))
    return last


class _Slots:
    """Buffers of a memory that a writer fills and a reader drains in turn.

    ``full`` has one bit per slot. The writer fills slot ``write``; ``filled`` marks it
    full and moves on. The reader works on slot ``read`` while it is full; ``drained``
    marks it empty and moves on. A slot is never written while full nor read while
    empty, so one memory serves both without conflicts.
    """

    def __init__(self, m: Module, slots: int, name: str):
        self.m, self.slots = m, slots
        self.full = Signal(slots, name=f"{name}_full")
        self.write = _counter(slots, f"{name}_write")
        self.read = _counter(slots, f"{name}_read")

    def free_to_write(self):
        return ~self.full.bit_select(self.write, 1)

    def ready_to_read(self):
        return self.full.bit_select(self.read, 1)

    def step(self, filled, drained):
        m, n = self.m, self.slots
        set_bits = Cat(*(filled & (self.write == k) for k in range(n)))
        clear_bits = Cat(*(drained & (self.read == k) for k in range(n)))
        m.d.sync += self.full.eq((self.full | set_bits) & ~clear_bits)
        _wrap(m, self.write, n, filled)
        _wrap(m, self.read, n, drained)


class Component(wiring.Component):
    """B loader, a-token loader and the step pipeline (see the module docstring)."""

    def __init__(self, spec: Spec):
        self.spec = spec
        super().__init__({
            "a": In(lane_stream(spec.a_type, spec.simd)),
            "b": In(lane_stream(spec.b_type, spec.b_lanes)),
            "o": Out(lane_stream(spec.out_type, spec.pe)),
        })

    def elaborate(self, platform):
        s = self.spec
        m = Module()
        b_slots = _Slots(m, 2 if s.pingpong else 1, "b")
        a_slots = _Slots(m, 2, "a")
        b_read, b_filled = self._b_buffer(m, b_slots)
        a_read, a_filled = self._a_buffer(m, a_slots)

        # ---- issue: a-token steps in output order (head, column group, inner chunk) --
        advance = Signal()
        issue = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready),
                     issue.eq(advance & a_slots.ready_to_read() & b_slots.ready_to_read()),
                     b_read.en.eq(advance), a_read.en.eq(advance)]
        chunks, groups = s.inner // s.simd, s.cols // s.pe
        k, g, h, r = (_counter(n, name) for n, name in
                      ((chunks, "chunk"), (groups, "group"), (s.heads, "head"), (s.rows, "row")))
        last_k = _wrap(m, k, chunks, issue)
        last_g = _wrap(m, g, groups, issue & last_k)
        last_h = _wrap(m, h, s.heads, issue & last_k & last_g)
        token_done = issue & last_k & last_g & last_h
        last_r = _wrap(m, r, s.rows, token_done)
        frame_done = token_done & last_r
        a_slots.step(a_filled, token_done)
        b_slots.step(b_filled, frame_done)

        # A address: slot * token_words + h * chunks + k
        a_head = _counter(2 * s.token_words, "a_head")
        a_addr = _counter(2 * s.token_words, "a_addr")
        m.d.comb += a_read.addr.eq(a_addr)
        # B address: buffer offset + g * g_stride + h * h_stride + k * k_stride
        if s.transpose_b:
            k_stride, g_stride, h_stride = 1, s.heads * chunks, chunks
        else:
            k_stride, g_stride, h_stride = s.heads * groups, 1, groups
        depth = s.b_depth
        b_head, b_group, b_addr = (_counter(b_slots.slots * depth, f"b_{what}")
                                   for what in ("head", "group", "addr"))
        m.d.comb += b_read.addr.eq(b_addr)
        with m.If(issue):
            with m.If(~last_k):
                m.d.sync += [a_addr.eq(a_addr + 1), b_addr.eq(b_addr + k_stride)]
            with m.Elif(~last_g):
                m.d.sync += [a_addr.eq(a_head),
                             b_group.eq(b_group + g_stride), b_addr.eq(b_group + g_stride)]
            with m.Elif(~last_h):
                m.d.sync += [a_head.eq(a_head + chunks), a_addr.eq(a_head + chunks),
                             b_head.eq(b_head + h_stride), b_group.eq(b_head + h_stride),
                             b_addr.eq(b_head + h_stride)]
            with m.Else():  # the token is done: the other A slot; B again or the next
                next_a = Mux(a_slots.read == 0, s.token_words, 0)
                m.d.sync += [a_head.eq(next_a), a_addr.eq(next_a)]
                restart = 0
                if b_slots.slots > 1:
                    this_b = Mux(b_slots.read == 0, 0, depth)
                    other_b = Mux(b_slots.read == 0, depth, 0)
                    restart = Mux(last_r, other_b, this_b)
                m.d.sync += [b_head.eq(restart), b_group.eq(restart), b_addr.eq(restart)]

        # ---- S1: operands read; products ------------------------------------------
        v1, first1, last1 = Signal(), Signal(), Signal()
        with m.If(advance):
            m.d.sync += [v1.eq(issue), first1.eq(k == 0), last1.eq(last_k)]
        a_elems = lane_layout(s.a_type, s.simd)(a_read.data)
        b_elems = lane_layout(s.b_type, s.banks * s.b_lanes)(b_read.data)

        def b_elem(p: int, q: int):  # B element of output column p, summed index q
            lane = p * s.simd + q if s.transpose_b else q * s.pe + p
            return lane_value(b_elems[lane], s.b_type)

        terms = [adder_tree([lane_value(a_elems[q], s.a_type) * b_elem(p, q)
                             for q in range(s.simd)]) for p in range(s.pe)]

        # ---- S2: accumulate; a column group's last chunk goes out -----------------
        acc_shape = lane_shape(s.out_type)
        v2, first2, last2 = Signal(), Signal(), Signal()
        term2 = [Signal(acc_shape, name=f"term2_{p}") for p in range(s.pe)]
        acc = [Signal(acc_shape, name=f"acc_{p}") for p in range(s.pe)]
        with m.If(advance):
            m.d.sync += [v2.eq(v1), first2.eq(first1), last2.eq(last1)]
            m.d.sync += [t.eq(v) for t, v in zip(term2, terms)]
        y = Signal(lane_layout(s.out_type, s.pe))
        for p in range(s.pe):
            acc_next = Signal(acc_shape, name=f"acc_next_{p}")
            m.d.comb += [acc_next.eq(Mux(first2, 0, acc[p]) + term2[p]), y[p].eq(acc_next)]
            with m.If(advance & v2):
                m.d.sync += acc[p].eq(acc_next)
        with m.If(advance):
            m.d.sync += self.o.valid.eq(v2 & last2)
            with m.If(v2 & last2):
                m.d.sync += self.o.payload.eq(y)
        return m

    def _b_buffer(self, m: Module, slots: _Slots):
        """Writes b-tokens into the B memory: token ``j`` goes to lane ``j % banks`` of
        the words from ``(j // banks) * token words`` on. Returns the read port and
        'the frame's last word is written'."""
        s = self.spec
        depth, token_words = s.b_depth, s.heads * s.d_b // s.b_lanes
        lane_bits = s.b_lanes * s.b_type.bits
        m.submodules.b_memory = mem = Memory(shape=unsigned(s.banks * lane_bits),
                                             depth=slots.slots * depth, init=[])
        write = mem.write_port(granularity=lane_bits)
        word, bank = _counter(token_words, "b_word"), _counter(s.banks, "b_bank")
        group_start = _counter(slots.slots * depth, "b_group_start")
        addr = _counter(slots.slots * depth, "b_write_addr")
        accept = Signal()
        m.d.comb += [self.b.ready.eq(slots.free_to_write()),
                     accept.eq(self.b.valid & self.b.ready),
                     write.addr.eq(addr),
                     write.data.eq(Cat(*([self.b.payload.as_value()] * s.banks))),
                     write.en.eq(Cat(*(accept & (bank == k) for k in range(s.banks))))]
        last_word = _wrap(m, word, token_words, accept)
        last_bank = _wrap(m, bank, s.banks, accept & last_word)
        groups = s.n_b // s.banks
        group = _counter(groups, "b_group_index")
        last_group = _wrap(m, group, groups, accept & last_word & last_bank)
        filled = accept & last_word & last_bank & last_group
        with m.If(accept):
            with m.If(~last_word):
                m.d.sync += addr.eq(addr + 1)
            with m.Elif(~last_bank):
                m.d.sync += addr.eq(group_start)
            with m.Elif(~last_group):
                m.d.sync += [group_start.eq(group_start + token_words),
                             addr.eq(group_start + token_words)]
            with m.Else():  # the frame's B is in: the next buffer
                start = Mux(slots.write == 0, depth, 0) if slots.slots > 1 else 0
                m.d.sync += [group_start.eq(start), addr.eq(start)]
        return mem.read_port(domain="sync"), filled

    def _a_buffer(self, m: Module, slots: _Slots):
        """Writes a-tokens into two slots of ``token_words``; returns the read port and
        'a token's last word is written'."""
        s = self.spec
        m.submodules.a_memory = mem = Memory(shape=unsigned(s.simd * s.a_type.bits),
                                             depth=2 * s.token_words, init=[])
        write = mem.write_port()
        addr = _counter(2 * s.token_words, "a_write_addr")
        word = _counter(s.token_words, "a_word")
        accept = Signal()
        m.d.comb += [self.a.ready.eq(slots.free_to_write()),
                     accept.eq(self.a.valid & self.a.ready),
                     write.addr.eq(addr), write.data.eq(self.a.payload), write.en.eq(accept)]
        last_word = _wrap(m, word, s.token_words, accept)
        with m.If(accept):
            m.d.sync += addr.eq(Mux(last_word & (slots.write == 1), 0, addr + 1))
        return mem.read_port(domain="sync"), accept & last_word


def fold_options(spec: Spec) -> list[dict]:
    return [{"pe": pe, "simd": simd} for pe in divisors(spec.cols)
            for simd in divisors(spec.inner)]


def fill_words(spec: Spec) -> int:
    """Port-``a`` words' worth of input taken ahead of the output: all of B before a
    frame's first output (a frame of input; two with ``pingpong``, when the next
    frame's B loads meanwhile), or the two a-token slots, then the pipeline."""
    frames = 2 if spec.pingpong else 1
    return max(frames * spec.a_words, 2 * spec.token_words) + PIPELINE_WORDS


def frame_lag(spec: Spec) -> tuple[Fraction, Fraction]:
    """Least and most part of a frame the input must run ahead of the output: the first
    output word needs all of the frame's B (an a-token only ``1 / rows``), the last
    needs nothing beyond its own frame. What B it may buffer beyond that (``pingpong``)
    is not needed by any output."""
    return Fraction(0), Fraction(1)


def input_lead_words(spec: Spec, port: str) -> int:
    """Words of a frame on ``port`` that may wait while the other port is consumed:
    all of A while B loads (with ``pingpong`` also the next frame's A, so that its B
    loads while this frame's A is consumed); B never waits for A."""
    if port == "a":
        return (2 if spec.pingpong else 1) * spec.a_words
    return 0


def estimate(spec: Spec, family: str) -> Cost:
    s = spec
    acc_bits = s.out_type.bits
    ab, bb = s.a_type.bits, s.b_type.bits
    ml, md = mult_cost(ab, bb, family)
    if not md and s.simd == 1:  # each product only feeds its accumulator
        ml = accumulated_product_luts(ab, bb, family)
    products = s.pe * s.simd
    tree = dsp_sum_luts(s.simd, acc_bits, ab + bb, family) if md else adder_tree_luts(
        s.simd, acc_bits, family)
    lut = products * ml + s.pe * (tree + adder_luts(acc_bits, family))
    b_lut, b_bram = memory_cost(s.banks * s.b_lanes * bb,
                                (2 if s.pingpong else 1) * s.b_depth, family)
    a_lut, a_bram = memory_cost(s.simd * ab, 2 * s.token_words, family)
    addr_bits = max(1, (2 * s.b_words).bit_length())
    lut += b_lut + a_lut + 8 * adder_luts(addr_bits, family) + 30  # addresses, control
    ff = (s.pe * 3 * acc_bits  # terms, accumulators, output register
          + s.simd * ab + s.banks * s.b_lanes * bb  # read registers
          + 10 * addr_bits + 16)
    return Cost(cycles=s.cycles(), lut=int(lut), ff=int(ff), bram18=a_bram + b_bram,
                dsp=products * md)
