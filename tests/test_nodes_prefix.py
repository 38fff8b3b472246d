"""Prefix: reference against a plain loop, the output type, spec messages, hardware under
stalls over random shapes / types / folding, one word per cycle, reset in the middle
of a frame, frame_lag against brute force, estimate, graph JSON."""

from __future__ import annotations

import numpy as np
import pytest
from dag_graphs import values
from framesim import after_reset, exact_frame_lag
from hypothesis import given, settings
from hypothesis import strategies as st
from ratesim import steady_cycles
from streamsim import run_spec

from fpgagen import nodes
from fpgagen.dtypes import BIPOLAR, IntType
from fpgagen.errors import SpecError
from fpgagen.ir import Graph, Node, Tensor
from fpgagen.nodes import prefix
from fpgagen.nodes.base import divisors

INT4, UINT3 = IntType(4, True), IntType(3, False)


def _loop_reference(x, rows, channels):
    out = []
    for frame in x:
        words = [int(v) for row in rows for v in row]
        words += [int(v) for v in frame]
        out.append(words)
    return np.array(out, dtype=np.int64).reshape(len(x), -1)


@pytest.mark.parametrize("in_type", [INT4, UINT3, BIPOLAR])
@pytest.mark.parametrize("flat", [False, True])
def test_reference_puts_the_prefix_vectors_in_front_of_each_frame(in_type, flat):
    rng = np.random.default_rng(3)
    rows = rng.integers(-50, 50, size=(2, 4))
    s = prefix.Spec("cls", 4, in_type, rows.reshape(-1) if flat else rows, vectors=3)
    x = values(rng, in_type, (5, 12))
    got = nodes.reference(s, x)
    assert got.shape == (5, 20) and (s.in_elems, s.out_elems) == (12, 20)
    assert np.array_equal(got, _loop_reference(x, rows, 4))
    assert s.prefix.shape == (2, 4) and s.prefix.dtype == np.int64 and s.prefix_vectors == 2


@pytest.mark.parametrize("in_type,values_,want", [
    (UINT3, [0, 7], IntType(3, False)),
    (UINT3, [0, 8], IntType(4, False)),
    (UINT3, [-1, 2], IntType(4, True)),  # -1 and 0..7
    (INT4, [7, -8], INT4),
    (INT4, [300, 0], IntType(10, True)),
    (INT4, [0, -9], IntType(5, True)),
    (BIPOLAR, [1, -1], BIPOLAR),
    (BIPOLAR, [1, 0], IntType(2, True)),  # a zero: the input counts as -1 / +1
    (BIPOLAR, [5, 1], IntType(4, True)),
    (IntType(1, False), [1, 1], IntType(1, False)),
])
def test_out_type_is_the_smallest_holding_input_and_prefix(in_type, values_, want):
    s = prefix.Spec("cls", 2, in_type, np.array(values_))
    assert s.out_type == want
    xs = [-1, 1] if in_type.bipolar else [in_type.min, in_type.max]
    assert want.contains(np.array(xs + values_))


@pytest.mark.parametrize("kwargs,message", [
    ({"pe": 4}, r"PE=4 does not divide channels=6 \(choose PE from 1, 2, 3, 6\)"),
    ({"vectors": 0}, r"vectors must be a positive integer, not 0"),
    ({"channels": -2}, r"channels must be a positive integer, not -2"),
    ({"prefix": np.zeros(4, dtype=np.int64)},
     r"prefix has shape \(4,\), expected \(k, 6\) or \(k \* 6,\) with k >= 1: whole "
     r"vectors of channels=6"),
    ({"prefix": np.zeros((2, 3), dtype=np.int64)}, r"prefix has shape \(2, 3\)"),
    ({"prefix": np.zeros((0, 6), dtype=np.int64)}, r"prefix has shape \(0, 6\)"),
    ({"prefix": np.zeros(0, dtype=np.int64)}, r"prefix has shape \(0, 6\)"),
    ({"prefix": np.zeros((1, 1, 6), dtype=np.int64)}, r"prefix has shape \(1, 1, 6\)"),
    ({"prefix": np.full(6, 0.5)}, r"prefix values must be integers, not float64 \(quantize"),
    ({"prefix": np.ones(6, dtype=bool)}, r"prefix values must be integers, not bool"),
    ({"prefix": np.full(6, 1 << 63, dtype=np.uint64)},
     r"prefix values reach 9223372036854775808, beyond 64-bit integers"),
    ({"prefix": np.full(6, 1 << 32)},
     r"the input type int4 and the prefix values together span \[-8, 4294967296\], which "
     r"needs 34 bits, more than the 32 supported on chip \(quantize the prefix"),
])
def test_spec_errors(kwargs, message):
    args = {"name": "cls", "channels": 6, "in_type": INT4, "prefix": np.arange(6),
            "vectors": 2}
    args.update(kwargs)
    with pytest.raises(SpecError, match=message) as err:
        prefix.Spec(**args)
    assert err.value.where == "cls"


def test_widest_output_is_32_bits():
    s = prefix.Spec("cls", 1, IntType(32, False), np.array([(1 << 32) - 1]))
    assert s.out_type == IntType(32, False)


# ---- hardware -----------------------------------------------------------------------

TYPES = [BIPOLAR, IntType(1, False), IntType(2, True), UINT3, INT4, IntType(7, True),
         IntType(9, False)]


@st.composite
def cases(draw):
    in_type = draw(st.sampled_from(TYPES))
    channels = draw(st.integers(1, 6))
    vectors = draw(st.integers(1, 4))
    k = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):  # within the input type (a bipolar prefix stays bipolar)
        rows = values(rng, in_type, (k, channels))
    else:
        span = draw(st.sampled_from([1, 8, 300, 1 << 20]))
        rows = rng.integers(-span, span + 1, size=(k, channels))
    spec = prefix.Spec("cls", channels, in_type, rows, vectors=vectors,
                       pe=draw(st.sampled_from(divisors(channels))))
    x = values(rng, in_type, (draw(st.integers(1, 3)), spec.in_elems))
    return spec, x


stalls = st.sampled_from([0.0, 0.5, 0.9])


@settings(max_examples=20, deadline=None)
@given(cases(), stalls, stalls, st.integers(0, 1000))
def test_hardware_matches_reference(case, stall_in, stall_out, seed):
    spec, x = case
    got = run_spec(spec, x, stall_in=stall_in, stall_out=stall_out, seed=seed,
                   max_cycles=2000 + 100 * x.size)
    assert np.array_equal(got, prefix.reference(spec, x))


@pytest.mark.parametrize("channels,vectors,k,pe", [(6, 2, 1, 1), (6, 2, 2, 3), (4, 1, 1, 4),
                                                   (5, 3, 3, 5)])
def test_hardware_takes_one_word_per_cycle(channels, vectors, k, pe):
    s = prefix.Spec("cls", channels, INT4, np.arange(k * channels) - 9, vectors=vectors, pe=pe)
    assert steady_cycles(s) == s.cycles() == (k + vectors) * channels // pe


@pytest.mark.parametrize("pe,taken_before", [(1, 1), (1, 4), (2, 2)])
def test_reset_mid_frame_restarts_with_the_prefix(pe, taken_before):
    """Part of a frame in (past the prefix), words held in flight, reset; then a whole
    frame: the output is the prefix and that frame, nothing else (the next frame's
    prefix waits for that frame)."""
    s = prefix.Spec("cls", 2, INT4, np.array([[100, -100], [50, 60]]), vectors=3, pe=pe)
    junk, frame = values(np.random.default_rng(5), INT4, (2, 6))
    got = after_reset(s, junk, frame, taken_before=taken_before)
    assert np.array_equal(got, prefix.reference(s, frame[None])[0])


@pytest.mark.parametrize("k,vectors,channels,pe", [(1, 4, 3, 1), (2, 3, 4, 2), (3, 1, 2, 1),
                                                   (1, 64, 8, 4)])
def test_frame_lag_is_exact(k, vectors, channels, pe):
    s = prefix.Spec("cls", channels, INT4, np.ones((k, channels), dtype=np.int64),
                    vectors=vectors, pe=pe)
    least, most = nodes.frame_lag(s)
    assert (least, most) == exact_frame_lag(s, prefix=np.zeros((k, channels), dtype=np.int64))
    assert least < 0 < most  # the prefix runs ahead of the input, after its first word


def test_estimate_and_fold_options():
    rows = np.arange(2 * 12).reshape(2, 12)
    one = prefix.Spec("cls", 12, INT4, rows, vectors=8)
    four = prefix.Spec("cls", 12, INT4, rows, vectors=8, pe=4)
    assert [o["pe"] for o in prefix.fold_options(one)] == divisors(12)
    c1, c4 = nodes.estimate(one, "xc7"), nodes.estimate(four, "xc7")
    assert (c1.cycles, c4.cycles) == (120, 30)
    assert c4.lut > c1.lut and c4.ff > c1.ff and c1.dsp == c4.dsp == c1.bram18 == 0


def test_spec_survives_graph_json():
    s = prefix.Spec("cls", 4, BIPOLAR, np.array([1, -1, 1, 1, -1, -1, 1, -1]), vectors=3,
                    pe=2)
    tensors = {"x": Tensor("x", (12,), BIPOLAR), "y": Tensor("y", (20,), s.out_type)}
    graph = Graph((Node("cls", s, ("x",), ("y",)),), tensors, ("x",), ("y",))
    loaded = Graph.from_json(graph.to_json()).nodes[0]
    assert loaded.kind == "prefix"
    assert (loaded.spec.vectors, loaded.spec.pe, loaded.spec.prefix_vectors) == (3, 2, 2)
    assert np.array_equal(loaded.spec.prefix, s.prefix)
    assert loaded.spec.out_type == s.out_type == BIPOLAR
