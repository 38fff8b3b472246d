"""Steady-state cycles per frame of a node component in Amaranth's simulator, no stalls.

Feeds ``frames`` random frames back to back with the output always ready and measures
the cycles between the first output words of the frames in the second half of the run
(the first frames include the pipeline's fill latency).
"""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator

from fpgagen.dtypes import pack_lanes
from fpgagen.nodes import component


def steady_cycles(spec, frames: int = 8, seed: int = 0) -> float:
    dut = component(spec)
    t = spec.in_type
    x = np.random.default_rng(seed).integers(t.min, t.max + 1, size=(frames, spec.in_elems))
    words = pack_lanes(t.encode(x).reshape(-1, spec.in_lanes), t.bits)
    per_frame = spec.out_elems // spec.out_lanes
    times: list[int] = []

    async def producer(ctx):
        for word in words:
            ctx.set(dut.i.payload.as_value(), word)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        ctx.set(dut.o.ready, 1)
        cycle = 0
        while len(times) < frames * per_frame:
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            cycle += 1
            if valid:
                times.append(cycle)
            assert cycle < 100 * frames * spec.cycles() + 1000, "no progress"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    firsts = times[::per_frame]
    half = frames // 2
    return (firsts[-1] - firsts[half]) / (frames - 1 - half)
