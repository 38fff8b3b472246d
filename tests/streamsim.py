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


def run_top(graph, x: np.ndarray, *, stall_in=0.3, stall_out=0.3, seed=0,
            max_idle=5_000) -> tuple[np.ndarray, list[int]]:
    """``x`` (frames, elems) through the whole ``hw.top.Top`` of ``graph``.

    Returns the output values (frames, elems) and the cycle of each frame's
    ``m_axis_tlast``. Fails with "no progress" when no output word arrives for
    ``max_idle`` cycles (a deadlock), and on a misplaced ``tlast``.
    """
    from fpgagen.hw.top import Top, stream_ports
    from fpgagen.simulate import frame_words, words_values

    first, last = stream_ports(graph)
    top = Top(graph)
    words = [w for f in frame_words(x, first.dtype, first.lanes) for w in f]
    n_out = x.shape[0] * last.words
    got: list[int] = []
    ends: list[int] = []
    rng_in, rng_out = random.Random(seed), random.Random(seed + 1)

    stuck = []  # set by the consumer on a deadlock: both benches then return

    async def producer(ctx):
        for word in words:
            while rng_in.random() < stall_in:
                await ctx.tick()
            ctx.set(top.s_axis_tdata, word)
            ctx.set(top.s_axis_tvalid, 1)
            while not stuck:
                *_, taken = await ctx.tick().sample(top.s_axis_tready)
                if taken:
                    break
            ctx.set(top.s_axis_tvalid, 0)
            if stuck:
                return

    async def consumer(ctx):
        cycle = idle = 0
        while len(got) < n_out and not stuck:
            ready = rng_out.random() >= stall_out
            ctx.set(top.m_axis_tready, ready)
            _, _, valid, data, tlast = await ctx.tick().sample(
                top.m_axis_tvalid, top.m_axis_tdata, top.m_axis_tlast)
            cycle += 1
            idle += 1
            if ready and valid:
                got.append(data)
                idle = 0
                assert bool(tlast) == (len(got) % last.words == 0), f"tlast at word {len(got)}"
                if tlast:
                    ends.append(cycle)
            if idle >= max_idle:
                stuck.append(cycle)
        ctx.set(top.m_axis_tready, 0)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert not stuck, f"no progress: {len(got)}/{n_out} words"
    frames = [got[k:k + last.words] for k in range(0, len(got), last.words)]
    return words_values(frames, last.dtype, last.lanes), ends


def run_words(spec, in_words: list[int], n_out: int, *, stall_in=0.3, stall_out=0.3,
              seed=0, max_cycles=200_000) -> tuple[list[int], int]:
    """Raw words into port ``i`` of ``spec``'s component, ``n_out`` raw words out of
    ``o``: for streams whose words per frame depend on the data (a delta stream).

    Returns the words and the cycle at which the last one was taken; fails when no
    word arrives for ``max_cycles`` cycles, and when a surplus word follows.
    """
    dut = component(spec)
    got: list[int] = []
    rng_in, rng_out = random.Random(seed), random.Random(seed + 1)
    end = []

    async def drive(ctx):
        for word in in_words:
            while rng_in.random() < stall_in:
                await ctx.tick()
            ctx.set(dut.i.payload.as_value(), word)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def take(ctx):
        cycles = idle = 0
        while len(got) < n_out:
            ready = rng_out.random() >= stall_out
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload.as_value())
            cycles, idle = cycles + 1, idle + 1
            if ready and valid:
                got.append(payload)
                idle = 0
            assert idle < max_cycles, f"no progress: {len(got)}/{n_out} words"
        end.append(cycles)
        ctx.set(dut.o.ready, 1)
        for _ in range(40):
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            assert not valid, "a surplus output word"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(drive)
    sim.add_testbench(take)
    sim.run()
    return got, end[0]
