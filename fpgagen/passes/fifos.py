"""Put a FIFO on every edge between two nodes; size the FIFOs of joins from the dataflow.

Each node's ``ready`` may depend combinationally on its consumer's; the FIFO registers
that path so timing does not grow with depth, and absorbs the bursts of a node that
emits several words per input beat. Depth 2 suffices between nodes that read evenly;
in front of a node that reads in bursts (an MVAU reads an input vector, then replays
it for its other output groups) the FIFO holds a whole burst, so the producer works
through the pause rather than feeding the next burst a word at a time.

A fork/join (a residual block: a ``dup``, two branches, an ``add``) needs more. The
duplicator hands each word to both branches and the join takes one word of each
branch together, so while the long branch takes input before it emits (a sliding
window waits for its last pixel, an MVAU for a whole input vector), the short branch
must hold the same stretch of the frame, or the fork stalls on it and the long branch
starves: a deadlock. What matters is what the long branch *must* take before each
output word, not what it *may* buffer: per node ``nodes.frame_lag`` gives the least and
the most of ``need(k) / input words - (k + 1) / output words`` over its output words
``k``, fractions of a frame that add up along a path (``lags``). A blocked path holds
at least its least plus its FIFOs (full), so the FIFO in front of a join input ``t``
holds ``most(u) - least(t)`` for every other input ``u`` from another output of the
same fork (``join_deficits``), in its own words, plus ``SKIP_MARGIN``.

No simulation is needed to find the depth; tests run the result under random stalls
and measure how far it is from the smallest that works. Measured once (Amaranth sim,
``tests/test_dag.py``): the residual block's skip FIFO is computed at 10 words where 4
avoid deadlock and 5 keep the full rate (25 when the line buffer's whole depth
counted); the second of two blocks 16 (5 and 6; was 41); the downsampling block 13
(2 suffice: its shortcut's line buffer holds the rest; was 56). ``report.json`` gives
the FIFOs' memory as ``fifo_memory``.
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
SKIP_MARGIN = 2  # words: the one the join waits for, the duplicator's run-ahead
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


@dataclasses.dataclass(frozen=True)
class Lag:
    """The least and the most part of a frame a path holds its input ahead of its output."""

    least: Fraction
    most: Fraction


def lags(graph: Graph, sources: tuple[str, ...] | None = None) -> dict[str, Lag]:
    """Per tensor downstream of ``sources`` (default: the graph's inputs), its path's lag:
    the nodes' ``nodes.frame_lag`` added up (an upper bound of the most, a lower bound of
    the least, whatever the positions in the frame where each node reaches them)."""
    lag = {t: Lag(Fraction(0), Fraction(0)) for t in (graph.inputs if sources is None
                                                      else sources)}
    for node in graph.topo():
        held = [lag[t] for t in node.inputs if t in lag]
        if not held:
            continue
        least, most = nodes.frame_lag(node.spec)
        after = Lag(min(h.least for h in held) + least, max(h.most for h in held) + most)
        lag.update({t: Lag(after.least + _held_by_fifo(node), after.most)
                    for t in node.outputs})
    return lag


def _held_by_fifo(node: Node) -> Fraction:
    """A blocked path's FIFOs are full: each holds its depth (of a frame of its words)."""
    if not isinstance(node.spec, fifo.Spec):
        return Fraction(0)
    return Fraction(node.spec.depth, node.spec.elems // node.spec.lanes)


def skip_depth(lag_difference: Fraction, words_per_frame: int) -> int:
    """FIFO words that hold ``lag_difference`` of a frame of this stream, plus the margin."""
    return math.ceil(lag_difference * words_per_frame) + SKIP_MARGIN


def join_deficits(graph: Graph) -> dict[str, Fraction]:
    """Per join input tensor, the part of a frame it must hold for the join's other inputs.

    For every node with several outputs (a fork), each output's branch gets its lags
    from that output on, so that what the branches share before the fork cancels. A
    join waiting on input ``u`` while the fork is blocked on the full path of input
    ``t`` needs ``t``'s path to hold what ``u``'s must take: ``most(u) - least(t)``,
    counting the path without the FIFO in front of the join (the one to size).
    """
    forks = [[lags(graph, (t,)) for t in n.outputs] for n in graph.topo() if len(n.outputs) > 1]
    producers = {t: n for n in graph.nodes for t in n.outputs}
    deficits: dict[str, Fraction] = {}
    for node in graph.topo():
        for t in node.inputs if len(node.inputs) > 1 else ():
            for branches in forks:
                for p, held in enumerate(branches):
                    for q, other in enumerate(branches):
                        for u in node.inputs:
                            if p != q and u != t and t in held and u in other:
                                deficit = (other[u].most - held[t].least
                                           + _held_by_fifo(producers[t]))
                                deficits[t] = max(deficits.get(t, deficit), deficit)
    return deficits


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
    producers = {t: n for n in graph.nodes for t in n.outputs}
    depths: dict[str, int] = {}
    for t, deficit in with_leads(graph, join_deficits(graph)).items():
        buffer = producers.get(t)
        if deficit <= 0 or buffer is None or not isinstance(buffer.spec, fifo.Spec):
            continue
        need = skip_depth(deficit, buffer.spec.elems // buffer.spec.lanes)
        if need > buffer.spec.depth:
            depths[buffer.name] = need
    if not depths:
        return graph, False
    new_nodes = tuple(dataclasses.replace(n, spec=dataclasses.replace(n.spec,
                                                                      depth=depths[n.name]))
                      if n.name in depths else n for n in graph.nodes)
    return graph.replace(nodes=new_nodes), True
