"""Analytic resource models shared by every node kind's ``estimate``.

The per-kind ``estimate(spec, family)`` functions live beside each kind; they are
built from the primitives here so that one calibration serves all of them.
Families: ``xc7`` / ``xcup`` (Xilinx LUT6), ``ecp5`` (LUT4), ``ice40`` (LUT4).
"""

from __future__ import annotations

import math

LUT_INPUTS = {"xc7": 6, "xcup": 6, "ecp5": 4, "ice40": 4}

# Block RAM shapes (depth, width) of one 18 Kb unit (Xilinx RAMB18; for ECP5 a DP16KD
# is 18 Kb as well; iCE40 EBR is 4 Kb and counted in 18 Kb equivalents).
_BRAM18_SHAPES = [(16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)]
LUTRAM_MAX_DEPTH = 64  # memories this shallow (or tiny) go to LUTs/FFs, as Yosys does


def lut_inputs(family: str) -> int:
    return LUT_INPUTS.get(family, 6)


def memory_cost(width: int, depth: int, family: str) -> tuple[int, int]:
    """(luts, bram18) for a ROM/RAM of ``depth`` words of ``width`` bits."""
    if width <= 0 or depth <= 0:
        return 0, 0
    bits = width * depth
    if depth <= LUTRAM_MAX_DEPTH or bits < 4096:
        # distributed: one LUT6 holds 64x1 (LUT4: 16x1), plus output muxing
        per = 64 if lut_inputs(family) == 6 else 16
        return width * math.ceil(depth / per), 0
    best = min(math.ceil(width / w) * math.ceil(depth / d) for d, w in _BRAM18_SHAPES)
    return 0, best


def adder_luts(bits: int, family: str) -> int:
    """An adder of ``bits`` bits: one LUT per bit with the carry chain."""
    return max(1, bits)


def popcount_luts(n: int, family: str) -> int:
    """Popcount of ``n`` bits (XNOR folded into the first level): about n LUTs on LUT6."""
    return n if lut_inputs(family) == 6 else int(n * 1.6)


def compare_luts(bits: int, family: str) -> int:
    """A >= comparison against a stored value: a carry chain, about bits/2 on LUT6."""
    return math.ceil(bits / 2) if lut_inputs(family) == 6 else bits


def mult_cost(a_bits: int, b_bits: int, family: str) -> tuple[int, int]:
    """(luts, dsp) of one a x b multiplier; small ones are LUTs, wide ones a DSP."""
    if min(a_bits, b_bits) <= 1:
        return a_bits + b_bits, 0  # a conditional negate/select
    if a_bits * b_bits <= 16:
        return a_bits * b_bits, 0
    return 0, 1


def mux_luts(width: int, inputs: int, family: str) -> int:
    if inputs <= 1:
        return 0
    per = lut_inputs(family) - 2  # LUT6 = 4:1 mux
    return width * math.ceil((inputs - 1) / (per - 1))
