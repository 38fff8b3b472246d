"""Insert a stream width converter wherever a producer's lanes differ from its consumer's."""

from __future__ import annotations

from ..ir import Graph, Node, Tensor
from ..nodes import dwc


def apply(graph: Graph) -> tuple[Graph, bool]:
    new_nodes, tensors, changed = [], dict(graph.tensors), False
    for node in graph.chain():
        if new_nodes:
            prev = new_nodes[-1]
            if prev.spec.out_lanes != node.spec.in_lanes:
                t = tensors[prev.outputs[0]]
                name = f"dwc_{prev.name}_{node.name}"
                spec = dwc.Spec(name, t.elems, t.dtype, prev.spec.out_lanes, node.spec.in_lanes)
                out = Tensor(f"{name}_out", t.shape, t.dtype)
                tensors[out.name] = out
                new_nodes.append(Node(name, spec, prev.outputs, (out.name,)))
                node = Node(node.name, node.spec, (out.name,), node.outputs)
                changed = True
        new_nodes.append(node)
    return graph.replace(nodes=tuple(new_nodes), tensors=tensors), changed
