"""Select: reference against a plain loop, spec messages, hardware under stalls over
random shapes / types / ranges / folding, one input word per cycle, reset in the middle
of a frame, frame_lag against brute force, fill_words, estimate, graph JSON."""

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
from fpgagen.nodes import select
from fpgagen.nodes.base import divisors

INT5 = IntType(5, True)


def _loop_reference(x, vectors, channels, start, count):
    out = np.zeros((x.shape[0], count * channels), dtype=np.int64)
    for f in range(x.shape[0]):
        for v in range(start, start + count):
            for c in range(channels):
                out[f, (v - start) * channels + c] = x[f, v * channels + c]
    return out


@pytest.mark.parametrize("start,count", [(0, 1), (3, 1), (1, 2), (0, 4), (2, 2)])
def test_reference_keeps_the_range_of_vectors(start, count):
    rng = np.random.default_rng(2)
    s = select.Spec("cls", 3, INT5, 4, start, count)
    x = values(rng, INT5, (5, 12))
    got = nodes.reference(s, x)
    assert got.shape == (5, 3 * count) and (s.in_elems, s.out_elems) == (12, 3 * count)
    assert np.array_equal(got, _loop_reference(x, 4, 3, start, count))
    assert s.in_type == s.out_type == INT5


@pytest.mark.parametrize("kwargs,message", [
    ({"pe": 4}, r"PE=4 does not divide channels=6 \(choose PE from 1, 2, 3, 6\)"),
    ({"vectors": 0}, r"vectors must be a positive integer, not 0"),
    ({"count": 0}, r"count must be a positive integer, not 0"),
    ({"start": -1}, r"start must be a non-negative integer, not -1"),
    ({"start": 1.0}, r"start must be a non-negative integer, not 1.0"),
    ({"start": True}, r"start must be a non-negative integer, not True"),
    ({"start": 4}, r"vectors 4 \.\. 4 reach beyond the 4 vectors of a frame \(start \+ count "
                   r"must be at most vectors=4\)"),
    ({"start": 2, "count": 3}, r"vectors 2 \.\. 4 reach beyond the 4 vectors"),
])
def test_spec_errors(kwargs, message):
    args = {"name": "cls", "channels": 6, "dtype": INT5, "vectors": 4, "start": 0}
    args.update(kwargs)
    with pytest.raises(SpecError, match=message) as err:
        select.Spec(**args)
    assert err.value.where == "cls"


# ---- hardware -----------------------------------------------------------------------

TYPES = [BIPOLAR, IntType(1, False), IntType(2, True), IntType(3, False), INT5,
         IntType(9, False), IntType(32, True)]


@st.composite
def cases(draw):
    dtype = draw(st.sampled_from(TYPES))
    channels = draw(st.integers(1, 6))
    vectors = draw(st.integers(1, 5))
    start = draw(st.integers(0, vectors - 1))
    count = draw(st.integers(1, vectors - start))
    spec = select.Spec("cls", channels, dtype, vectors, start, count,
                       pe=draw(st.sampled_from(divisors(channels))))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = values(rng, dtype, (draw(st.integers(1, 3)), spec.in_elems))
    return spec, x


stalls = st.sampled_from([0.0, 0.5, 0.9])


@settings(max_examples=20, deadline=None)
@given(cases(), stalls, stalls, st.integers(0, 1000))
def test_hardware_matches_reference(case, stall_in, stall_out, seed):
    spec, x = case
    got = run_spec(spec, x, stall_in=stall_in, stall_out=stall_out, seed=seed,
                   max_cycles=2000 + 100 * x.size)
    assert np.array_equal(got, select.reference(spec, x))


@pytest.mark.parametrize("channels,vectors,start,count,pe", [
    (6, 3, 0, 1, 1), (6, 3, 2, 1, 3), (4, 5, 1, 3, 4), (4, 2, 0, 2, 2)])
def test_hardware_reads_one_word_per_cycle(channels, vectors, start, count, pe):
    s = select.Spec("cls", channels, INT5, vectors, start, count, pe=pe)
    assert steady_cycles(s) == s.cycles() == vectors * channels // pe


@pytest.mark.parametrize("start,count,taken_before", [(0, 1, 1), (1, 2, 3), (2, 1, 1)])
def test_reset_mid_frame_restarts_at_vector_zero(start, count, taken_before):
    """Part of a frame in, words held in flight (or dropped ahead of the range), reset;
    then a whole frame: the output is that frame's range and nothing else."""
    s = select.Spec("cls", 2, INT5, 4, start, count)
    junk, frame = values(np.random.default_rng(6), INT5, (2, 8))
    got = after_reset(s, junk, frame, taken_before=taken_before)
    assert np.array_equal(got, select.reference(s, frame[None])[0])


@pytest.mark.parametrize("vectors,start,count,channels,pe", [
    (4, 0, 1, 3, 1), (4, 3, 1, 2, 2), (5, 1, 3, 4, 2), (65, 0, 1, 8, 4), (3, 0, 3, 2, 1)])
def test_frame_lag_is_exact(vectors, start, count, channels, pe):
    s = select.Spec("cls", channels, INT5, vectors, start, count, pe=pe)
    least, most = nodes.frame_lag(s)
    assert (least, most) == exact_frame_lag(s)
    assert least <= 0  # the last kept word needs nothing after it


def test_fill_words_cover_the_dropped_words_ahead_of_the_range():
    s = select.Spec("cls", 4, INT5, 5, 3, 1, pe=2)
    assert nodes.fill_words(s) == 3 * 2 + 2  # three vectors of two words, the registers


def test_estimate_and_fold_options():
    one = select.Spec("cls", 12, INT5, 65, 0)
    four = select.Spec("cls", 12, INT5, 65, 0, pe=4)
    assert [o["pe"] for o in select.fold_options(one)] == divisors(12)
    c1, c4 = nodes.estimate(one, "xc7"), nodes.estimate(four, "xc7")
    assert (c1.cycles, c4.cycles) == (780, 195)
    assert c4.ff > c1.ff and c1.dsp == c4.dsp == c1.bram18 == 0


def test_spec_survives_graph_json():
    s = select.Spec("cls", 4, BIPOLAR, 3, 1, 2, pe=2)
    tensors = {"x": Tensor("x", (12,), BIPOLAR), "y": Tensor("y", (8,), BIPOLAR)}
    graph = Graph((Node("cls", s, ("x",), ("y",)),), tensors, ("x",), ("y",))
    loaded = Graph.from_json(graph.to_json()).nodes[0]
    assert loaded.kind == "select" and loaded.spec == s
