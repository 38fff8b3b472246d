"""Benchmark: estimate vs Yosys synthesis (the estimator's calibration table), and
synthesis time per network. Prints a markdown table (and writes it with --out).

    python bench/synth.py                                  # the calibration set, xc7
    python bench/synth.py --boards pynq-z2,ulx3s-85f --nets digits_mlp,tfc_2w2a
    python bench/synth.py --nets tfc_1w1a --foldings 10k   # a quick look
    python bench/synth.py --nets tfc_1w1a --whole          # + the whole design

Each network is built for each board at each folding. Every distinct node (same
Verilog) is synthesised once on its own with the board family's Yosys flow
(``fpgagen.synth``), one Yosys at a time, cached by content under ``--cache``; the
"Yosys" columns are the nodes' sum (each node counted as often as it occurs). With
``--whole`` the whole design is synthesised too (slow for large designs); its columns
show beside. The error is (estimate - Yosys) / Yosys. "Yosys s (nodes)" is the
synthesis time of the network's distinct nodes (as measured when each was synthesised,
one Yosys at a time); "run s" is this run's build and synthesis (cached nodes cost
nothing). CNV does not reach 100k frames/s on a PYNQ-Z2: ``--nets cnv_1w1a --foldings 3k``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {"digits_mlp": ROOT / "examples" / "digits_mlp" / "digits_mlp.onnx",
            "digits_cnn": ROOT / "examples" / "digits_cnn" / "digits_cnn.onnx",
            "digits_vit": ROOT / "examples" / "digits_vit" / "digits_vit.onnx"}
CNN_ZOO = ("small_resnet", "small_mobilenet")

#: label -> --target-fps (None: the default folding, fastest that fits the board)
FOLDINGS = {"fit": None, "1M": 1e6, "100k": 1e5, "10k": 1e4, "3k": 3e3, "1k": 1e3}
BNN = [f"{t}_{p}" for t in ("tfc", "sfc", "lfc") for p in ("1w1a", "1w2a", "2w2a")]
DEFAULT_NETS = ",".join(["digits_mlp", "digits_cnn", "digits_vit", *BNN, *CNN_ZOO])
DEFAULT_FOLDINGS = "100k"
RESOURCES = ("lut", "ff", "bram18", "dsp")
COLUMNS = ("network", "family", "folding", "cycles/frame", "nodes", "LUT est", "LUT Yosys",
           "LUT err", "FF est", "FF Yosys", "FF err", "BRAM18 est", "BRAM18 Yosys",
           "DSP est", "DSP Yosys", "Yosys s (nodes)", "run s")
WHOLE_COLUMNS = ("LUT whole", "LUT err whole", "BRAM18 whole", "Yosys s (whole)")
DEFAULT_CACHE = Path.home() / ".cache" / "fpgagen" / "synth-bench"


def model_path(name: str, work: Path) -> Path:
    if name in EXAMPLES:
        return EXAMPLES[name]
    from fpgagen import zoo_cnn

    return zoo_cnn.export_named(name, work)


def err(est: float, syn: float) -> str:
    return f"{100 * (est - syn) / syn:+.1f}%" if syn else "-"


def synth_nodes(graph, family: str, cache: Path) -> list[dict]:
    """Per node: estimate and Yosys result (each distinct Verilog synthesised once)."""
    from fpgagen import nodes, synth

    results = synth.synthesize_nodes(graph, family, cache / family)
    return [{"name": node.name, "kind": node.kind, "verilog": results[node.name]["key"],
             "pe": getattr(node.spec, "pe", None), "simd": getattr(node.spec, "simd", None),
             "estimate": nodes.estimate(node.spec, family).as_dict(),
             "synth": results[node.name]["resources"], "cells": results[node.name]["cells"],
             "seconds": results[node.name]["seconds"]} for node in graph.topo()]


def bench_one(name: str, model: Path, label: str, board: str, work: Path, cache: Path,
              whole: bool) -> dict:
    import fpgagen
    from fpgagen import synth

    out = work / f"{name}-{board}-{label}"
    t0 = time.perf_counter()
    res = fpgagen.build(model, out, board=board, target_fps=FOLDINGS[label], force=True,
                        progress=None)
    family = res.report["family"]
    node_rows = synth_nodes(res.graph, family, cache)
    est = res.report["total"]["estimate"]
    syn = {k: synth.round_bram(sum(r["synth"][k] for r in node_rows)) for k in RESOURCES}
    distinct = {r["verilog"]: r["seconds"] for r in node_rows}
    row = {"network": name, "family": family, "folding": label,
           "cycles/frame": res.report["cycles_per_frame"],
           "nodes": f"{len(node_rows)} ({len(distinct)})",
           "Yosys s (nodes)": f"{sum(distinct.values()):.0f}"}
    for k, col in (("lut", "LUT"), ("ff", "FF"), ("bram18", "BRAM18"), ("dsp", "DSP")):
        row[f"{col} est"], row[f"{col} Yosys"] = est[k], syn[k]
        if k in ("lut", "ff"):
            row[f"{col} err"] = err(est[k], syn[k])
    if whole:
        from fpgagen.hw.emit import TOP_NAME

        job = synth.Job("design", (out / "rtl" / f"{TOP_NAME}.v").read_text(), TOP_NAME,
                        cache / family / f"design-{name}-{label}")
        design = synth.synthesize(job, family)
        row.update({"LUT whole": design["resources"]["lut"],
                    "LUT err whole": err(est["lut"], design["resources"]["lut"]),
                    "BRAM18 whole": design["resources"]["bram18"],
                    "Yosys s (whole)": f"{design['seconds']:.0f}"})
    row["run s"] = f"{time.perf_counter() - t0:.0f}"
    row["node_rows"] = node_rows
    return row


def table(rows: list[dict], whole: bool) -> str:
    columns = COLUMNS + (WHOLE_COLUMNS if whole else ())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['network']} | {r['family']} | {r['folding']} | "
                         f"error: {r['error']} |")
        else:
            lines.append("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default=DEFAULT_NETS)
    parser.add_argument("--foldings", default=DEFAULT_FOLDINGS,
                        help=f"comma-separated, from {', '.join(FOLDINGS)}")
    parser.add_argument("--boards", default="pynq-z2",
                        help="comma-separated boards (one family each), e.g. "
                             "pynq-z2,ulx3s-85f,icebreaker")
    parser.add_argument("--whole", action="store_true",
                        help="also synthesise each whole design (slow for large ones)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help=f"synthesis results by content (default {DEFAULT_CACHE})")
    parser.add_argument("--out", help="also write the table to this file")
    parser.add_argument("--nodes-json", help="write per-node estimate/Yosys pairs here")
    args = parser.parse_args()
    from fpgagen.errors import FpgagenError

    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fpgagen-synth-bench-") as tmp:
        work = Path(tmp)
        for name in filter(None, args.nets.split(",")):
            model = model_path(name, work)
            for board in args.boards.split(","):
                for label in args.foldings.split(","):
                    try:
                        row = bench_one(name, model, label, board, work, args.cache,
                                        args.whole)
                    except FpgagenError as e:
                        row = {"network": name, "family": board, "folding": label,
                               "error": str(e)}
                    rows.append(row)
                    print(json.dumps({k: v for k, v in row.items() if k != "node_rows"}),
                          file=sys.stderr, flush=True)
                    if args.nodes_json:  # as it goes: a long run can be looked into
                        Path(args.nodes_json).write_text(json.dumps(rows, indent=1))
    text = (f"measured {datetime.date.today()}, boards {args.boards}, "
            f"{time.perf_counter() - t0:.0f} s\n\n" + table(rows, args.whole))
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
