"""Checks for node kinds with a position counter (``offset``, ``prefix``, ``select``): a
reset in the middle of a frame, and ``frame_lag`` by brute force."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from fpgagen import nodes
from fpgagen.dtypes import IntType, pack_lanes, unpack_lanes


def after_reset(spec, junk: np.ndarray, frame: np.ndarray, *, taken_before: int) -> np.ndarray:
    """Feed ``junk`` (one input frame's values) until ``taken_before`` words are in, output
    ready; then hold the output back until the node stops taking input (words stay in
    flight), reset, and feed ``frame``. Returns every value that came out after the reset
    (any extra word makes it longer than one output frame)."""
    ip, op = nodes.port(spec, "i"), nodes.port(spec, "o")
    raw = [pack_lanes(ip.dtype.encode(f).reshape(-1, ip.lanes), ip.dtype.bits)
           for f in (junk, frame)]
    dut = nodes.component(spec)
    top = Module()
    top.domains.sync = domain = ClockDomain()
    top.submodules.dut = dut
    got = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        junk_words, taken, idle = list(raw[0]), 0, 0
        while junk_words and idle < 4:
            if taken == taken_before:
                ctx.set(dut.o.ready, 0)  # fill the pipeline, then stop
            ctx.set(dut.i.payload.as_value(), junk_words[0])
            ctx.set(dut.i.valid, 1)
            *_, ready = await ctx.tick().sample(dut.i.ready)
            if ready:
                junk_words.pop(0)
                taken, idle = taken + 1, 0
            else:
                idle += 1
        assert junk_words, "the junk frame went in whole: reset is not mid-frame"
        ctx.set(dut.i.valid, 0)
        ctx.set(domain.rst, 1)
        await ctx.tick()
        ctx.set(domain.rst, 0)
        ctx.set(dut.o.ready, 1)
        words = list(raw[1])
        for _ in range(4 * (ip.words + op.words) + 20):
            if words:
                ctx.set(dut.i.payload.as_value(), words[0])
            ctx.set(dut.i.valid, bool(words))
            _, _, ready, valid, payload = await ctx.tick().sample(
                dut.i.ready, dut.o.valid, dut.o.payload.as_value())
            if words and ready:
                words.pop(0)
            if valid:
                got.append(payload)
        ctx.set(dut.i.valid, 0)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return op.dtype.decode(unpack_lanes(got, op.lanes, op.dtype.bits)).reshape(-1)


def exact_frame_lag(spec, **constants) -> tuple[Fraction, Fraction]:
    """Least and most over the output words ``k`` of ``need(k) / input words - (k + 1) /
    output words``, by brute force: each input element carries its word's number (1, 2,
    ...) through the reference, with ``constants`` (the spec's own constants, zeroed)
    standing for none; ``need(k)`` is the greatest number at or before output word k,
    and at least 1 (an output word made of constants waits for its frame's first word)."""
    fields = {f.name for f in dataclasses.fields(spec)}
    wide_type = {f: IntType(32, False) for f in ("in_type", "dtype") if f in fields}
    wide = dataclasses.replace(spec, **constants, **wide_type)
    ip, op = nodes.port(wide, "i"), nodes.port(wide, "o")
    marked = (np.arange(ip.elems) // ip.lanes + 1).reshape(1, -1)
    out = nodes.reference(wide, marked)[0].reshape(op.words, op.lanes).max(axis=1)
    need = np.maximum.accumulate(np.maximum(out, 1))
    lags = [Fraction(int(n), ip.words) - Fraction(k + 1, op.words) for k, n in enumerate(need)]
    return min(lags), max(lags)
