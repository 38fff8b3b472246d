"""The cocotb stream harness (fpgagen.sim) against tiny hand-written designs.

The designs are Amaranth components with the fixed ``fpgagen_top`` ports. Every check
that the harness can pass is paired with one showing it can fail.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fpgagen.errors import SimulationError
from fpgagen.sim import simulate_stream

WIDTH = 80          # wider than 64 bits: words travel as Python ints
FRAME = 8           # words per frame, in and out
ADDEND = 3
INTERVAL = 2        # the test design takes one input word every INTERVAL cycles


class AddConst(wiring.Component):
    """Adds a constant to each word; a 2-entry skid buffer; ``tlast`` every ``frame`` words.

    It accepts a word at most every ``interval`` cycles, so a frame takes exactly
    ``frame * interval`` cycles without stalls. ``s_axis_tready`` depends
    combinationally on ``s_axis_tvalid`` and ``m_axis_tready``, which the harness must
    sample after its own writes have settled. ``bug`` injects a fault that shows only
    when the buffer is full, i.e. under backpressure: ``"dup"`` sends a word twice,
    ``"drop"`` loses one. ``bug="mute"`` never sends anything.
    """

    def __init__(self, *, width=WIDTH, frame=FRAME, addend=ADDEND, interval=INTERVAL,
                 bug=None):
        self.width, self.frame, self.addend, self.interval, self.bug = (
            width, frame, addend, interval, bug)
        super().__init__({
            "s_axis_tdata": In(width), "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "m_axis_tdata": Out(width), "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        head, tail = Signal(self.width), Signal(self.width)
        count = Signal(range(3))
        wait = Signal(range(self.interval + 1))
        out_pos = Signal(range(self.frame))
        word = (self.s_axis_tdata + self.addend)[:self.width]

        m.d.comb += [
            self.s_axis_tready.eq(self.s_axis_tvalid & (wait == 0)
                                  & ((count < 2) | self.m_axis_tready)),
            self.m_axis_tvalid.eq(count != 0),
            self.m_axis_tdata.eq(head),
            self.m_axis_tlast.eq(out_pos == self.frame - 1),
        ]
        if self.bug == "mute":
            m.d.comb += self.m_axis_tvalid.eq(0)
        push = self.s_axis_tvalid & self.s_axis_tready
        pop = self.m_axis_tvalid & self.m_axis_tready

        with m.If(push):
            m.d.sync += wait.eq(self.interval - 1)
        with m.Elif(wait != 0):
            m.d.sync += wait.eq(wait - 1)
        with m.If(pop):
            with m.If(out_pos == self.frame - 1):
                m.d.sync += out_pos.eq(0)
            with m.Else():
                m.d.sync += out_pos.eq(out_pos + 1)

        with m.If(push & ~pop):
            with m.If(count == 0):
                m.d.sync += head.eq(word)
            with m.Else():
                m.d.sync += tail.eq(word)
            m.d.sync += count.eq(count + 1)
        with m.Elif(pop & ~push):
            m.d.sync += head.eq(tail)
            if self.bug != "dup":   # dup: the tail word stays, and goes out again
                m.d.sync += count.eq(count - 1)
            else:
                with m.If(count != 2):
                    m.d.sync += count.eq(count - 1)
        with m.Elif(pop & push):
            with m.If(count == 1):
                m.d.sync += head.eq(word)
            with m.Else():
                m.d.sync += head.eq(tail)
                if self.bug == "drop":  # the new word is taken but not kept
                    m.d.sync += count.eq(1)
                else:
                    m.d.sync += tail.eq(word)
        return m


def emit(path: Path, **params) -> Path:
    path.write_text(verilog.convert(AddConst(**params), name="fpgagen_top"))
    return path


def vectors(frames: int, seed: int = 1):
    import random
    rng = random.Random(seed)
    ins = [[rng.getrandbits(WIDTH - 1) for _ in range(FRAME)] for _ in range(frames)]
    return ins, [[w + ADDEND for w in f] for f in ins]
