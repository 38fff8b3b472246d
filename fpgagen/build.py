"""``fpgagen build``: QONNX model -> OUT/{rtl/, graph.json, report.json}.

The build is written into a temporary directory beside OUT and moved into place only
when complete, so an interrupted or failed build never leaves an OUT that looks
finished. Timings go to ``timings.json``; everything else is deterministic.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__, boards, gen_budget, passes
from .delta_stats import design as differential_design
from .errors import BuildDirError, FoldingError, FpgagenError
from .estimate_graph import graph_report
from .frontend import load_model, lower
from .hw.emit import TOP_NAME, verilog_text
from .ir import Graph
from .passes import differential
from .project import project_files

MARKER = "fpgagen-build.json"  # written last: its presence means the build finished
ATTENTION = ("plain", "differential")  # --attention: how the projections are computed
EXP_UNITS = ("auto", "single", "split")  # --exp-unit: the softmax exponent unit


@dataclass
class BuildResult:
    out: Path
    graph: Graph
    report: dict
    timings: dict = field(default_factory=dict)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextmanager
def _stage(name: str, timings: dict, progress: Callable[[str], None] | None):
    if progress:
        progress(f"[fpgagen] {name} ...")
    t0 = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - t0, 3)
    if progress:
        progress(f"[fpgagen] {name} done in {timings[name]:.2f} s")


def compile_graph(model_path, *, board: boards.Board, target_fps=None, clock_mhz=None,
                  fit: bool = False, folding: dict | None = None, timings=None,
                  progress=None, attention: str = "plain", exp_unit: str = "auto") -> Graph:
    """Load, lower and run the pass pipeline: the folded graph, ready to emit.

    ``folding``: per-node overrides ({node: {field: value}}, see ``read_folding``).
    ``attention="differential"``: MVAUs on deltas (``passes/differential.py``).
    ``exp_unit``: the softmax exponent unit ("single", "split" or "auto").
    """
    if attention not in ATTENTION:
        raise FpgagenError(f"--attention must be one of {', '.join(ATTENTION)}, not "
                           f"{attention!r}")
    if exp_unit not in EXP_UNITS:
        raise FpgagenError(f"--exp-unit must be one of {', '.join(EXP_UNITS)}, not "
                           f"{exp_unit!r}")
    timings = {} if timings is None else timings
    with _stage("load", timings, progress):
        model = load_model(model_path)
    with _stage("lower", timings, progress):
        graph = lower(model, exp_unit=exp_unit)
    if attention == "differential":
        with _stage("differential", timings, progress):
            graph, _ = differential.apply(graph)
    for name, fn in passes.PIPELINE:
        with _stage(name, timings, progress):
            if name == "fold":
                graph, _ = fn(graph, board=board, target_fps=target_fps, clock_mhz=clock_mhz,
                              fit=fit, overrides=folding)
                chosen = passes.fold.folding_of(graph)  # before converters and FIFOs
            else:
                graph, _ = fn(graph)
    meta = dict(graph.meta, board=board.name, clock_mhz=clock_mhz or board.clock_mhz,
                target_fps=target_fps, folding=chosen)
    return graph.replace(meta=meta)


def read_folding(path: str | os.PathLike) -> dict:
    """A folding file: ``{"node": {"pe": 4, "simd": 8}, ...}`` (``OUT/folding.json`` of a
    build has this form; ``{"nodes": {...}}`` is accepted too)."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as e:
        raise FoldingError(f"cannot read folding file '{path}': {e.strerror}") from None
    except ValueError as e:
        raise FoldingError(f"folding file '{path}' is not JSON: {e}") from None
    if isinstance(doc, dict) and isinstance(doc.get("nodes"), dict):
        doc = doc["nodes"]
    if not isinstance(doc, dict):
        raise FoldingError(f"folding file '{path}' must hold an object of nodes",
                           hint='e.g. {"mvau0": {"pe": 4, "simd": 8}}')
    return doc


def build(model: str | os.PathLike, out: str | os.PathLike, *, board: str = boards.DEFAULT,
          target_fps: float | None = None, clock_mhz: float | None = None,
          fit: bool = False, folding: str | os.PathLike | dict | None = None,
          force: bool = False, progress: Callable[[str], None] | None = _stderr,
          attention: str = "plain", exp_unit: str = "auto") -> BuildResult:
    """Build ``model`` into ``out``; see docs/cli.md. ``folding``: a folding file or dict."""
    out = Path(out)
    if folding is not None and not isinstance(folding, dict):
        folding = read_folding(folding)
    the_board = boards.get(board)
    if clock_mhz is not None and not clock_mhz > 0:
        raise FpgagenError(f"--clock-mhz must be positive, not {clock_mhz}")
    if out.exists() and not force:
        raise BuildDirError(f"output directory '{out}' already exists",
                            hint="pass --force to replace it, or choose another -o")
    if out.exists() and not out.is_dir():
        raise BuildDirError(f"output path '{out}' exists and is not a directory")
    timings: dict = {}
    graph = compile_graph(model, board=the_board, target_fps=target_fps, clock_mhz=clock_mhz,
                          fit=fit, folding=folding, timings=timings, progress=progress,
                          attention=attention, exp_unit=exp_unit)
    gen_budget.check(graph, the_board.family)  # refuse up front, not by an OOM kill later
    with _stage("verilog", timings, progress):
        text = verilog_text(graph)
    with _stage("report", timings, progress):
        report = graph_report(graph, the_board, clock_mhz or the_board.clock_mhz)
        report["model"] = Path(model).name
        report["verilog_bytes"] = len(text.encode())
        if attention == "differential":
            report["differential"] = differential_design(graph)
    with _stage("project", timings, progress):
        project = project_files(graph, the_board, clock_mhz or the_board.clock_mhz)
    with _stage("write", timings, progress):
        _write_atomically(out, force, {
            f"rtl/{TOP_NAME}.v": text,
            **project,
            "graph.json": graph.to_json(),
            "folding.json": json.dumps(graph.meta["folding"], indent=1) + "\n",
            "report.json": json.dumps(report, indent=1) + "\n",
            "timings.json": json.dumps(timings, indent=1) + "\n",
            MARKER: json.dumps({"format": 1, "fpgagen": __version__,
                                "top": TOP_NAME}, indent=1) + "\n",
        })
    if progress:
        progress(f"[fpgagen] wrote {out}/ ({report['verilog_bytes'] / 1e6:.2f} MB Verilog, "
                 f"{report['cycles_per_frame']} cycles/frame, "
                 f"{report['throughput_fps']:.0f} frames/s at {report['clock_mhz']:g} MHz)")
    return BuildResult(out, graph, report, timings)


def _write_atomically(out: Path, force: bool, files: dict[str, str]) -> None:
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{out.name}.partial-{os.getpid()}"
    old = parent / f".{out.name}.old-{os.getpid()}"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        for rel, text in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        if out.exists():
            if not force:
                raise BuildDirError(f"output directory '{out}' appeared during the build")
            out.rename(old)
        tmp.rename(out)
    finally:
        if old.exists() and not out.exists():  # interrupted between the two renames
            old.rename(out)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def open_build(out: str | os.PathLike) -> tuple[Path, Graph, dict]:
    """A finished build directory's graph and report, or a clear error."""
    out = Path(out)
    if not out.exists():
        raise BuildDirError(f"build directory '{out}' does not exist",
                            hint="run 'fpgagen build MODEL -o OUT' first")
    if not out.is_dir() or not (out / MARKER).is_file():
        raise BuildDirError(f"'{out}' is not a finished fpgagen build (no {MARKER})",
                            hint="give the -o directory of a completed 'fpgagen build'")
    try:
        graph = Graph.from_json((out / "graph.json").read_text())
        report = json.loads((out / "report.json").read_text())
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BuildDirError(f"build directory '{out}' is damaged: {e}",
                            hint="build it again") from None
    return out, graph, report
