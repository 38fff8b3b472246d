"""Add: spec checks, the exact output range, reference, hardware under stalls that differ
on its two inputs, lock-step consumption, full rate, estimate."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from dag_graphs import values
from hypothesis import given, settings
from hypothesis import strategies as st
from streamsim import run_ports

from fpgagen import nodes
from fpgagen.dtypes import BIPOLAR, IntType
from fpgagen.errors import SpecError
from fpgagen.ir import Graph, Node, Tensor
from fpgagen.nodes import add

INT4, UINT3 = IntType(4, True), IntType(3, False)
TYPES = [BIPOLAR, IntType(1, False), IntType(2, True), UINT3, INT4, IntType(7, True)]


def _all_values(dtype):
    return [-1, 1] if dtype.bipolar else list(range(dtype.min, dtype.max + 1))


@pytest.mark.parametrize("a_type,b_type", [(INT4, UINT3), (BIPOLAR, INT4), (UINT3, UINT3)])
@pytest.mark.parametrize("ka,kb", [(1, 1), (3, -2), (-1, 4), (0, 5)])
def test_out_type_is_the_exact_range(a_type, b_type, ka, kb):
    s = add.Spec("r", 2, a_type, b_type, ka=ka, kb=kb)
    sums = [ka * a + kb * b for a, b in itertools.product(_all_values(a_type),
                                                          _all_values(b_type))]
    assert s.out_type.min <= min(sums) and max(sums) <= s.out_type.max
    # one bit less would not hold them
    narrower = IntType(s.out_type.bits - 1, s.out_type.signed) if s.out_type.bits > 1 else None
    assert narrower is None or not narrower.contains(np.array(sums))


def test_reference_is_the_weighted_sum():
    s = add.Spec("r", 3, INT4, BIPOLAR, ka=2, kb=-3, vectors=2)
    a = np.array([[1, -8, 7, 0, 3, -1]])
    b = np.array([[1, -1, 1, -1, -1, 1]])
    assert np.array_equal(nodes.reference(s, a, b), [[2 - 3, -16 + 3, 14 - 3, 3, 9, -5]])


def test_ports():
    s = add.Spec("r", 4, INT4, UINT3, ka=1, kb=2, vectors=3, pe=2)
    assert nodes.in_ports(s) == ("a", "b") and nodes.out_ports(s) == ("o",)
    assert nodes.port(s, "a") == nodes.Port(INT4, 2, 12)
    assert nodes.port(s, "b") == nodes.Port(UINT3, 2, 12)
    assert nodes.port(s, "o") == nodes.Port(s.out_type, 2, 12)
    with pytest.raises(KeyError):
        nodes.port(s, "i")


@pytest.mark.parametrize("kwargs,message", [
    ({"pe": 3}, r"PE=3 does not divide channels=4 \(choose PE from 1, 2, 4\)"),
    ({"ka": 1.5}, r"ka must be an integer, not 1.5"),
    ({"kb": True}, r"kb must be an integer, not True"),
    ({"vectors": 0}, r"vectors must be a positive integer, not 0"),
    ({"ka": 1 << 40}, r"the sum 1099511627776\*a \+ 1\*b needs 44 bits, more than the 32 "
                      r"supported on chip \(use smaller multipliers ka and kb: rescale the "
                      r"branches\)"),
])
def test_spec_errors(kwargs, message):
    args = {"name": "r", "channels": 4, "a_type": INT4, "b_type": UINT3}
    args.update(kwargs)
    with pytest.raises(SpecError, match=message) as err:
        add.Spec(**args)
    assert err.value.where == "r"


def test_numpy_integer_multipliers_are_plain_ints():
    s = add.Spec("r", 4, INT4, UINT3, ka=np.int64(3), kb=np.int32(-1))
    assert type(s.ka) is int and type(s.kb) is int


@settings(max_examples=12, deadline=None)
@given(st.data())
def test_hardware_equals_reference_under_stalls(data):
    a_type, b_type = data.draw(st.sampled_from(TYPES)), data.draw(st.sampled_from(TYPES))
    channels = data.draw(st.sampled_from([1, 2, 3, 4, 6]))
    pe = data.draw(st.sampled_from([p for p in (1, 2, 3, 6) if channels % p == 0]))
    ka, kb = data.draw(st.integers(-7, 7)), data.draw(st.integers(-7, 7))
    s = add.Spec("r", channels, a_type, b_type, ka=ka, kb=kb, vectors=3, pe=pe)
    rng = np.random.default_rng(data.draw(st.integers(0, 99)))
    a, b = values(rng, a_type, (3, s.in_elems)), values(rng, b_type, (3, s.in_elems))
    stall = data.draw(st.sampled_from([0.0, 0.5, 0.9]))
    (out,) = run_ports(s, a, b, stall_in=stall, stall_out=stall, seed=ka + 10)
    assert np.array_equal(out, add.reference(s, a, b))


def test_inputs_out_of_step_still_pair_up():
    """One input starved, the other flooding: words pair by position, never by arrival."""
    s = add.Spec("r", 4, INT4, INT4, ka=1, kb=-1, vectors=5, pe=2)
    rng = np.random.default_rng(3)
    a, b = values(rng, INT4, (4, 20)), values(rng, INT4, (4, 20))
    for stall_in in (0.0, 0.9):
        (out,) = run_ports(s, a, b, stall_in=stall_in, stall_out=0.2, seed=7)
        assert np.array_equal(out, a - b)


def test_full_rate():
    s = add.Spec("r", 4, INT4, UINT3, ka=2, kb=1, vectors=6, pe=2)
    frames = 4
    rng = np.random.default_rng(1)
    a, b = values(rng, INT4, (frames, 24)), values(rng, UINT3, (frames, 24))
    # fails once the last word takes longer than the steady rate plus the register
    (out,) = run_ports(s, a, b, stall_in=0, stall_out=0, max_cycles=frames * s.cycles() + 3)
    assert np.array_equal(out, 2 * a + b)


def test_estimate_and_fold_options():
    s = add.Spec("r", 6, INT4, UINT3, ka=3, kb=-1, vectors=5, pe=3)
    cost = nodes.estimate(s, "xc7")
    assert cost.cycles == s.cycles() == 10
    plain = nodes.estimate(add.Spec("r", 6, INT4, UINT3, vectors=5, pe=3), "xc7")
    assert cost.lut > plain.lut  # 3 = 2 + 1 and the negation cost adders
    assert cost.ff >= 3 * s.out_type.bits and cost.bram18 == cost.dsp == 0
    assert [o["pe"] for o in add.fold_options(s)] == [1, 2, 3, 6]


def test_spec_survives_graph_json():
    s = add.Spec("r", 4, BIPOLAR, UINT3, ka=-2, kb=5, vectors=3, pe=2)
    tensors = {"a": Tensor("a", (12,), BIPOLAR), "b": Tensor("b", (12,), UINT3),
               "y": Tensor("y", (12,), s.out_type)}
    graph = Graph((Node("r", s, ("a", "b"), ("y",)),), tensors, ("a",), ("y",))
    loaded = Graph.from_json(graph.to_json())
    assert loaded.nodes[0].spec == s and loaded.nodes[0].kind == "add"
