"""The golden model: the IR graph run on int64 numpy, node by node.

``run_hw`` is the hardware part only (integers in, integers out) and is what the
generated Verilog must equal word for word; ``run`` adds the host pre- and
post-processing so that it takes and returns what the ONNX model does.
"""

from __future__ import annotations

import numpy as np

from . import host, nodes
from .ir import Graph


def run_hw(graph: Graph, x_int: np.ndarray, *, keep: bool = False):
    """Integer stream values (frames, elems) through every node; returns the output.

    With ``keep=True`` returns a dict of every tensor's values instead.
    """
    values = {graph.inputs[0]: np.asarray(x_int, dtype=np.int64)}
    for node in _topo(graph):
        values[node.outputs[0]] = nodes.reference(node.spec, values[node.inputs[0]])
    return values if keep else values[graph.outputs[0]]


def run(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Float model inputs -> float model outputs, integer-exact in between."""
    return host.run_post(graph, run_hw(graph, host.run_pre(graph, x)))


def _topo(graph: Graph):
    done, order = set(graph.inputs), []
    pending = list(graph.nodes)
    while pending:
        ready = [n for n in pending if all(i in done for i in n.inputs)]
        if not ready:
            raise ValueError("graph has a cycle or a dangling input")
        for n in ready:
            order.append(n)
            done.update(n.outputs)
            pending.remove(n)
    return order
