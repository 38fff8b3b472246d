"""Benchmark: estimate vs Yosys synthesis (the estimator's calibration table), and
synthesis time per network. Prints a markdown table (and writes it with --out).

    python bench/synth.py                                  # the calibration set, xc7
    python bench/synth.py --board ulx3s-85f --nets digits_mlp,tfc_1w1a
    python bench/synth.py --nets tfc_1w1a --foldings 10k   # a quick look

Each network is built at each folding, then synthesised whole and node by node (two
nodes at a time) with the board family's Yosys flow (``fpgagen.synth``). The error
column is (estimate - synthesis) / synthesis of the whole design.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits_mlp" / "digits_mlp.onnx"

#: label -> --target-fps (None: the default folding, fastest that fits the board)
FOLDINGS = {"fit": None, "1M": 1e6, "100k": 1e5, "10k": 1e4}
DEFAULT_NETS = "digits_mlp,tfc_1w1a,tfc_1w2a,tfc_2w2a,sfc_1w1a,lfc_1w1a"
DEFAULT_FOLDINGS = "fit,100k,10k"
RESOURCES = ("lut", "ff", "bram18", "dsp")
COLUMNS = ("network", "folding", "cycles/frame", "LUT est", "LUT synth", "LUT err",
           "FF est", "FF synth", "FF err", "BRAM18 est", "BRAM18 synth", "DSP est",
           "DSP synth", "synth s")


def model_path(name: str, work: Path) -> Path:
    if name == "digits_mlp":
        return DIGITS
    from fpgagen import zoo

    return zoo.export(zoo.bnn_pynq(name, seed=0), work / f"{name}.onnx", exporter="dynamo")


def err(est: float, syn: float) -> str:
    return f"{100 * (est - syn) / syn:+.1f}%" if syn else "-"


def bench_one(name: str, model: Path, label: str, board: str, work: Path) -> dict:
    import fpgagen
    from fpgagen import synth
    from fpgagen.estimate_graph import add_synthesis

    out = work / f"{name}-{label}"
    res = fpgagen.build(model, out, board=board, target_fps=FOLDINGS[label], force=True,
                        progress=None)
    t0 = time.perf_counter()
    result = synth.synthesize_build(out, res.graph, res.report["family"],
                                    workers=synth.cpu_workers())
    seconds = time.perf_counter() - t0
    rep = add_synthesis(res.report, result)
    est, syn = rep["total"]["estimate"], rep["total"]["synth"]
    row = {"network": name, "folding": label, "cycles/frame": rep["cycles_per_frame"],
           "synth s": f"{seconds:.0f}"}
    for k, col in (("lut", "LUT"), ("ff", "FF"), ("bram18", "BRAM18"), ("dsp", "DSP")):
        row[f"{col} est"], row[f"{col} synth"] = est[k], syn[k]
        if k in ("lut", "ff"):
            row[f"{col} err"] = err(est[k], syn[k])
    row["nodes"] = [{"name": n["name"], "kind": n["kind"], "pe": n["pe"], "simd": n["simd"],
                     "estimate": n["estimate"], "synth": n["synth"]} for n in rep["nodes"]]
    return row


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['network']} | {r['folding']} | error: {r['error']} |")
        else:
            lines.append("| " + " | ".join(str(r[c]) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default=DEFAULT_NETS)
    parser.add_argument("--foldings", default=DEFAULT_FOLDINGS,
                        help=f"comma-separated, from {', '.join(FOLDINGS)}")
    parser.add_argument("--board", default="pynq-z2")
    parser.add_argument("--out", help="also write the table to this file")
    parser.add_argument("--nodes-json", help="write per-node estimate/synth pairs here")
    args = parser.parse_args()
    from fpgagen.errors import FpgagenError

    rows = []
    with tempfile.TemporaryDirectory(prefix="fpgagen-synth-bench-") as tmp:
        work = Path(tmp)
        for name in args.nets.split(","):
            model = model_path(name, work)
            for label in args.foldings.split(","):
                try:
                    row = bench_one(name, model, label, args.board, work)
                except FpgagenError as e:
                    row = {"network": name, "folding": label, "error": str(e)}
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "nodes"}),
                      file=sys.stderr, flush=True)
    text = f"board {args.board}\n\n" + table(rows)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    if args.nodes_json:
        Path(args.nodes_json).write_text(json.dumps(rows, indent=1))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
