"""Put a FIFO on every edge between two nodes; size the FIFOs of joins from the dataflow.

Each node's ``ready`` may depend combinationally on its consumer's; the FIFO registers
that path so timing does not grow with depth, and absorbs the bursts of a node that
emits several words per input beat. Depth 2 suffices between nodes that read evenly;
in front of a node that reads in bursts (an MVAU reads an input vector, then replays
it for its other output groups) the FIFO holds a whole burst, so the producer works
through the pause rather than feeding the next burst a word at a time.

A fork/join (a residual block: a ``dup``, two branches, an ``add``) needs more. The
duplicator hands each word to both branches and the join takes one word of each
branch together, so while the long branch swallows input before it emits (a sliding
window fills its line buffer, an MVAU takes a whole input vector), the short branch
must hold the same stretch of the frame, or the fork stalls on it and the long
branch starves: a deadlock. So each join input's FIFO holds the difference of the
branches' lags, where a tensor's lag is the part of a frame its path may hold back:
``lag(output) = max(lag(inputs)) + fill_words / input words per frame``, with
``fill_words`` from each node kind (``nodes.fill_words``; a FIFO counts its two
pipeline words whatever its depth, so deepening one never feeds back into others). The
difference, converted to the FIFO's words, plus ``SKIP_MARGIN`` words for the
registers of the duplicator, the join and the converters, is its depth. No
simulation is needed to find it; tests run the result under random stalls.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

from .. import nodes
from ..ir import Graph, Node, Tensor
from ..nodes import fifo
from .splice import splice_inputs

DEFAULT_DEPTH = 2
SKIP_MARGIN = 4  # words: duplicator, join and converter registers, rounding
BURST_MARGIN = 2  # words beyond a consumer's burst (``nodes.burst_words``)


def apply(graph: Graph, depth: int = DEFAULT_DEPTH) -> tuple[Graph, bool]:
    graph, inserted = _insert(graph, depth)
    graph, deepened = _size_joins(graph)
    return graph, inserted or deepened


def _insert(graph: Graph, depth: int) -> tuple[Graph, bool]:
    tensors, inserted = dict(graph.tensors), {}  # consumer name -> {input index: fifo}
    for edge in graph.edges():
        if isinstance(edge.producer.spec, fifo.Spec) or isinstance(edge.consumer.spec,
                                                                   fifo.Spec):
            continue
        t, source = tensors[edge.tensor], edge.source
        name = f"fifo_{edge.producer.name}"
        if len(edge.producer.outputs) > 1:
            name += f"_{edge.out_port}"
        if len(graph.uses(edge.tensor)) > 1:  # a fork without a duplicator (yet)
            name += f"_{edge.consumer.name}_{edge.index}"
        burst = nodes.burst_words(edge.consumer.spec)
        spec = fifo.Spec(name, t.elems, t.dtype, source.lanes,
                         max(depth, burst + BURST_MARGIN if burst else 0))
        out = Tensor(f"{name}_out", t.shape, t.dtype)
        tensors[out.name] = out
        inserted.setdefault(edge.consumer.name, {})[edge.index] = \
            Node(name, spec, (edge.tensor,), (out.name,))
    if not inserted:
        return graph, False
    return splice_inputs(graph, inserted, tensors), True


def lags(graph: Graph) -> dict[str, Fraction]:
    """Per tensor, the part of a frame its path from the input may hold back."""
    lag = {t: Fraction(0) for t in graph.inputs}
    for node in graph.topo():
        first = nodes.port(node.spec, nodes.in_ports(node.spec)[0])
        own = Fraction(nodes.fill_words(node.spec), first.words)
        after = max(lag[t] for t in node.inputs) + own
        lag.update({t: after for t in node.outputs})
    return lag


def skip_depth(lag_difference: Fraction, words_per_frame: int) -> int:
    """FIFO words that hold ``lag_difference`` of a frame of this stream, plus the margin."""
    return math.ceil(lag_difference * words_per_frame) + SKIP_MARGIN


def with_leads(graph: Graph, deficits: dict[str, Fraction]) -> dict[str, Fraction]:
    """``deficits`` plus, for a join input that waits while the join consumes its other
    inputs (a matmul takes all of B before A: ``nodes.input_lead_words``), those words:
    the fork feeding both keeps going only if this input's path holds them too."""
    out = dict(deficits)
    for node in graph.topo():
        for name, t in zip(nodes.in_ports(node.spec), node.inputs):
            lead = nodes.input_lead_words(node.spec, name)
            if lead and t in out:
                out[t] += Fraction(lead, nodes.port(node.spec, name).words)
    return out


def _size_joins(graph: Graph) -> tuple[Graph, bool]:
    lag = lags(graph)
    producers = {t: n for n in graph.nodes for t in n.outputs}
    depths: dict[str, int] = {}
    for node in graph.topo():
        if len(node.inputs) < 2:
            continue
        longest = max(lag[t] for t in node.inputs)
        deficits = with_leads(graph, {t: longest - lag[t] for t in node.inputs})
        for t in node.inputs:
            buffer = producers.get(t)
            if deficits[t] <= 0 or buffer is None or not isinstance(buffer.spec, fifo.Spec):
                continue
            need = skip_depth(deficits[t], buffer.spec.elems // buffer.spec.lanes)
            if need > buffer.spec.depth:
                depths[buffer.name] = need
    if not depths:
        return graph, False
    new_nodes = tuple(dataclasses.replace(n, spec=dataclasses.replace(n.spec,
                                                                      depth=depths[n.name]))
                      if n.name in depths else n for n in graph.nodes)
    return graph.replace(nodes=new_nodes), True
