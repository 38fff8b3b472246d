"""Table: golden model vs a plain lookup loop, the table builder vs Python's own float
math and rounding, spec checks, hardware vs golden model under stalls, full rate."""

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ratesim import steady_cycles
from streamsim import run_spec

from fpgagen.dtypes import BIPOLAR, IntType
from fpgagen.errors import SpecError
from fpgagen.estimate import lut_inputs, memory_placement
from fpgagen.nodes import table
from fpgagen.nodes.base import divisors

INT8 = IntType(8, True)
INT4 = IntType(4, True)


def gelu(v):
    return 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0)))


def test_reference_is_a_lookup_of_each_element():
    rng = np.random.default_rng(0)
    t = rng.integers(-16, 16, size=16)
    s = table.Spec("t", 3, INT4, IntType(5, True), t, vectors=2)
    x = rng.integers(-8, 8, size=(4, 6))
    want = [[int(t[v + 8]) for v in row] for row in x.tolist()]
    assert table.reference(s, x).tolist() == want


def test_gelu_table_matches_python_float_and_round_half_even():
    in_scale, out_scale = 0.03125, 0.02
    t = table.table_from_function(
        lambda v: 0.5 * v * (1 + np.vectorize(math.erf)(v / math.sqrt(2))),
        INT8, in_scale, INT8, out_scale)
    for k, v in enumerate(range(-128, 128)):
        want = max(-128, min(127, round(gelu(v * in_scale) / out_scale)))  # half to even
        assert t[k] == want, v
    assert t[128] == 0 and t.min() < 0  # GELU dips below zero


@pytest.mark.parametrize("mode,want", [
    ("ROUND", [-2, -2, -1, -0, 0, 0, 1, 2]),  # half to even: -1.5 -> -2, 0.5 -> 0, 1.5 -> 2
    ("FLOOR", [-2, -2, -1, -1, 0, 0, 1, 1]),
    ("CEIL", [-2, -1, -1, 0, 0, 1, 1, 2]),
    ("ROUND_TO_ZERO", [-2, -1, -1, 0, 0, 0, 1, 1]),
])
def test_rounding_modes_on_ties(mode, want):
    t = table.table_from_function(lambda v: v, INT4, 0.5, INT4, 1.0, mode)
    assert t[4:12].tolist() == want  # inputs -4 .. 3 -> -2.0, -1.5, ..., 1.5


def test_builder_saturates_like_an_integer_quantizer():
    t = table.table_from_function(np.exp, IntType(3, False), 1.0, IntType(4, False), 1.0)
    assert t.tolist() == [1, 3, 7, 15, 15, 15, 15, 15]


@pytest.mark.parametrize("kwargs,message", [
    ({"fn": lambda v: 1 / v}, r"the function is not finite at input 0 \(x = 0.0\)"),
    ({"rounding": "HALF_UP"}, r"rounding mode 'HALF_UP' is not supported \(use one of ROUND"),
    ({"in_scale": 0.0}, r"the input scale must be positive and finite, not 0.0"),
    ({"fn": lambda v: v[:3]}, r"the function gave shape \(3,\) for \(16,\) inputs"),
])
def test_builder_errors(kwargs, message):
    args = {"fn": np.tanh, "in_type": INT4, "in_scale": 0.1, "out_type": INT4,
            "out_scale": 0.1, "rounding": "ROUND"}
    args.update(kwargs)
    with pytest.raises(SpecError, match=message) as err:
        table.table_from_function(**args, where="gelu0")
    assert err.value.where == "gelu0"


@pytest.mark.parametrize("kwargs,message", [
    ({"pe": 4}, r"PE=4 does not divide channels=6 \(choose PE from 1, 2, 3, 6\)"),
    ({"table": np.zeros(15, dtype=np.int64)},
     r"the table has shape \(15,\), expected \(16,\): one entry per int4 value"),
    ({"table": np.full(16, 0.5)}, r"table entries must be integers, not float64"),
    ({"table": np.arange(16) * 3}, r"table entries span \[0, 45\], which does not fit the "
                                   r"output type int5"),
    ({"in_type": IntType(9, True), "table": np.zeros(512, dtype=np.int64)},
     r"a table over int9 would need 512 entries \(tables take inputs of at most 8 bits"),
    ({"in_type": BIPOLAR, "table": np.zeros(2, dtype=np.int64)},
     r"a table's input type cannot be bipolar \(a function of a bipolar value"),
])
def test_spec_errors(kwargs, message):
    args = {"name": "gelu0", "channels": 6, "in_type": INT4, "out_type": IntType(5, True),
            "table": np.arange(16) - 8}
    args.update(kwargs)
    with pytest.raises(SpecError, match=message) as err:
        table.Spec(**args)
    assert err.value.where == "gelu0"


def test_fold_options_and_estimate():
    rand = np.random.default_rng(0).integers(-128, 128, size=256)
    s = table.Spec("t", 12, INT8, INT8, rand, vectors=5)
    assert [o["pe"] for o in table.fold_options(s)] == divisors(12)
    one, four = table.estimate(s, "xc7"), table.estimate(replace(s, pe=4), "xc7")
    assert one.cycles == 60 and four.cycles == 15
    assert four.lut - table.CONTROL_LUTS == 4 * (one.lut - table.CONTROL_LUTS)  # per lane


# ---- estimate of the table in logic ------------------------------------------------

FAMILIES = ["xc7", "ecp5"]


def _gelu_table(in_type=INT8, out_type=INT4):
    return table.table_from_function(
        lambda v: 0.5 * v * (1 + np.vectorize(math.erf)(v / math.sqrt(2))),
        in_type, 4 / (1 << (in_type.bits - 1)), out_type, 0.5)


@pytest.mark.parametrize("family", FAMILIES)
def test_constant_and_address_bit_tables_cost_only_control(family):
    const = table.Spec("t", 4, INT8, INT8, np.full(256, 5), pe=4)
    ident = table.Spec("t", 4, INT8, INT8, np.arange(256) - 128, pe=4)  # out = in
    negated = table.Spec("t", 4, INT4, INT4, np.arange(16)[::-1] - 8, pe=4)  # out = ~in
    for s in (const, ident, negated):
        assert table.estimate(s, family).lut == table.CONTROL_LUTS, s.table
    assert table.estimate(const, family).ff < table.estimate(ident, family).ff


@pytest.mark.parametrize("family", FAMILIES)
def test_structured_tables_cost_far_less_than_random_ones(family):
    rng = np.random.default_rng(1)
    rand = table.Spec("t", 1, INT8, INT4, rng.integers(-8, 8, size=256))
    gelu = replace(rand, table=_gelu_table())
    relu = replace(rand, table=np.clip(np.arange(-128, 128) // 16, 0, 7))
    for s in (gelu, relu):
        assert table.estimate(s, family).lut < 0.8 * table.estimate(rand, family).lut


@pytest.mark.parametrize("family", FAMILIES)
def test_equal_and_complementary_columns_are_counted_once(family):
    rng = np.random.default_rng(2)
    narrow = table.Spec("t", 2, INT8, INT4, rng.integers(-8, 8, size=256))
    # int8 entries in the int4 range: bits 4-7 repeat bit 3 (the sign)
    wide = replace(narrow, out_type=INT8)
    # the complement of each entry: every column complemented
    flipped = replace(narrow, table=-1 - narrow.table)
    lut = table.estimate(narrow, family).lut
    assert table.estimate(wide, family).lut == table.estimate(flipped, family).lut == lut
    assert table.estimate(wide, family).ff > table.estimate(narrow, family).ff  # registers


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("in_bits", [2, 3, 5, 6, 7, 8])
def test_estimate_grows_with_lanes_and_fits_a_single_lut_up_to_its_inputs(family, in_bits):
    in_type = IntType(in_bits, True)
    rng = np.random.default_rng(in_bits)
    s = table.Spec("t", 8, in_type, IntType(5, True), rng.integers(-16, 16, 1 << in_bits))
    luts = [table.estimate(replace(s, pe=pe), family).lut for pe in (1, 2, 4, 8)]
    assert luts == sorted(luts) and luts[-1] > luts[0]
    per_lane = luts[0] - table.CONTROL_LUTS
    if in_bits <= lut_inputs(family):  # every column is one LUT (or none)
        assert 0 < per_lane <= 5
    else:  # at least one LUT per cofactor of the LUT's inputs of some column
        assert per_lane >= 2 ** (in_bits - lut_inputs(family))


def test_a_table_in_block_ram_costs_block_ram_per_lane():
    s = table.Spec("t", 4, INT8, INT8, np.random.default_rng(3).integers(-128, 128, 256))
    assert memory_placement(8, 256, "ice40", writable=False)[0] == "block"
    one, four = table.estimate(s, "ice40"), table.estimate(replace(s, pe=4), "ice40")
    assert one.bram18 > 0 and four.bram18 == 4 * one.bram18
    assert four.lut == table.CONTROL_LUTS


def test_lane_luts_are_computed_once_per_table(monkeypatch):
    s = table.Spec("t", 8, INT8, INT4, _gelu_table())
    calls = []
    real = table._columns
    monkeypatch.setattr(table, "_columns", lambda spec: calls.append(1) or real(spec))
    costs = {table.estimate(replace(s, pe=pe), "ecp5").lut for pe in (1, 2, 4, 8)}
    assert len(calls) == 1 and len(costs) == 4


# ---- hardware -----------------------------------------------------------------------

stalls = st.sampled_from([0.0, 0.5, 0.9])


@st.composite
def cases(draw):
    in_type = IntType(draw(st.integers(1, 8)), draw(st.booleans()))
    out_type = IntType(draw(st.integers(2, 9)), draw(st.booleans()))
    channels = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t = rng.integers(out_type.min, out_type.max + 1, size=1 << in_type.bits)
    spec = table.Spec("t", channels, in_type, out_type, t, vectors=draw(st.integers(1, 3)),
                      pe=draw(st.sampled_from(divisors(channels))))
    x = rng.integers(in_type.min, in_type.max + 1, size=(draw(st.integers(1, 3)),
                                                          spec.in_elems))
    return spec, x


@settings(max_examples=20, deadline=None)
@given(cases(), stalls, stalls, st.integers(0, 1000))
def test_hardware_matches_reference(case, stall_in, stall_out, seed):
    spec, x = case
    got = run_spec(spec, x, stall_in=stall_in, stall_out=stall_out, seed=seed,
                   max_cycles=2000 + 100 * x.size)
    assert np.array_equal(got, table.reference(spec, x))


@pytest.mark.parametrize("pe", [1, 3])
def test_hardware_takes_one_word_per_cycle(pe):
    s = table.Spec("t", 6, INT8, INT8, np.arange(256)[::-1] - 128, vectors=2, pe=pe)
    assert steady_cycles(s) == s.cycles() == 12 // pe
