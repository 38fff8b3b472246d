"""Stitch a graph's node components into ``fpgagen_top`` with AXI4-Stream ports."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .. import nodes
from ..errors import SpecError
from ..ir import Graph, Node


def axis_width(bits: int) -> int:
    """AXI4-Stream TDATA is a whole number of bytes."""
    return max(8, (bits + 7) // 8 * 8)


def stream_bits(spec, side: str) -> int:
    dtype = spec.in_type if side == "in" else spec.out_type
    lanes = spec.in_lanes if side == "in" else spec.out_lanes
    return dtype.bits * lanes


def stream_ends(graph: Graph) -> tuple[tuple[Node, str], tuple[Node, str]]:
    """(node, port name) that reads the graph's input and that writes its output.

    The top has one input and one output stream, and every stream one reader: a
    tensor read twice needs a duplicator first (``passes.forks``).
    """
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise SpecError(f"the accelerator has one input and one output stream; this graph "
                        f"has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs")
    (source,), (sink,) = graph.inputs, graph.outputs
    streams = [t for t in graph.tensors if t == source or graph.producer(t) is not None]
    readers = {t: len(graph.uses(t)) + (t == sink) for t in streams}
    for t in sorted(streams, key=lambda t: readers[t] > 0):  # unread ones first
        if readers[t] == 0:
            raise SpecError(f"tensor '{t}' has 0 readers; a stream has exactly one",
                            hint="drop the node that makes it, or make it the output")
        if readers[t] > 1:
            raise SpecError(f"tensor '{t}' has {readers[t]} readers; a stream has exactly "
                            "one", hint="run the passes.forks pass to duplicate forked streams")
    (reader, k), = graph.uses(source)
    writer = graph.producer(sink)
    if writer is None:
        raise SpecError(f"output '{sink}' is not produced by any node")
    return ((reader, nodes.in_ports(reader.spec)[k]),
            (writer, nodes.out_ports(writer.spec)[writer.outputs.index(sink)]))


def stream_ports(graph: Graph) -> tuple[nodes.Port, nodes.Port]:
    """The ``nodes.Port`` views of the top's input and output streams."""
    (reader, in_port), (writer, out_port) = stream_ends(graph)
    return nodes.port(reader.spec, in_port), nodes.port(writer.spec, out_port)


class Top(wiring.Component):
    """The whole accelerator: a DAG of node components between two AXI4-Streams.

    Each edge of the graph is a ``wiring.connect`` between a producer's output port
    and a consumer's input port. ``m_axis_tlast`` marks the last word of each output
    frame.
    """

    def __init__(self, graph: Graph):
        self.graph = graph
        self.order = graph.topo()
        self.ends = stream_ends(graph)
        first, last = stream_ports(graph)
        self.in_bits = first.dtype.bits * first.lanes
        self.out_bits = last.dtype.bits * last.lanes
        self.out_words = last.words
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
        parts = {}
        for node in self.order:
            parts[node.name] = m.submodules[node.name] = nodes.component(node.spec)
        for edge in self.graph.edges():
            wiring.connect(m, getattr(parts[edge.producer.name], edge.out_port),
                           getattr(parts[edge.consumer.name], edge.in_port))
        (reader, in_port), (writer, out_port) = self.ends
        head = getattr(parts[reader.name], in_port)
        tail = getattr(parts[writer.name], out_port)
        m.d.comb += [
            head.payload.eq(self.s_axis_tdata[:self.in_bits]),
            head.valid.eq(self.s_axis_tvalid),
            self.s_axis_tready.eq(head.ready),
            self.m_axis_tdata.eq(tail.payload.as_value()),
            self.m_axis_tvalid.eq(tail.valid),
            tail.ready.eq(self.m_axis_tready),
        ]
        count = Signal(range(max(self.out_words, 2)))
        m.d.comb += self.m_axis_tlast.eq(count == self.out_words - 1)
        with m.If(self.m_axis_tvalid & self.m_axis_tready):
            m.d.sync += count.eq(Mux(self.m_axis_tlast, 0, count + 1))
        return m
