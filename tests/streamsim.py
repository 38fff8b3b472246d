"""Run a node component in Amaranth's simulator with random stalls on both ends.

Used by every node kind's unit tests: feed raw lane words, collect raw lane words.
"""

from __future__ import annotations

import random

import numpy as np
from amaranth.sim import Simulator

from fpgagen.dtypes import pack_lanes, unpack_lanes
from fpgagen.nodes import component


def run_spec(spec, x: np.ndarray, *, stall_in=0.3, stall_out=0.3, seed=0,
             max_cycles=200_000) -> np.ndarray:
    """Drive ``x`` (frames, in_elems) of integer values through ``spec``'s component.

    Returns the integer values received, shape (frames, out_elems).
    """
    dut = component(spec)
    frames = x.shape[0]
    raw_in = spec.in_type.encode(x).reshape(-1, spec.in_lanes)
    in_words = pack_lanes(raw_in, spec.in_type.bits)
    n_out = frames * spec.out_elems // spec.out_lanes
    got: list[int] = []
    rng_in, rng_out = random.Random(seed), random.Random(seed + 1)

    async def producer(ctx):
        for word in in_words:
            while rng_in.random() < stall_in:
                await ctx.tick()
            ctx.set(dut.i.payload.as_value(), word)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        cycles = 0
        while len(got) < n_out:
            ready = rng_out.random() >= stall_out
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid,
                                                           dut.o.payload.as_value())
            if ready and valid:
                got.append(payload)
            cycles += 1
            assert cycles < max_cycles, f"no progress: {len(got)}/{n_out} words"
        ctx.set(dut.o.ready, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    raw_out = unpack_lanes(got, spec.out_lanes, spec.out_type.bits)
    return spec.out_type.decode(raw_out).reshape(frames, spec.out_elems)
