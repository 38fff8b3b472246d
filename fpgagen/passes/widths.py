"""Insert a stream width converter wherever a producer's lanes differ from its consumer's.

Every edge of the DAG (a producer's output port to a consumer's input port) is
looked at on its own, so each branch of a fork gets the converter it needs.
"""

from __future__ import annotations

from ..ir import Graph, Node, Tensor
from ..nodes import dwc
from .splice import splice_inputs


def apply(graph: Graph) -> tuple[Graph, bool]:
    tensors, inserted = dict(graph.tensors), {}  # consumer name -> {input index: dwc}
    for edge in graph.edges():
        source, sink = edge.source, edge.sink
        if source.lanes == sink.lanes:
            continue
        t = tensors[edge.tensor]
        name = f"dwc_{edge.producer.name}_{edge.consumer.name}"
        if len(edge.consumer.inputs) > 1:
            name += f"_{edge.in_port}"
        spec = dwc.Spec(name, t.elems, t.dtype, source.lanes, sink.lanes)
        out = Tensor(f"{name}_out", t.shape, t.dtype)
        tensors[out.name] = out
        inserted.setdefault(edge.consumer.name, {})[edge.index] = \
            Node(name, spec, (edge.tensor,), (out.name,))
    if not inserted:
        return graph, False
    return splice_inputs(graph, inserted, tensors), True
