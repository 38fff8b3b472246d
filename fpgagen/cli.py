"""Command line: ``fpgagen build | sim | report | boards``.

A user's mistake prints one line and exits with code 2; never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from .errors import FpgagenError


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fpgagen", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="QONNX model -> Verilog, graph.json, report.json")
    b.add_argument("model", help="QONNX .onnx file (Brevitas export)")
    b.add_argument("-o", "--out", required=True, help="output directory")
    b.add_argument("--board", default="pynq-z2",
                   help="board name (see `fpgagen boards`) or path of a board .toml file")
    b.add_argument("--target-fps", type=_positive_float,
                   help="frames/s to meet (default: fastest folding that fits the board)")
    b.add_argument("--clock-mhz", type=_positive_float, help="clock (default: board's)")
    b.add_argument("--fit", action="store_true",
                   help="fastest folding whose estimate fits the whole board")
    b.add_argument("--folding", metavar="FILE.json",
                   help="per-node PE/SIMD overrides (the form of OUT/folding.json)")
    b.add_argument("--attention", choices=("plain", "differential"), default="plain",
                   help="differential: projections (convolutions, patch embedding, Q/K/V) "
                        "on the deltas between consecutive vectors (default plain)")
    b.add_argument("--exp-unit", choices=("auto", "single", "split"), default="auto",
                   help="softmax exponent unit: one table, or a hi/lo split of two small "
                        "tables and a multiply (default auto: split for deep tables)")
    b.add_argument("--force", action="store_true", help="replace an existing OUT")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress output")

    s = sub.add_parser("sim", help="simulate a build in cocotb against the golden model")
    s.add_argument("out", help="build directory")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--inputs", help=".npy float inputs, shape (N, ...) as the model takes")
    g.add_argument("--count", type=int, help="N random valid inputs (default 100)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--simulator", choices=("verilator", "icarus"), default="verilator")
    s.add_argument("--stall", type=float, default=0.3,
                   help="probability of a stall per cycle on each stream end (default 0.3)")
    s.add_argument("--waves", action="store_true", help="write an FST waveform")

    r = sub.add_parser("report", help="per-layer resources and throughput of a build")
    r.add_argument("out", help="build directory")
    r.add_argument("--synth", action="store_true",
                   help="synthesise with Yosys (whole design and each node) beside the estimates")
    r.add_argument("--pnr", action="store_true",
                   help="place and route with nextpnr (Lattice boards): Fmax, throughput at Fmax")
    r.add_argument("--format", choices=("text", "md", "html", "json"), default="text",
                   help="what to print (report.md and report.html are always written)")
    r.add_argument("--json", action="store_true", help="same as --format json")

    sub.add_parser("boards", help="list the known boards")
    return p


def _run(args) -> int:
    if args.command == "build":
        import numpy as np

        from .build import build

        # A hostile model's odd constants make numpy warn (overflow, invalid value) on
        # stderr; the result does not depend on it, and the error contract is one line.
        with np.errstate(all="ignore"):
            build(args.model, args.out, board=args.board, target_fps=args.target_fps,
                  clock_mhz=args.clock_mhz, fit=args.fit, folding=args.folding,
                  force=args.force, attention=args.attention, exp_unit=args.exp_unit,
                  progress=None if args.quiet else
                  (lambda msg: print(msg, file=sys.stderr, flush=True)))
        return 0
    if args.command == "sim":
        from .simulate import simulate

        res = simulate(args.out, inputs=args.inputs, count=args.count, seed=args.seed,
                       simulator=args.simulator, waves=args.waves, stall=args.stall,
                       progress=True)
        verdict = "PASS" if res["passed"] else "FAIL"
        print(f"{verdict}: {res['frames']} frames, {res['mismatches']} mismatches, "
              f"{res['cycles_per_frame']:.1f} cycles/frame simulated "
              f"(estimated {res['estimated_cycles_per_frame']}), latency "
              f"{res['latency_cycles']} cycles, {res['simulator']}")
        if res["first_mismatch"]:
            print(f"first mismatch: {res['first_mismatch']}")
        if res.get("differential"):
            from .delta_stats import text_lines

            print("\n".join(text_lines(res["differential"], res["cycles_per_frame"])))
        return 0 if res["passed"] else 1
    if args.command == "report":
        from .report import report

        print(report(args.out, synth=args.synth, pnr=args.pnr,
                     fmt="json" if args.json else args.format,
                     progress=lambda msg: print(msg, file=sys.stderr, flush=True)), end="")
        return 0
    if args.command == "boards":
        from . import boards

        print(f"{'name':15} {'vendor':8} {'family':6} {'part':22} {'LUT':>7} {'FF':>7} "
              f"{'BRAM18':>6} {'DSP':>5} {'URAM':>4} {'MHz':>5}  {'host link':9}")
        for bd in boards.known():
            link = {"zynq7": "PS + DMA", "zynqmp": "PS + DMA"}.get(bd.ps, "UART")
            print(f"{bd.name:15} {bd.vendor:8} {bd.family:6} {bd.part:22} {bd.lut:7} "
                  f"{bd.ff:7} {bd.bram18:6g} {bd.dsp:5} {bd.uram:4} {bd.clock_mhz:5g}  {link}")
        return 0
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except FpgagenError as e:
        print(f"fpgagen: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fpgagen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
