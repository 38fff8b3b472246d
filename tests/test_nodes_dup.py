"""Dup: spec checks, reference, hardware under independent stalls, one word of slack,
full rate, estimate."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator
from dag_graphs import values
from streamsim import run_ports

from fpgagen import nodes
from fpgagen.dtypes import BIPOLAR, IntType
from fpgagen.errors import SpecError
from fpgagen.nodes import dup

INT5 = IntType(5, True)


def test_reference_gives_one_copy_per_output():
    s = dup.Spec("d", 6, INT5, 2, copies=3)
    x = np.arange(12).reshape(2, 6) - 6
    copies = nodes.reference_outputs(s, x)
    assert len(copies) == 3 and all(np.array_equal(c, x) for c in copies)
    copies[0][0, 0] = 99  # copies, not views of one array
    assert copies[1][0, 0] == -6


def test_ports_follow_the_copies():
    s = dup.Spec("d", 8, BIPOLAR, 4, copies=3)
    assert nodes.in_ports(s) == ("i",)
    assert nodes.out_ports(s) == ("o0", "o1", "o2")
    for name in ("i", "o0", "o2"):
        assert nodes.port(s, name) == nodes.Port(BIPOLAR, 4, 8)
    assert nodes.port(s, "o1").words == 2
    with pytest.raises(KeyError):
        nodes.port(s, "o3")


@pytest.mark.parametrize("kwargs,message", [
    ({"copies": 1}, r"a duplicator needs at least 2 copies, not 1 \(a tensor with one "
                    r"consumer needs no duplicator\)"),
    ({"lanes": 5}, r"lanes=5 does not divide elems=12"),
    ({"elems": 0}, r"elems must be a positive integer, not 0"),
])
def test_spec_errors(kwargs, message):
    args = {"name": "d", "elems": 12, "dtype": INT5, "lanes": 3, "copies": 2}
    args.update(kwargs)
    with pytest.raises(SpecError, match=message) as err:
        dup.Spec(**args)
    assert err.value.where == "d"


@pytest.mark.parametrize("copies,lanes,dtype", [(2, 1, INT5), (3, 4, BIPOLAR), (2, 12, INT5)])
@pytest.mark.parametrize("stall", [0.0, 0.5, 0.9])
def test_every_output_gets_every_word_under_stalls(copies, lanes, dtype, stall):
    s = dup.Spec("d", 12, dtype, lanes, copies=copies)
    x = values(np.random.default_rng(copies * lanes), dtype, (5, 12))
    outs = run_ports(s, x, stall_in=stall, stall_out=stall, seed=lanes)
    assert len(outs) == copies
    for out in outs:
        assert np.array_equal(out, x)


def _drive(spec, schedule, cycles):
    """Input always valid with words 1, 2, 3...; ``schedule(cycle)`` gives each output's
    ready. Returns the words each output took and the input words taken."""
    dut = nodes.component(spec)
    outs = [getattr(dut, name) for name in spec.out_ports]
    taken = [[] for _ in outs]
    sent = []

    async def bench(ctx):
        for cycle in range(cycles):
            readies = schedule(cycle)
            ctx.set(dut.i.payload.as_value(), len(sent) + 1)
            ctx.set(dut.i.valid, 1)
            for o, ready in zip(outs, readies):
                ctx.set(o.ready, ready)
            watched = [dut.i.ready] + [v for o in outs for v in (o.valid, o.payload.as_value())]
            _, _, accepted, *seen = await ctx.tick().sample(*watched)
            if accepted:
                sent.append(len(sent) + 1)
            for k, ready in enumerate(readies):
                if ready and seen[2 * k]:
                    taken[k].append(seen[2 * k + 1])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return taken, sent


def test_one_output_runs_ahead_by_one_word_only():
    s = dup.Spec("d", 4, IntType(8, False), 1)
    # output 1 never ready: output 0 gets the held word, then the input waits
    taken, sent = _drive(s, lambda c: (1, 0), 20)
    assert taken == [[1], []] and sent == [1]
    # output 1 wakes up at cycle 20: both see the same words, at most one apart
    taken, sent = _drive(s, lambda c: (1, int(c >= 20)), 40)
    assert len(taken[1]) >= 15 and abs(len(taken[0]) - len(taken[1])) <= 1
    for words in taken:
        assert words == list(range(1, len(words) + 1))
    assert sent == list(range(1, len(sent) + 1))
    assert len(sent) - max(map(len, taken)) in (0, 1)  # plus the word held right now


def test_full_rate_when_every_output_is_ready():
    s = dup.Spec("d", 4, IntType(8, False), 1, copies=3)
    taken, sent = _drive(s, lambda c: (1, 1, 1), 30)
    # one word per cycle; the register stage delays each output by one cycle
    assert sent == list(range(1, 31))
    assert all(t == sent[:29] for t in taken)


def test_estimate_and_cycles():
    s = dup.Spec("d", 24, INT5, 4, copies=2)
    cost = nodes.estimate(s, "xc7")
    assert cost.cycles == s.cycles() == 6
    assert cost.ff >= 4 * 5 and cost.bram18 == 0 and cost.dsp == 0
    assert nodes.fill_words(s) == 1
    assert {o["lanes"] for o in dup.fold_options(s)} == {1, 2, 3, 4, 6, 8, 12, 24}
