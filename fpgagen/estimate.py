"""Analytic resource models shared by every node kind's ``estimate``.

The per-kind ``estimate(spec, family)`` functions live beside each kind; they are
built from the primitives here so that one calibration serves all of them.
Families: ``xc7`` / ``xcup`` (Xilinx LUT6), ``ecp5`` (LUT4), ``ice40`` (LUT4).
"""

from __future__ import annotations

import math

LUT_INPUTS = {"xc7": 6, "xcup": 6, "ecp5": 4, "ice40": 4}

# Block RAM shapes (depth, width) of one 18 Kb unit: Xilinx RAMB18 and ECP5 DP16KD.
_BRAM18_SHAPES = [(16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)]
# iCE40 EBR (SB_RAM40_4K, 4 Kb) shapes; counted in 18 Kb units, 4/18 each.
_EBR_SHAPES = [(2048, 2), (1024, 4), (512, 8), (256, 16)]
EBR_IN_BRAM18 = 4 / 18
LUTRAM_MAX_DEPTH = 64  # memories this shallow (or tiny) go to LUTs/FFs, as Yosys does
# iCE40 has no distributed RAM: a small writable memory is flip-flops and read muxes.
_HAS_LUTRAM = {"xc7": True, "xcup": True, "ecp5": True, "ice40": False}


def lut_inputs(family: str) -> int:
    return LUT_INPUTS.get(family, 6)


def _distributed(width: int, depth: int) -> bool:
    return depth <= LUTRAM_MAX_DEPTH or width * depth < 4096


def _lutram_luts(width: int, depth: int, family: str) -> int:
    """LUTs of a simple-dual-port distributed RAM (one write, one read port)."""
    if family in ("xc7", "xcup"):  # RAM32M: 32 x 6 in 4 LUTs; RAM64M: 64 x 3 in 4 LUTs
        if depth <= 32:
            return 4 * math.ceil(width / 6)
        return 4 * math.ceil(width / 3) * math.ceil(depth / 64)
    return width * math.ceil(depth / 16)  # ECP5 DPR16X4: 16 x 4 in four LUT positions


def memory(width: int, depth: int, family: str, *, writable: bool = True,
           sync_read: bool = True) -> tuple[int, int, float]:
    """(luts, ffs, bram18) of a RAM (or, ``writable=False``, a ROM) of depth x width.

    Large memories are block RAM (iCE40: 4 Kb EBRs, counted 4/18 each). Small ones: a
    one-word ROM is constants; a ROM is LUT logic on the address (one LUT per output
    bit per LUT-sized slice of the addresses); a RAM is distributed RAM (iCE40 has none:
    registers and read multiplexers). A synchronous read port outside block RAM adds
    its output register.
    """
    if width <= 0 or depth <= 0:
        return 0, 0, 0
    if not _distributed(width, depth):
        if family == "ice40":
            ebr = min(math.ceil(width / w) * math.ceil(depth / d) for d, w in _EBR_SHAPES)
            return 0, 0, round(ebr * EBR_IN_BRAM18, 3)
        return 0, 0, min(math.ceil(width / w) * math.ceil(depth / d) for d, w in _BRAM18_SHAPES)
    if not writable and depth == 1:
        return 0, 0, 0
    ffs = width if sync_read else 0
    if not writable:
        per = 64 if lut_inputs(family) == 6 else 16
        return width * math.ceil(depth / per), ffs, 0
    if not _HAS_LUTRAM.get(family, True):
        return mux_luts(width, depth, family), ffs + width * depth, 0
    return _lutram_luts(width, depth, family), ffs, 0


def memory_cost(width: int, depth: int, family: str, *, writable: bool = True
                ) -> tuple[int, float]:
    """(luts, bram18) of ``memory`` (its flip-flops: ``memory``'s second value)."""
    luts, _, bram = memory(width, depth, family, writable=writable, sync_read=False)
    return luts, bram


def adder_luts(bits: int, family: str) -> int:
    """An adder of ``bits`` bits: one LUT per bit with the carry chain."""
    return max(1, bits)


# LUTs per bit of an XNOR-popcount, calibrated against Yosys (docs/report.md): with
# constant weights (one weight word: fully parallel) the XNOR disappears into the
# adder tree; weights read from a memory cost the XNOR and a wider first level.
_POPCOUNT_PER_BIT = {  # family: (constant weights, weights from memory)
    "xc7": (1.2, 2.8), "xcup": (1.2, 2.8), "ecp5": (1.6, 3.0), "ice40": (1.6, 3.0)}


def popcount_luts(n: int, family: str, *, constant_weights: bool = False) -> int:
    """XNOR-popcount of ``n`` bit pairs."""
    const, variable = _POPCOUNT_PER_BIT.get(family, _POPCOUNT_PER_BIT["xc7"])
    return math.ceil(n * (const if constant_weights else variable))


def compare_luts(bits: int, family: str) -> int:
    """A >= comparison against a stored value: a carry chain, about bits/2 on LUT6."""
    return math.ceil(bits / 2) if lut_inputs(family) == 6 else bits


def mult_cost(a_bits: int, b_bits: int, family: str, *, constant_weights: bool = False
              ) -> tuple[int, int]:
    """(luts, dsp) of one a x b product inside a dot product (its adder is separate).

    Calibrated on xc7 against Yosys: products of a constant weight and products of up
    to 2 x 2 bits fold into the adder tree; wider LUT multipliers cost about 3.6 LUTs
    per partial-product bit; beyond 16 partial-product bits a DSP.
    """
    if a_bits * b_bits > 16 and min(a_bits, b_bits) > 1:
        return 0, 1
    if constant_weights:
        return 0, 0
    if min(a_bits, b_bits) <= 1:
        return math.ceil((a_bits + b_bits) / 4), 0  # a conditional negate
    if a_bits * b_bits <= 4:
        return math.ceil(0.8 * a_bits * b_bits), 0
    return math.ceil(3.6 * a_bits * b_bits), 0


def adder_tree_luts(terms: int, bits: int, family: str) -> int:
    """The ``terms - 1`` adders summing ``terms`` products into ``bits``-bit sums."""
    per_bit = 1.15 if lut_inputs(family) == 6 else 1.0  # LUT4: one LUT per carry-chain bit
    return math.ceil(max(0, terms - 1) * bits * per_bit)


def mux_luts(width: int, inputs: int, family: str) -> int:
    if inputs <= 1:
        return 0
    per = lut_inputs(family) - 2  # LUT6 = 4:1 mux
    return width * math.ceil((inputs - 1) / (per - 1))
