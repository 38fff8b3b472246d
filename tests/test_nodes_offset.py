"""Offset: reference against a plain loop, the exact output range, spec messages,
hardware under stalls over random shapes / types / folding / k, one word per cycle,
reset in the middle of a frame, estimate, graph JSON."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from dag_graphs import values
from framesim import after_reset
from hypothesis import given, settings
from hypothesis import strategies as st
from ratesim import steady_cycles
from streamsim import run_spec

from fpgagen import nodes
from fpgagen.dtypes import BIPOLAR, IntType
from fpgagen.errors import SpecError
from fpgagen.ir import Graph, Node, Tensor
from fpgagen.nodes import offset
from fpgagen.nodes.base import divisors

INT4, UINT3 = IntType(4, True), IntType(3, False)


def _loop_reference(x, offs, k):
    out = np.zeros_like(x)
    for f in range(x.shape[0]):
        for i in range(x.shape[1]):
            out[f, i] = k * int(x[f, i]) + int(offs[i])
    return out


@pytest.mark.parametrize("in_type,k", [(INT4, 1), (UINT3, -3), (BIPOLAR, 5), (BIPOLAR, -1)])
def test_reference_is_k_x_plus_the_offset_of_each_position(in_type, k):
    rng = np.random.default_rng(4)
    offs = rng.integers(-100, 100, size=(3, 4))  # (vectors, channels) is accepted too
    s = offset.Spec("pos", 4, in_type, offs, k=k, vectors=3)
    x = values(rng, in_type, (5, 12))
    assert np.array_equal(nodes.reference(s, x), _loop_reference(x, offs.reshape(-1), k))
    assert s.offsets.shape == (12,) and s.offsets.dtype == np.int64


@pytest.mark.parametrize("in_type", [INT4, UINT3, BIPOLAR, IntType(1, False)])
@pytest.mark.parametrize("k", [1, -1, 3, -4])
@pytest.mark.parametrize("offs", [[0, 0], [5, -7], [-9, -2], [1, 200]])
def test_out_type_is_the_exact_range(in_type, k, offs):
    s = offset.Spec("pos", 2, in_type, np.array(offs), k=k)
    xs = [-1, 1] if in_type.bipolar else range(in_type.min, in_type.max + 1)
    outs = [k * x + o for x, o in itertools.product(xs, offs)]
    assert s.out_type.contains(np.array(outs)) and s.out_range == (min(outs), max(outs))
    narrower = IntType(s.out_type.bits - 1, s.out_type.signed) if s.out_type.bits > 1 else None
    assert narrower is None or not narrower.contains(np.array(outs))


@pytest.mark.parametrize("kwargs,message", [
    ({"pe": 4}, r"PE=4 does not divide channels=6 \(choose PE from 1, 2, 3, 6\)"),
    ({"vectors": 0}, r"vectors must be a positive integer, not 0"),
    ({"k": 0}, r"k must not be 0 \(an input multiplied by 0 is a constant"),
    ({"k": 1.5}, r"k must be an integer, not 1.5"),
    ({"k": True}, r"k must be an integer, not True"),
    ({"offsets": np.zeros(6, dtype=np.int64)},
     r"offsets have shape \(6,\), expected \(12,\) or \(2, 6\): one per element of a frame"),
    ({"offsets": np.zeros((6, 2), dtype=np.int64)}, r"offsets have shape \(6, 2\)"),
    ({"offsets": np.full(12, 0.5)}, r"offsets must be integers, not float64 \(quantize them"),
    ({"offsets": np.ones(12, dtype=bool)}, r"offsets must be integers, not bool"),
    ({"offsets": np.full(12, 1 << 63, dtype=np.uint64)},
     r"offsets reach 9223372036854775808, beyond 64-bit integers"),
    ({"offsets": np.full(12, 1 << 32)},
     r"1\*x \+ offsets spans \[4294967288, 4294967303\], which needs 33 bits, more than "
     r"the 32 supported on chip \(use a smaller k or smaller offsets"),
    ({"offsets": np.full(12, -(1 << 31))}, r"spans \[-2147483656, -2147483641\], which "
                                           r"needs 33 bits"),
    ({"k": 1 << 62}, r"which needs more than 64 bits, more than the 32 supported"),
])
def test_spec_errors(kwargs, message):
    args = {"name": "pos", "channels": 6, "in_type": INT4,
            "offsets": np.arange(12), "vectors": 2}
    args.update(kwargs)
    with pytest.raises(SpecError, match=message) as err:
        offset.Spec(**args)
    assert err.value.where == "pos"


def test_widest_output_is_32_bits():
    s = offset.Spec("pos", 1, INT4, np.array([(1 << 32) - 8]))  # up to 2**32 - 1
    assert s.out_type == IntType(32, False)


def test_numpy_integer_k_and_offsets_of_any_integer_dtype():
    s = offset.Spec("pos", 3, INT4, np.array([1, 2, 3], dtype=np.uint8), k=np.int32(-2))
    assert type(s.k) is int and s.k == -2 and s.offsets.dtype == np.int64


# ---- hardware -----------------------------------------------------------------------

TYPES = [BIPOLAR, IntType(1, False), IntType(2, True), UINT3, INT4, IntType(7, True),
         IntType(9, False)]


@st.composite
def cases(draw):
    in_type = draw(st.sampled_from(TYPES))
    channels = draw(st.integers(1, 6))
    vectors = draw(st.integers(1, 4))
    k = draw(st.sampled_from([-5, -3, -2, -1, 1, 2, 3, 7]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    span = draw(st.sampled_from([1, 8, 300, 1 << 20]))
    offs = rng.integers(-span, span + 1, size=vectors * channels)
    spec = offset.Spec("pos", channels, in_type, offs, k=k, vectors=vectors,
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
    assert np.array_equal(got, offset.reference(spec, x))


@pytest.mark.parametrize("channels,vectors,pe", [(6, 2, 1), (6, 2, 3), (4, 1, 4)])
def test_hardware_takes_one_word_per_cycle(channels, vectors, pe):
    offs = np.arange(channels * vectors) * 7 - 20
    s = offset.Spec("pos", channels, INT4, offs, k=3, vectors=vectors, pe=pe)
    assert steady_cycles(s) == s.cycles() == channels * vectors // pe


def test_reset_mid_frame_restarts_at_position_zero():
    """With the output held back, words in flight, reset; then a whole frame: the
    output is that frame from position 0 and nothing else."""
    s = offset.Spec("pos", 2, INT4, np.array([100, 200, 300, 400, 500, 600]), vectors=3)
    junk, frame = values(np.random.default_rng(5), INT4, (2, 6))
    got = after_reset(s, junk, frame, taken_before=0)
    assert np.array_equal(got, offset.reference(s, frame[None])[0])


def test_estimate_and_fold_options():
    offs = np.arange(8 * 12)
    one = offset.Spec("pos", 12, INT4, offs, k=3, vectors=8)
    four = offset.Spec("pos", 12, INT4, offs, k=3, vectors=8, pe=4)
    assert [o["pe"] for o in offset.fold_options(one)] == divisors(12)
    c1, c4 = nodes.estimate(one, "xc7"), nodes.estimate(four, "xc7")
    assert (c1.cycles, c4.cycles) == (96, 24)
    assert c4.lut > c1.lut and c4.ff > c1.ff and c1.dsp == c4.dsp == 0
    plain = nodes.estimate(offset.Spec("pos", 12, INT4, offs, vectors=8, pe=4), "xc7")
    assert c4.lut > plain.lut  # k = 3 = 2 + 1 costs an adder per lane
    big = offset.Spec("pos", 192, IntType(8, True), np.arange(65 * 192) % 256 - 128,
                      vectors=65)  # a ViT-sized embedding: 12480 words go to block RAM
    assert nodes.estimate(big, "xc7").bram18 >= 1


def test_spec_survives_graph_json():
    s = offset.Spec("pos", 4, BIPOLAR, np.arange(12) - 5, k=-2, vectors=3, pe=2)
    tensors = {"x": Tensor("x", (12,), BIPOLAR), "y": Tensor("y", (12,), s.out_type)}
    graph = Graph((Node("pos", s, ("x",), ("y",)),), tensors, ("x",), ("y",))
    loaded = Graph.from_json(graph.to_json()).nodes[0]
    assert loaded.kind == "offset"
    assert (loaded.spec.k, loaded.spec.vectors, loaded.spec.pe) == (-2, 3, 2)
    assert np.array_equal(loaded.spec.offsets, s.offsets)
    assert loaded.spec.out_type == s.out_type
