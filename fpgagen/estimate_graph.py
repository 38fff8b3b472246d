"""Whole-graph analyses: per-node cost table, totals, throughput, the report's numbers."""

from __future__ import annotations

from . import nodes
from .boards import Board
from .ir import Graph

PIPELINE_LATENCY = 4  # register stages a node adds beyond its cycles per frame (approx.)


def node_rows(graph: Graph, family: str) -> list[dict]:
    rows = []
    origin = graph.meta.get("origin", {})
    for node in graph.chain():
        s = node.spec
        cost = nodes.estimate(s, family)
        rows.append({
            "name": node.name,
            "kind": node.kind,
            "origin": origin.get(node.name, ""),
            "in_shape": list(graph.tensors[node.inputs[0]].shape),
            "out_shape": list(graph.tensors[node.outputs[0]].shape),
            "in_type": s.in_type.name,
            "out_type": s.out_type.name,
            "pe": getattr(s, "pe", s.out_lanes),
            "simd": getattr(s, "simd", s.in_lanes),
            "cycles": cost.cycles,
            "estimate": cost.as_dict(),
        })
    return rows


def graph_report(graph: Graph, board: Board, clock_mhz: float) -> dict:
    rows = node_rows(graph, board.family)
    total = {k: sum(r["estimate"][k] for r in rows) for k in ("lut", "ff", "bram18", "dsp")}
    cycles = max(r["cycles"] for r in rows)
    bottleneck = next(r["name"] for r in rows if r["cycles"] == cycles)
    latency = sum(r["cycles"] + PIPELINE_LATENCY for r in rows)
    capacity = board.capacity()
    return {
        "board": board.name,
        "part": board.part,
        "family": board.family,
        "clock_mhz": clock_mhz,
        "nodes": rows,
        "total": {"estimate": total},
        "capacity": capacity,
        "utilization": {k: round(total[k] / capacity[k], 4) if capacity[k] else None
                        for k in total},
        "fits": all(total[k] <= capacity[k] for k in total),
        "cycles_per_frame": cycles,
        "bottleneck": bottleneck,
        "throughput_fps": round(clock_mhz * 1e6 / cycles, 2),
        "latency_cycles": latency,
        "latency_us": round(latency / clock_mhz, 3),
        "fmax_mhz": None,
    }
