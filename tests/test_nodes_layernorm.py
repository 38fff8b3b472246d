"""LayerNorm: exact isqrt (numpy and hardware) against math.isqrt, the golden model vs a
plain loop of the recipe and vs float layer normalisation within a stated bound, spec
checks, hardware vs golden model under stalls, the stall-free rate."""

import math

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st
from ratesim import steady_cycles
from streamsim import run_spec

from fpgagen.dtypes import IntType
from fpgagen.errors import SpecError
from fpgagen.estimate import dsp_tiles
from fpgagen.hw.sequential import ConstantDivider, Isqrt
from fpgagen.nodes import layernorm as ln
from fpgagen.nodes.base import divisors

INT8 = IntType(8, True)
INT16 = IntType(16, True)


def spec_for(d, in_type=INT8, out_type=INT8, frac_bits=16, norm_shift=8, mult=None,
             bias=None, affine_shift=6, vectors=2, pe=1, var_offset=0):
    mult = np.ones(d, dtype=np.int64) if mult is None else mult
    bias = np.zeros(d, dtype=np.int64) if bias is None else bias
    return ln.Spec("ln", d, in_type, out_type, frac_bits, norm_shift, mult, bias,
                   affine_shift, var_offset=var_offset, vectors=vectors, pe=pe)


def test_isqrt_is_exact():
    rng = np.random.default_rng(0)
    roots = np.concatenate([np.arange(0, 3000), rng.integers(0, 2**31, size=3000)])
    squares = roots * roots
    values = np.concatenate([squares, squares - 1, squares + 1, np.arange(0, 10000),
                             rng.integers(0, 2**62, size=20000), [2**62 - 1]])
    values = values[values >= 0]
    got = ln.isqrt(values)
    assert all(int(g) == math.isqrt(int(v)) for g, v in zip(got, values))


def _run_unit(dut, operand, cases):
    results = []

    async def bench(ctx):
        for value in cases:
            ctx.set(operand(dut), value)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycles = 1
            while not ctx.get(dut.done):
                await ctx.tick()
                cycles += 1
            results.append((ctx.get(dut.result), cycles))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


@pytest.mark.parametrize("steps", [1, 3, 8])
def test_hardware_isqrt_and_divider_are_exact(steps):
    rng = np.random.default_rng(steps)
    values = [0, 1, 2, 3, 4, 2**29 - 1, 2**28] + rng.integers(0, 2**29, size=60).tolist()
    unit = Isqrt(29, steps)
    got = _run_unit(unit, lambda d: d.value, values)
    assert [g for g, _ in got] == [math.isqrt(v) for v in values]
    assert {c for _, c in got} == {1 + math.ceil(15 / steps)}
    num = 2**31 - 1
    divisors_ = [1000, 1001, 2**20 - 1] + rng.integers(1000, 2**20, size=60).tolist()
    unit = ConstantDivider(num, 20, (num // 1000).bit_length(), steps)
    got = _run_unit(unit, lambda d: d.divisor, divisors_)
    assert [g for g, _ in got] == [num // v for v in divisors_]


def loop_layernorm(spec, x):
    out = []
    k = spec.affine_shift
    for frame in x.tolist():
        row = []
        for v in range(spec.vectors):
            vec = frame[v * spec.d:(v + 1) * spec.d]
            s1, s2 = sum(vec), sum(e * e for e in vec)
            r = math.isqrt(spec.d * s2 - s1 * s1 + spec.var_offset)
            inv = 2**spec.frac_bits // r if r else 0
            for c, e in enumerate(vec):
                n = math.floor((spec.d * e - s1) * inv / 2**spec.norm_shift)
                y = math.floor((n * int(spec.multipliers[c]) + int(spec.biases[c])
                                + (2**k // 2)) / 2**k)
                row.append(min(max(y, spec.out_type.min), spec.out_type.max))
        out.append(row)
    return np.array(out)


def test_reference_is_the_integer_recipe():
    rng = np.random.default_rng(3)
    d = 12
    s = spec_for(d, mult=rng.integers(-300, 300, size=d), bias=rng.integers(-2000, 2000, d),
                 var_offset=5, vectors=3)
    x = rng.integers(-128, 128, size=(6, s.in_elems))
    x[0, :d] = 7  # a constant vector: V = var_offset, r = 2
    x[1, :d] = -3
    s0 = spec_for(d, var_offset=0)
    assert np.array_equal(ln.reference(s, x), loop_layernorm(s, x))
    assert np.array_equal(ln.reference(s0, x[:, :2 * d]), loop_layernorm(s0, x[:, :2 * d]))
    assert not ln.reference(s0, x[1:2, :2 * d])[0, :d].any()  # r == 0: n = 0, B = 0


@pytest.mark.parametrize("d,in_type", [(32, INT8), (16, IntType(6, False)), (64, INT8)])
def test_normalised_value_is_float_layernorm_within_the_bound(d, in_type):
    """With r = isqrt(V) and inv = floor(2**F / r): inv * sqrt(V) / 2**F lies in
    (1 - r / 2**F, 1 + 1 / r], and the final shift floors, so
    |n / 2**(F-G) - z| <= |z| * (1/r + r/2**F) + 2**(G-F) for z = (x - mean) / std."""
    F, G = 20, 12
    s = spec_for(d, in_type, INT16, F, G, affine_shift=0, vectors=1)
    x = np.random.default_rng(d).integers(in_type.min, in_type.max + 1, size=(200, d))
    x[:, 0] = in_type.max  # no constant vectors
    x[:, 1] = in_type.min
    n = ln.reference(s, x) / 2.0**(F - G)
    z = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    r = ln.isqrt(d * (x * x).sum(1) - x.sum(1) ** 2)[:, None]
    bound = np.abs(z) * (1 / r + r / 2.0**F) + 2.0**(G - F)
    assert np.all(np.abs(n - z) <= bound + 1e-12)
    assert np.abs(n - z).max() < 0.02  # in practice: 2 % of a standard deviation


@pytest.mark.parametrize("kwargs,message", [
    ({"pe": 5}, r"PE=5 does not divide d \(vector length\)=8 \(choose PE from 1, 2, 4, 8\)"),
    ({"multipliers": np.ones(7, dtype=np.int64)},
     r"multipliers must be 8 integers \(one per element\), not shape \(7,\) of int64"),
    ({"biases": np.zeros(8)}, r"biases must be 8 integers \(one per element\), not shape "
                              r"\(8,\) of float64"),
    ({"frac_bits": 49}, r"frac_bits must be an integer in \[0, 48\], not 49"),
    ({"affine_shift": -1}, r"affine_shift must be an integer in \[0, 48\], not -1"),
    ({"var_offset": -2}, r"var_offset must be a non-negative integer, not -2"),
    ({"frac_bits": 48, "in_type": INT16},
     r"vectors of 8 values of int16 with frac_bits=48 overflow 62-bit intermediates"),
    ({"multipliers": np.full(8, 2**40), "norm_shift": 0},
     r"the affine n \* M \+ B overflows 62-bit intermediates \(use a larger norm_shift"),
])
def test_spec_errors(kwargs, message):
    args = {"name": "block0.ln1", "d": 8, "in_type": INT8, "out_type": INT8,
            "frac_bits": 16, "norm_shift": 8, "multipliers": np.ones(8, dtype=np.int64),
            "biases": np.zeros(8, dtype=np.int64), "affine_shift": 4}
    args.update(kwargs)
    with pytest.raises(SpecError, match=message) as err:
        ln.Spec(**args)
    assert err.value.where == "block0.ln1"


def test_fold_options_and_estimate():
    s = spec_for(24)
    assert [o["pe"] for o in ln.fold_options(s)] == divisors(24)
    assert ln.estimate(s, "xc7").cycles == s.cycles() == 2 * 24
    fast = spec_for(24, pe=8)  # 3 words: the statistics unit sets the pace
    assert fast.cycles() == 2 * fast.stats_cycles() > 2 * 3


# ---- hardware -----------------------------------------------------------------------

stalls = st.sampled_from([0.0, 0.5, 0.9])


@st.composite
def cases(draw):
    in_type = IntType(draw(st.integers(2, 8)), draw(st.booleans()))
    d = draw(st.integers(1, 10))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mult = rng.integers(-(2**draw(st.integers(0, 9))), 2**9, size=d)
    bias = rng.integers(-(2**12), 2**12, size=d)
    spec = ln.Spec("ln", d, in_type, IntType(draw(st.integers(2, 10)), draw(st.booleans())),
                   draw(st.integers(0, 20)), draw(st.integers(0, 16)), mult, bias,
                   draw(st.integers(0, 10)), var_offset=draw(st.sampled_from([0, 1, 37])),
                   vectors=draw(st.integers(1, 3)), pe=draw(st.sampled_from(divisors(d))))
    x = rng.integers(in_type.min, in_type.max + 1, size=(draw(st.integers(1, 3)),
                                                          spec.in_elems))
    if draw(st.booleans()):
        x[0, :d] = x[0, 0]  # a constant vector
    return spec, x


@settings(max_examples=15, deadline=None)
@given(cases(), stalls, stalls, st.integers(0, 1000))
def test_hardware_matches_reference(case, stall_in, stall_out, seed):
    spec, x = case
    got = run_spec(spec, x, stall_in=stall_in, stall_out=stall_out, seed=seed,
                   max_cycles=5000 + 200 * x.size)
    assert np.array_equal(got, ln.reference(spec, x))


@pytest.mark.parametrize("d,pe", [(32, 1), (16, 2), (12, 4)])
def test_steady_rate_is_the_estimate(d, pe):
    s = spec_for(d, pe=pe)
    assert steady_cycles(s) == s.cycles() == ln.estimate(s, "xc7").cycles


# ---- resource estimate ----------------------------------------------------------------


def test_dsp_tiles_split_as_mul2dsp():
    """xc7 DSP48E1 multiplies 25 x 18 signed: an unsigned operand takes a bit more, a
    wider product is split into 17-bit slices (one bit of sign headroom each); ECP5's
    18 x 18 takes unsigned operands as they are; Nx1 and small products stay in LUTs."""
    assert dsp_tiles(25, 18) == 1 and dsp_tiles(18, 25) == 1
    assert dsp_tiles(26, 18) == 2 and dsp_tiles(25, 19) == 2
    assert dsp_tiles(25, 17, b_signed=False) == 1
    assert dsp_tiles(25, 18, b_signed=False) == 2
    assert dsp_tiles(26, 26) == 4  # both operands split
    assert dsp_tiles(4, 4) == 0 and dsp_tiles(30, 1) == 0  # below 9 product bits, Nx1
    assert dsp_tiles(18, 18, "ecp5", a_signed=False, b_signed=False) == 1
    assert dsp_tiles(20, 18, "ecp5") == 2 and dsp_tiles(4, 4, "ecp5") == 1
    assert dsp_tiles(19, 18, "ecp5") == 1  # its 1-bit slice is a LUT product


def test_estimate_dsp_is_the_products_tiles():
    """Every product's DSP tiles, the per-element ones once per lane; a power-of-two
    vector length is a shift, any other a constant product."""
    wide = dict(frac_bits=26, norm_shift=16, affine_shift=24,
                mult=np.arange(50000, 50032), bias=np.arange(-16, 16) * 10**6)
    for d, pe in [(32, 1), (32, 4), (24, 3)]:
        s = spec_for(d, IntType(10, True), IntType(4, True), pe=pe, **{
            k: (v[:d] if isinstance(v, np.ndarray) else v) for k, v in wide.items()})
        tiles = ln.products(s, "xc7")
        per_lane = sum(tiles[w][1] for w in ln.PER_LANE)
        once = sum(t[1] for w, t in tiles.items() if w not in ln.PER_LANE)
        assert ln.estimate(s, "xc7").dsp == pe * per_lane + once
        assert (tiles["d*x"][1] == 0) == (tiles["d*S2"][1] == 0) == (d == 32)
        assert tiles["(d*x-S1)*inv"][1] == 2  # 27-bit unsigned inv: split
    assert ln.estimate(spec_for(32, IntType(10, True), **{
        **{k: v for k, v in wide.items() if k != "mult"},
        "mult": np.arange(32) + 2**16}), "xc7").dsp == 6  # n * M split too


@pytest.mark.parametrize("family", ["xc7", "ecp5"])
def test_estimate_luts_grow_with_pe_and_varying_constants(family):
    rng = np.random.default_rng(1)
    mult, bias = rng.integers(100, 3000, 32), rng.integers(-5000, 5000, 32)
    luts = [ln.estimate(spec_for(32, mult=mult, bias=bias, pe=pe), family).lut
            for pe in divisors(32)]
    assert luts == sorted(luts) and luts[0] < luts[-1]
    fixed = ln.estimate(spec_for(32, mult=np.full(32, 3000), bias=np.full(32, -5000)),
                        family).lut  # constants the same for all elements: no ROM
    assert fixed < luts[0]


@pytest.mark.slow
@pytest.mark.parametrize("d,in_type,pe", [(32, IntType(10, True), 1), (24, INT8, 8)])
def test_estimate_against_yosys_xc7(tmp_path, d, in_type, pe):
    """Calibration check: DSPs exact, LUTs within 15 % of Yosys (docs/calibration.md)."""
    from fpgagen import synth

    rng = np.random.default_rng(d)
    s = spec_for(d, in_type, IntType(4, True), 26, 16, rng.integers(40000, 70000, d),
                 rng.integers(-2**24, 2**24, d), 24, var_offset=204, pe=pe)
    got = synth.synthesize(synth.Job("ln", synth.node_verilog(s), synth.NODE_TOP,
                                     tmp_path), "xc7")["resources"]
    est = ln.estimate(s, "xc7")
    assert est.dsp == got["dsp"]
    assert abs(est.lut - got["lut"]) <= 0.15 * got["lut"]
