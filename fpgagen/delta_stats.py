"""What the differential units save on real data: an analysis returning dicts.

``design(graph)`` is the static part (at build time, ``report.json["differential"]``);
``statistics(graph, x_int)`` runs the golden model on integer input frames and, per
differential MVAU, counts the deltas that reached it, per delta (zero, narrow: fits
``narrow_bits``, wide) and per group of ``simd`` channels as they travel (all-zero
groups are never sent, narrow ones take one word, wide ones two), the
multiply-accumulates it skips against the plain MVAU (which multiplies every element;
the unit multiplies every element of a group it receives), the bits on its input link
(wire words against the plain stream of input elements), and its cycles per frame: the
worst case that folding and FIFO sizing use, and the figure for these frames (exact
for the hardware when nothing stalls it; tests/test_nodes_dmvau.py measures it). The
whole network's figure for these frames is the slowest node's, frame by frame.
"""

from __future__ import annotations

import numpy as np

from . import nodes, reference
from .ir import Graph, Node
from .nodes import delta, dmvau, dup, fifo
from .sim.runner import MEASURE_FRAMES


def units(graph: Graph) -> list[Node]:
    """The differential MVAUs, in stream order."""
    return [n for n in graph.topo() if isinstance(n.spec, dmvau.Spec)]


def encoder_of(graph: Graph, node: Node) -> Node:
    """The delta encoder feeding ``node`` (through FIFOs and duplicators)."""
    producer = graph.producer(node.inputs[0])
    while not isinstance(producer.spec, delta.Spec):
        producer = graph.producer(producer.inputs[0])
    return producer


def _plain_cycles(spec: dmvau.Spec) -> int:
    """The plain MVAU's cycles with the same folding (PE and SIMD)."""
    return spec.plain.cycles()


def design(graph: Graph) -> dict:
    """The differential units as built (no data): formats and worst-case cycles."""
    rows = []
    for node in units(graph):
        s = node.spec
        rows.append({"node": node.name, "encoder": encoder_of(graph, node).name,
                     "mw": s.mw, "mh": s.mh, "vectors": s.vectors, "pe": s.pe,
                     "simd": s.simd,
                     "narrow_bits": s.narrow_bits, "word_bits": s.fmt.word_bits,
                     "x_type": s.x_type.name, "cycles_worst": s.cycles(),
                     "cycles_plain_same_pe": _plain_cycles(s)})
    return {"units": rows}


def statistics(graph: Graph, x_int: np.ndarray, family: str = "xc7") -> dict:
    """Per differential MVAU and for the network, over the frames ``x_int``."""
    values = reference.run_hw(graph, x_int, keep=True)
    frames = x_int.shape[0]
    per_frame = {}  # node -> cycles per frame for these frames
    rows = []
    for node in units(graph):
        s = node.spec
        d = delta.dense(s.fmt, values[node.inputs[0]])
        st = delta.link_stats(s.fmt, d, s.vectors)
        cycles = s.cycles_for(d)
        encoder = encoder_of(graph, node)
        per_frame[node.name] = cycles
        per_frame[encoder.name] = encoder.spec.cycles_for(d)
        plain_bits = s.vectors * s.mw * s.x_type.bits
        macs_plain = s.vectors * s.mw * s.mh
        macs = int(st["nonzero_groups"].sum()) * s.simd * s.mh
        rows.append({
            "node": node.name,
            "simd": s.simd,
            "deltas": st["deltas"],
            "zero_fraction": round(st["zero"] / st["deltas"], 4),
            "narrow_fraction": round(st["narrow"] / st["deltas"], 4),
            "wide_fraction": round(st["wide"] / st["deltas"], 4),
            "groups": st["groups"],
            "group_zero_fraction": round(st["group_zero"] / st["groups"], 4),
            "group_narrow_fraction": round(st["group_narrow"] / st["groups"], 4),
            "group_wide_fraction": round(st["group_wide"] / st["groups"], 4),
            "macs_per_frame": round(macs / frames, 1),
            "macs_plain_per_frame": macs_plain,
            "macs_skipped_fraction": round(1 - macs / (frames * macs_plain), 4),
            "link_bits_per_frame": round(float(st["bits"].mean()), 1),
            "link_bits_plain_per_frame": plain_bits,
            "link_words_per_frame": round(float(st["words"].mean()), 1),
            "cycles_worst": s.cycles(),
            "cycles_data_mean": round(float(cycles.mean()), 1),
            "cycles_data_max": int(cycles.max()),
            "cycles_plain_same_pe": _plain_cycles(s),
            "encoder_cycles_data_mean": round(float(per_frame[encoder.name].mean()), 1),
        })
    # FIFOs and duplicators on a delta stream take one cycle per word actually sent
    words_of = {}
    for node in graph.topo():
        if isinstance(node.spec, delta.Spec):
            fmt = node.spec.fmt
            words_of[node.outputs[0]] = delta.link_stats(
                fmt, delta.dense(fmt, values[node.outputs[0]]), node.spec.vectors)["words"]
        elif isinstance(node.spec, (fifo.Spec, dup.Spec)) and node.inputs[0] in words_of:
            per_frame[node.name] = words_of[node.inputs[0]]
            words_of.update(dict.fromkeys(node.outputs, words_of[node.inputs[0]]))
    fixed = [nodes.estimate(n.spec, family).cycles for n in graph.nodes
             if n.name not in per_frame]
    slowest = np.max(np.stack([np.full(frames, max(fixed, default=0))]
                              + list(per_frame.values())), axis=0)
    # what a stall-free simulation measures: the interval between frames' last outputs
    measured = slowest[1:MEASURE_FRAMES] if frames > 1 else slowest
    return {"frames": frames, "units": rows,
            "network": {"cycles_worst": max(nodes.estimate(n.spec, family).cycles
                                            for n in graph.nodes),
                        "cycles_data_mean": round(float(slowest.mean()), 1),
                        "cycles_data_max": int(slowest.max()),
                        "cycles_data_measured_frames": round(float(measured.mean()), 1)}}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


TABLE_COLUMNS = ("node", "SIMD", "zero", "narrow", "wide", "zero groups", "wide groups",
                 "MACs skipped", "link bits/frame", "plain bits/frame", "cycles/frame (data)",
                 "worst case", "plain, same folding")


def table_rows(stats: dict) -> list[list[str]]:
    """One row of text cells per differential MVAU (``TABLE_COLUMNS``)."""
    return [[u["node"], str(u["simd"]), _pct(u["zero_fraction"]), _pct(u["narrow_fraction"]),
             _pct(u["wide_fraction"]), _pct(u["group_zero_fraction"]),
             _pct(u["group_wide_fraction"]), _pct(u["macs_skipped_fraction"]),
             f"{u['link_bits_per_frame']:g}", str(u["link_bits_plain_per_frame"]),
             f"{u['cycles_data_mean']:g}", str(u["cycles_worst"]), str(u["cycles_plain_same_pe"])]
            for u in stats["units"]]


def text_lines(stats: dict, measured: float | None = None) -> list[str]:
    """The per-run summary of ``fpgagen sim``: a table and the network's cycles."""
    rows = [list(TABLE_COLUMNS)] + table_rows(stats)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"differential units over {stats['frames']} frames:"]
    lines += ["  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    net = stats["network"]
    line = (f"network cycles/frame: {net['cycles_data_mean']:g} for these frames (slowest "
            f"node per frame), {net['cycles_worst']} worst case")
    if measured is not None:
        line += (f"; {measured:g} measured on frames 1-{MEASURE_FRAMES - 1} without stalls "
                 f"({net['cycles_data_measured_frames']:g} from the data)")
    return lines + [line]


def markdown_lines(info: dict) -> list[str]:
    """``report.md``'s section: the units as built, and the statistics of the last
    ``fpgagen sim`` run when there is one (``info["data"]``)."""
    lines = ["", "## Differential units", ""]
    stats = info.get("data")
    if not stats:
        lines += ["| node | encoder | PE | SIMD | narrow bits | word bits | worst cycles | "
                  "plain, same folding |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {u['node']} | {u['encoder']} | {u['pe']} | {u['simd']} | "
                  f"{u['narrow_bits']} | "
                  f"{u['word_bits']} | {u['cycles_worst']} | {u['cycles_plain_same_pe']} |"
                  for u in info.get("units", [])]
        return lines + ["", "Run `fpgagen sim OUT --inputs X.npy` for the statistics on data."]
    lines += [f"Over the {stats['frames']} frames of the last `fpgagen sim` run:", "",
              "| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(stats)]
    net = stats["network"]
    measured = info.get("measured_cycles_per_frame")
    lines += ["", f"Network cycles/frame: {net['cycles_data_mean']:g} for these frames "
                  f"(slowest node per frame), {net['cycles_worst']} worst case"
              + (f", {measured:g} measured in simulation." if measured is not None else ".")]
    return lines
