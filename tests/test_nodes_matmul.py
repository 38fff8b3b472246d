"""Matmul: golden model vs plain loops over the documented word order (attention's
Q Kᵀ and A V), spec checks, hardware vs golden model under stalls, the stall-free rate."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ratesim import steady_cycles
from streamsim import run_spec

from fpgagen.dtypes import BIPOLAR, IntType
from fpgagen.errors import SpecError
from fpgagen.nodes import matmul as mm
from fpgagen.nodes.base import divisors

INT4 = IntType(4, True)
INT8 = IntType(8, True)


def loop_matmul(spec, x):
    out = []
    for frame in x.tolist():
        pos, row_out = 0, []
        for _ in range(spec.heads):
            b = frame[pos:pos + spec.cols * spec.inner]
            pos += spec.cols * spec.inner
            a = frame[pos:pos + spec.rows * spec.inner]
            pos += spec.rows * spec.inner
            for r in range(spec.rows):
                for c in range(spec.cols):
                    total = 0
                    for i in range(spec.inner):
                        b_ci = b[c * spec.inner + i] if spec.transpose_b else b[i * spec.cols + c]
                        total += a[r * spec.inner + i] * b_ci
                    row_out.append(total)
        out.append(row_out)
    return np.array(out)


@pytest.mark.parametrize("transpose_b", [True, False])
def test_reference_matches_loops(transpose_b):
    s = mm.Spec("mm", 3, 4, 6, INT4, mm.acc_type(INT4, 4), transpose_b, heads=2, lanes=2)
    x = np.random.default_rng(0).integers(-8, 8, size=(3, s.in_elems))
    assert np.array_equal(mm.reference(s, x), loop_matmul(s, x))


def test_attention_scores_and_weighted_values():
    """Q Kᵀ: K (tokens x d) then Q (tokens x d); A V: V (tokens x d) then A (tokens x tokens)."""
    rng = np.random.default_rng(1)
    tokens, d = 5, 3
    q, k, v = (rng.integers(-8, 8, size=(tokens, d)) for _ in range(3))
    a = rng.integers(0, 8, size=(tokens, tokens))
    qk = mm.Spec("qk", tokens, d, tokens, INT4, mm.acc_type(INT4, d), transpose_b=True)
    av = mm.Spec("av", tokens, tokens, d, INT4, mm.acc_type(INT4, tokens), transpose_b=False)
    scores = mm.reference(qk, np.concatenate([k.ravel(), q.ravel()])[None])
    mixed = mm.reference(av, np.concatenate([v.ravel(), a.ravel()])[None])
    assert np.array_equal(scores.reshape(tokens, tokens), q @ k.T)
    assert np.array_equal(mixed.reshape(tokens, d), a @ v)


def test_acc_type_is_exact():
    assert mm.acc_type(INT4, 1) == IntType(8, True)  # -56 .. 64
    assert mm.acc_type(IntType(3, False), 4) == IntType(8, False)  # 0 .. 4 * 49
    s = mm.Spec("mm", 1, 4, 1, INT4, mm.acc_type(INT4, 4))
    assert mm.reference(s, np.full((1, 8), -8)).tolist() == [[256]]  # reached


@pytest.mark.parametrize("kwargs,message", [
    ({"lanes": 3}, r"lanes=3 does not divide inner=8 \(choose lanes from 1, 2, 4, 8\)"),
    ({"lanes": 4, "transpose_b": False},
     r"lanes=4 does not divide cols=6 \(choose lanes from 1, 2, 3, 6\)"),
    ({"out_type": IntType(8, True)}, r"sums of 8 products of int4 span \[-448, 512\], which "
                                     r"does not fit the output type int8 \(use int11 or wider"),
    ({"in_type": BIPOLAR}, r"matmul input type cannot be bipolar \(carry bipolar operands"),
    ({"transpose_b": 1}, r"transpose_b must be True or False, not 1"),
    ({"heads": 0}, r"heads must be a positive integer, not 0"),
])
def test_spec_errors(kwargs, message):
    args = {"name": "attn0.qk", "rows": 5, "inner": 8, "cols": 6, "in_type": INT4,
            "out_type": IntType(11, True)}
    args.update(kwargs)
    with pytest.raises(SpecError, match=message) as err:
        mm.Spec(**args)
    assert err.value.where == "attn0.qk"


def test_fold_options_and_estimate():
    qk = mm.Spec("qk", 16, 8, 16, INT8, mm.acc_type(INT8, 8))
    av = mm.Spec("av", 16, 16, 8, INT8, mm.acc_type(INT8, 16), transpose_b=False)
    assert [o["lanes"] for o in mm.fold_options(qk)] == [1, 2, 4, 8]
    assert [o["lanes"] for o in mm.fold_options(av)] == [1, 2, 4, 8]
    assert qk.cycles() == 16 * 8 + 16 * (8 + 16 * 8)
    assert mm.estimate(qk, "xc7").dsp == 1 and mm.estimate(av, "xc7").cycles == av.cycles()


# ---- hardware -----------------------------------------------------------------------

stalls = st.sampled_from([0.0, 0.5, 0.9])


@st.composite
def cases(draw):
    in_type = IntType(draw(st.integers(2, 8)), draw(st.booleans()))
    transpose_b = draw(st.booleans())
    inner, cols = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    legal = [d for d in divisors(inner) if transpose_b or cols % d == 0]
    spec = mm.Spec("mm", draw(st.integers(1, 4)), inner, cols, in_type,
                   mm.acc_type(in_type, inner), transpose_b, heads=draw(st.integers(1, 2)),
                   lanes=draw(st.sampled_from(legal)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(in_type.min, in_type.max + 1, size=(draw(st.integers(1, 2)),
                                                          spec.in_elems))
    return spec, x


@settings(max_examples=25, deadline=None)
@given(cases(), stalls, stalls, st.integers(0, 1000))
def test_hardware_matches_reference(case, stall_in, stall_out, seed):
    spec, x = case
    got = run_spec(spec, x, stall_in=stall_in, stall_out=stall_out, seed=seed,
                   max_cycles=5000 + 200 * x.size)
    assert np.array_equal(got, mm.reference(spec, x))


@pytest.mark.parametrize("transpose_b,lanes", [(True, 1), (True, 4), (False, 2)])
def test_steady_rate_is_the_estimate(transpose_b, lanes):
    s = mm.Spec("mm", 3, 4, 4, INT8, mm.acc_type(INT8, 4), transpose_b, heads=2, lanes=lanes)
    assert steady_cycles(s, frames=6) == s.cycles() == mm.estimate(s, "xc7").cycles
