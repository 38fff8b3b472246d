"""Benchmark: BNN-PYNQ CNV on a PYNQ-Z2 at 3,000 frames/s beside FINN's published figure.

    python bench/cnv.py                       # CNV-1w1a, 1w2a, 2w2a; 3 simulated frames
    python bench/cnv.py --nets cnv_1w1a --frames 4

FINN's CNV-W1A1 on a Zynq-7020 at 100 MHz: 3,020 frames/s with 21,135 LUT, 98 RAMB36 +
9 RAMB18 and no DSP (the BNN-PYNQ/FINN end-to-end example). The fpgagen rows are built
with ``--board pynq-z2 --target-fps 3000`` and simulated bit-exact in Verilator; LUTs
are fpgagen's estimate (calibrated against Yosys, see docs/report.md) unless ``--synth``
asks Yosys for the whole design as well.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import MORE_FOLDINGS, bench_one, export, fpgagen_cmd, measure_in_child  # noqa: E402

FINN = {"network": "FINN CNV-W1A1 (published)", "fps": 3020, "lut": 21135,
        "bram18": 98 * 2 + 9}
TARGET = MORE_FOLDINGS[0]  # --board pynq-z2 --target-fps 3000


def per_klut(fps: float, lut: float) -> float:
    return fps / (lut / 1000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="cnv_1w1a,cnv_1w2a,cnv_2w2a")
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--synth", action="store_true", help="also Yosys (synth_xilinx)")
    args = parser.parse_args()
    lines = ["| network | gen s | Verilog MB | sim build s | sim peak MB | cycles/frame sim "
             "| est | frames/s @ 100 MHz | LUT | BRAM18 | frames/s per kLUT | vs FINN |",
             "|" + "---|" * 12]
    finn_rate = per_klut(FINN["fps"], FINN["lut"])
    lines.append(f"| {FINN['network']} | | | | | | | {FINN['fps']} | {FINN['lut']} | "
                 f"{FINN['bram18']} | {finn_rate:.0f} | 1.00x |")
    ok = True
    with tempfile.TemporaryDirectory(prefix="fpgagen-bench-cnv-") as tmp:
        work = Path(tmp)
        for name in filter(None, args.nets.split(",")):
            row = bench_one(name, export(name, work), *TARGET, args.frames, work)
            print(json.dumps(row), file=sys.stderr, flush=True)
            if "error" in row:
                lines.append(f"| {name} | error: {row['error']} |")
                ok = False
                continue
            ok &= not row["mismatches"]
            fps = float(row["FPS @ clock"].split()[0])
            lut, source = int(row["LUT est"]), "est"
            if args.synth:
                out = work / f"{name}-{TARGET[0].replace(' ', '')}"
                _, _, proc = measure_in_child(fpgagen_cmd("report", str(out), "--synth"))
                synth = json.loads((out / "report.json").read_text())["total"].get("synth")
                if proc.returncode == 0 and synth:
                    lut, source = synth["lut"], "Yosys"
            rate = per_klut(fps, lut)
            lines.append(
                f"| fpgagen {name} | {row['gen s']} | {row['Verilog MB']} | "
                f"{row['sim build s']} | {row['sim peak MB']} | {row['cycles/frame sim']} | "
                f"{row['cycles/frame est']} | {fps:.0f} | {lut} ({source}) | "
                f"{row['BRAM18 est']} | {rate:.0f} | {rate / finn_rate:.2f}x |")
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
