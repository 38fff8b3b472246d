"""LabelSelect: golden model vs a plain loop (ties!), spec checks, hardware vs model."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from streamsim import run_spec

from fpgagen.dtypes import BIPOLAR, IntType
from fpgagen.errors import SpecError
from fpgagen.nodes import labelselect as ls
from fpgagen.nodes.base import divisors

INT4 = IntType(4, True)


def loop_first_max(x):
    out = []
    for row in x.tolist():
        best = 0
        for j, value in enumerate(row):
            if value > row[best]:
                best = j
        out.append([best])
    return np.array(out)


def values(dtype, shape, rng, pool=None):
    """Random values of ``dtype``; with ``pool``, drawn from that many distinct ones (ties)."""
    raw = rng.integers(0, 1 << dtype.bits, size=shape if pool is None else pool)
    v = dtype.decode(raw)
    return v if pool is None else rng.choice(v, size=shape)


@pytest.mark.parametrize("x,expected", [
    ([3, 5, 5, 1], 1),
    ([7, 7, 7, 7], 0),
    ([-3, -1, -8, -1], 1),
    ([-8, -8, -8, -7], 3),
    ([0, 0, 0, 0], 0),
])
def test_worked_examples_ties_go_to_the_first(x, expected):
    s = ls.Spec("top1", 4, INT4)
    assert ls.reference(s, np.array([x])).tolist() == [[expected]]


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("dtype", [INT4, IntType(3, False), BIPOLAR, IntType(16, True)])
def test_reference_matches_loop(seed, dtype):
    rng = np.random.default_rng(seed)
    s = ls.Spec("top1", 10, dtype)
    x = values(dtype, (20, 10), rng, pool=2 + seed % 3)
    got = ls.reference(s, x)
    assert got.shape == (20, 1)
    assert np.array_equal(got, loop_first_max(x))
    assert s.out_type.contains(got)


@pytest.mark.parametrize("classes,out_type", [
    (1, "uint1"), (2, "uint1"), (3, "uint2"), (10, "uint4"), (256, "uint8"), (257, "uint9"),
])
def test_out_type_holds_the_last_index(classes, out_type):
    s = ls.Spec("top1", classes, INT4)
    assert s.out_type.name == out_type
    assert (s.out_elems, s.out_lanes, s.in_elems) == (1, 1, classes)


@pytest.mark.parametrize("kwargs,message", [
    ({"k": 2}, r"k=2 is not supported, only k=1 \(top-1\) \(take the top-k on the host"),
    ({"k": 0}, r"k must be a positive integer, not 0"),
    ({"pe": 5}, r"PE=5 does not divide classes=12 \(choose PE from 1, 2, 3, 4, 6, 12\)"),
    ({"classes": 0}, r"classes must be a positive integer, not 0"),
    ({"pe": 2.0}, r"pe must be a positive integer, not 2.0"),
])
def test_spec_errors(kwargs, message):
    args = {"name": "top1", "classes": 12, "in_type": INT4}
    args.update(kwargs)
    with pytest.raises(SpecError, match=message) as err:
        ls.Spec(**args)
    assert err.value.where == "top1"


def test_fold_options_are_the_legal_pe():
    s = ls.Spec("top1", 10, INT4)
    options = ls.fold_options(s)
    assert [o["pe"] for o in options] == [1, 2, 5, 10]
    for o in options:
        folded = dataclasses.replace(s, **o)
        assert ls.estimate(folded, "ecp5").cycles == folded.cycles() == 10 // o["pe"]


# ---- hardware -----------------------------------------------------------------------

in_types = st.one_of(
    st.just(BIPOLAR),
    st.builds(IntType, st.integers(1, 6), st.just(False)),
    st.builds(IntType, st.integers(1, 6), st.just(True)),
)
stalls = st.sampled_from([0.0, 0.5, 0.9])


@st.composite
def cases(draw):
    dtype = draw(in_types)
    classes = draw(st.integers(1, 16))
    pe = draw(st.sampled_from(divisors(classes)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pool = draw(st.sampled_from([None, 1, 2, 3]))
    x = values(dtype, (draw(st.integers(1, 5)), classes), rng, pool=pool)
    return ls.Spec("top1", classes, dtype, pe=pe), x


@settings(max_examples=25, deadline=None)
@given(cases(), stalls, stalls, st.integers(0, 1000))
def test_hardware_matches_reference(case, stall_in, stall_out, seed):
    spec, x = case
    # a lost or stuck word shows as no progress long before the default budget
    got = run_spec(spec, x, stall_in=stall_in, stall_out=stall_out, seed=seed,
                   max_cycles=2000 + 100 * x.size)
    assert np.array_equal(got, ls.reference(spec, x))


@pytest.mark.parametrize("pe", [1, 2, 3, 6])
def test_hardware_ties_across_and_within_words(pe):
    x = np.array([
        [5, 0, 0, 0, 0, 5],   # first and last word
        [0, 0, 5, 5, 0, 0],   # neighbours (same word for pe >= 2 except pe=3)
        [-1, -1, -1, -1, -1, -1],
        [-8, -8, -8, -8, -8, 7],
        [7, -8, -8, -8, -8, -8],
        [0, 0, 0, 0, 3, 3],
    ])
    spec = ls.Spec("top1", 6, INT4, pe=pe)
    got = run_spec(spec, x, stall_in=0.5, stall_out=0.5, seed=pe)
    assert got[:, 0].tolist() == [0, 2, 0, 5, 0, 4]


@pytest.mark.parametrize("classes,pe", [(12, 1), (12, 4), (12, 12)])
def test_hardware_runs_at_classes_over_pe(classes, pe):
    spec = ls.Spec("top1", classes, INT4, pe=pe)
    frames = 6
    x = values(INT4, (frames, classes), np.random.default_rng(pe))
    # run_spec fails once the last index takes longer than the steady rate + latency
    got = run_spec(spec, x, stall_in=0, stall_out=0, max_cycles=frames * spec.cycles() + 4)
    assert np.array_equal(got, ls.reference(spec, x))
