"""Softmax: golden model vs float softmax (within one output step) and vs a plain loop of
the integer recipe, the exponent tables, spec checks, hardware vs golden model under
stalls for both exponent units, the stall-free rate, the variants' estimates."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ratesim import steady_cycles
from streamsim import run_spec

from fpgagen.dtypes import BIPOLAR, IntType
from fpgagen.errors import SpecError
from fpgagen.nodes import softmax as sm
from fpgagen.nodes.base import divisors

INT8 = IntType(8, True)
UINT8 = IntType(8, False)


def spec_for(n, scale, variant="single", rows=2, pe=1, in_type=INT8, out_type=UINT8,
             frac_bits=8, **table_args):
    fields = sm.exp_tables(scale, in_type, variant=variant, **table_args)
    return sm.Spec("sm", n, in_type, out_type, sm.output_shift(frac_bits), rows=rows, pe=pe,
                   **fields)


def loop_softmax(spec, x):
    out = []
    for frame in x.tolist():
        row_out = []
        for r in range(spec.rows):
            row = frame[r * spec.n:(r + 1) * spec.n]
            top = max(row)
            exps = []
            for v in row:
                d = min(top - v, spec.depth - 1)
                if spec.variant == "single":
                    exps.append(int(spec.exp_table[d]))
                else:
                    k = spec.split_bits
                    hi, lo = int(spec.exp_hi[d >> k]), int(spec.exp_lo[d % (1 << k)])
                    exps.append(hi * lo // (1 << spec.split_shift))
            recip = (2**31 - 1) // sum(exps)
            row_out += [min(e * recip // (1 << spec.shift), spec.out_type.max) for e in exps]
        out.append(row_out)
    return np.array(out)


@pytest.mark.parametrize("variant", sm.VARIANTS)
@pytest.mark.parametrize("scale", [0.02, 0.1, 0.5])
def test_reference_is_float_softmax_within_one_step(variant, scale):
    s = spec_for(17, scale, variant, rows=4)
    x = np.random.default_rng(1).integers(-128, 128, size=(30, s.in_elems))
    got = sm.reference(s, x)
    z = x.reshape(30, 4, 17) * scale
    p = np.exp(z - z.max(-1, keepdims=True))
    want = (p / p.sum(-1, keepdims=True) * 256).reshape(got.shape)
    # (e * R) >> shift floors: at most one step below the float softmax; 0.01 step
    # covers the rounding of the 16-bit exponents and the floor of R
    below = np.minimum(want, 255) - got
    assert below.max() < 1.01 and below.min() > -0.01
    assert got.max() <= 255


@pytest.mark.parametrize("variant", sm.VARIANTS)
def test_reference_is_the_integer_recipe(variant):
    # a short table: differences beyond depth - 1 use the last entry
    s = spec_for(9, 0.07, variant, rows=3, depth=40, width=12, split_bits=3)
    x = np.random.default_rng(2).integers(-128, 128, size=(5, s.in_elems))
    assert np.array_equal(sm.reference(s, x), loop_softmax(s, x))


def test_exp_tables():
    single = sm.exp_tables(0.1, INT8, width=16)
    t = single["exp_table"]
    assert len(t) == 256 and t[0] == 65535 and np.all(np.diff(t) <= 0)
    assert t[10] == round(np.exp(-1.0) * 65535)
    split = sm.exp_tables(0.1, INT8, variant="split", width=16, split_bits=4)
    assert len(split["exp_hi"]) == 16 and len(split["exp_lo"]) == 16
    s = spec_for(4, 0.1, "split", width=16, split_bits=4)
    e = sm.exp_of(s, np.arange(256))
    assert np.abs(e - t).max() <= 3  # the product of two rounded exponents
    assert len(sm.exp_tables(0.1, IntType(4, False))["exp_table"]) == 16  # d <= 15


def test_a_single_large_score_takes_everything():
    s = spec_for(8, 0.5, rows=1)
    x = np.full((1, 8), -100)
    x[0, 3] = 100
    assert sm.reference(s, x).tolist() == [[0, 0, 0, 255, 0, 0, 0, 0]]  # 256 saturates
    assert sm.reference(s, np.zeros((1, 8), dtype=np.int64)).tolist() == [[31] * 8]


@pytest.mark.parametrize("kwargs,message", [
    ({"pe": 3}, r"PE=3 does not divide n \(row length\)=8 \(choose PE from 1, 2, 4, 8\)"),
    ({"out_type": IntType(8, True)}, r"softmax output type int8 is not unsigned"),
    ({"in_type": BIPOLAR}, r"softmax scores cannot be bipolar"),
    ({"variant": "taylor"}, r"exponent unit variant 'taylor' is not supported \(use 'single'"),
    ({"exp_table": None}, r"the single-table variant needs exp_table"),
    ({"variant": "split"}, r"the split variant needs exp_hi and exp_lo"),
    ({"exp_table": np.array([0, 5, 3])}, r"the exponent of d = 0 \(the row's maximum\) is 0"),
    ({"exp_table": np.array([1.5])}, r"exp_table entries must be integers in \[0, 2\*\*32\)"),
    ({"exp_table": np.full(4, 2**30)}, r"a row of 8 exponents up to 1073741824 may sum past "
                                       r"2\*\*31 - 1"),
    ({"shift": 63}, r"shift must be an integer in \[0, 62\], not 63"),
])
def test_spec_errors(kwargs, message):
    args = {"name": "attn0.softmax", "n": 8, "in_type": INT8, "out_type": UINT8,
            "shift": 23, "exp_table": np.array([255, 94, 35, 13])}
    args.update(kwargs)
    with pytest.raises(SpecError, match=message) as err:
        sm.Spec(**args)
    assert err.value.where == "attn0.softmax"


def test_split_table_sizes_are_checked():
    with pytest.raises(SpecError, match=r"exp_lo has 3 entries, expected 2\*\*split_bits = 4"):
        sm.Spec("s", 4, INT8, UINT8, 23, variant="split", exp_hi=np.array([9, 3]),
                exp_lo=np.array([9, 8, 7]), split_bits=2, split_shift=3)


def test_variants_estimates_side_by_side():
    """A deep, wide table is block RAM per lookup; the split is two small tables and a
    multiplier (a DSP), the choice the report shows."""
    s = spec_for(16, 0.004, in_type=IntType(12, True), depth=4096, width=16)
    costs = sm.exp_unit_costs(s, "xc7")
    assert costs["single"].bram18 >= 1 and costs["single"].dsp == 0
    assert costs["split"].bram18 == 0 and costs["split"].dsp == 1
    total = sm.estimate(s, "xc7")
    assert total.bram18 >= 2 * costs["single"].bram18  # the sum and output stages
    split = dataclasses.replace(s, variant="split", exp_table=None,
                                **{k: v for k, v in sm.exp_tables(0.004, IntType(12, True),
                                   variant="split", depth=4096, width=16,
                                   split_bits=6).items() if k != "variant"})
    assert sm.estimate(split, "xc7").dsp > total.dsp
    # the variant built is costed from its tables' contents, the other from their shape
    built = sm.exp_unit_costs(split, "xc7")["split"]
    assert (built.bram18, built.dsp) == (costs["split"].bram18, costs["split"].dsp)
    assert abs(built.lut - costs["split"].lut) <= 0.25 * costs["split"].lut


# ---- hardware -----------------------------------------------------------------------

stalls = st.sampled_from([0.0, 0.5, 0.9])


@st.composite
def cases(draw):
    in_type = IntType(draw(st.integers(2, 8)), draw(st.booleans()))
    n = draw(st.integers(1, 12))
    variant = draw(st.sampled_from(sm.VARIANTS))
    width = draw(st.integers(3, 14))
    fields = sm.exp_tables(draw(st.sampled_from([0.03, 0.2, 1.0])), in_type,
                           variant=variant, depth=draw(st.integers(2, 64)), width=width,
                           split_bits=draw(st.integers(0, 3)))
    out_type = IntType(draw(st.integers(2, 10)), False)
    spec = sm.Spec("sm", n, in_type, out_type, sm.output_shift(draw(st.integers(2, 10))),
                   rows=draw(st.integers(1, 3)), pe=draw(st.sampled_from(divisors(n))),
                   **fields)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(in_type.min, in_type.max + 1, size=(draw(st.integers(1, 3)),
                                                          spec.in_elems))
    return spec, x


@settings(max_examples=15, deadline=None)
@given(cases(), stalls, stalls, st.integers(0, 1000))
def test_hardware_matches_reference(case, stall_in, stall_out, seed):
    spec, x = case
    got = run_spec(spec, x, stall_in=stall_in, stall_out=stall_out, seed=seed,
                   max_cycles=5000 + 200 * x.size)
    assert np.array_equal(got, sm.reference(spec, x))


@pytest.mark.parametrize("variant", sm.VARIANTS)
@pytest.mark.parametrize("n,pe", [(16, 1), (12, 3), (5, 1)])
def test_steady_rate_is_the_estimate(variant, n, pe):
    s = spec_for(n, 0.05, variant, rows=2, pe=pe)
    assert steady_cycles(s) == s.cycles() == sm.estimate(s, "xc7").cycles
    assert s.cycles() == 2 * n // pe  # the reciprocal keeps up with the row


def test_tiny_rows_are_within_ten_percent():
    s = spec_for(3, 0.05, rows=1)
    assert abs(steady_cycles(s, frames=16) - s.cycles()) <= 0.1 * s.cycles()
