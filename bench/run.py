"""Benchmark: generation time, Verilog size, simulator build time, peak memory, simulation
speed, and measured against estimated cycles per frame, for BNN-PYNQ MLPs and model files
(by default the digits CNN and ViT examples) at several foldings. Prints a markdown table (and
writes it with --out).

    python bench/run.py                              # TFC/SFC/LFC-1w1a + digits CNN and ViT, 3 foldings
    python bench/run.py --nets tfc_1w1a --models "" --frames 50  # a quick look
    python bench/run.py --nets "" --models my.onnx   # any QONNX file
    python bench/run.py --nets cnn --foldings fit    # every CNN (digits CNN by default)

Each stage runs in its own process so that its peak memory (max RSS, the largest of
the process and its children, e.g. Verilator and the C++ compiler) is its own. The
simulator build is measured from an empty build cache (Verilator's run-time library
objects are shared across builds, as they are for a user after the first build).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = (ROOT / "examples" / "digits_cnn" / "digits_cnn.onnx",
                  ROOT / "examples" / "digits_vit" / "digits_vit.onnx")

#: (label, build options). "fit" is the default folding (fastest that fits the board).
FOLDINGS = (
    ("fit", ()),
    ("100k fps", ("--target-fps", "100000")),
    ("10k fps", ("--target-fps", "10000")),
)
#: further foldings to pick with --foldings (not run by default)
MORE_FOLDINGS = (("3k fps pynq-z2", ("--board", "pynq-z2", "--target-fps", "3000")),)
#: every CNN network: zoo networks for --nets (the digits CNN is a model file, --models)
CNN_NETS = "small_resnet,small_mobilenet,cnv_1w1a,cnv_1w2a,cnv_2w2a"
COLUMNS = ("network", "folding", "gen s", "Verilog MB", "gen peak MB", "sim build s",
           "sim peak MB", "sim frames/s", "cycles/frame sim", "cycles/frame est", "diff",
           "LUT est", "BRAM18 est", "DSP est", "FPS @ clock")


def fpgagen_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "fpgagen", *args]


def measure_in_child(cmd: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run ``cmd``; return (wall seconds, peak RSS in MB, result).

    ``getrusage(RUSAGE_CHILDREN)`` is a maximum over every child so far, so each
    command runs under a small Python shim that reports its own children's maximum.
    """
    shim = ("import resource,subprocess,sys,json;"
            "p=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
            "r=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss;"
            "sys.stdout.write(json.dumps([p.returncode,r,p.stdout,p.stderr]))")
    t0 = time.perf_counter()
    raw = subprocess.run([sys.executable, "-c", shim, *cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    code, peak_kb, out, err = json.loads(raw.stdout)
    return seconds, peak_kb / 1024, subprocess.CompletedProcess(cmd, code, out, err)


def export(name: str, directory: Path) -> Path:
    """A zoo network by name: BNN-PYNQ (``cnv_1w1a``, ``tfc_2w2a``, ...) or one of
    ``zoo_cnn``'s (``small_resnet``, ``small_mobilenet``, ``resnet18_4w4a``), seeded."""
    from fpgagen import zoo_cnn

    return zoo_cnn.export_named(name, directory)


def bench_one(name: str, model: Path, label: str, options: tuple[str, ...], frames: int,
              work: Path) -> dict:
    out = work / f"{name}-{label.replace(' ', '')}"
    gen_s, gen_mb, proc = measure_in_child(
        fpgagen_cmd("build", "-q", "--force", str(model), "-o", str(out), *options))
    if proc.returncode:
        return {"network": name, "folding": label, "error": proc.stderr.strip()}
    report = json.loads((out / "report.json").read_text())
    _, sim_mb, proc = measure_in_child(
        fpgagen_cmd("sim", str(out), "--count", str(frames), "--seed", "1"))
    if proc.returncode not in (0, 1):
        return {"network": name, "folding": label, "error": proc.stderr.strip()}
    sim = json.loads((out / "sim" / "results.json").read_text())
    est = report["cycles_per_frame"]
    total = report["total"]["estimate"]
    return {
        "network": name, "folding": label,
        "gen s": f"{gen_s:.1f}",
        "Verilog MB": f"{report['verilog_bytes'] / 1e6:.2f}",
        "gen peak MB": f"{gen_mb:.0f}",
        "sim build s": f"{sim['build_seconds']:.1f}",
        "sim peak MB": f"{sim_mb:.0f}",
        "sim frames/s": f"{sim['frames'] / sim['sim_seconds']:.0f}",
        "cycles/frame sim": f"{sim['cycles_per_frame']:.0f}",
        "cycles/frame est": str(est),
        "diff": f"{100 * (sim['cycles_per_frame'] - est) / est:+.1f}%",
        "LUT est": str(total["lut"]),
        "BRAM18 est": str(total["bram18"]),
        "DSP est": str(total["dsp"]),
        "FPS @ clock": f"{report['throughput_fps']:.0f} @ {report['clock_mhz']:g} MHz",
        "mismatches": sim["mismatches"],
    }


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['network']} | {r['folding']} | error: {r['error']} |")
            continue
        cells = [str(r[c]) for c in COLUMNS]
        if r["mismatches"]:
            cells[-1] += f" ({r['mismatches']} MISMATCHES)"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="tfc_1w1a,sfc_1w1a,lfc_1w1a",
                        help="zoo networks (BNN-PYNQ, small_resnet, small_mobilenet, "
                        f"resnet18_4w4a), seeded weights; 'cnn' stands for {CNN_NETS}")
    parser.add_argument("--foldings", default=",".join(label for label, _ in FOLDINGS),
                        help="foldings by label: " + ", ".join(
                            label for label, _ in FOLDINGS + MORE_FOLDINGS))
    parser.add_argument("--models", default=",".join(map(str, DEFAULT_MODELS)),
                        help="QONNX model files, benched as they are (row name: file stem)")
    parser.add_argument("--frames", type=int, default=200, help="frames per simulation")
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fpgagen-bench-") as tmp:
        work = Path(tmp)
        os.environ.pop("FPGAGEN_SIM_CACHE", None)  # each build directory's own cache
        foldings = dict(FOLDINGS + MORE_FOLDINGS)
        chosen = [(label, foldings[label]) for label in args.foldings.split(",")]
        names = CNN_NETS if args.nets == "cnn" else args.nets
        models = [(name, export(name, work)) for name in filter(None, names.split(","))]
        models += [(Path(f).stem, Path(f)) for f in filter(None, args.models.split(","))]
        for name, model in models:
            for label, options in chosen:
                row = bench_one(name, model, label, options, args.frames, work)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    text = table(rows)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0 if all("error" not in r and not r["mismatches"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
