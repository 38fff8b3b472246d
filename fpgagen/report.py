"""``fpgagen report``: per-layer resources and throughput, against the board's capacity.

Writes ``OUT/report.md`` and one self-contained ``OUT/report.html`` (inline SVG, no
scripts, no external references). ``--synth`` adds Yosys numbers beside the
estimates (and updates ``report.json``); ``--pnr`` adds nextpnr's Fmax on Lattice
boards. The estimate files are written before any tool runs, so a failing tool
leaves a complete estimate report behind.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from . import delta_stats, report_html
from .boards import Board
from .build import open_build
from .errors import BoardError
from .estimate_graph import RESOURCES, add_place_and_route, add_synthesis, advice_text

LABELS = {"lut": "LUT", "ff": "FF", "bram18": "BRAM18", "dsp": "DSP"}
FORMATS = ("text", "md", "html", "json")


def _num(v) -> str:
    if v is None:
        return "-"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:+.1f}%"


def _has_synth(report: dict) -> bool:
    return bool(report["total"].get("synth"))


def _columns(report: dict) -> list[str]:
    cols = ["name", "kind", "in", "out", "types", "PE", "SIMD", "cycles"]
    for k in RESOURCES:
        cols += [LABELS[k], f"{LABELS[k]} synth", f"{LABELS[k]} err"] if _has_synth(report) \
            else [LABELS[k]]
    return cols


def _resource_cells(pair: dict, synth: bool) -> list[str]:
    cells = []
    for k in RESOURCES:
        cells.append(_num(pair["estimate"][k]))
        if synth:
            s = pair.get("synth")
            cells.append(_num(s[k]) if s else "-")
            err = (pair.get("error") or {}).get(k)
            cells.append(_pct(err))
    return cells


def _rows(report: dict) -> list[list[str]]:
    synth = _has_synth(report)
    rows = []
    for n in report["nodes"]:
        rows.append([n["name"], n["kind"], "x".join(map(str, n["in_shape"])),
                     "x".join(map(str, n["out_shape"])), f"{n['in_type']}->{n['out_type']}",
                     str(n["pe"]), str(n["simd"]), str(n["cycles"]),
                     *_resource_cells(n, synth)])
    rows.append(["total", "", "", "", "", "", "", str(report["cycles_per_frame"]),
                 *_resource_cells(report["total"], synth)])
    width = 3 if synth else 1
    cap = report["capacity"]
    rows.append([report["board"], "capacity", "", "", "", "", "", "",
                 *[c for k in RESOURCES for c in [_num(cap[k])] + [""] * (width - 1)]])
    est, syn = report["utilization"]["estimate"], report["utilization"].get("synth")
    rows.append(["", "utilization", "", "", "", "", "", "",
                 *[c for k in RESOURCES for c in
                   ([f"{100 * est[k]:.1f}%" if est[k] is not None else "-"]
                    + ([f"{100 * syn[k]:.1f}%" if syn and syn[k] is not None else "-", ""]
                       if synth else []))]])
    return rows


def summary(report: dict) -> list[str]:
    lines = [
        f"board {report['board']} ({report['part']}) at {report['clock_mhz']:g} MHz: "
        f"{report['cycles_per_frame']} cycles/frame (bottleneck {report['bottleneck']}), "
        f"{report['throughput_fps']:.0f} frames/s, latency {report['latency_cycles']} "
        f"cycles ({report['latency_us']:g} us)",
    ]
    fifos = report.get("fifo_memory")
    if fifos:
        lines.append(f"FIFOs: {fifos['fifos']}, {fifos['words']} words ({fifos['bits']} bits), "
                     f"{_num(fifos['lut'])} LUT, {_num(fifos['bram18'])} BRAM18 (estimate)")
    if report.get("fmax_mhz"):
        verdict = "meets" if report.get("meets_clock") else "MISSES"
        lines.append(f"placed and routed (nextpnr): Fmax {report['fmax_mhz']:g} MHz, "
                     f"{verdict} the {report['clock_mhz']:g} MHz clock; "
                     f"{report['throughput_fps_at_fmax']:.0f} frames/s at Fmax")
    if _has_synth(report):
        err = report["total"]["error"]
        lines.append("synthesised (Yosys, whole design): " + ", ".join(
            f"{LABELS[k]} {_num(report['total']['synth'][k])} (estimate {_pct(err[k])})"
            for k in RESOURCES))
    advice = report.get("fit_advice")
    lines.append(advice_text(advice) if advice else "fits the board (estimate)")
    if _has_synth(report) and not report.get("fits_synth", True):
        lines.append("DOES NOT FIT the board after synthesis")
    return lines


def text_table(report: dict) -> str:
    cols = _columns(report)
    rows = [cols] + _rows(report)
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = ["  ".join(cell.rjust(w) if i >= 5 else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + [""] + summary(report)) + "\n"


def markdown(report: dict) -> str:
    cols = _columns(report)
    lines = [f"# fpgagen report: {report.get('model', '')}", ""]
    lines += [f"- {s}" for s in summary(report)] + [""]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(report)]
    lines += ["", "## Cycles per layer", "", "| layer | cycles | |", "|---|---|---|"]
    top = max(n["cycles"] for n in report["nodes"])
    for n in report["nodes"]:
        bar = "#" * max(1, round(30 * n["cycles"] / top))
        mark = " **bottleneck**" if n["name"] == report["bottleneck"] else ""
        lines.append(f"| {n['name']} | {n['cycles']} | `{bar}`{mark} |")
    if report.get("differential"):
        lines += delta_stats.markdown_lines(report["differential"])
    lines += exp_unit_lines(report.get("exp_units", []))
    lines += ["", "Plots: report.html"]
    return "\n".join(lines) + "\n"


def exp_unit_lines(units: list[dict]) -> list[str]:
    """The softmax exponent units: each choice's resources beside the one built."""
    if not units:
        return []
    lines = ["", "## Softmax exponent units", "",
             "| node | table depth | exp bits | variant | LUT | FF | BRAM18 | DSP | built |",
             "|---|---|---|---|---|---|---|---|---|"]
    for u in units:
        for variant, c in u["choices"].items():
            mark = "yes" if variant == u["variant"] else ""
            lines.append(f"| {u['node']} | {u['depth']} | {u['exp_bits']} | {variant} | "
                         f"{c['lut']} | {c['ff']} | {c['bram18']} | {c['dsp']} | {mark} |")
    return lines + ["", "`fpgagen build --exp-unit single|split` chooses the variant."]


def html(report: dict) -> str:
    return report_html.report_page(report, _columns(report), _rows(report), summary(report))


RENDERERS: dict[str, Callable[[dict], str]] = {
    "text": text_table, "md": markdown, "html": html,
    "json": lambda r: json.dumps(r, indent=1) + "\n"}


def _write(out: Path, report: dict, with_json: bool) -> None:
    files = {"report.md": markdown(report), "report.html": html(report)}
    if with_json:
        files["report.json"] = RENDERERS["json"](report)
    for name, text in files.items():
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)


def _board(report: dict) -> Board:
    spec = report.get("board_spec")
    if not spec:
        raise BoardError(f"the build's report.json does not record board '{report['board']}'",
                         hint="build it again with this fpgagen")
    return Board(**spec)


def _add_differential_data(out: Path, rep: dict) -> bool:
    """A differential build's report takes the statistics of the last ``fpgagen sim``
    run (``sim/results.json``), if any; True when it did."""
    try:
        sim = json.loads((out / "sim" / "results.json").read_text())
    except (OSError, ValueError):
        return False
    if not rep.get("differential") or not isinstance(sim, dict) or not sim.get("differential"):
        return False
    rep["differential"] = {**rep["differential"], "data": sim["differential"],
                           "measured_cycles_per_frame": sim.get("cycles_per_frame")}
    return True


def report(out, *, synth: bool = False, pnr: bool = False, fmt: str = "text",
           progress: Callable[[str], None] | None = None) -> str:
    """Write OUT/report.md and OUT/report.html (and, with tools, report.json).

    Returns the report in ``fmt`` (text, md, html or json) for printing.
    """
    from . import synth as synthesis

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    out, graph, rep = open_build(out)
    with_data = _add_differential_data(out, rep)
    board = _board(rep) if pnr else None
    if board is not None and board.vendor != "lattice":
        raise BoardError(f"--pnr places and routes with nextpnr, for Lattice boards; "
                         f"'{board.name}' is {board.vendor}",
                         hint="for Xilinx boards run vivado -mode batch -source "
                              f"{out}/vivado/build.tcl")
    _write(out, rep, with_json=with_data)  # the estimate report, whatever the tools do
    if synth:
        result = synthesis.synthesize_build(out, graph, rep["family"],
                                            workers=synthesis.cpu_workers(),
                                            progress=progress)
        rep = add_synthesis(rep, result)
    if board is not None:
        from .project import lattice

        if progress:
            progress(f"[fpgagen] place and route for {board.name} (nextpnr) ...")
        rep = add_place_and_route(rep, lattice.run_flow(out, board, bitstream=False))
    if synth or pnr:
        _write(out, rep, with_json=True)
    return RENDERERS[fmt](rep)
