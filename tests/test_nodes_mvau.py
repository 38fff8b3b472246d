"""MVAU: reference against plain loops, spec validation, hardware in Amaranth's simulator."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streamsim import run_spec

from fpgagen.dtypes import BIPOLAR, IntType
from fpgagen.errors import SpecError
from fpgagen.nodes import mvau

TYPES = [BIPOLAR, IntType(2, True), IntType(3, False), IntType(4, True)]


def random_values(rng, dtype, shape):
    if dtype.bipolar:
        return np.where(rng.integers(0, 2, size=shape) > 0, 1, -1)
    return rng.integers(dtype.min, dtype.max + 1, size=shape)


def make_spec(rng, mw, mh, in_type, w_type, *, pe=1, simd=1, vectors=1, out=None):
    w = random_values(rng, w_type, (mh, mw))
    raw = mvau.Spec("m", mw, mh, w, in_type, w_type, IntType(32, True), vectors=vectors)
    if out is None:
        return dataclasses.replace(raw, out_type=raw.acc_type, pe=pe, simd=simd)
    lo, hi = raw.acc_range
    levels = 1 if out.bipolar else out.max - out.min
    t = np.sort(rng.integers(lo - 1, hi + 2, size=(mh, levels)), axis=1)
    return dataclasses.replace(raw, out_type=out, thresholds=t,
                               out_base=0 if out.bipolar else out.min, pe=pe, simd=simd)


def loop_reference(spec, x):
    """The MVAU function written as plain loops."""
    out = []
    for frame in x:
        row = []
        for v in range(spec.vectors):
            vec = frame[v * spec.mw:(v + 1) * spec.mw]
            for c in range(spec.mh):
                acc = sum(int(spec.weights[c, i]) * int(vec[i]) for i in range(spec.mw))
                if spec.thresholds is None:
                    row.append(acc)
                else:
                    n = sum(1 for t in spec.thresholds[c] if acc >= t)
                    row.append(2 * n - 1 if spec.out_type.bipolar else spec.out_base + n)
        out.append(row)
    return np.array(out)


@pytest.mark.parametrize("in_type", TYPES)
@pytest.mark.parametrize("w_type", TYPES)
@pytest.mark.parametrize("out", [None, BIPOLAR, IntType(2, False)])
def test_reference_equals_loops(in_type, w_type, out):
    rng = np.random.default_rng(7)
    spec = make_spec(rng, 9, 5, in_type, w_type, vectors=2, out=out)
    x = random_values(rng, in_type, (4, spec.in_elems))
    assert np.array_equal(mvau.reference(spec, x), loop_reference(spec, x))


def test_acc_range_is_exact_and_typed():
    spec = mvau.Spec("m", 3, 2, np.array([[1, -1, 1], [-1, -1, -1]]), IntType(2, False),
                     BIPOLAR, IntType(8, True))
    assert spec.acc_range == (-9, 6)
    assert spec.acc_type == IntType(5, True)


@pytest.mark.parametrize("field,value,message", [
    ("pe", 3, r"PE=3 does not divide MH \(output channels\)=4"),
    ("simd", 4, r"SIMD=4 does not divide MW \(input elements\)=6"),
    ("pe", 0, "pe must be a positive integer"),
])
def test_bad_folding_is_refused_with_a_hint(field, value, message):
    rng = np.random.default_rng(0)
    spec = make_spec(rng, 6, 4, BIPOLAR, BIPOLAR)
    with pytest.raises(SpecError, match=message):
        dataclasses.replace(spec, **{field: value})


def test_weights_outside_their_type_are_refused():
    with pytest.raises(SpecError, match="weights do not fit int2"):
        mvau.Spec("m", 2, 1, np.array([[2, 0]]), BIPOLAR, IntType(2, True), IntType(8, True))


def test_output_type_too_narrow_for_accumulator():
    with pytest.raises(SpecError, match="does not fit the output type"):
        mvau.Spec("m", 8, 1, np.ones((1, 8), int), IntType(4, False), IntType(2, True),
                  IntType(4, True))


@st.composite
def mvau_cases(draw):
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    mw = draw(st.sampled_from([1, 2, 3, 4, 6, 8, 12]))
    mh = draw(st.sampled_from([1, 2, 3, 4, 6]))
    in_type = draw(st.sampled_from(TYPES))
    w_type = draw(st.sampled_from(TYPES))
    out = draw(st.sampled_from([None, BIPOLAR, IntType(2, True), IntType(3, False)]))
    pe = draw(st.sampled_from([d for d in range(1, mh + 1) if mh % d == 0]))
    simd = draw(st.sampled_from([d for d in range(1, mw + 1) if mw % d == 0]))
    vectors = draw(st.sampled_from([1, 2]))
    stall = draw(st.sampled_from([0.0, 0.5, 0.9]))
    spec = make_spec(rng, mw, mh, in_type, w_type, pe=pe, simd=simd, vectors=vectors, out=out)
    x = random_values(rng, in_type, (3, spec.in_elems))
    return spec, x, stall, seed


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mvau_cases())
def test_hardware_equals_reference_under_stalls(case):
    spec, x, stall, seed = case
    got = run_spec(spec, x, stall_in=stall, stall_out=stall, seed=seed)
    assert np.array_equal(got, mvau.reference(spec, x))


def test_a_wrong_weight_in_hardware_is_caught():
    rng = np.random.default_rng(3)
    spec = make_spec(rng, 8, 4, BIPOLAR, BIPOLAR, pe=2, simd=4, out=IntType(2, False))
    x = random_values(rng, BIPOLAR, (6, spec.in_elems))
    broken = dataclasses.replace(spec, weights=spec.weights * np.array([[-1]] + [[1]] * 3))
    assert not np.array_equal(run_spec(broken, x), mvau.reference(spec, x))
