"""Multi-threshold activations in hardware: ``count = #{k : acc >= T[row, k]}``.

The thresholds of ``rows`` outputs are read from a memory, one word per group of ``pe``
rows (row ``g * pe + p`` in field ``p``). Three layouts, chosen from the values
(:func:`plan`):

``"constants"``
    one group only (``nf == 1``): the thresholds are constants in the logic.
``"offsets"``
    a requantisation with a per-tensor scale and per-channel biases (e.g. a
    transformer's 8-bit residual stream): there are a shift ``f``, one offset per row
    and one constant per level with, for every accumulator value in range::

        acc >= T[row, k]   <=>   (acc << f) + offset[row] >= constant[k]

    The memory holds the offsets and the comparisons are with constants: one addition
    per output instead of a memory of ``levels`` thresholds and ``levels`` comparisons
    with memory values. ``f`` is 0 when the rows differ by whole offsets; a bias with a
    fraction needs the finer grid of a shift (:func:`solve_offsets`). Exact by
    construction: the offsets satisfy every row's and level's comparison at the
    threshold and one below it.
``"rows"``
    anything else: the memory holds every threshold.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Const, Module, Shape, Value, signed, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory

from ..dtypes import IntType, smallest_type
from .primitives import adder_tree, pack_words


@dataclass(frozen=True, eq=False)
class Plan:
    mode: str  # "constants", "offsets" or "rows"
    thresholds: np.ndarray  # (rows, levels)
    pe: int
    shift: int = 0  # mode "offsets": the accumulator's shift
    offsets: np.ndarray | None = None  # (rows,): mode "offsets"
    constants: np.ndarray | None = None  # (levels,): mode "offsets"

    @property
    def levels(self) -> int:
        return int(self.thresholds.shape[1])

    @property
    def groups(self) -> int:
        return self.thresholds.shape[0] // self.pe

    @property
    def stored_type(self) -> IntType | None:
        """Type of one stored value (a threshold or an offset); None: nothing stored."""
        if self.mode == "constants":
            return None
        v = self.offsets if self.mode == "offsets" else self.thresholds
        return smallest_type(min(int(v.min()), 0), max(int(v.max()), 0))

    def compare_bits(self, acc_bits: int) -> int:
        """Width of the value compared with the constants in mode "offsets":
        ``(acc << shift) + offset`` (the hardware's ``x`` in :meth:`ThresholdRead.count`)."""
        return max(acc_bits + self.shift, self.stored_type.bits) + 1

    @property
    def word_bits(self) -> int:
        """Bits of one memory word (all ``pe`` fields)."""
        t = self.stored_type
        if t is None:
            return 0
        return self.pe * t.bits * (1 if self.mode == "offsets" else self.levels)


# Offsets pay for their addition from this many levels on (fewer: a comparison with a
# memory value costs about what the addition does, and the memories are alike).
MIN_OFFSET_LEVELS = 4
MAX_SHIFT = 8  # finer grids widen every comparison: rows are cheaper by then


def solve_offsets(t: np.ndarray, lo: int, hi: int, shift: int
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """Integer ``offsets`` (rows) and ``constants`` (levels) with
    ``(acc << shift) + offsets[r] >= constants[k]  <=>  acc >= t[r, k]`` for every
    ``acc`` in ``[lo, hi]``, or None when there are none.

    With ``F = 2**shift`` that is, per row and level, ``constants[k] - offsets[r]`` in
    ``(F * (t - 1), F * t]`` (only the sides ``acc`` can reach: a threshold at or below
    ``lo`` is always reached, one above ``hi`` never): difference constraints, solved
    as shortest paths (Bellman-Ford over the bipartite graph of rows and levels).
    """
    f = 1 << shift
    tc = np.clip(t, lo, hi + 1)
    # C_k - O_r <= U[r, k] (reached at acc = t), O_r - C_k <= -L[r, k] (not at t - 1)
    upper = np.where(tc <= hi, f * tc, np.iinfo(np.int64).max // 4)
    lower = np.where(tc > lo, f * (tc - 1) + 1, np.iinfo(np.int64).min // 4)
    rows, levels = t.shape
    dist_o, dist_c = np.zeros(rows, np.int64), np.zeros(levels, np.int64)
    for _ in range(rows + levels + 1):
        new_c = np.minimum(dist_c, (dist_o[:, None] + upper).min(axis=0))
        new_o = np.minimum(dist_o, (new_c[None, :] - lower).min(axis=1))
        if np.array_equal(new_c, dist_c) and np.array_equal(new_o, dist_o):
            offsets, constants = dist_o - dist_o.max(), dist_c - dist_o.max()
            return offsets, constants
        dist_c, dist_o = new_c, new_o
    return None  # a negative cycle: no offsets on this grid


_SOLUTIONS: dict[tuple, tuple | None] = {}  # by content: folding asks for every PE


def _offsets(t: np.ndarray, lo: int, hi: int) -> tuple | None:
    """(shift, offsets, constants) with the smallest shift, or None (cached by content)."""
    key = (hashlib.blake2b(t.tobytes(), digest_size=16).digest(), t.shape, lo, hi)
    if key not in _SOLUTIONS:
        found = None
        for shift in range(MAX_SHIFT + 1):
            solved = solve_offsets(t, lo, hi, shift)
            if solved is not None:
                found = (shift, *solved)
                break
        if len(_SOLUTIONS) > 256:
            _SOLUTIONS.clear()
        _SOLUTIONS[key] = found
    return _SOLUTIONS[key]


def plan(thresholds: np.ndarray, pe: int, lo: int, hi: int) -> Plan:
    """How ``thresholds`` (rows, levels) of an input in ``[lo, hi]``, read ``pe`` rows at
    a time, are held."""
    t = np.asarray(thresholds, dtype=np.int64)
    if t.shape[0] // pe <= 1:
        return Plan("constants", t, pe)
    if t.shape[1] >= MIN_OFFSET_LEVELS:
        found = _offsets(t, int(lo), int(hi))
        if found is not None:
            return Plan("offsets", t, pe, shift=found[0], offsets=found[1],
                        constants=found[2])
    return Plan("rows", t, pe)


class ThresholdRead:
    """The threshold memory of a :class:`Plan`, read at ``addr`` (synchronously, enabled
    by ``en``): ``reads[p]`` is PE ``p``'s value the cycle after (a row of thresholds or
    an offset), ``shape`` the shape a stage register holding it needs (None: nothing is
    read). :meth:`count` compares an accumulator with PE ``p``'s thresholds."""

    def __init__(self, m: Module, p: Plan, addr, en, name: str = "thresholds"):
        self.plan = p
        self.reads: list[Value] = []
        self.shape = None
        t = p.stored_type
        if t is None:
            return
        lane = Shape.cast(signed(t.bits) if t.signed else unsigned(t.bits))
        values = p.offsets[:, None] if p.mode == "offsets" else p.thresholds
        per_row = values.shape[1]
        m.submodules[name] = mem = Memory(
            shape=unsigned(p.word_bits), depth=p.groups,
            init=pack_words(t.encode(values).reshape(p.groups, -1), t.bits))
        port = mem.read_port(domain="sync")
        m.d.comb += [port.addr.eq(addr), port.en.eq(en)]
        self.shape = lane if p.mode == "offsets" else data.ArrayLayout(lane, per_row)
        field = t.bits * per_row
        self.reads = [port.data[q * field:(q + 1) * field] for q in range(p.pe)]

    def count(self, pe_index: int, acc: Value, read=None) -> Value:
        """``#{k : acc >= T[row, k]}`` for PE ``pe_index``; ``read`` is its value from
        ``reads`` (or a stage register of ``shape``), unused for constants."""
        p = self.plan
        if p.mode == "constants":
            return adder_tree([acc >= int(v) for v in p.thresholds[pe_index]])
        raw = Value.cast(read)
        if p.mode == "offsets":
            off = raw.as_signed() if self.shape.signed else raw
            x = (acc << p.shift) + off
            return adder_tree([x >= int(v) for v in p.constants])
        row = self.shape(raw)
        return adder_tree([acc >= row[k] for k in range(p.levels)])


def with_base(count: Value, out_type: IntType, out_base: int) -> Value:
    """The activation's output: the count from ``out_base`` (a bipolar output is the
    count's bit)."""
    if out_type.bipolar:
        return count
    return count + Const(out_base, signed(out_type.bits + 1))
