"""Multi-threshold activations in hardware: ``count = #{k : acc >= T[row, k]}``.

The thresholds of ``rows`` outputs are read from a memory, one word per group of ``pe``
rows (row ``g * pe + p`` in field ``p``). Three layouts, chosen from the values
(:func:`plan`):

``"constants"``
    one group only (``nf == 1``): the thresholds are constants in the logic.
``"offsets"``
    every row is one common row plus an integer offset (a requantisation with a
    per-tensor scale and per-channel biases, e.g. a transformer's 8-bit residual
    stream). The memory holds the offsets and the comparisons are with constants::

        acc >= common[k] + off   <=>   acc - off >= common[k]

    which is exact in integers: one subtraction per output instead of a memory of
    ``levels`` thresholds and ``levels`` comparisons with memory values.
``"rows"``
    anything else: the memory holds every threshold.
"""

from __future__ import annotations

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
    common: np.ndarray | None = None  # (levels,): mode "offsets"
    offsets: np.ndarray | None = None  # (rows,): mode "offsets"

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

    @property
    def word_bits(self) -> int:
        """Bits of one memory word (all ``pe`` fields)."""
        t = self.stored_type
        if t is None:
            return 0
        return self.pe * t.bits * (1 if self.mode == "offsets" else self.levels)


# Offsets pay for their subtraction from this many levels on (fewer: a comparison with a
# memory value costs about what the subtraction does, and the memories are alike).
MIN_OFFSET_LEVELS = 4


def plan(thresholds: np.ndarray, pe: int) -> Plan:
    """How ``thresholds`` (rows, levels), read ``pe`` rows at a time, are held."""
    t = np.asarray(thresholds, dtype=np.int64)
    if t.shape[0] // pe <= 1:
        return Plan("constants", t, pe)
    off = t[:, 0] - t[0, 0]
    if t.shape[1] >= MIN_OFFSET_LEVELS and np.array_equal(t, t[0][None, :] + off[:, None]):
        return Plan("offsets", t, pe, common=t[0].copy(), offsets=off)
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
            shifted = acc - off
            return adder_tree([shifted >= int(v) for v in p.common])
        row = self.shape(raw)
        return adder_tree([acc >= row[k] for k in range(p.levels)])


def with_base(count: Value, out_type: IntType, out_base: int) -> Value:
    """The activation's output: the count from ``out_base`` (a bipolar output is the
    count's bit)."""
    if out_type.bipolar:
        return count
    return count + Const(out_base, signed(out_type.bits + 1))
