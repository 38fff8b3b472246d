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

    Nodes run in topological order, so forks and joins (residuals) are covered. With
    ``keep=True`` returns a dict of every tensor's values instead.
    """
    values = {graph.inputs[0]: np.asarray(x_int, dtype=np.int64)}
    for node in graph.topo():
        outs = nodes.reference_outputs(node.spec, *(values[t] for t in node.inputs))
        values.update(zip(node.outputs, outs))
    return values if keep else values[graph.outputs[0]]


def run(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Float model inputs -> float model outputs, integer-exact in between."""
    return host.run_post(graph, run_hw(graph, host.run_pre(graph, x)))
