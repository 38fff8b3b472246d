"""Put a FIFO between every pair of nodes.

In a chain, each node's ``ready`` may depend combinationally on its consumer's; the
FIFO registers that path so timing does not grow with depth, and absorbs the bursts
of a node that emits several words per input beat. Depth 2 suffices for a chain
(every node runs at its own rate and back-pressures); skip paths (CNN issue) will
size depths from the dataflow.
"""

from __future__ import annotations

from ..ir import Graph, Node, Tensor
from ..nodes import fifo

DEFAULT_DEPTH = 2


def apply(graph: Graph, depth: int = DEFAULT_DEPTH) -> tuple[Graph, bool]:
    new_nodes, tensors, changed = [], dict(graph.tensors), False
    for node in graph.chain():
        if new_nodes and not isinstance(new_nodes[-1].spec, fifo.Spec) \
                and not isinstance(node.spec, fifo.Spec):
            prev = new_nodes[-1]
            t = tensors[prev.outputs[0]]
            name = f"fifo_{prev.name}"
            spec = fifo.Spec(name, t.elems, t.dtype, prev.spec.out_lanes, depth)
            out = Tensor(f"{name}_out", t.shape, t.dtype)
            tensors[out.name] = out
            new_nodes.append(Node(name, spec, prev.outputs, (out.name,)))
            node = Node(node.name, node.spec, (out.name,), node.outputs)
            changed = True
        new_nodes.append(node)
    return graph.replace(nodes=tuple(new_nodes), tensors=tensors), changed
