"""Stitch a graph's node components into ``fpgagen_top`` with AXI4-Stream ports."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .. import nodes
from ..ir import Graph


def axis_width(bits: int) -> int:
    """AXI4-Stream TDATA is a whole number of bytes."""
    return max(8, (bits + 7) // 8 * 8)


def stream_bits(spec, side: str) -> int:
    dtype = spec.in_type if side == "in" else spec.out_type
    lanes = spec.in_lanes if side == "in" else spec.out_lanes
    return dtype.bits * lanes


class Top(wiring.Component):
    """The whole accelerator: a chain of node components between two AXI4-Streams.

    ``m_axis_tlast`` marks the last word of each output frame.
    """

    def __init__(self, graph: Graph):
        self.graph = graph
        self.chain = graph.chain()
        first, last = self.chain[0].spec, self.chain[-1].spec
        self.in_bits, self.out_bits = stream_bits(first, "in"), stream_bits(last, "out")
        self.out_words = last.out_elems // last.out_lanes
        super().__init__({
            "s_axis_tdata": In(axis_width(self.in_bits)),
            "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1),
            "m_axis_tdata": Out(axis_width(self.out_bits)),
            "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        parts = []
        for node in self.chain:
            part = nodes.component(node.spec)
            m.submodules[node.name] = part
            parts.append(part)
        for a, b in zip(parts, parts[1:]):
            wiring.connect(m, a.o, b.i)
        head, tail = parts[0], parts[-1]
        m.d.comb += [
            head.i.payload.eq(self.s_axis_tdata[:self.in_bits]),
            head.i.valid.eq(self.s_axis_tvalid),
            self.s_axis_tready.eq(head.i.ready),
            self.m_axis_tdata.eq(tail.o.payload.as_value()),
            self.m_axis_tvalid.eq(tail.o.valid),
            tail.o.ready.eq(self.m_axis_tready),
        ]
        count = Signal(range(max(self.out_words, 2)))
        m.d.comb += self.m_axis_tlast.eq(count == self.out_words - 1)
        with m.If(self.m_axis_tvalid & self.m_axis_tready):
            m.d.sync += count.eq(Mux(self.m_axis_tlast, 0, count + 1))
        return m
