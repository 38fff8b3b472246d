"""Small Amaranth building blocks shared by node components."""

from __future__ import annotations

import numpy as np
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
    fields = np.asarray(rows, dtype=np.int64).astype(np.uint64)  # two's complement wraps
    if fields.ndim != 2:
        fields = fields.reshape(len(fields), -1)
    if fields.size == 0:
        return [0] * fields.shape[0]
    # bit j of field k goes to bit k*bits + j of the word (little-endian bit order)
    shifts = np.arange(bits, dtype=np.uint64)
    bit_matrix = ((fields[..., None] >> shifts) & np.uint64(1)).astype(np.uint8)
    packed = np.packbits(bit_matrix.reshape(fields.shape[0], -1), axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def cat_lanes(lanes: list[Value]) -> Value:
    return Cat(*lanes)
