"""Benchmark: plain against differential (``--attention differential``) builds of a model on
real inputs: per differential MVAU the zero / narrow / wide deltas, multiply-accumulates
skipped, bits on its input link and cycles per frame (worst case, from the data, and
measured in cocotb with its encoder alone); for each whole build its resources,
generation time and cycles per frame measured in cocotb (every word checked against the
golden model under random stalls). Prints markdown tables (and writes them with --out).

    python bench/differential.py                     # digits CNN, the 360 held-out digits
    python bench/differential.py --frames 40 --target-fps 20000
    python bench/differential.py --model vit.onnx --inputs x.npy   # any model and inputs
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import fpgagen
from fpgagen import delta_stats, host, reference, zoo
from fpgagen.hw.emit import verilog_text
from fpgagen.ir import Graph
from fpgagen.nodes import delta
from fpgagen.sim import simulate_stream
from fpgagen.sim.runner import MEASURE_FRAMES
from fpgagen.simulate import frame_words, simulate

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "examples" / "digits_cnn" / "digits_cnn.onnx"


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def md_table(columns, rows) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def pair_graph(graph: Graph, unit) -> Graph:
    """A differential MVAU and its encoder alone, as a top."""
    encoder = delta_stats.encoder_of(graph, unit)
    x = graph.tensors[encoder.inputs[0]]
    tensors = {encoder.inputs[0]: x, encoder.outputs[0]: graph.tensors[encoder.outputs[0]],
               unit.outputs[0]: graph.tensors[unit.outputs[0]]}
    alone = dataclasses.replace(unit, inputs=encoder.outputs)
    return Graph((encoder, alone), tensors, (encoder.inputs[0],), (unit.outputs[0],))


def measure_alone(graph: Graph, unit, x_int: np.ndarray, work: Path) -> float:
    """Cycles per frame of a unit and its encoder in cocotb, on frames 1..3 of the data
    (stall-free: the interval between the frames' last outputs)."""
    values = reference.run_hw(graph, x_int[:MEASURE_FRAMES], keep=True)
    pair = pair_graph(graph, unit)
    encoder = pair.nodes[0]
    x = values[encoder.inputs[0]]
    want = reference.run_hw(pair, x)
    rtl = work / "fpgagen_top.v"
    work.mkdir(parents=True, exist_ok=True)
    rtl.write_text(verilog_text(pair))
    e = encoder.spec
    res = simulate_stream([rtl], work / "sim", frame_words(x, e.x_type, e.lanes),
                          frame_words(want, unit.spec.out_type, unit.spec.pe),
                          stall_in=0.0, stall_out=0.0)
    assert res.mismatches == 0, res.first_mismatch
    return res.cycles_per_frame


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--inputs", help=".npy float inputs (default: the held-out digits)")
    parser.add_argument("--frames", type=int, default=360)
    parser.add_argument("--target-fps", type=float, help="folding target for both builds")
    parser.add_argument("--stall", type=float, default=0.3)
    parser.add_argument("--out", help="also write the tables to this markdown file")
    args = parser.parse_args()
    x = np.load(args.inputs) if args.inputs else zoo.digits_data()[2]
    x = x[:args.frames]
    work = Path(tempfile.mkdtemp(prefix="fpgagen-diff-bench-"))
    np.save(work / "x.npy", x)

    builds, sims = {}, {}
    for kind in ("plain", "differential"):
        t0 = time.perf_counter()
        builds[kind] = fpgagen.build(args.model, work / kind, target_fps=args.target_fps,
                                     attention=kind, progress=None)
        gen = time.perf_counter() - t0
        print(f"[bench] {kind}: built in {gen:.1f} s, simulating {len(x)} frames ...",
              file=sys.stderr, flush=True)
        sims[kind] = simulate(work / kind, inputs=work / "x.npy", stall=args.stall)
        sims[kind]["gen_seconds"] = gen
        assert sims[kind]["passed"], sims[kind]["first_mismatch"]
    outputs = [np.load(work / k / "sim" / "outputs.npy") for k in builds]
    identical = bool(np.array_equal(*outputs))

    name = Path(args.model).stem
    net_rows = []
    for kind, b in builds.items():
        r, s = b.report, sims[kind]
        t = r["total"]["estimate"]
        net_rows.append([name, kind, f"{s['gen_seconds']:.1f}", f"{r['verilog_bytes'] / 1e6:.2f}",
                         t["lut"], t["ff"], t["bram18"], t["dsp"], r["cycles_per_frame"],
                         f"{s['cycles_per_frame']:g}",
                         f"{r['clock_mhz'] * 1e6 / s['cycles_per_frame']:.0f}",
                         f"{s['frames']} / {s['mismatches']}"])

    graph = builds["differential"].graph
    x_int = host.run_pre(graph, x.astype(np.float32))
    stats = sims["differential"]["differential"]
    plain_cycles = {n["name"]: n["cycles"] for n in builds["plain"].report["nodes"]}
    unit_rows = []
    for unit, st in zip(delta_stats.units(graph), stats["units"]):
        print(f"[bench] {unit.name} alone in cocotb ...", file=sys.stderr, flush=True)
        measured = measure_alone(graph, unit, x_int, work / f"alone_{unit.name}")
        encoder = delta_stats.encoder_of(graph, unit).spec
        d = delta.dense(encoder.fmt, reference.run_hw(graph, x_int[:MEASURE_FRAMES],
                                                      keep=True)[unit.inputs[0]])
        model = np.maximum(unit.spec.cycles_for(d), encoder.cycles_for(d))[1:].mean()
        unit_rows.append([
            unit.name, f"{unit.spec.vectors}x{unit.spec.mw}->{unit.spec.mh}",
            unit.spec.narrow_bits, pct(st["zero_fraction"]), pct(st["narrow_fraction"]),
            pct(st["wide_fraction"]), pct(st["group_zero_fraction"]),
            pct(st["group_wide_fraction"]),
            f"{st['macs_per_frame']:g} / {st['macs_plain_per_frame']}",
            pct(st["macs_skipped_fraction"]),
            f"{st['link_bits_per_frame']:g} / {st['link_bits_plain_per_frame']}",
            f"{unit.spec.pe} x {unit.spec.simd}", st["cycles_worst"],
            f"{st['cycles_data_mean']:g}",
            f"{measured:g} ({model:g})", st["cycles_plain_same_pe"],
            plain_cycles.get(unit.name, "-")])
    # what each unit's wire format would move with other narrow widths
    width_rows = []
    values = reference.run_hw(graph, x_int, keep=True)
    for unit in delta_stats.units(graph):
        s = unit.spec
        d = delta.dense(s.fmt, values[unit.inputs[0]])
        cells = []
        for bits in range(2, s.fmt.delta_type.bits + 1):
            fmt = delta.DeltaFormat(s.mw, s.x_type, bits, s.simd)
            if fmt.word_bits > delta.MAX_WORD_BITS:
                continue
            cells.append(f"{bits}: {delta.link_stats(fmt, d, s.vectors)['bits'].mean():.0f}")
        width_rows.append([unit.name, s.vectors * s.mw * s.x_type.bits, ", ".join(cells)])

    net = stats["network"]
    text = "\n\n".join([
        f"Plain vs differential, {name}, {len(x)} inputs (stall {args.stall}); outputs of the "
        f"two builds identical: {identical}.",
        md_table(("network", "attention", "gen s", "Verilog MB", "LUT est", "FF est",
                  "BRAM18 est", "DSP est", "cycles/frame est", "cycles/frame sim",
                  "frames/s @ clock (sim)", "frames / mismatches"), net_rows),
        md_table(("unit", "vectors x in -> out", "narrow bits", "zero", "narrow", "wide",
                  "zero groups", "wide groups",
                  "MACs/frame (diff / plain)", "MACs skipped", "link bits/frame (diff / plain)",
                  "PE x SIMD", "cycles worst", "cycles data", "cycles alone in cocotb (model), "
                  "frames 1-3", "plain, same folding", "plain build"), unit_rows),
        f"Network cycles/frame from the data (slowest node per frame): "
        f"{net['cycles_data_mean']:g} mean, {net['cycles_data_max']} max; worst case "
        f"{net['cycles_worst']}.",
        md_table(("unit", "plain bits/frame", "encoded bits/frame by narrow bits"), width_rows),
    ])
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
