"""Run the Verilog of ``fpgagen_top`` under cocotb and check every output word.

:func:`simulate_stream` builds the design (once per distinct Verilog: builds are cached),
then runs the bench in :mod:`fpgagen.sim.tb_stream` inside the simulator. The two talk
through files: a JSON config (vectors as hex strings, settings, result path) named by the
``FPGAGEN_SIM_CONFIG`` environment variable, and a JSON result the bench writes.

Build cache: ``<cache_dir>/<simulator>-<hash>/``, the hash covering the Verilog sources'
contents, the simulator, the trace format (if any) and the build flags. ``cache_dir`` is,
in order: the ``cache_dir`` argument, the ``FPGAGEN_SIM_CACHE`` environment variable, or
``work_dir/../.simcache``. Concurrent callers (pytest-xdist) share it safely: a build
holds a file lock, and a build directory counts only once its stamp file is written.
Verilator's run-time library, the same for every design, is compiled once into
:func:`runtime_cache_dir` and reused by every build (see ``toolchain.objcache_command``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fpgagen.errors import SimulationError
from fpgagen.sim.toolchain import (
    ensure_simulator,
    objcache_command,
    verilator_make_fixes,
    waves_format,
)

CACHE_ENV = "FPGAGEN_SIM_CACHE"
TOPLEVEL = "fpgagen_top"
BENCH_MODULE = "tb_stream"  # fpgagen/sim/tb_stream.py, loaded as a top-level module
MEASURE_FRAMES = 4

# Generated Verilog trips many lint warnings that say nothing about correctness.
VERILATOR_BUILD_ARGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "-Wno-UNOPTFLAT", "-j", "2"]
TIMESCALE = ("1ns", "1ps")
# Part of the build cache key: change it whenever the build flags change.
_BUILD_FLAVOUR = f"2 {VERILATOR_BUILD_ARGS} {TIMESCALE}"
_STAMP = "fpgagen_build.json"


@dataclass
class StreamSimResult:
    """What one :func:`simulate_stream` run saw. ``ok`` when every word and tlast matched."""

    frames: int
    mismatches: int
    cycles_per_frame: float
    latency_cycles: int
    simulator: str
    out_words: list[list[int]]
    first_mismatch: dict | None
    tlast_errors: int
    build_seconds: float
    sim_seconds: float
    cycles_total: int
    cycles_per_second: float = 0.0
    waves_file: Path | None = None
    stress: list[dict] = field(default_factory=list)  # one summary per stress phase

    @property
    def ok(self) -> bool:
        return self.mismatches == 0 and self.tlast_errors == 0


def simulate_stream(rtl_files: list[Path], work_dir: Path, in_words: list[list[int]],
                    expected: list[list[int]], *, stall_in: float = 0.3,
                    stall_out: float = 0.3, seed: int = 0, simulator: str = "verilator",
                    waves: bool = False, progress: bool = False,
                    timeout_cycles: int | None = None,
                    cache_dir: Path | None = None,
                    stress: list[dict] | None = None) -> StreamSimResult:
    """Stream ``in_words`` through ``fpgagen_top`` and compare every output word.

    ``in_words[f]`` are the input words of frame ``f``, ``expected[f]`` its output words.
    One simulator run has two phases. Phase 1 feeds the first ``MEASURE_FRAMES`` frames
    back to back without stalls and measures ``latency_cycles`` (first input transfer to
    the last output word of frame 0) and ``cycles_per_frame`` (mean interval between
    the frames' last output words). Phase 2 feeds all frames with random stalls
    (probabilities ``stall_in`` and ``stall_out`` per cycle, plus rare long bursts),
    seeded by ``seed``. Both phases are checked word by word and for ``m_axis_tlast``;
    after each phase, 32 idle cycles catch surplus words. ``first_mismatch`` is
    ``{"phase", "frame", "word", "expected", "got"}``; a surplus word has ``expected``
    None and ``frame`` equal to the number of frames of its phase.

    ``stress`` adds phases 3, 4, ... in the same simulator run: each entry is
    ``{"stall_in": p, "stall_out": q, "seed": s}`` (every frame again with those stall
    probabilities) or, with ``"reset_after": n`` and ``"hold": h``, feeds the first
    ``n`` input words (best in the middle of a frame), waits ``h`` cycles, and resets
    the design; the next entry then starts over from frame 0 and must come out right.
    Words out before a reset are checked as a prefix of the expected stream. Every
    phase's mismatches count in ``mismatches``; ``stress`` in the result summarises
    each phase (``words_out``, ``cycles``, ``mismatches``).

    Raises :class:`SimulationError` when the simulator is missing, the build or the run
    fails, a word does not fit its port, no output word arrives for ``timeout_cycles``
    cycles in which ``m_axis_tready`` was high (default ``100_000 + 50 * total words``),
    or the design sends far more words than expected (runaway output). With
    ``waves=True`` an FST trace is written to ``work_dir/waves.fst`` (``waves.vcd`` with
    Verilator when liblz4-dev is missing; see ``waves_file``).
    """
    _check_vectors(in_words, expected, stall_in, stall_out)
    if timeout_cycles is not None and timeout_cycles < 1:
        raise ValueError(f"timeout_cycles must be at least 1, not {timeout_cycles!r}")
    ensure_simulator(simulator)
    rtl_files = [Path(f).resolve() for f in rtl_files]
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    if cache_dir is None:
        cache_dir = Path(os.environ.get(CACHE_ENV) or work_dir.parent / ".simcache")
    total_words = sum(map(len, in_words)) + sum(map(len, expected))
    if timeout_cycles is None:
        timeout_cycles = 100_000 + 50 * total_words

    say = _stderr_line if progress else (lambda text: None)
    t0 = time.perf_counter()
    trace = waves_format(simulator) if waves else None
    if trace == "vcd":
        warnings.warn("Verilator cannot write FST here (lz4.h not found; apt-get install "
                      "liblz4-dev): writing waves.vcd instead", stacklevel=2)
    build_dir = _build(rtl_files, simulator, trace, Path(cache_dir).resolve(), say)
    build_seconds = time.perf_counter() - t0

    result_file = work_dir / "sim_result.json"
    progress_file = work_dir / "sim_progress.txt" if progress else None
    for stale in (result_file, progress_file):
        if stale is not None and stale.exists():
            stale.unlink()
    config_file = work_dir / "sim_config.json"
    config_file.write_text(json.dumps({
        "in_lens": [len(f) for f in in_words],
        "out_lens": [len(f) for f in expected],
        "in_words": [format(w, "x") for f in in_words for w in f],
        "expected": [format(w, "x") for f in expected for w in f],
        "stall_in": stall_in, "stall_out": stall_out, "seed": seed,
        "timeout_cycles": timeout_cycles, "measure_frames": MEASURE_FRAMES,
        "stress": _check_stress(stress, sum(map(len, in_words))),
        "result_file": str(result_file),
        "progress_file": str(progress_file) if progress_file else None,
    }))

    say(f"sim: running {len(in_words)} frames with {simulator}")
    t0 = time.perf_counter()
    sim_log = work_dir / "sim.log"
    with _forward_lines(progress_file):
        failure = _run_bench(simulator, build_dir, work_dir, config_file, sim_log, seed, trace)
    sim_seconds = time.perf_counter() - t0

    res = json.loads(result_file.read_text()) if result_file.exists() else {}
    if res.get("error"):
        raise SimulationError(res["error"], hint=f"log: {sim_log}; waves=True writes a trace")
    if failure or not res:
        raise SimulationError(f"the {simulator} run failed ({failure or 'no result'})",
                              hint=f"see {sim_log}")
    first = res["first_mismatch"]
    if first is not None:
        first = {**first, "expected": _from_hex(first["expected"]),
                 "got": _from_hex(first["got"])}
    return StreamSimResult(
        frames=len(in_words), mismatches=res["mismatches"],
        cycles_per_frame=res["cycles_per_frame"], latency_cycles=res["latency_cycles"],
        simulator=simulator,
        out_words=[[_from_hex(w) for w in f] for f in res["out_words"]],
        first_mismatch=first, tlast_errors=res["tlast_errors"],
        build_seconds=build_seconds, sim_seconds=sim_seconds,
        cycles_total=res["cycles_total"], cycles_per_second=res["cycles_per_s"],
        waves_file=work_dir / f"waves.{trace}" if trace else None,
        stress=res.get("stress") or [])


def _check_stress(stress: list[dict] | None, total_in: int) -> list[dict]:
    stress = list(stress or [])
    for k, entry in enumerate(stress):
        for key in ("stall_in", "stall_out"):
            if not 0.0 <= float(entry[key]) < 1.0:
                raise ValueError(f"stress[{k}]: {key} must be in [0, 1), not {entry[key]!r}")
        cut = entry.get("reset_after")
        if cut is not None and not 0 <= int(cut) <= total_in:
            raise ValueError(f"stress[{k}]: reset_after must be in [0, {total_in}]")
    if stress and stress[-1].get("reset_after") is not None:
        raise ValueError("the last stress phase must not be a reset: the frames after a "
                         "reset are what shows the design recovered")
    return stress


def _check_vectors(in_words, expected, stall_in: float, stall_out: float) -> None:
    if not in_words or len(in_words) != len(expected):
        raise ValueError(f"need the same non-zero number of input and expected frames, "
                         f"not {len(in_words)} and {len(expected)}")
    for name, frames in (("input", in_words), ("expected", expected)):
        if any(len(f) == 0 for f in frames):
            raise ValueError(f"every {name} frame needs at least one word")
    for name, p in (("stall_in", stall_in), ("stall_out", stall_out)):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"{name} must be in [0, 1), not {p!r}")


def _from_hex(word):
    """Hex text from the bench back to an int; X/Z text (``0b...``) and None stay."""
    if isinstance(word, str) and not word.startswith("0b"):
        return int(word, 16)
    return word


def runtime_cache_dir() -> Path:
    """Where Verilator's compiled run-time library is kept, shared by every build.

    It is the same for every design (a few MB per Verilator version and trace setting),
    so it lives in the user's cache directory: ``$XDG_CACHE_HOME/fpgagen`` or
    ``~/.cache/fpgagen``.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "fpgagen" / "verilator-runtime"


# -- build --------------------------------------------------------------------------------

def build_key(rtl_files: list[Path], simulator: str, trace: str | None = None) -> str:
    """Cache key of a build: the sources' contents, the simulator and the build flags."""
    digest = hashlib.sha256(f"{_BUILD_FLAVOUR}\0{simulator}\0{trace}\0".encode())
    for path in rtl_files:
        data = Path(path).read_bytes()
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:20]


def _build(rtl_files: list[Path], simulator: str, trace: str | None, cache_dir: Path,
           say) -> Path:
    from cocotb_tools.runner import get_runner

    build_dir = cache_dir / f"{simulator}-{build_key(rtl_files, simulator, trace)}"
    stamp = build_dir / _STAMP
    if stamp.exists():
        return build_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f"{build_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same
        if stamp.exists():
            return build_dir
        say(f"sim: building {TOPLEVEL} with {simulator} in {build_dir}")
        log = cache_dir / f"{build_dir.name}.build.log"
        build_args = list(VERILATOR_BUILD_ARGS) if simulator == "verilator" else []
        if trace == "fst" and simulator == "verilator":
            build_args.append("--trace-fst")
        env = {}
        if simulator == "verilator" and "OBJCACHE" not in os.environ:
            env["OBJCACHE"] = objcache_command(str(runtime_cache_dir()))
        if simulator == "verilator" and verilator_make_fixes():
            env["MAKEFLAGS"] = f"{os.environ.get('MAKEFLAGS', '')} {verilator_make_fixes()}".strip()
        t0 = time.perf_counter()
        try:
            with _scoped_environ(env):
                get_runner(simulator).build(
                    sources=rtl_files, hdl_toplevel=TOPLEVEL, build_dir=build_dir,
                    build_args=build_args, waves=trace is not None, timescale=TIMESCALE,
                    clean=True, log_file=log)
        except (RuntimeError, SystemExit) as err:
            raise SimulationError(
                f"{simulator} could not build {TOPLEVEL}: {_first_error(log) or err}",
                hint=f"full log: {log}") from None
        stamp.write_text(json.dumps({
            "sources": [str(p) for p in rtl_files], "simulator": simulator,
            "trace": trace, "seconds": round(time.perf_counter() - t0, 2)}))
        log.replace(build_dir / "build.log")
    return build_dir


def _first_error(log: Path) -> str | None:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        if "%Error" in line or "error:" in line.lower():
            return line.strip()
    return None


# -- run ----------------------------------------------------------------------------------

def _run_bench(simulator: str, build_dir: Path, work_dir: Path, config_file: Path,
               sim_log: Path, seed: int, trace: str | None) -> str | None:
    """Run the bench in the simulator; returns what went wrong, if the run failed."""
    from cocotb_tools.runner import get_runner

    from fpgagen.sim.tb_stream import CONFIG_ENV

    test_args, plusargs = [], []
    if trace and simulator == "verilator":
        test_args = ["--trace-file", str(work_dir / f"waves.{trace}")]
    elif trace:
        plusargs = [f"+dumpfile_path={work_dir / f'waves.{trace}'}"]
    try:
        with _bench_on_sys_path():
            get_runner(simulator).test(
                test_module=BENCH_MODULE, hdl_toplevel=TOPLEVEL,
                hdl_toplevel_lang="verilog", build_dir=build_dir, test_dir=work_dir,
                extra_env={CONFIG_ENV: str(config_file)}, seed=seed, waves=trace is not None,
                test_args=test_args, plusargs=plusargs, log_file=sim_log,
                results_xml=str(work_dir / "results.xml"))
    except (RuntimeError, SystemExit) as err:  # SystemExit: cocotb's verdict under pytest
        return str(err) or type(err).__name__
    return None


@contextmanager
def _bench_on_sys_path() -> Iterator[None]:
    """Make the bench importable, as ``tb_stream``, in the simulator's Python.

    cocotb's runner passes this process's ``sys.path`` to the simulator as PYTHONPATH
    (and ignores a PYTHONPATH in ``extra_env``). Loading the bench as a top-level module
    spares the simulator importing the ``fpgagen`` package (seconds, per run).
    """
    bench_dir = str(Path(__file__).resolve().parent)
    added = bench_dir not in sys.path
    if added:
        sys.path.append(bench_dir)
    try:
        yield
    finally:
        if added and bench_dir in sys.path:
            sys.path.remove(bench_dir)


@contextmanager
def _scoped_environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the body: cocotb's runner reads only os.environ."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def _stderr_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextmanager
def _forward_lines(path: Path | None, interval: float = 0.5) -> Iterator[None]:
    """Copy the lines the bench appends to ``path`` onto stderr while the body runs.

    The simulator's own stdout and stderr go to ``sim.log``, so progress travels through
    a file of its own.
    """
    if path is None:
        yield
        return
    done = threading.Event()
    offset = 0

    def pump() -> None:
        nonlocal offset
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            return
        complete = data[:data.rfind(b"\n") + 1]
        offset += len(complete)
        if complete:
            sys.stderr.write(complete.decode(errors="replace"))
            sys.stderr.flush()

    def loop() -> None:
        while not done.wait(interval):
            pump()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        pump()
