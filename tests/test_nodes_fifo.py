"""FIFO: spec checks, hardware vs the identity, capacity, registered ready, full rate."""

import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st
from streamsim import run_spec

from fpgagen.dtypes import BIPOLAR, IntType
from fpgagen.errors import SpecError
from fpgagen.estimate import LUTRAM_MAX_DEPTH
from fpgagen.nodes import fifo
from fpgagen.nodes.base import divisors

INT6 = IntType(6, True)
DEPTHS = [2, 3, 5, LUTRAM_MAX_DEPTH, LUTRAM_MAX_DEPTH + 1, 100]  # both implementations


def test_reference_is_the_identity():
    s = fifo.Spec("q", 4, INT6, 2, 8)
    x = np.arange(-12, 12).reshape(6, 4)
    assert np.array_equal(fifo.reference(s, x), x)


@pytest.mark.parametrize("kwargs,message", [
    ({"depth": 1}, r"FIFO depth must be at least 2, not 1 \(a depth-1 FIFO halves"),
    ({"depth": 0}, r"depth must be a positive integer, not 0"),
    ({"lanes": 5}, r"lanes=5 does not divide elems=12 \(choose lanes from 1, 2, 3, 4, 6, 12\)"),
    ({"elems": -1}, r"elems must be a positive integer, not -1"),
])
def test_spec_errors(kwargs, message):
    args = {"name": "q", "elems": 12, "dtype": INT6, "lanes": 3, "depth": 4}
    args.update(kwargs)
    with pytest.raises(SpecError, match=message) as err:
        fifo.Spec(**args)
    assert err.value.where == "q"


def test_fold_options_and_estimates():
    s = fifo.Spec("q", 12, INT6, 1, 16)
    assert [o["lanes"] for o in fifo.fold_options(s)] == divisors(12)
    for o in fifo.fold_options(s):
        folded = dataclasses.replace(s, **o)
        assert fifo.estimate(folded, "xc7").cycles == folded.cycles() == 12 // o["lanes"]
    shallow = fifo.estimate(dataclasses.replace(s, lanes=12, depth=32), "xc7")
    deep = fifo.estimate(dataclasses.replace(s, lanes=12, depth=1024), "xc7")
    assert shallow.bram18 == 0 and shallow.lut > 0
    assert deep.bram18 > 0


# ---- hardware -----------------------------------------------------------------------

dtypes = st.one_of(st.just(BIPOLAR), st.builds(IntType, st.integers(1, 8), st.booleans()))
stalls = st.sampled_from([0.0, 0.5, 0.9])


@st.composite
def cases(draw):
    dtype = draw(dtypes)
    elems = draw(st.integers(1, 12))
    lanes = draw(st.sampled_from(divisors(elems)))
    depth = draw(st.sampled_from(DEPTHS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = dtype.decode(rng.integers(0, 1 << dtype.bits, size=(draw(st.integers(1, 4)), elems)))
    return fifo.Spec("q", elems, dtype, lanes, depth), x


@settings(max_examples=25, deadline=None)
@given(cases(), stalls, stalls, st.integers(0, 1000))
def test_hardware_is_the_identity(case, stall_in, stall_out, seed):
    spec, x = case
    # a lost or stuck word shows as no progress long before the default budget
    got = run_spec(spec, x, stall_in=stall_in, stall_out=stall_out, seed=seed,
                   max_cycles=2000 + 100 * x.size)
    assert np.array_equal(got, x)


@pytest.mark.parametrize("depth", DEPTHS)
def test_holds_depth_words_and_ready_ignores_the_consumer(depth):
    """Fill with the consumer stalled: exactly ``depth`` words go in. Full, ``i.ready``
    must stay low when the consumer becomes ready in the same cycle: it is registered."""
    dut = fifo.Component(fifo.Spec("q", 1, IntType(8, False), 1, depth))
    seen = {}

    async def bench(ctx):
        ctx.set(dut.o.ready, 0)
        ctx.set(dut.i.valid, 1)
        accepted = 0
        for _ in range(depth + 4):
            ctx.set(dut.i.payload.as_value(), accepted)
            if ctx.get(dut.i.ready):
                accepted += 1
            await ctx.tick()
        seen["accepted"] = accepted
        ctx.set(dut.o.ready, 1)
        seen["ready_while_draining"] = ctx.get(dut.i.ready)
        drained = []
        for _ in range(depth + 4):
            if ctx.get(dut.o.valid):
                drained.append(ctx.get(dut.o.payload.as_value()))
            ctx.set(dut.i.valid, 0)
            await ctx.tick()
        seen["drained"] = drained

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen["accepted"] == depth
    assert seen["ready_while_draining"] == 0
    assert seen["drained"] == list(range(depth))


@pytest.mark.parametrize("depth", [2, LUTRAM_MAX_DEPTH + 1])
def test_hardware_runs_at_full_rate(depth):
    spec = fifo.Spec("q", 6, INT6, 2, depth)
    frames = 10
    x = INT6.decode(np.random.default_rng(depth).integers(0, 64, size=(frames, 6)))
    # run_spec fails once the last word takes longer than the steady rate + latency
    got = run_spec(spec, x, stall_in=0, stall_out=0, max_cycles=frames * spec.cycles() + 4)
    assert np.array_equal(got, x)
