"""Differential projections: MVAUs -> delta encoder + differential MVAU.

``apply(graph, names)`` replaces each named MVAU by a ``dmvau`` (same name, same
output tensor, identical outputs) fed by a ``delta`` encoder of its input. MVAUs that
read the same tensor with the same shape (a transformer's Q, K and V projections)
share one encoder; its output is then a tensor with several readers, which the
``forks`` pass later gives a duplicator. Which MVAUs: ``names``, else
``graph.meta["differential"]`` (the frontend lists the ViT's patch embedding and
Q/K/V projections there), else every MVAU with more than one input vector per frame
(a convolution's output pixels, a transformer's tokens): a single vector per frame
has no previous vector to differ from.

Runs before folding (``build.compile_graph``): the folding then sees the
differential units' worst-case cycles.
"""

from __future__ import annotations

import dataclasses

from ..errors import FpgagenError
from ..ir import Graph, Node, Tensor
from ..nodes import delta, dmvau, mvau


def candidates(graph: Graph) -> list[str]:
    """The MVAUs to make differential when no names are given (see the module doc)."""
    listed = graph.meta.get("differential")
    if listed:
        return list(listed)
    return [n.name for n in graph.nodes
            if isinstance(n.spec, mvau.Spec) and n.spec.vectors > 1]


def _check(graph: Graph, names: list[str]) -> None:
    if not names:
        raise FpgagenError("no MVAU in this model processes more than one vector per frame, "
                           "so there are no deltas to send", where="--attention differential",
                           hint="it applies to convolutions and transformer projections; "
                                "use --attention plain")
    by_name = {n.name: n for n in graph.nodes}
    for name in names:
        node = by_name.get(name)
        if node is None:
            raise FpgagenError(f"node '{name}' is not in the graph",
                               where="--attention differential",
                               hint="MVAUs: " + ", ".join(n.name for n in graph.nodes
                                                          if isinstance(n.spec, mvau.Spec)))
        if not isinstance(node.spec, mvau.Spec):
            raise FpgagenError(f"node '{name}' is a {node.kind}, not an MVAU",
                               where="--attention differential",
                               hint="only MVAUs (matrix-vector units) can run on deltas")


def _unique(name: str, taken: set[str]) -> str:
    out, k = name, 1
    while out in taken:
        out, k = f"{name}_{k}", k + 1
    taken.add(out)
    return out


def apply(graph: Graph, names: list[str] | None = None, narrow_bits: int | None = None
          ) -> tuple[Graph, bool]:
    """Make the named MVAUs differential (see the module docstring).

    ``narrow_bits``: signed bits of a one-word delta (default
    ``delta.default_narrow_bits`` of each input type).
    """
    names = candidates(graph) if names is None else list(names)
    _check(graph, names)
    chosen = set(names)
    tensors = dict(graph.tensors)
    taken = {n.name for n in graph.nodes} | set(tensors)
    encoders: dict[tuple, Node] = {}  # (input tensor, shape of the vectors) -> encoder
    groups: dict[tuple, int] = {}  # the same key -> the readers' largest SIMD
    for node in graph.nodes:
        if node.name in chosen:
            key = (node.inputs[0], node.spec.mw, node.spec.vectors)
            groups[key] = max(groups.get(key, 1), node.spec.simd)
    placed: set[str] = set()
    new_nodes = []
    for node in graph.nodes:
        if node.name not in chosen:
            new_nodes.append(node)
            continue
        s = node.spec
        key = (node.inputs[0], s.mw, s.vectors)
        bits = delta.default_narrow_bits(s.in_type) if narrow_bits is None else narrow_bits
        if key not in encoders:
            enc_name = _unique(f"delta_{node.inputs[0]}", taken)
            spec = delta.Spec(enc_name, s.mw, s.in_type, bits, vectors=s.vectors,
                              lanes=groups[key], simd=groups[key])
            out = Tensor(_unique(f"{enc_name}_out", taken), (spec.out_elems,), spec.out_type)
            tensors[out.name] = out
            encoders[key] = Node(enc_name, spec, (node.inputs[0],), (out.name,))
        encoder = encoders[key]
        if encoder.name not in placed:
            new_nodes.append(encoder)
            placed.add(encoder.name)
        spec = dmvau.Spec(s.name, s.mw, s.mh, s.weights, s.in_type, s.weight_type, s.out_type,
                          encoder.spec.narrow_bits, thresholds=s.thresholds,
                          out_base=s.out_base, vectors=s.vectors, pe=s.pe,
                          simd=groups[key])
        new_nodes.append(dataclasses.replace(node, spec=spec,
                                             inputs=(encoder.outputs[0],) + node.inputs[1:]))
    meta = dict(graph.meta, attention="differential", differential=names)
    return graph.replace(nodes=tuple(new_nodes), tensors=tensors, meta=meta), True


def match_groups(graph: Graph, specs: dict, fit=None, named: set[str] = frozenset()) -> dict:
    """Give each delta encoder and the differential MVAUs reading it one group size.

    The wire format depends on the group (``delta.DeltaFormat.simd``), so an encoder
    and all its readers (Q, K and V share one) must agree. They take the largest SIMD
    among them (among those in ``named``, the user's folding file, if any is), at most
    the largest whose wire words fit (``delta.largest_group``): a wider group never
    makes a unit slower. ``specs`` are by node name; ``fit(spec, simd)``
    gives a node's cheapest folding with that SIMD (fold's, within its budget); without
    it the other fields stay, the encoder's input word rounded up to whole groups.
    """
    specs = dict(specs)
    for node in graph.nodes:
        if not isinstance(specs[node.name], delta.Spec):
            continue
        members = [node.name] + [r.name for r in graph.consumers(node.outputs[0])
                                 if isinstance(specs[r.name], dmvau.Spec)]
        chosen = [m for m in members if m in named] or members
        enc = specs[node.name]
        group = delta.largest_group(enc.channels, enc.x_type, enc.narrow_bits,
                                    max(specs[m].simd for m in chosen))
        for m in members:
            if specs[m].simd != group:
                specs[m] = (fit and fit(specs[m], group)) or _with_group(specs[m], group)
    return specs


def fitted_fields(spec, fields: dict) -> dict:
    """A folding file's fields for ``spec``, a differential unit's SIMD lowered to the
    largest group whose wire words fit (a plain build's folding applies as it can)."""
    if isinstance(spec, (delta.Spec, dmvau.Spec)) and "simd" in fields:
        fmt = spec.fmt
        simd = delta.largest_group(fmt.channels, fmt.x_type, fmt.narrow_bits, fields["simd"])
        return dict(fields, simd=simd)
    return fields


def _with_group(spec, group: int):
    if isinstance(spec, dmvau.Spec):
        return dataclasses.replace(spec, simd=group)
    lanes = min(k for k in range(spec.lanes, spec.channels + 1)
                if spec.channels % k == 0 and k % group == 0)
    return dataclasses.replace(spec, simd=group, lanes=lanes)
