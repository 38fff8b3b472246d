"""Small Amaranth building blocks shared by node components."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Value, unsigned


def adder_tree(values: list[Value]) -> Value:
    """Sum of ``values`` as a balanced tree (log depth, widths grow as needed)."""
    if not values:
        return Const(0, unsigned(1))
    level = list(values)
    while len(level) > 1:
        nxt = [level[i] + level[i + 1] for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def popcount(bits: Value) -> Value:
    """Number of set bits, as a tree over 3-bit groups (maps well onto LUT6)."""
    n = len(bits)
    groups = []
    for start in range(0, n, 3):
        chunk = bits[start:min(start + 3, n)]
        groups.append(sum((chunk[i] for i in range(len(chunk))), Const(0, unsigned(2))))
    return adder_tree(groups)


def pack_words(rows, bits: int) -> list[int]:
    """Rows of raw unsigned fields -> memory words, field 0 in the low bits."""
    words = []
    for row in rows:
        word = 0
        for k, value in enumerate(row):
            word |= (int(value) & ((1 << bits) - 1)) << (k * bits)
        words.append(word)
    return words


def cat_lanes(lanes: list[Value]) -> Value:
    return Cat(*lanes)
