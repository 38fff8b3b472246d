"""Give every tensor with several readers a stream duplicator (``dup`` node).

In the IR a fork is simply a tensor read by several node inputs (a residual's skip
path), or read by a node and also a graph output. A stream has one consumer, so the
pass puts a ``dup`` with one output per reader after the tensor and points each reader
at its own copy. The duplicator takes the producer's word width (it runs after fold);
the width and FIFO passes then treat its outputs like any other edge.
"""

from __future__ import annotations

import dataclasses

from .. import nodes
from ..ir import Graph, Node, Tensor
from ..nodes import dup


def _readers(graph: Graph, tensor: str) -> list[tuple[Node | None, int]]:
    """(node, input index) per reading node input; (None, k) for graph output k."""
    return graph.uses(tensor) + [(None, k) for k, t in enumerate(graph.outputs)
                                 if t == tensor]


def _lanes(graph: Graph, tensor: str, readers) -> int:
    producer = graph.producer(tensor)
    if producer is not None:
        name = nodes.out_ports(producer.spec)[producer.outputs.index(tensor)]
        return nodes.port(producer.spec, name).lanes
    node, k = next(r for r in readers if r[0] is not None)  # a graph input: its reader's
    return nodes.port(node.spec, nodes.in_ports(node.spec)[k]).lanes


def apply(graph: Graph) -> tuple[Graph, bool]:
    forks = [t for t in [*graph.inputs, *(o for n in graph.topo() for o in n.outputs)]
             if len(_readers(graph, t)) > 1]
    if not forks:
        return graph, False
    renamed: dict[tuple[str, int], str] = {}  # (reader node name or "", index) -> copy
    tensors, added = dict(graph.tensors), []
    for t in forks:
        readers = _readers(graph, t)
        source = tensors[t]
        name = f"dup_{t}"
        spec = dup.Spec(name, source.elems, source.dtype, _lanes(graph, t, readers),
                        copies=len(readers))
        copies = []
        for k, (node, index) in enumerate(readers):
            copy = Tensor(f"{name}_{k}", source.shape, source.dtype, source.scale)
            tensors[copy.name] = copy
            copies.append(copy.name)
            renamed[(node.name if node else "", index)] = copy.name
        added.append((t, Node(name, spec, (t,), tuple(copies))))

    def rewired(node: Node) -> Node:
        inputs = tuple(renamed.get((node.name, k), t) for k, t in enumerate(node.inputs))
        return node if inputs == node.inputs else dataclasses.replace(node, inputs=inputs)

    new_nodes = []
    for node in graph.nodes:
        new_nodes.append(rewired(node))
        new_nodes += [d for t, d in added if t in node.outputs]
    head = [d for t, d in added if t in graph.inputs]
    outputs = tuple(renamed.get(("", k), t) for k, t in enumerate(graph.outputs))
    return graph.replace(nodes=tuple(head + new_nodes), tensors=tensors,
                         outputs=outputs), True
