"""``report.html``: one self-contained page, plots drawn as inline SVG by this module.

No scripts, no fonts or styles from elsewhere: the file opens from disk in any browser
(and in headless Chromium, which the tests use when it is installed).
"""

from __future__ import annotations

from html import escape

RESOURCES = ("lut", "ff", "bram18", "dsp")
LABELS = {"lut": "LUT", "ff": "FF", "bram18": "BRAM18", "dsp": "DSP"}
COLORS = {"lut": "#4e79a7", "ff": "#59a14f", "bram18": "#f28e2b", "dsp": "#b07aa1"}
BOTTLENECK = "#e15759"
NORMAL = "#76b7b2"

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th { background: #eee; }
td:nth-child(-n+5) { text-align: left; }
tr.total td { font-weight: bold; background: #f6f6f6; }
.warn { color: #b00; font-weight: bold; }
svg text { font-family: sans-serif; font-size: 11px; }
"""


def _text(x: float, y: float, s: str, anchor: str = "start", extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>'
            f"{escape(s)}</text>")


def hbar_chart(labels: list[str], series: list[tuple[str, str, list[float]]], *,
               limit: float, limit_label: str, unit: str, title: str) -> str:
    """Grouped horizontal bars: one group per label, one bar per series.

    ``limit`` draws a dashed vertical line (the board's capacity, the frame budget).
    Values are on a linear axis from 0 to max(limit, largest value).
    """
    label_w, plot_w, bar_h, gap = 150, 520, 9, 8
    group_h = bar_h * len(series) + gap
    top = 40
    height = top + group_h * len(labels) + 40
    vmax = max([limit] + [v for _, _, vals in series for v in vals]) or 1
    x0 = label_w

    def x(v: float) -> float:
        return x0 + plot_w * v / vmax

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + plot_w + 120}" '
             f'height="{height}" role="img" aria-label="{escape(title)}">',
             _text(x0, 16, title, extra=' font-weight="bold" font-size="13"')]
    for i, (name, color, _) in enumerate(series):  # legend
        lx = x0 + i * 110
        parts.append(f'<rect x="{lx}" y="24" width="10" height="10" fill="{color}"/>')
        parts.append(_text(lx + 14, 33, name))
    for g, label in enumerate(labels):
        gy = top + g * group_h
        parts.append(_text(x0 - 6, gy + group_h / 2, label, anchor="end"))
        for s, (name, color, vals) in enumerate(series):
            v = vals[g]
            y = gy + s * bar_h
            parts.append(f'<rect x="{x0}" y="{y:.1f}" width="{max(0.5, x(v) - x0):.1f}" '
                         f'height="{bar_h - 1}" fill="{color}"><title>{escape(label)} '
                         f'{escape(name)}: {v:g}{escape(unit)}</title></rect>')
    axis_y = top + group_h * len(labels)
    parts.append(f'<line x1="{x0}" y1="{top - 4}" x2="{x0}" y2="{axis_y}" stroke="#333"/>')
    parts.append(f'<line x1="{x0}" y1="{axis_y}" x2="{x0 + plot_w}" y2="{axis_y}" '
                 'stroke="#333"/>')
    for k in range(5):
        v = vmax * k / 4
        parts.append(_text(x(v), axis_y + 14, f"{v:.3g}{unit}", anchor="middle"))
    parts.append(f'<line x1="{x(limit):.1f}" y1="{top - 4}" x2="{x(limit):.1f}" '
                 f'y2="{axis_y}" stroke="#b00" stroke-dasharray="4 3"/>')
    parts.append(_text(x(limit) + 4, axis_y + 28, limit_label, extra=' fill="#b00"'))
    parts.append("</svg>")
    return "\n".join(parts)


def resources_plot(report: dict) -> str:
    """Each layer's resources as a share of the board's capacity (percent)."""
    cap = report["capacity"]
    names = [n["name"] for n in report["nodes"]]
    series = []
    for k in RESOURCES:
        if not cap[k]:
            continue
        which = "synth" if report["total"].get("synth") else "estimate"
        vals = [100 * ((n.get(which) or n["estimate"])[k]) / cap[k] for n in report["nodes"]]
        series.append((LABELS[k], COLORS[k], vals))
    source = "synthesis" if report["total"].get("synth") else "estimate"
    return hbar_chart(names, series, limit=100, limit_label="board capacity", unit="%",
                      title=f"Resources per layer, % of {report['board']} ({source})")


def cycles_plot(report: dict) -> str:
    """Cycles per frame of each layer; the bottleneck in red sets the throughput."""
    nodes = report["nodes"]
    bars = []
    for n in nodes:
        bars.append(n["cycles"])
    labels = [n["name"] for n in nodes]
    chart = hbar_chart(labels, [("cycles/frame", NORMAL, bars)],
                       limit=report["cycles_per_frame"], unit="",
                       limit_label=f"bottleneck {report['bottleneck']}",
                       title="Cycles per frame, per layer")
    # recolour the bottleneck's bar (the one whose tooltip names it)
    marker = f'fill="{NORMAL}"><title>{escape(report["bottleneck"])} '
    return chart.replace(marker, f'fill="{BOTTLENECK}"><title>{escape(report["bottleneck"])} ')


def report_page(report: dict, columns: list[str], rows: list[list[str]],
                summary: list[str]) -> str:
    title = f"fpgagen report: {report.get('model', '')} on {report['board']}"
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    n_nodes = len(report["nodes"])
    for i, row in enumerate(rows):
        cls = ' class="total"' if i >= n_nodes else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>")
    items = "".join(
        f'<li class="warn">{escape(s)}</li>' if "not fit" in s or "MISSES" in s
        else f"<li>{escape(s)}</li>" for s in summary)
    lat = report["latency_cycles"]
    facts = [("clock", f"{report['clock_mhz']:g} MHz"),
             ("cycles per frame", str(report["cycles_per_frame"])),
             ("throughput", f"{report['throughput_fps']:.0f} frames/s"),
             ("latency", f"{lat} cycles ({report['latency_us']:g} us)"),
             ("bottleneck", report["bottleneck"]),
             ("Fmax (nextpnr)", f"{report['fmax_mhz']:g} MHz" if report.get("fmax_mhz")
              else "not placed and routed")]
    if report.get("throughput_fps_at_fmax"):
        facts.append(("throughput at Fmax", f"{report['throughput_fps_at_fmax']:.0f} frames/s"))
    fact_rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{escape(title)}</h1>
<p>{escape(report['part'])}, family {escape(report['family'])}</p>
<h2>Throughput and latency</h2>
<table>{fact_rows}</table>
<ul>{items}</ul>
<h2>Per layer</h2>
<table>
<thead><tr>{head}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody>
</table>
<h2>Resources against the board</h2>
{resources_plot(report)}
<h2>Cycles per layer</h2>
{cycles_plot(report)}
</body>
</html>
"""
