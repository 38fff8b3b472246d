"""Put new nodes on edges, in front of their consumers: what the width-converter and
FIFO passes share."""

from __future__ import annotations

import dataclasses

from ..ir import Graph, Node, Tensor


def splice_inputs(graph: Graph, inserted: dict[str, dict[int, Node]],
                  tensors: dict[str, Tensor]) -> Graph:
    """``inserted``: consumer name -> {input index: node reading that input}. Each such
    node goes just before its consumer, which reads the node's output instead."""
    new_nodes = []
    for node in graph.nodes:
        before = inserted.get(node.name, {})
        new_nodes += before.values()
        inputs = tuple(before[k].outputs[0] if k in before else t
                       for k, t in enumerate(node.inputs))
        new_nodes.append(dataclasses.replace(node, inputs=inputs))
    return graph.replace(nodes=tuple(new_nodes), tensors=tensors)
