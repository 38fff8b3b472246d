"""DWC: spec checks, word order, hardware vs the identity, full-rate conversion."""

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from streamsim import run_spec

from fpgagen.dtypes import BIPOLAR, IntType
from fpgagen.errors import SpecError
from fpgagen.nodes import dwc

UINT5 = IntType(5, False)


def test_reference_is_the_identity():
    s = dwc.Spec("w", 6, UINT5, 2, 3)
    x = np.arange(18).reshape(3, 6)
    assert np.array_equal(dwc.reference(s, x), x)


@pytest.mark.parametrize("kwargs,message", [
    ({"in_lanes": 5},
     r"in_lanes=5 does not divide elems=12 \(choose in_lanes from 1, 2, 3, 4, 6, 12\)"),
    ({"out_lanes": 8}, r"out_lanes=8 does not divide elems=12"),
    ({"elems": 0}, r"elems must be a positive integer, not 0"),
    ({"out_lanes": -2}, r"out_lanes must be a positive integer, not -2"),
])
def test_spec_errors(kwargs, message):
    args = {"name": "w", "elems": 12, "dtype": UINT5, "in_lanes": 4, "out_lanes": 6}
    args.update(kwargs)
    with pytest.raises(SpecError, match=message) as err:
        dwc.Spec(**args)
    assert err.value.where == "w"


@pytest.mark.parametrize("a,b,cycles", [(1, 4, 12), (4, 1, 12), (4, 6, 3), (6, 4, 3), (3, 3, 4)])
def test_cycles_are_the_busier_side(a, b, cycles):
    s = dwc.Spec("w", 12, UINT5, a, b)
    assert s.cycles() == cycles == dwc.estimate(s, "xc7").cycles


def test_fold_options_are_pairs_of_divisors():
    s = dwc.Spec("w", 6, UINT5, 1, 1)
    pairs = {(o["in_lanes"], o["out_lanes"]) for o in dwc.fold_options(s)}
    assert pairs == {(a, b) for a in (1, 2, 3, 6) for b in (1, 2, 3, 6)}
    for a, b in pairs:
        dataclasses.replace(s, in_lanes=a, out_lanes=b)


# ---- hardware -----------------------------------------------------------------------

dtypes = st.one_of(
    st.just(BIPOLAR),
    st.builds(IntType, st.integers(1, 8), st.booleans()),
)
stalls = st.sampled_from([0.0, 0.5, 0.9])


@st.composite
def cases(draw):
    dtype = draw(dtypes)
    a, b = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    elems = math.lcm(a, b) * draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = dtype.decode(rng.integers(0, 1 << dtype.bits, size=(draw(st.integers(1, 3)), elems)))
    return dwc.Spec("w", elems, dtype, a, b), x


@settings(max_examples=25, deadline=None)
@given(cases(), stalls, stalls, st.integers(0, 1000))
def test_hardware_is_the_identity(case, stall_in, stall_out, seed):
    """run_spec unpacks lane 0 first, so this also checks that element order is kept."""
    spec, x = case
    # a lost or stuck word shows as no progress long before the default budget
    got = run_spec(spec, x, stall_in=stall_in, stall_out=stall_out, seed=seed,
                   max_cycles=2000 + 100 * x.size)
    assert np.array_equal(got, x)


@pytest.mark.parametrize("a,b", [(1, 4), (4, 1), (2, 3), (3, 2), (6, 4), (4, 6), (3, 3)])
def test_hardware_runs_at_full_rate(a, b):
    spec = dwc.Spec("w", 2 * math.lcm(a, b), UINT5, a, b)
    frames = 8
    x = np.random.default_rng(a * 10 + b).integers(0, 32, size=(frames, spec.elems))
    latency = math.lcm(a, b) // a + math.lcm(a, b) // b + 2
    # run_spec fails once the last word takes longer than the steady rate + latency
    got = run_spec(spec, x, stall_in=0, stall_out=0,
                   max_cycles=frames * spec.cycles() + latency)
    assert np.array_equal(got, x)
