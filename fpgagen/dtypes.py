"""Integer data types that travel on chip.

A value on chip is an integer. ``IntType(bits, signed)`` is two's complement (or
unsigned) in ``bits`` bits; ``BIPOLAR`` is {-1, +1} carried as one bit, 1 meaning +1.
``encode``/``decode`` map between integer values and the raw bit patterns a stream
lane carries; every producer and consumer of stream words goes through them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import SpecError

MAX_BITS = 32  # widest integer type accepted for tensors on chip


@dataclass(frozen=True)
class IntType:
    bits: int
    signed: bool
    bipolar: bool = False

    def __post_init__(self):
        if not isinstance(self.bits, int) or self.bits < 1:
            raise SpecError(f"bit width must be a positive integer, not {self.bits!r}")
        if self.bipolar and (self.bits != 1 or self.signed):
            raise SpecError("a bipolar type is one unsigned bit")
        if self.bits > 64:
            raise SpecError(f"bit width {self.bits} is wider than the 64 bits supported")

    @property
    def min(self) -> int:
        if self.bipolar:
            return -1
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max(self) -> int:
        if self.bipolar:
            return 1
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def name(self) -> str:
        if self.bipolar:
            return "bipolar"
        return f"{'int' if self.signed else 'uint'}{self.bits}"

    def __str__(self) -> str:
        return self.name

    def contains(self, values: np.ndarray) -> bool:
        v = np.asarray(values)
        if self.bipolar:
            return bool(np.all((v == 1) | (v == -1)))
        return bool(np.all((v >= self.min) & (v <= self.max)))

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Integer values -> raw lane bits as uint64."""
        v = np.asarray(values, dtype=np.int64)
        if self.bipolar:
            return (v > 0).astype(np.uint64)
        return (v & ((1 << self.bits) - 1)).astype(np.uint64)

    def decode(self, raw: np.ndarray) -> np.ndarray:
        """Raw lane bits -> integer values as int64."""
        r = np.asarray(raw, dtype=np.uint64).astype(np.int64) & ((1 << self.bits) - 1)
        if self.bipolar:
            return r * 2 - 1
        if self.signed:
            return np.where(r >= (1 << (self.bits - 1)), r - (1 << self.bits), r)
        return r

    def to_json(self) -> str:
        return self.name

    @staticmethod
    def from_json(text: str) -> IntType:
        return parse_type(text)


BIPOLAR = IntType(1, False, bipolar=True)


def parse_type(text: str) -> IntType:
    if text == "bipolar":
        return BIPOLAR
    for prefix, signed in (("uint", False), ("int", True)):
        if text.startswith(prefix) and text[len(prefix):].isdigit():
            return IntType(int(text[len(prefix):]), signed)
    raise SpecError(f"unknown data type {text!r}", hint="use bipolar, intN or uintN")


def smallest_type(lo: int, hi: int) -> IntType:
    """The narrowest IntType holding every integer in [lo, hi]."""
    lo, hi = int(lo), int(hi)
    if lo >= 0:
        return IntType(max(1, hi.bit_length()), False)
    bits = max((-lo - 1).bit_length(), hi.bit_length()) + 1
    return IntType(bits, True)


def pack_lanes(raw: np.ndarray, bits: int) -> list[int]:
    """Raw lane values, shape (words, lanes), lane 0 in the low bits -> Python ints."""
    raw = np.asarray(raw, dtype=np.uint64)
    words = []
    for row in raw:
        word = 0
        for lane, value in enumerate(row.tolist()):
            word |= int(value) << (lane * bits)
        words.append(word)
    return words


def unpack_lanes(words: list[int], lanes: int, bits: int) -> np.ndarray:
    """Inverse of :func:`pack_lanes`: Python ints -> raw lane values (words, lanes)."""
    mask = (1 << bits) - 1
    out = np.empty((len(words), lanes), dtype=np.uint64)
    for i, word in enumerate(words):
        for lane in range(lanes):
            out[i, lane] = (int(word) >> (lane * bits)) & mask
    return out
