"""Thresholding: golden model vs a plain loop, spec checks, hardware vs golden model."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from streamsim import run_spec

from fpgagen.dtypes import BIPOLAR, IntType
from fpgagen.errors import SpecError
from fpgagen.nodes import thresholding as th
from fpgagen.nodes.base import divisors

INT4 = IntType(4, True)
UINT3 = IntType(3, False)


def loop_threshold(x, thresholds, channels, out_base, bipolar_out):
    """Element by element, threshold by threshold (unclipped thresholds)."""
    out = np.zeros_like(x)
    for f in range(x.shape[0]):
        for e in range(x.shape[1]):
            reached = 0
            for t in thresholds[e % channels]:
                if x[f, e] >= t:
                    reached += 1
            out[f, e] = (2 * reached - 1) if bipolar_out else out_base + reached
    return out


def random_values(dtype, shape, rng):
    return dtype.decode(rng.integers(0, 1 << dtype.bits, size=shape))


def test_worked_example():
    t = np.array([[-3, 0, 0], [2, 5, 9]])
    s = th.Spec("t", 2, INT4, IntType(3, True), t, out_base=-1, vectors=2)
    x = np.array([[-4, 1, 0, 5], [-3, 7, -8, 2]])
    # ch0 (-3, 0, 0): -4 none, 0 all, -3 one, -8 none; ch1 (2, 5, 9): 1 none, 5 two,
    # 7 two (9 is out of reach), 2 one
    expected = np.array([[-1, -1, 2, 1], [0, 1, -1, 0]])
    assert np.array_equal(th.reference(s, x), expected)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("in_type,out_type,levels,base", [
    (INT4, IntType(3, True), 3, -2),      # signed in, negative thresholds, signed out
    (UINT3, IntType(2, False), 3, 0),     # unsigned in: negative thresholds always reached
    (INT4, BIPOLAR, 1, 0),                # sign activation
    (BIPOLAR, IntType(2, False), 2, 1),   # bipolar in
    (IntType(8, True), IntType(4, False), 15, 0),
])
def test_reference_matches_loop(seed, in_type, out_type, levels, base):
    rng = np.random.default_rng(seed)
    channels, vectors = 5, 3
    t = np.sort(rng.integers(in_type.min - 4, in_type.max + 5, size=(channels, levels)), axis=1)
    s = th.Spec("t", channels, in_type, out_type, t, out_base=base, vectors=vectors)
    x = random_values(in_type, (4, vectors * channels), rng)
    got = th.reference(s, x)
    assert np.array_equal(got, loop_threshold(x, t, channels, base, out_type.bipolar))
    assert out_type.contains(got)


def test_thresholds_are_clipped_to_the_input_range():
    s = th.Spec("t", 1, UINT3, UINT3, np.array([[-9, 3, 20]]))
    assert s.thresholds.tolist() == [[0, 3, 8]]


@pytest.mark.parametrize("kwargs,message", [
    ({"pe": 4}, r"PE=4 does not divide channels=6 \(choose PE from 1, 2, 3, 6\)"),
    ({"channels": 0}, r"channels must be a positive integer, not 0"),
    ({"thresholds": np.zeros((5, 2))}, r"thresholds have shape \(5, 2\), expected \(6, levels\)"),
    ({"thresholds": np.zeros((6, 0))}, r"thresholds have shape \(6, 0\)"),
    ({"thresholds": np.tile([3, 1], (6, 1))}, r"thresholds must be ascending in each channel"),
    ({"out_type": IntType(2, False), "out_base": 1},
     r"3 thresholds from base 1 do not fit the output type uint2 \(widen the output type\)"),
    ({"out_base": -1}, r"3 thresholds from base -1 do not fit the output type uint3"),
    ({"out_type": BIPOLAR}, r"do not fit the output type bipolar \(a bipolar output takes"),
])
def test_spec_errors(kwargs, message):
    args = {"name": "act", "channels": 6, "in_type": INT4, "out_type": UINT3,
            "thresholds": np.tile([-1, 0, 4], (6, 1))}
    args.update(kwargs)
    with pytest.raises(SpecError, match=message) as err:
        th.Spec(**args)
    assert err.value.where == "act"


def test_fold_options_are_the_legal_pe():
    s = th.Spec("t", 12, INT4, UINT3, np.zeros((12, 1)))
    options = th.fold_options(s)
    assert [o["pe"] for o in options] == [1, 2, 3, 4, 6, 12]
    for o in options:
        folded = dataclasses.replace(s, **o)
        assert folded.cycles() == 12 // o["pe"]
        assert th.estimate(folded, "xc7").cycles == folded.cycles()


def test_estimate_grows_with_pe_and_uses_bram_for_big_tables():
    t = np.sort(np.random.default_rng(0).integers(-128, 128, size=(512, 255)), axis=1)
    s = th.Spec("t", 512, IntType(8, True), IntType(8, False), t, pe=1)
    wide = dataclasses.replace(s, pe=8)
    assert th.estimate(s, "xc7").bram18 > 0
    assert th.estimate(wide, "xc7").lut > th.estimate(s, "xc7").lut


# ---- hardware -----------------------------------------------------------------------

in_types = st.one_of(
    st.just(BIPOLAR),
    st.builds(IntType, st.integers(1, 6), st.just(False)),
    st.builds(IntType, st.integers(1, 6), st.just(True)),
)
stalls = st.sampled_from([0.0, 0.5, 0.9])


@st.composite
def cases(draw):
    in_type = draw(in_types)
    channels = draw(st.integers(1, 8))
    pe = draw(st.sampled_from(divisors(channels)))
    vectors = draw(st.integers(1, 3))
    if draw(st.booleans()):
        out_type, levels, base = BIPOLAR, 1, 0
    else:
        out_type = IntType(draw(st.integers(1, 4)), draw(st.booleans()))
        levels = draw(st.integers(1, out_type.max - out_type.min))
        base = draw(st.integers(out_type.min, out_type.max - levels))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t = np.sort(rng.integers(in_type.min - 2, in_type.max + 3, size=(channels, levels)), axis=1)
    spec = th.Spec("t", channels, in_type, out_type, t, out_base=base, vectors=vectors, pe=pe)
    x = random_values(in_type, (draw(st.integers(1, 3)), spec.in_elems), rng)
    return spec, x


@settings(max_examples=25, deadline=None)
@given(cases(), stalls, stalls, st.integers(0, 1000))
def test_hardware_matches_reference(case, stall_in, stall_out, seed):
    spec, x = case
    # a lost or stuck word shows as no progress long before the default budget
    got = run_spec(spec, x, stall_in=stall_in, stall_out=stall_out, seed=seed,
                   max_cycles=2000 + 100 * x.size)
    assert np.array_equal(got, th.reference(spec, x))


@pytest.mark.parametrize("pe", [1, 2, 6])
def test_hardware_takes_one_word_per_cycle(pe):
    rng = np.random.default_rng(pe)
    t = np.sort(rng.integers(-8, 9, size=(6, 3)), axis=1)
    spec = th.Spec("t", 6, INT4, UINT3, t, vectors=4, pe=pe)
    frames = 5
    x = random_values(INT4, (frames, spec.in_elems), rng)
    # run_spec fails once the last word takes longer than the steady rate + latency
    got = run_spec(spec, x, stall_in=0, stall_out=0, max_cycles=frames * spec.cycles() + 4)
    assert np.array_equal(got, th.reference(spec, x))
