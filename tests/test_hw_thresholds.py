"""Threshold layouts (hw/thresholds.py): constants, offsets from a common row, full rows.

The "offsets" layout compares ``acc - offset`` with constants instead of reading every
threshold from memory; these tests build specs whose thresholds have that structure (a
requantisation with a per-tensor scale and per-channel biases) and check the hardware
against the reference under stalls, in Amaranth's simulator. The Verilog of both layouts
runs in tests/test_hw_sim.py (``*_offsets`` cases).
"""

import dataclasses

import numpy as np
import pytest
from streamsim import run_spec

from fpgagen.dtypes import BIPOLAR, IntType
from fpgagen.hw import thresholds
from fpgagen.nodes import mvau, thresholding


def offset_thresholds(rng, rows, levels, lo, hi, step=(1, 2)):
    """Ascending rows ``common + offset[row]`` inside [lo, hi], with even offsets (the
    XNOR popcount domain halves thresholds: an even offset keeps the structure)."""
    steps = rng.integers(step[0], step[1] + 1, size=levels)
    common = np.cumsum(steps) - steps.sum() // 2 + (lo + hi) // 2
    room = (hi - lo - (common.max() - common.min())) // 4
    assert room >= 1, "no room for offsets: a wider range or fewer levels"
    return common[None, :] + 2 * rng.integers(-room, room + 1, size=(rows, 1))


def equivalent(p, t, lo, hi):
    """Brute force: the plan's comparison equals ``acc >= t`` for every acc in range."""
    acc = np.arange(lo, hi + 1)[:, None, None]
    scaled = (acc << p.shift) + p.offsets[None, :, None]
    return np.array_equal(scaled >= p.constants[None, None, :], acc >= t[None])


def test_plan_finds_each_layout():
    rng = np.random.default_rng(0)
    t = offset_thresholds(rng, 8, 15, -200, 200)
    p = thresholds.plan(t, 2, -200, 200)
    assert p.mode == "offsets" and p.shift == 0 and equivalent(p, t, -200, 200)
    assert p.word_bits == 2 * p.stored_type.bits  # one offset per PE
    varied = np.sort(rng.integers(-200, 200, size=(8, 15)), axis=1)
    assert thresholds.plan(varied, 2, -200, 200).mode == "rows"
    assert thresholds.plan(varied, 2, -200, 200).word_bits == 2 * 15 * 9
    assert thresholds.plan(t, 8, -200, 200).mode == "constants"
    assert thresholds.plan(t[:, :3], 2, -200, 200).mode == "rows"  # too few levels


@pytest.mark.parametrize("seed", range(4))
def test_fractional_biases_need_a_shift_and_stay_exact(seed):
    """ceil(T_k - beta_r) with a per-tensor step and fractional per-row biases: the rows
    are one apart here and there, so whole offsets fail; a shift finds exact ones."""
    rng = np.random.default_rng(seed)
    step, beta = rng.uniform(1.5, 4.0), rng.uniform(-30, 30, size=(12, 1))
    t = np.ceil((np.arange(31) - 15) * step - beta).astype(np.int64)
    lo, hi = -90, 90
    assert thresholds.solve_offsets(t, lo, hi, 0) is None
    p = thresholds.plan(t, 3, lo, hi)
    assert p.mode == "offsets" and 0 < p.shift <= thresholds.MAX_SHIFT
    assert equivalent(p, t, lo, hi)
    # a threshold beyond the range only has to hold where the accumulator can be
    clipped = np.clip(t, -40, 41)
    pc = thresholds.plan(clipped, 3, -40, 40)
    assert pc.mode == "offsets" and equivalent(pc, clipped, -40, 40)


def test_compare_bits_is_the_width_the_hardware_compares():
    """The estimate's compare width (``Plan.compare_bits``) is the width of the value the
    hardware compares, ``(acc << shift) + offset``, shift included."""
    from amaranth.hdl import Signal, signed

    rng = np.random.default_rng(3)
    step, beta = 2.6, rng.uniform(-30, 30, size=(12, 1))
    t = np.ceil((np.arange(31) - 15) * step - beta).astype(np.int64)
    p = thresholds.plan(t, 3, -90, 90)
    assert p.mode == "offsets" and p.shift > 0
    acc, off = Signal(signed(8)), Signal(signed(p.stored_type.bits))  # [-90, 90]
    assert p.compare_bits(8) == ((acc << p.shift) + off).shape().width


def test_distinct_rom_bits_counts_each_function_of_the_address_once():
    from fpgagen.estimate import distinct_rom_bits

    address = np.arange(8)
    a0, a2 = address & 1, (address >> 2) & 1
    f = np.array([0, 1, 1, 0, 1, 0, 0, 1])  # parity: a function of the address
    g = np.array([1, 1, 0, 1, 0, 0, 0, 1])
    columns = [np.zeros(8, int), np.ones(8, int), a0, 1 - a2,  # constants, wires
               f, f, 1 - f, g]  # f thrice (once complemented), g
    assert distinct_rom_bits(np.stack(columns, axis=1)) == 2
    assert distinct_rom_bits(np.stack([f, g], axis=1)[:1]) == 0  # one word: constants


def requant_mvau(rng, mw, mh, in_type, w_type, out, *, pe, simd, vectors=2, step=(1, 2)):
    w = (np.where(rng.integers(0, 2, size=(mh, mw)) > 0, 1, -1) if w_type.bipolar
         else rng.integers(w_type.min, w_type.max + 1, size=(mh, mw)))
    raw = mvau.Spec("m", mw, mh, w, in_type, w_type, IntType(32, True), vectors=vectors)
    lo, hi = raw.acc_range
    t = offset_thresholds(rng, mh, out.max - out.min, lo, hi, step)
    return dataclasses.replace(raw, out_type=out, thresholds=t, out_base=out.min, pe=pe,
                               simd=simd)


@pytest.mark.parametrize("in_type, w_type, out, pe, simd, step", [
    (IntType(4, True), IntType(3, True), IntType(6, True), 2, 3, (1, 2)),
    (BIPOLAR, BIPOLAR, IntType(3, True), 3, 4, (0, 1)),
    (IntType(2, False), BIPOLAR, IntType(4, False), 1, 6, (1, 2)),
])
def test_mvau_with_offset_thresholds_equals_reference(in_type, w_type, out, pe, simd, step):
    rng = np.random.default_rng(pe * 10 + simd)
    spec = requant_mvau(rng, 12, 6, in_type, w_type, out, pe=pe, simd=simd, step=step)
    assert mvau.threshold_plan(spec).mode == "offsets"
    x = (np.where(rng.integers(0, 2, size=(3, spec.in_elems)) > 0, 1, -1) if in_type.bipolar
         else rng.integers(in_type.min, in_type.max + 1, size=(3, spec.in_elems)))
    got = run_spec(spec, x, stall_in=0.4, stall_out=0.4, seed=simd)
    assert np.array_equal(got, mvau.reference(spec, x))


@pytest.mark.parametrize("pe", [1, 3])
def test_thresholding_with_offset_thresholds_equals_reference(pe):
    rng = np.random.default_rng(pe)
    in_type, out = IntType(9, True), IntType(5, False)
    t = offset_thresholds(rng, 6, out.max - out.min, in_type.min, in_type.max)
    spec = thresholding.Spec("t", 6, in_type, out, t, out_base=0, vectors=4, pe=pe)
    assert thresholding.threshold_plan(spec).mode == "offsets"
    x = rng.integers(in_type.min, in_type.max + 1, size=(3, spec.in_elems))
    got = run_spec(spec, x, stall_in=0.4, stall_out=0.4, seed=pe)
    assert np.array_equal(got, thresholding.reference(spec, x))
