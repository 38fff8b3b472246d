"""Choose the folding (PE/SIMD...) of every node.

With a cycle budget per frame, each node gets the cheapest folding (estimated LUTs,
then BRAM) that meets it; the throughput is set by the slowest node, so there is no
gain in making any node faster than the budget. Without a budget, the fastest budget
whose estimated total fits the board's share is chosen.

Wide options (a kind's ``narrow_fold_options`` leaves them out: a sliding window's
several pixels per word, each another copy of its line buffer) are for budgets that
need them: ``--target-fps`` and ``--fit`` take them where the budget asks, the default
folding never does, and lane matching never widens a window into them.
"""

from __future__ import annotations

import dataclasses
import math

from .. import nodes
from ..errors import FoldingError
from ..ir import Graph
from . import differential

BOARD_SHARE_LUT = 0.5  # default folding uses at most this share of the board's LUTs
BOARD_SHARE_BRAM = 0.8
MAX_LANE_BITS = 1 << 16  # cap on PE*SIMD*bits per node for the default folding


def _options(spec, *, wide: bool = True):
    module = nodes.module_for(spec)
    if not hasattr(module, "fold_options"):
        return [spec]
    options = module.narrow_fold_options(spec) \
        if not wide and hasattr(module, "narrow_fold_options") else module.fold_options(spec)
    return [dataclasses.replace(spec, **opt) for opt in options]


def _best(spec, budget: int, family: str, wide: bool = True, **fixed):
    """The cheapest folding within ``budget`` (among those with the ``fixed`` fields)."""
    best, best_key = None, None
    for cand in _options(spec, wide=wide):
        if any(getattr(cand, k) != v for k, v in fixed.items()):
            continue
        cost = nodes.estimate(cand, family)
        if cost.cycles > budget:
            continue
        key = (cost.lut + 300 * cost.bram18 + 100 * cost.dsp, cost.cycles)
        if best_key is None or key < best_key:
            best, best_key = cand, key
    return best


def min_cycles(graph: Graph, family: str, *, wide: bool = True) -> int:
    """The fewest cycles per frame any folding reaches (the slowest node, fully parallel)."""
    return max(min(nodes.estimate(c, family).cycles for c in _options(n.spec, wide=wide))
               for n in graph.nodes)


def fold_for_cycles(graph: Graph, budget: int, family: str, *, wide: bool = True) -> Graph:
    specs = {}
    for node in graph.nodes:
        spec = _best(node.spec, budget, family, wide)
        if spec is None:
            fastest = min(nodes.estimate(c, family).cycles
                          for c in _options(node.spec, wide=wide))
            raise FoldingError(f"needs at least {fastest} cycles per frame even fully "
                               f"parallel; the target allows {budget}",
                               where=f"node '{node.name}'",
                               hint="lower --target-fps or raise --clock-mhz")
        specs[node.name] = spec
    specs = differential.match_groups(
        graph, specs, fit=lambda spec, simd: _best(spec, budget, family, wide, simd=simd))
    specs = _match_lanes(graph, specs, budget, family)
    return _with_specs(graph, specs)


def _port_types(spec) -> list:
    return [nodes.port(spec, p).dtype for p in nodes.out_ports(spec)]


def _out_streams(spec) -> list[tuple]:
    return [(nodes.port(spec, p).dtype, nodes.port(spec, p).elems)
            for p in nodes.out_ports(spec)]


def _with_specs(graph: Graph, specs: dict) -> Graph:
    """The graph with new specs by node name; an output tensor whose type or length the
    folding changed (a delta stream's wire word and entries depend on its group size)
    takes the new ones."""
    tensors = dict(graph.tensors)
    for node in graph.nodes:
        old, new = _out_streams(node.spec), _out_streams(specs[node.name])
        for t, was, (dtype, elems) in zip(node.outputs, old, new):
            if was != (dtype, elems):
                shape = tensors[t].shape if elems == tensors[t].elems else (elems,)
                tensors[t] = dataclasses.replace(tensors[t], dtype=dtype, shape=shape)
    return graph.replace(nodes=tuple(dataclasses.replace(n, spec=specs[n.name])
                                     for n in graph.nodes), tensors=tensors)


def _match_lanes(graph: Graph, specs: dict, budget: int, family: str) -> dict:
    """Give cheap stream nodes (``ADAPTS_LANES`` kinds) their neighbours' word widths.

    A sliding window or pool costs little more with wider words, while a width
    converter between mismatched neighbours costs registers and latency; so these
    nodes take the folding that matches their consumer (then their producer) among
    those within the cycle budget. ``specs`` are by node name; a node's neighbours are
    the producer of its first input and the first reader of its first output.
    """
    specs = dict(specs)
    made = {t: (n.name, k) for n in graph.nodes for k, t in enumerate(n.outputs)}
    read: dict[str, tuple[str, int]] = {}
    for n in graph.nodes:
        for k, t in enumerate(n.inputs):
            read.setdefault(t, (n.name, k))

    def lanes(name: str, k: int, ports) -> int:
        return nodes.port(specs[name], ports(specs[name])[k]).lanes

    order = graph.topo()
    for sweep in (order[::-1], order):
        for node in sweep:
            spec = specs[node.name]
            if not getattr(nodes.module_for(spec), "ADAPTS_LANES", False):
                continue
            producer, reader = made.get(node.inputs[0]), read.get(node.outputs[0])
            want_in = lanes(*producer, nodes.out_ports) if producer else None
            want_out = lanes(*reader, nodes.in_ports) if reader else None
            wide = spec not in _options(spec, wide=False)  # the budget asked for it
            fits = [(c, cost) for c in _options(spec, wide=wide)  # other lanes
                    if _port_types(c) == _port_types(spec)
                    and (cost := nodes.estimate(c, family)).cycles <= budget]
            if fits:
                specs[node.name] = min(fits, key=lambda f: (f[0].out_lanes != want_out,
                                                            f[0].in_lanes != want_in,
                                                            f[1].lut + 300 * f[1].bram18))[0]
    return specs


def _lane_bits(spec) -> int:
    return getattr(spec, "pe", 1) * getattr(spec, "simd", 1)


def fold_to_fit(graph: Graph, board, lut_share: float = BOARD_SHARE_LUT,
                bram_share: float = BOARD_SHARE_BRAM, *, wide: bool = False) -> Graph:
    """Fastest folding whose estimate fits the board's share (the default: half its LUTs,
    narrow options only; ``--fit``: all of them, wide options too)."""
    family = board.family
    slowest = max(nodes.estimate(n.spec, family).cycles for n in graph.nodes)
    fastest = min_cycles(graph, family, wide=wide)
    budgets, b = [], fastest
    while b < slowest:
        budgets.append(b)
        b = max(b + 1, math.ceil(b * 1.25))
    budgets.append(slowest)
    for budget in budgets:
        folded = fold_for_cycles(graph, budget, family, wide=wide)
        costs = [nodes.estimate(n.spec, family) for n in folded.nodes]
        lut = sum(c.lut for c in costs)
        bram = sum(c.bram18 for c in costs)
        widest = max(_lane_bits(n.spec) for n in folded.nodes)
        if (lut <= lut_share * board.lut and bram <= bram_share * board.bram18
                and widest <= MAX_LANE_BITS):
            return folded
    return fold_for_cycles(graph, slowest, family, wide=wide)


def apply(graph: Graph, *, board, target_fps: float | None = None,
          clock_mhz: float | None = None, fit: bool = False,
          overrides: dict | None = None) -> tuple[Graph, bool]:
    """Fold for ``target_fps``, for the whole board (``fit``), or by default; then apply
    the user's per-node ``overrides`` ({node name: {field: value}})."""
    folded, changed = _choose(graph, board, target_fps, clock_mhz, fit)
    return apply_overrides(folded, overrides or {}), changed


def apply_overrides(graph: Graph, overrides: dict) -> Graph:
    """Replace folding fields of named nodes, with the kinds' own validation."""
    by_name = {n.name: n for n in graph.nodes}
    new = dict(by_name)
    for name, fields in overrides.items():
        node = by_name.get(name)
        if node is None:
            shown = ", ".join(sorted(by_name)[:20])
            raise FoldingError(f"the folding file names node '{name}', which this graph "
                               "does not have", hint=f"nodes: {shown}")
        module = nodes.module_for(node.spec)
        allowed = set().union(*(opt.keys() for opt in module.fold_options(node.spec))) \
            if hasattr(module, "fold_options") else set()
        if not isinstance(fields, dict) or not fields:
            raise FoldingError(f"the folding of node '{name}' must be an object such as "
                               f"{{\"pe\": 2}}", hint=f"fields: {', '.join(sorted(allowed))}")
        for key, value in fields.items():
            if key not in allowed:
                raise FoldingError(f"node '{name}' ({node.kind}) has no folding field "
                                   f"'{key}'", hint=f"fields: {', '.join(sorted(allowed))}")
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise FoldingError(f"{key} of node '{name}' must be a positive integer, "
                                   f"not {value!r}")
        fields = differential.fitted_fields(node.spec, fields)
        new[name] = dataclasses.replace(node, spec=dataclasses.replace(node.spec, **fields))
    specs = differential.match_groups(graph, {n: node.spec for n, node in new.items()},
                                      named=set(overrides))
    return _with_specs(graph, specs)


def folding_of(graph: Graph) -> dict:
    """The folding fields of every node, as a folding file holds them."""
    out = {}
    for node in graph.nodes:
        module = nodes.module_for(node.spec)
        if hasattr(module, "fold_options"):
            keys = sorted(set().union(*(o.keys() for o in module.fold_options(node.spec))))
            out[node.name] = {k: getattr(node.spec, k) for k in keys}
    return out


def _choose(graph, board, target_fps, clock_mhz, fit) -> tuple[Graph, bool]:
    clock = clock_mhz or board.clock_mhz
    if fit and target_fps is not None:
        raise FoldingError("give either --target-fps or --fit, not both")
    if fit:
        return fold_to_fit(graph, board, lut_share=1.0, bram_share=1.0, wide=True), True
    if target_fps is not None:
        if not target_fps > 0:
            raise FoldingError(f"--target-fps must be positive, not {target_fps}")
        budget = math.floor(clock * 1e6 / target_fps)
        reach = min_cycles(graph, board.family)
        if budget < reach:
            raise FoldingError(
                f"--target-fps {target_fps:g} is unreachable at {clock:g} MHz: it leaves "
                f"{budget} cycles per frame and the fastest folding needs {reach}",
                hint=f"at most {math.floor(clock * 1e6 / reach)} frames/s at this clock")
        return fold_for_cycles(graph, budget, board.family), True
    return fold_to_fit(graph, board), True
