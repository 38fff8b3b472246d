"""``fpgagen report``: the per-layer table and totals against the board's capacity."""

from __future__ import annotations

from pathlib import Path

from .build import open_build

COLUMNS = ("name", "kind", "in", "out", "types", "PE", "SIMD", "cycles",
           "LUT", "FF", "BRAM18", "DSP")


def _rows(report: dict) -> list[list[str]]:
    rows = []
    for n in report["nodes"]:
        e = n["estimate"]
        rows.append([n["name"], n["kind"], "x".join(map(str, n["in_shape"])),
                     "x".join(map(str, n["out_shape"])), f"{n['in_type']}->{n['out_type']}",
                     str(n["pe"]), str(n["simd"]), str(n["cycles"]), str(e["lut"]),
                     str(e["ff"]), str(e["bram18"]), str(e["dsp"])])
    t, c = report["total"]["estimate"], report["capacity"]
    rows.append(["total", "", "", "", "", "", "", str(report["cycles_per_frame"]),
                 str(t["lut"]), str(t["ff"]), str(t["bram18"]), str(t["dsp"])])
    rows.append([f"{report['board']}", "capacity", "", "", "", "", "", "",
                 str(c["lut"]), str(c["ff"]), str(c["bram18"]), str(c["dsp"])])
    u = report["utilization"]
    rows.append(["", "utilization", "", "", "", "", "", "",
                 *(f"{100 * u[k]:.1f}%" if u[k] is not None else "-"
                   for k in ("lut", "ff", "bram18", "dsp"))])
    return rows


def _summary(report: dict) -> list[str]:
    return [
        f"board {report['board']} ({report['part']}) at {report['clock_mhz']:g} MHz: "
        f"{report['cycles_per_frame']} cycles/frame (bottleneck {report['bottleneck']}), "
        f"{report['throughput_fps']:.0f} frames/s, latency {report['latency_cycles']} "
        f"cycles ({report['latency_us']:g} us)",
        "fits the board" if report["fits"] else "DOES NOT FIT the board",
    ]


def text_table(report: dict) -> str:
    rows = [list(COLUMNS)] + _rows(report)
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.rjust(w) if i >= 5 else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + [""] + _summary(report)) + "\n"


def markdown(report: dict) -> str:
    lines = [f"# fpgagen report: {report.get('model', '')}", ""]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(report)]
    lines += [""] + [f"- {s}" for s in _summary(report)]
    return "\n".join(lines) + "\n"


def report(out) -> str:
    """Print-ready table; also writes OUT/report.md."""
    out, _graph, rep = open_build(out)
    Path(out, "report.md").write_text(markdown(rep))
    return text_table(rep)
