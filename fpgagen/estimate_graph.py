"""Whole-graph analyses: per-node cost table, totals, throughput, the report's numbers.

``report.json`` uses the same names everywhere: per node and in ``total`` a pair
``{"estimate": {lut, ff, bram18, dsp}, "synth": {...} | null}``, likewise
``utilization``; ``fmax_mhz`` is null until placed and routed. ``fpgagen report
--synth/--pnr`` fills the ``synth`` halves and ``fmax_mhz`` (``add_synthesis``,
``add_place_and_route``).
"""

from __future__ import annotations

import dataclasses
import math

from . import nodes
from .boards import Board, known
from .ir import Graph
from .nodes import softmax

PIPELINE_LATENCY = 4  # register stages a node adds beyond its cycles per frame (approx.)
RESOURCES = ("lut", "ff", "bram18", "dsp")


def _bram(value: float) -> float | int:
    value = round(value, 3)
    return int(value) if float(value).is_integer() else value


def node_rows(graph: Graph, family: str) -> list[dict]:
    rows = []
    origin = graph.meta.get("origin", {})
    for node in graph.topo():
        s = node.spec
        cost = nodes.estimate(s, family)
        estimate = cost.as_dict()
        estimate["bram18"] = _bram(estimate["bram18"])
        rows.append({
            "name": node.name,
            "kind": node.kind,
            "origin": origin.get(node.name, ""),
            "in_shape": list(graph.tensors[node.inputs[0]].shape),
            "out_shape": list(graph.tensors[node.outputs[0]].shape),
            "in_type": _port_types(s, nodes.in_ports(s)),
            "out_type": _port_types(s, nodes.out_ports(s)),
            "pe": getattr(s, "pe", s.out_lanes),
            "simd": getattr(s, "simd", s.in_lanes),
            "cycles": cost.cycles,
            "estimate": estimate,
            "synth": None,
        })
    return rows


def _port_types(spec, names) -> str:
    """The ports' element types, ``int4`` or ``int4+uint3`` for unlike ports."""
    types = dict.fromkeys(nodes.port(spec, n).dtype.name for n in names)
    return "+".join(types)


def totals(rows: list[dict], which: str = "estimate") -> dict:
    t = {k: sum(r[which][k] for r in rows) for k in RESOURCES}
    t["bram18"] = _bram(t["bram18"])
    return t


def utilization(used: dict, capacity: dict) -> dict:
    return {k: round(used[k] / capacity[k], 4) if capacity[k] else None for k in RESOURCES}


def overflow(used: dict, capacity: dict) -> list[dict]:
    """Resources over the board's capacity, with by how much."""
    return [{"resource": k, "used": used[k], "capacity": capacity[k],
             "excess": _bram(used[k] - capacity[k]) if k == "bram18" else used[k] - capacity[k],
             "ratio": round(used[k] / capacity[k], 2) if capacity[k] else None}
            for k in RESOURCES if used[k] > capacity[k]]


INSERTED_KINDS = ("fifo", "dwc", "dup")  # nodes the passes after folding add between layers


def unfolded(graph: Graph) -> Graph:
    """The graph without the FIFOs, width converters and duplicators the passes inserted.

    Each removed node's outputs are read from its input again, so a duplicated tensor
    becomes a fork (several readers) as the frontend made it.
    """
    source = {}  # removed node's output tensor -> the tensor it passes on
    for node in graph.topo():
        if node.kind in INSERTED_KINDS:
            origin = source.get(node.inputs[0], node.inputs[0])
            source.update({t: origin for t in node.outputs})
    kept = tuple(dataclasses.replace(n, inputs=tuple(source.get(t, t) for t in n.inputs))
                 for n in graph.nodes if n.kind not in INSERTED_KINDS)
    return graph.replace(nodes=kept, outputs=tuple(source.get(t, t) for t in graph.outputs))


def refold(graph: Graph, budget: int, family: str) -> Graph:
    """What the build's pass pipeline makes of ``graph`` for a cycle budget."""
    from .passes import PIPELINE, fold

    folded = fold.fold_for_cycles(unfolded(graph), budget, family)
    for name, apply in PIPELINE:
        if name != "fold":
            folded, _ = apply(folded)
    return folded


def fitting_folding(graph: Graph, board: Board, clock_mhz: float) -> dict | None:
    """The fastest folding whose estimate fits the whole board, or None if none does."""
    from .errors import FoldingError
    from .passes import fold

    capacity = board.capacity()
    budget = max(nodes.estimate(n.spec, board.family).cycles for n in graph.nodes)
    slowest = max(max(nodes.estimate(c, board.family).cycles for c in fold._options(n.spec))
                  for n in graph.nodes)
    while True:
        try:
            folded = refold(graph, budget, board.family)
        except FoldingError:
            return None
        used = totals(node_rows(folded, board.family))
        if not overflow(used, capacity):
            cycles = max(nodes.estimate(n.spec, board.family).cycles for n in folded.nodes)
            return {"cycles_per_frame": cycles, "estimate": used,
                    "throughput_fps": round(clock_mhz * 1e6 / cycles, 2),
                    "target_fps": math.floor(clock_mhz * 1e6 / cycles)}
        if budget >= slowest:
            return None
        budget = min(slowest, max(budget + 1, math.ceil(budget * 1.25)))


def fit_advice(graph: Graph, board: Board, clock_mhz: float, used: dict) -> dict | None:
    """For a design over the board's capacity: what overflows, and what would fit."""
    over = overflow(used, board.capacity())
    if not over:
        return None
    advice = {"over": over, "folding": fitting_folding(graph, board, clock_mhz)}
    if advice["folding"] is None:
        advice["boards"] = [b.name for b in known()
                            if not overflow(used, b.capacity())]
    return advice


def advice_text(advice: dict) -> str:
    """One paragraph: which resource, by how much, and what folding (or board) fits."""
    parts = [f"{o['resource'].upper()} {o['used']} > {o['capacity']} "
             f"(over by {o['excess']}, {o['ratio']}x)" for o in advice["over"]]
    text = "does not fit: " + "; ".join(parts)
    f = advice.get("folding")
    if f:
        text += (f". A folding that fits: --target-fps {f['target_fps']} "
                 f"({f['cycles_per_frame']} cycles/frame, estimated LUT {f['estimate']['lut']}, "
                 f"BRAM18 {f['estimate']['bram18']}, DSP {f['estimate']['dsp']})")
    else:
        boards = advice.get("boards") or []
        text += (". No folding fits this board"
                 + (f"; boards it fits as built: {', '.join(boards)}" if boards else ""))
    return text


def latency_cycles(graph: Graph, rows: list[dict]) -> int:
    """The longest input-to-output path of ``cycles + PIPELINE_LATENCY`` per node."""
    cost = {r["name"]: r["cycles"] + PIPELINE_LATENCY for r in rows}
    ready = dict.fromkeys(graph.inputs, 0)
    for node in graph.topo():
        done = max(ready[t] for t in node.inputs) + cost[node.name]
        ready.update(dict.fromkeys(node.outputs, done))
    return max(ready[t] for t in graph.outputs)


def fifo_memory(graph: Graph, rows: list[dict]) -> dict:
    """What the FIFOs cost: how many, their words and bits, LUT and BRAM18 (estimates)."""
    specs = {n.name: n.spec for n in graph.nodes if n.kind == "fifo"}
    cost = [r["estimate"] for r in rows if r["name"] in specs]
    return {"fifos": len(specs), "words": sum(s.depth for s in specs.values()),
            "bits": sum(s.depth * s.width for s in specs.values()),
            "lut": sum(c["lut"] for c in cost), "bram18": _bram(sum(c["bram18"] for c in cost))}


def graph_report(graph: Graph, board: Board, clock_mhz: float) -> dict:
    rows = node_rows(graph, board.family)
    total = totals(rows)
    cycles = max(r["cycles"] for r in rows)
    bottleneck = next(r["name"] for r in rows if r["cycles"] == cycles)
    latency = latency_cycles(graph, rows)
    capacity = board.capacity()
    advice = fit_advice(graph, board, clock_mhz, total)
    return {
        "board": board.name,
        "board_spec": dataclasses.asdict(board),
        "part": board.part,
        "family": board.family,
        "clock_mhz": clock_mhz,
        "nodes": rows,
        "total": {"estimate": total, "synth": None},
        "capacity": capacity,
        "utilization": {"estimate": utilization(total, capacity), "synth": None},
        "fifo_memory": fifo_memory(graph, rows),
        "fits": advice is None,
        "fit_advice": advice,
        "cycles_per_frame": cycles,
        "bottleneck": bottleneck,
        "throughput_fps": round(clock_mhz * 1e6 / cycles, 2),
        "latency_cycles": latency,
        "latency_us": round(latency / clock_mhz, 3),
        "fmax_mhz": None,
        "throughput_fps_at_fmax": None,
        "exp_units": [softmax.exp_unit_report(n.spec, board.family) for n in graph.nodes
                      if isinstance(n.spec, softmax.Spec)],
    }


def add_synthesis(report: dict, synth: dict) -> dict:
    """``synth`` from ``synth.synthesize_build``: fill the synth halves and errors."""
    from .synth import relative_error

    rep = dict(report)
    rows = []
    for row in report["nodes"]:
        res = synth["nodes"].get(row["name"])
        row = dict(row, synth=res["resources"] if res else None)
        if res:
            row["error"] = {k: relative_error(row["estimate"][k], res["resources"][k])
                            for k in RESOURCES}
        rows.append(row)
    rep["nodes"] = rows
    design = synth["design"]["resources"]
    rep["total"] = {"estimate": report["total"]["estimate"], "synth": design,
                    "synth_nodes_sum": totals([r for r in rows if r["synth"]], "synth"),
                    "error": {k: relative_error(report["total"]["estimate"][k], design[k])
                              for k in RESOURCES}}
    rep["utilization"] = {"estimate": report["utilization"]["estimate"],
                          "synth": utilization(design, report["capacity"])}
    rep["fits_synth"] = not overflow(design, report["capacity"])
    rep["synth_seconds"] = round(synth["design"]["seconds"]
                                 + sum(r["seconds"] for r in synth["nodes"].values()), 2)
    return rep


def add_place_and_route(report: dict, pnr: dict) -> dict:
    rep = dict(report, fmax_mhz=pnr["fmax_mhz"], pnr_utilization=pnr["utilization"])
    if pnr["fmax_mhz"]:
        clock = min(pnr["fmax_mhz"], report["clock_mhz"])
        rep["throughput_fps_at_fmax"] = round(pnr["fmax_mhz"] * 1e6
                                              / report["cycles_per_frame"], 2)
        rep["meets_clock"] = pnr["fmax_mhz"] >= report["clock_mhz"]
        rep["throughput_fps_at_board_clock"] = round(clock * 1e6 / report["cycles_per_frame"], 2)
    return rep
