"""Run a node component in Amaranth's simulator with random stalls on every stream.

Used by every node kind's unit tests: feed raw lane words, collect raw lane words.
``run_spec`` drives a single-port kind; ``run_ports`` any kind, one array per input
port in, one per output port out (ports as in ``fpgagen/nodes/base.py``).
"""

from __future__ import annotations

import random

import numpy as np
from amaranth.sim import Simulator

from fpgagen.dtypes import pack_lanes, unpack_lanes
from fpgagen.nodes import component, in_ports, out_ports, port


def run_spec(spec, x: np.ndarray, *, stall_in=0.3, stall_out=0.3, seed=0,
             max_cycles=200_000) -> np.ndarray:
    """Drive ``x`` (frames, in_elems) of integer values through ``spec``'s component.

    Returns the integer values received, shape (frames, out_elems).
    """
    (out,) = run_ports(spec, x, stall_in=stall_in, stall_out=stall_out, seed=seed,
                       max_cycles=max_cycles)
    return out


def run_ports(spec, *xs: np.ndarray, stall_in=0.3, stall_out=0.3, seed=0,
              max_cycles=200_000) -> tuple[np.ndarray, ...]:
    """``xs[k]`` (frames, elems) into input port k; returns each output port's values.

    Input port k stalls with its own random stream (seed ``seed + 2k``), output port k
    likewise (seed ``seed + 2k + 1``), so the ports run out of step with each other.
    """
    dut = component(spec)
    frames = xs[0].shape[0]
    ins = [(getattr(dut, name), port(spec, name)) for name in in_ports(spec)]
    outs = [(getattr(dut, name), port(spec, name)) for name in out_ports(spec)]
    got: list[list[int]] = [[] for _ in outs]

    def producer(stream, view, x, rng):
        words = pack_lanes(view.dtype.encode(x).reshape(-1, view.lanes), view.dtype.bits)

        async def drive(ctx):
            for word in words:
                while rng.random() < stall_in:
                    await ctx.tick()
                ctx.set(stream.payload.as_value(), word)
                ctx.set(stream.valid, 1)
                await ctx.tick().until(stream.ready)
                ctx.set(stream.valid, 0)
        return drive

    def consumer(stream, view, sink, rng):
        n_out = frames * view.words

        async def take(ctx):
            cycles = 0
            while len(sink) < n_out:
                ready = rng.random() >= stall_out
                ctx.set(stream.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(stream.valid,
                                                               stream.payload.as_value())
                if ready and valid:
                    sink.append(payload)
                cycles += 1
                assert cycles < max_cycles, f"no progress: {len(sink)}/{n_out} words"
            ctx.set(stream.ready, 0)
        return take

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for k, ((stream, view), x) in enumerate(zip(ins, xs)):
        sim.add_testbench(producer(stream, view, x, random.Random(seed + 2 * k)))
    for k, ((stream, view), sink) in enumerate(zip(outs, got)):
        sim.add_testbench(consumer(stream, view, sink, random.Random(seed + 2 * k + 1)))
    sim.run()
    return tuple(view.dtype.decode(unpack_lanes(words, view.lanes, view.dtype.bits))
                 .reshape(frames, view.elems) for (_, view), words in zip(outs, got))
