"""Analytic resource models shared by every node kind's ``estimate``.

The per-kind ``estimate(spec, family)`` functions live beside each kind; they are
built from the primitives here so that one calibration serves all of them.
Families: ``xc7`` / ``xcup`` (Xilinx LUT6), ``ecp5`` (LUT4), ``ice40`` (LUT4).
"""

from __future__ import annotations

import math

import numpy as np

LUT_INPUTS = {"xc7": 6, "xcup": 6, "ecp5": 4, "ice40": 4}

# Block RAM shapes (depth, width) of one 18 Kb unit: Xilinx RAMB18 and ECP5 DP16KD.
_BRAM18_SHAPES = [(16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)]
# iCE40 EBR (SB_RAM40_4K, 4 Kb) shapes; counted in 18 Kb units, 4/18 each.
_EBR_SHAPES = [(2048, 2), (1024, 4), (512, 8), (256, 16)]
EBR_IN_BRAM18 = 4 / 18
LUTRAM_MAX_DEPTH = 64  # FIFOs this shallow are built with an asynchronous-read memory

# How Yosys' memory_libmap places a memory (the synth_* flows' libraries): it takes the
# cheapest of soft logic (a ROM costs ROM_LOGIC_COST per bit, a RAM 1 per bit),
# distributed RAM (RAMs only: ROMs are pruned from it) and block RAM (cost per unit),
# adding half a cost unit per data bit of each read multiplexer across depth and 2 for
# the read port. xc7/xcup pass -logic-cost-rom 1/64 (a ROM in LUT6s is cheap).
_ROM_LOGIC_COST = {"xc7": 1 / 64, "xcup": 1 / 64, "ecp5": 1 / 16, "ice40": 1 / 16}
# Block RAM cells per family: (cost, units, shapes), units in 18 Kb (iCE40: EBRs). The
# Xilinx library (xilinx/brams_xc4v.txt) also has RAMB36 at 257 and two cascaded
# RAMB36 at 513: LFC-2w2a's 8192 x 256 weight ROM is 57 RAMB36 of 4K x 9 and a 2:1
# multiplexer per bit, not 114 RAMB18 of 2K x 9 and a 4:1 one.
_RAMB36_SHAPES = [(32768, 1), (16384, 2), (8192, 4), (4096, 9), (2048, 18), (1024, 36),
                  (512, 72)]
_CASCADE_SHAPES = [(65536, 1)]  # a cascaded port is 1 bit wide
_XILINX_BLOCK = [(129, 1, _BRAM18_SHAPES), (257, 2, _RAMB36_SHAPES),
                 (513, 4, _CASCADE_SHAPES)]
_BLOCK = {"xc7": _XILINX_BLOCK, "xcup": _XILINX_BLOCK,
          "ecp5": [(128, 1, _BRAM18_SHAPES)], "ice40": [(64, 1, _EBR_SHAPES)]}
# Distributed RAM cells (depth, width, cost, LUTs, widthscale): Xilinx RAM32M / RAM64M,
# ECP5 DPR16X4; iCE40 has none (a small writable memory is flip-flops and read muxes).
# ``widthscale`` is the part of a cell's cost that scales with the data bits it holds
# (Yosys' xilinx/lutrams_xc5v.txt: a RAM64M holding one bit of three costs 1 + 7/3).
_LUTRAM = {"xc7": [(32, 6, 8, 4, 7), (64, 3, 8, 4, 7)],
           "xcup": [(32, 6, 8, 4, 7), (64, 3, 8, 4, 7)],
           "ecp5": [(16, 4, 4, 4, 0)], "ice40": []}
# A RAM read and written at the same address is single-port: RAM32M holds 32 x 8.
_LUTRAM_SINGLE_PORT = {"xc7": [(32, 8, 8, 4, 8), (64, 4, 8, 4, 8)],
                       "xcup": [(32, 8, 8, 4, 8), (64, 4, 8, 4, 8)]}
# Block RAM byte lanes (write-enable granularity): words of a writable memory are
# padded to whole lanes; a ROM has no write port and packs bit by bit, as does a RAM
# in iCE40's RAM4K, which has a write enable per bit (digits_vit's 1359 x 9 FIFO: six
# 256-word rows of 9 bits in four 256 x 16 EBRs, not five 2048 x 2).
_BLOCK_BYTE = {"xc7": 9, "xcup": 9, "ecp5": 9, "ice40": 1}
_READ_PORT_COST = 2


def lut_inputs(family: str) -> int:
    return LUT_INPUTS.get(family, 6)


def _tiles(width: int, depth: int, shape_depth: int, shape_width: int) -> tuple[int, int]:
    """(cells, cost of the read multiplexers across depth) for one cell shape."""
    rows = math.ceil(depth / shape_depth)
    return math.ceil(width / shape_width) * rows, 0.5 * (rows - 1) * width


def _lutram_shapes(family: str, single_port: bool) -> list[tuple[int, int, int, int, int]]:
    if single_port and family in _LUTRAM_SINGLE_PORT:
        return _LUTRAM_SINGLE_PORT[family]
    return _LUTRAM.get(family, [])


def _lutram_fit(width: int, depth: int, shape: tuple[int, int, int, int, int]
                ) -> tuple[int, float]:
    """(cells, memory_libmap's cost) of a distributed RAM in one cell shape: the
    fixed part of each cell's cost plus its ``widthscale`` part for the bits held
    (C++ integer division, as in memory_libmap), plus the read multiplexers."""
    d, w, cost, _, scale = shape
    cells, mux = _tiles(width, depth, d, w)
    rows = math.ceil(depth / d)
    return cells, (cost - scale) * cells + scale * rows * width // w + mux


def _block_fit(width: int, depth: int, shape_depth: int, shape_width: int,
               byte: int) -> tuple[int, float]:
    """(cells, cost of the read multiplexers) in block RAM of one shape, packed as
    ``memory_libmap`` packs: the words of every ``shape_depth`` rows lie side by side
    and fill cells bit by bit, a writable memory's words padded to whole byte lanes
    (``byte``; 0: none, a lane is the cell). LFC-2w2a's 256-bit weight ROM of 8192
    words in 4K x 9 RAMB36 is ceil(2 x 256 / 9) = 57 cells; a 2048 x 4 RAM is one
    1K x 18 cell, its two halves in the two 9-bit lanes."""
    rows = math.ceil(depth / shape_depth)
    lane = shape_width if not byte or byte > shape_width else byte
    word = math.ceil(width / lane) * lane
    return math.ceil(rows * word / shape_width), 0.5 * (rows - 1) * width


def memory_placement(width: int, depth: int, family: str, *, writable: bool = True,
                     single_port: bool = False, block_ram: bool = True,
                     read_ports: int = 1) -> tuple[str, int]:
    """Where Yosys puts a depth x width memory: ``("logic" | "distributed" | "block",
    cells)`` (cells: LUTRAM cells or block RAM units of one copy, 0 for logic).
    ``block_ram=False``: a memory read asynchronously, which block RAM cannot hold.
    ``read_ports``: distributed and block RAM hold a copy per read port, logic holds
    the bits once (measured on iCE40: a 32 x 4 RAM with two or nine read ports is
    flip-flops, with one an EBR; 32 x 64 with four is 16 EBRs; the sliding window's
    nine-tap buffers of digits_cnn)."""
    where, cells, _, _ = _place(width, depth, family, writable, single_port, block_ram,
                                read_ports)
    return where, cells


def _place(width: int, depth: int, family: str, writable: bool, single_port: bool,
           block_ram: bool, read_ports: int) -> tuple[str, int, int, int]:
    """``memory_placement``, the rows of cells across depth (1 in logic) and the LUTs of
    one distributed RAM cell (0 elsewhere)."""
    bits = width * depth
    cost = bits * (1.0 if writable else _ROM_LOGIC_COST.get(family, 1 / 16))
    best = ("logic", 0, 1, 0, cost)
    for shape in (_lutram_shapes(family, single_port) if writable else []):
        cells, cost = _lutram_fit(width, depth, shape)
        best = min(best, ("distributed", cells, math.ceil(depth / shape[0]), shape[3],
                          read_ports * (cost + _READ_PORT_COST)), key=lambda c: c[4])
    byte = _BLOCK_BYTE.get(family, 0) if writable else 1
    for unit_cost, units, shapes in (_BLOCK.get(family, _XILINX_BLOCK) if block_ram else []):
        for d, w in shapes:
            cells, mux = _block_fit(width, depth, d, w, byte)
            best = min(best, ("block", units * cells, math.ceil(depth / d), 0,
                              read_ports * (unit_cost * cells + mux + _READ_PORT_COST)),
                       key=lambda c: c[4])
    return best[:4]


def rom_logic_luts(width: int, depth: int, family: str) -> int:
    """A ROM as logic: per output bit one LUT per LUT-sized slice of the addresses, the
    slices joined by the free wide multiplexers (MUXF7/F8: 4 LUT6s) and beyond them by
    a multiplexer tree in LUTs. The LUT4 flows map with ``abc -lut 4``, which makes no
    PFUMX/L6MUX21: their slices are all joined in LUTs. On LUT6 the slices fill a
    power of two: a 768 x 192 ROM is 4 LUT6s per bit in Yosys (3072), not 3."""
    if depth <= 1:
        return 0
    per = 64 if lut_inputs(family) == 6 else 16
    slices = math.ceil(depth / per)
    if per == 64:
        slices = 1 << (slices - 1).bit_length()
    free = 4 if per == 64 else 1
    return width * (slices + mux_luts(1, math.ceil(slices / free), family))


def distinct_rom_bits(bits: np.ndarray) -> int:
    """Output bits of a ROM in logic that cost LUTs, from its contents (``bits``: depth x
    width, 0/1): a bit constant over the words is a constant, one equal to an address
    bit (or its complement) is a wire, and bits with equal columns (or complementary
    ones) are one function of the address, which ABC builds once."""
    bits = np.asarray(bits, dtype=np.uint8)
    depth = bits.shape[0]
    if depth <= 1:
        return 0
    cols = bits ^ bits[:1]  # a column and its complement: the same function
    cols = cols[:, cols.any(axis=0)]
    address_bits = (np.arange(depth)[:, None] >> np.arange(depth.bit_length())) & 1
    return len(set(_column_keys(cols)) - set(_column_keys(address_bits)))


def _column_keys(bits: np.ndarray) -> list[bytes]:
    """Each column of a 0/1 matrix as bytes (packed), equal for equal columns: a set of
    them counts distinct columns in one pass, where ``np.unique(axis=1)`` sorts them
    (folding a network asks for every PE x SIMD layout of its weights)."""
    packed = np.ascontiguousarray(np.packbits(np.asarray(bits, dtype=np.uint8), axis=0).T)
    return [row.tobytes() for row in packed]


def varying_rom_bits(bits: np.ndarray) -> int:
    """Output bits of a ROM (``bits``: depth x width, 0/1) that differ between its
    words: Yosys drops the constant ones before it places the memory (a 512 x 60 ROM
    with 30 constant bits is one RAMB18)."""
    bits = np.asarray(bits)
    return int((bits != bits[:1]).any(axis=0).sum())


def registered_rom_bits(bits: np.ndarray) -> int:
    """Flip-flops of the read register of a ROM in logic read with an enable, from its
    contents (``bits``: depth x width, 0/1). Yosys registers such a read's data, not its
    address (``Mem::extract_rdff``); registers of equal columns merge and those of
    all-zero columns, equal to their initial value, are removed. The ViT's projections
    on xc7: 569 flip-flops estimated against 574 (446 with the address)."""
    bits = np.asarray(bits, dtype=np.uint8)
    return len(set(_column_keys(bits[:, bits.any(axis=0)])))


def memory(width: int, depth: int, family: str, *, writable: bool = True,
           sync_read: bool = True, single_port: bool = False, block_ram: bool = True,
           read_ports: int = 1) -> tuple[int, int, float]:
    """(luts, ffs, bram18) of a RAM (or, ``writable=False``, a ROM) of depth x width.

    Placed as Yosys places it (``memory_placement``). Block RAM is counted in 18 Kb
    units (iCE40: 4 Kb EBRs, 4/18 each). A one-word ROM is constants; a ROM in logic is
    ``rom_logic_luts``; a RAM is distributed RAM, or flip-flops and read multiplexers.
    A synchronous read port outside block RAM adds its output register.
    ``single_port``: read and written at one address (denser distributed RAM cells).
    ``block_ram=False``: read asynchronously (an iCE40 FIFO of that kind is flip-flops).
    ``read_ports``: each port has its own copy (RAM cells) or read multiplexers (logic).
    """
    if width <= 0 or depth <= 0:
        return 0, 0, 0
    if not writable and depth == 1:
        return 0, 0, 0
    n = read_ports
    where, cells, rows, cell_luts = _place(width, depth, family, writable, single_port,
                                           block_ram, n)
    if where == "block":  # rows of cells across depth: a multiplexer per data bit
        bram = round(n * cells * EBR_IN_BRAM18, 3) if family == "ice40" else n * cells
        return n * mux_luts(width, rows, family), 0, bram
    ffs = width if sync_read else 0
    if where == "distributed":
        return n * (cell_luts * cells + mux_luts(width, rows, family)), n * ffs, 0
    if not writable:  # the address register (a read with an enable registers the
        # data instead: ``registered_rom_bits``, which needs the contents)
        address = max(1, (depth - 1).bit_length()) if sync_read else 0
        return n * rom_logic_luts(width, depth, family), n * address, 0
    mux = n * mux_luts(width, depth, family)
    if n > 1 and lut_inputs(family) == 4:
        mux = math.ceil(mux * MULTI_PORT_MUX_SHARE)
    return mux, n * ffs + width * depth, 0


# A RAM in flip-flops read by several ports on LUT4 parts: its read multiplexers cost
# about a third of one per port (measured on iCE40: the nine-tap sliding-window buffers
# of digits_cnn, 9.1 and 11.1 LUTs per bit and port for 32 words where one 32:1
# multiplexer is 31; a hypothesis is that ABC shares the ports' first levels).
MULTI_PORT_MUX_SHARE = 1 / 3


def threshold_rom(width: int, depth: int, family: str, *, sync_read: bool = True
                  ) -> tuple[int, int, float]:
    """``memory`` of a ROM of thresholds that feed comparisons. In logic, a ROM of at
    most 2**(LUT inputs - 4) words merges into the comparison's LUTs (two input bits,
    the two threshold bits' address: one LUT6): it costs no LUTs. Measured on xc7: a
    4-word threshold ROM merged (small_mobilenet's first MVAU), 8 and 16 words did not
    (digits_cnn)."""
    luts, ffs, bram = memory(width, depth, family, writable=False, sync_read=sync_read)
    if not bram and depth <= 2 ** (lut_inputs(family) - 4):
        return 0, ffs, bram
    return luts, ffs, bram


def memory_cost(width: int, depth: int, family: str, *, writable: bool = True,
                read_ports: int = 1) -> tuple[int, float]:
    """(luts, bram18) of ``memory`` (its flip-flops: ``memory``'s second value)."""
    luts, _, bram = memory(width, depth, family, writable=writable, sync_read=False,
                           read_ports=read_ports)
    return luts, bram


def adder_luts(bits: int, family: str) -> int:
    """An adder of ``bits`` bits: one LUT per bit with the carry chain."""
    return max(1, bits)


# LUTs per bit of an XNOR-popcount, calibrated against Yosys (docs/calibration.md): with
# constant weights (one weight word: fully parallel) the XNOR disappears into the
# adder tree; weights read from a memory cost the XNOR and a wider first level, and on
# LUT6 a little more per bit as the popcount widens (its adders widen): measured per
# PE with weights in block RAM, 3.1 LUTs per bit at 64-98 bits, 3.3 at 112, 3.7 at
# 1024 (TFC/SFC/LFC-1w1a at 100k frames/s).
_POPCOUNT_PER_BIT = {  # family: (constant weights, from memory, + per doubling of n)
    "xc7": (1.2, 2.3, 0.14), "xcup": (1.2, 2.3, 0.14),
    "ecp5": (1.6, 3.0, 0.0), "ice40": (1.6, 3.0, 0.0)}


def popcount_luts(n: int, family: str, *, constant_weights: bool = False) -> int:
    """XNOR-popcount of ``n`` bit pairs."""
    const, variable, per_doubling = _POPCOUNT_PER_BIT.get(family, _POPCOUNT_PER_BIT["xc7"])
    if constant_weights:
        return math.ceil(n * const)
    return math.ceil(n * (variable + per_doubling * math.log2(max(n, 1))))


def constant_compare_luts(bits: int, family: str) -> int:
    """A >= comparison against a constant. On LUT6 a LUT per LUT-input's worth of bits
    (ABC merges it with its neighbours). synth_ecp5 and synth_ice40 map every
    comparison to a carry chain (CCU2C / SB_CARRY) and, for the "or equal", an equality
    with the constant in LUTs (``alumacc``'s zero flag): alone a LUT per third of the
    bits and one to join them, among a threshold's many compares of one value a LUT per
    fifth of the bits (ABC shares the decoding: 2.8 per 12-bit and 3.5 per 18-bit
    compare in the ViT's 255-level requantisers). On ECP5 the chain is LUTs (a CCU2C
    is two); an iCE40 SB_CARRY is not (digits_vit on ECP5: its constant-threshold
    compares were a third of their LUTs estimated)."""
    if lut_inputs(family) == 6:
        return -(-bits // 6)
    return -(-bits // 5) + (bits if family == "ecp5" else 0)


def constant_thresholds_luts(levels: int, x_bits: int, out_bits: int, family: str) -> int:
    """The count of ``levels`` constant thresholds an ``x_bits`` value reaches: compares
    against constants and their count, or on LUT6, when cheaper, each output bit as a
    function of ``x`` (ABC finds that form: the count of sorted constants is a staircase
    of ``x``); the LUT4 flows keep the carry chains."""
    compares = (levels * constant_compare_luts(x_bits, family)
                + popcount_luts(levels, family, constant_weights=True))
    if x_bits > 24 or lut_inputs(family) != 6:
        return compares
    return min(compares, out_bits * rom_logic_luts(1, 1 << x_bits, family))


def compare_luts(bits: int, family: str) -> int:
    """A >= comparison against a stored value: a carry chain, about bits/2 on LUT6. On
    ECP5 the chain (a LUT per bit in CCU2Cs) and the "or equal" in LUTs: about a LUT
    per two bits (the ViT's patch embedding: 1020 10-bit compares with thresholds from
    a ROM, 10.1 LUTs in CCU2Cs and 6 LUT4s each)."""
    if lut_inputs(family) == 6:
        return math.ceil(bits / 2)
    return bits + (bits // 2 + 1 if family == "ecp5" else 0)


DSP_MIN_OPERAND_BITS = 2  # Yosys' mul2dsp: no Nx1 products in a DSP
# ... nor products narrower than this (synth_xilinx: 9, after UG901; synth_ice40 -dsp: 11;
# synth_ecp5 puts every product of 2+ x 2+ bits in a MULT18X18D)
_DSP_MIN_PRODUCT_BITS = {"xc7": 9, "xcup": 9, "ecp5": 0, "ice40": 11}


def uses_dsp(a_bits: int, b_bits: int, family: str = "xc7") -> bool:
    """Whether Yosys maps an a x b product to a DSP (its exact width is about a + b)."""
    return (min(a_bits, b_bits) >= DSP_MIN_OPERAND_BITS
            and a_bits + b_bits >= _DSP_MIN_PRODUCT_BITS.get(family, 9))


# Yosys' mul2dsp per flow: (A max, B max, A slice of a split product, signed only).
# Xilinx DSPs multiply signed operands only: an unsigned operand takes one more bit,
# and each slice of a split operand one bit of sign headroom.
_MUL2DSP = {"xc7": (25, 18, 18, True), "xcup": (27, 18, 18, True),
            "ecp5": (18, 18, 18, False), "ice40": (16, 16, 16, False)}


def _slices(width: int, limit: int, step: int) -> tuple[int, int]:
    """mul2dsp's split of an operand wider than ``limit``: (full slices, last width)."""
    n = (width - limit + step - 1) // step
    return n, width - n * step


def dsp_tiles(a_bits: int, b_bits: int, family: str = "xc7", *, a_signed: bool = True,
              b_signed: bool = True) -> int:
    """DSP cells Yosys' mul2dsp makes of one a x b product (0: the product stays in
    LUTs). A product wider than the DSP is split into slices of the wider operand
    (then of the other), each slice a DSP if ``uses_dsp`` would put it in one; the
    slices' sum is the DSPs' cascade (PCIN/PCOUT), no LUTs."""
    a_max, b_max, a_part, signed_only = _MUL2DSP.get(family, _MUL2DSP["xc7"])
    if signed_only or a_signed != b_signed:  # an unsigned operand is zero-extended
        a_bits, b_bits = a_bits + (not a_signed), b_bits + (not b_signed)
    head = int(signed_only)

    def split(a: int, b: int) -> int:
        if not uses_dsp(a, b, family):
            return 0
        if a > a_max:
            n, last = _slices(a, a_max, a_part - head)
            return n * split(a_part, b) + split(last, b)
        if b > b_max:
            n, last = _slices(b, b_max, b_max - head)
            return n * split(a, b_max) + split(a, last)
        return 1

    return split(max(a_bits, b_bits), min(a_bits, b_bits))


def mult_cost(a_bits: int, b_bits: int, family: str, *, constant_weights: bool = False
              ) -> tuple[int, int]:
    """(luts, dsp) of one a x b product inside a dot product (its adder is separate).

    Calibrated on xc7 against Yosys: products of a constant weight and products of up
    to 2 x 2 bits fold into the adder tree; wider LUT multipliers cost about 3.6 LUTs
    per partial-product bit; products Yosys puts in DSPs (``uses_dsp``) cost a DSP.
    """
    if uses_dsp(a_bits, b_bits, family):
        return 0, 1
    if constant_weights:
        return 0, 0
    if min(a_bits, b_bits) <= 1:
        return math.ceil((a_bits + b_bits) / 4), 0  # a conditional negate
    if a_bits * b_bits <= 4:
        return math.ceil(0.8 * a_bits * b_bits), 0
    return math.ceil(3.6 * a_bits * b_bits), 0


# A dot product of LUT products with weights read from memory: Yosys' alumacc merges
# the products and their adder tree into one multiply-accumulate that maccmap builds
# from partial-product bits and full adders, so each term costs per partial-product
# bit, per sum bit, and per partial-product bit again when the input is signed (a
# signed x signed product needs its sign corrections). Fitted on xc7 over 21 MVAUs
# (uint2/int2/uint4/int4 inputs, int2/int4 weights, SIMD 1 to 56, PE 1 to 4: -11%..+14%
# per node but two of under 120 LUTs, docs/calibration.md). iCE40 (synth_ice40,
# abc -lut 4) needs LUT4_DOT_FACTOR of that (tfc_2w2a and a 2-bit MLP); ECP5 puts
# these products in DSPs.
_DOT_PER_TERM = (2.64, 0.21, 2.51)  # x (a*b, sum bits, a*b if the input is signed)
# Beyond 16 terms a sum costs more per term on LUT6, about 1.65 LUTs per doubling:
# measured on synthetic xc7 MVAUs (random weights from a 16-word ROM, PE 1 and 4) of
# uint2/int2/uint4/int4 inputs and int2/int4 weights, each term's cost from 16 to 64
# terms rose by 3.0, 3.1, 2.3 and 4.7 LUTs, while at 16 the terms cost what the fit
# above says (-4%..+4%); CNV-2w2a's 64-term int2 sums cost 4.0 more.
DOT_WIDE_TERMS = 16
DOT_PER_DOUBLING = 1.65
LUT4_DOT_FACTOR = 0.85


def dot_product_luts(sums: int, terms: int, a_bits: int, b_bits: int, sum_bits: int,
                     family: str, *, a_signed: bool) -> int:
    """LUTs of ``sums`` dot products of ``terms`` LUT products a x b, each summed into
    ``sum_bits`` (not in DSPs)."""
    per_ab, per_sum, per_signed = _DOT_PER_TERM
    per_term = (per_ab + per_signed * a_signed) * a_bits * b_bits + per_sum * sum_bits
    if lut_inputs(family) == 6:
        per_term += DOT_PER_DOUBLING * max(0.0, math.log2(terms / DOT_WIDE_TERMS))
    scale = 1.0 if lut_inputs(family) == 6 else LUT4_DOT_FACTOR
    return math.ceil(sums * terms * per_term * scale)


def constant_dot_product_luts(set_bits: int, a_bits: int, family: str, *, a_signed: bool
                              ) -> int:
    """LUTs of a dot product with constant weights on a LUT4 part (no DSP): ``maccmap``
    adds the input once per set bit of each weight (two's complement), so it costs as
    ``dot_product_luts`` per partial-product bit, ``set_bits * a_bits`` of them
    (digits_cnn on iCE40: 2.2-2.3 LUTs per such bit in its two all-constant MVAUs).
    LUT6 parts fold these products into the adder tree (``mult_cost``)."""
    per_ab, _, per_signed = _DOT_PER_TERM
    return math.ceil((per_ab + per_signed * a_signed) * set_bits * a_bits * LUT4_DOT_FACTOR)


# A LUT product whose sum is only its own accumulator (a VVAU lane, a matmul with one
# product per lane): no adder tree to merge into, about 1.5 LUTs per partial-product
# bit (xc7: the ViT's matmuls 1.4-1.6, small_mobilenet's VVAUs about 1.1).
_ACCUMULATED_PRODUCT_PER_BIT = 1.5


def accumulated_product_luts(a_bits: int, b_bits: int, family: str) -> int:
    """LUTs of one a x b LUT product feeding an accumulator (not in a DSP)."""
    scale = 1.0 if lut_inputs(family) == 6 else LUT4_DOT_FACTOR
    return math.ceil(_ACCUMULATED_PRODUCT_PER_BIT * a_bits * b_bits * scale)


# LUTs per adder bit of an adder tree (LUT4: one LUT per carry-chain bit).
ADDER_TREE_PER_BIT = {"xc7": 1.15, "xcup": 1.15, "ecp5": 1.0, "ice40": 1.0}
# ... and of a tree whose adders grow a bit per level (``term_bits`` given): fitted on
# conditionally negated (bipolar-weight) products on xc7, ECP5 and iCE40
# (docs/calibration.md): about two LUTs per bit, the negation merged into them.
GROWING_TREE_PER_BIT = {"xc7": 2.1, "xcup": 2.1, "ecp5": 2.0, "ice40": 2.0}


def adder_tree_luts(terms: int, bits: int, family: str, term_bits: int | None = None) -> int:
    """The ``terms - 1`` adders summing ``terms`` products into ``bits``-bit sums.

    With ``term_bits`` (the products' width) each level's adders are one bit wider than
    the level before, up to ``bits``, as the tree is built; without, all are ``bits``.
    """
    if term_bits is None:
        return math.ceil(max(0, terms - 1) * bits * ADDER_TREE_PER_BIT.get(family, 1.15))
    total, width = 0, term_bits
    while terms > 1:
        width = min(width + 1, bits)
        total += terms // 2 * width
        terms -= terms // 2
    return math.ceil(total * GROWING_TREE_PER_BIT.get(family, 2.1))


def dsp_sum_luts(terms: int, bits: int, term_bits: int, family: str) -> int:
    """The adders summing ``terms`` products of ``term_bits`` from DSPs into ``bits``-bit
    sums. On LUT6 the flat ``adder_tree_luts`` is what was measured; on LUT4 parts the
    DSPs' outputs go to one multi-operand adder (``alumacc``/``maccmap``: full adders in
    LUTs, a carry chain at the end) that costs as a growing tree at
    ``DSP_SUM_PER_BIT_LUT4`` per adder bit (fitted on ECP5: digits_cnn's and the ViT's
    MVAUs and matmuls, tfc_2w2a's 2 x 2-bit products)."""
    if lut_inputs(family) == 6:
        return adder_tree_luts(terms, bits, family)
    grown = adder_tree_luts(terms, bits, family, term_bits) / GROWING_TREE_PER_BIT[family]
    return math.ceil(grown * DSP_SUM_PER_BIT_LUT4)


DSP_SUM_PER_BIT_LUT4 = 1.7


def control_luts(luts: int, family: str) -> int:
    """A node's counters and handshake logic, ``luts`` as measured on LUT6 parts: LUT4
    parts take 1.5x and 2 more (MVAU, FIFO and width converter control on ECP5 and
    iCE40, docs/calibration.md)."""
    return luts if lut_inputs(family) == 6 else math.ceil(1.5 * luts) + 2


def mux_luts(width: int, inputs: int, family: str) -> int:
    if inputs <= 1:
        return 0
    per = lut_inputs(family) - 2  # LUT6 = 4:1 mux
    return width * math.ceil((inputs - 1) / (per - 1))
