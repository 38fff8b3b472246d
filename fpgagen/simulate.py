"""``fpgagen sim``: run a build's Verilog in cocotb and compare every word to the golden model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from . import delta_stats, host, reference
from .build import open_build
from .dtypes import pack_lanes, unpack_lanes
from .errors import FpgagenError
from .hw.emit import TOP_NAME
from .hw.top import stream_ports


def frame_words(values: np.ndarray, dtype, lanes: int) -> list[list[int]]:
    """Integer values (frames, elems) -> stream words per frame."""
    raw = dtype.encode(values)
    return [pack_lanes(row.reshape(-1, lanes), dtype.bits) for row in raw]


def words_values(words: list[list[int]], dtype, lanes: int) -> np.ndarray:
    """Stream words per frame -> integer values (frames, elems)."""
    return np.stack([dtype.decode(unpack_lanes(f, lanes, dtype.bits)).reshape(-1)
                     for f in words])


def _load_inputs(inputs) -> np.ndarray:
    if isinstance(inputs, (str, os.PathLike)):
        path = Path(inputs)
        if not path.is_file():
            raise FpgagenError(f"inputs file '{path}' does not exist")
        try:
            inputs = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise FpgagenError(f"inputs file '{path}' is not a .npy array: {e}") from None
    x = np.asarray(inputs)
    if x.dtype.kind not in "fiu" or x.ndim < 2 or x.shape[0] < 1:
        raise FpgagenError(f"inputs must be a numeric array of shape (N, ...), not "
                           f"{x.dtype} {list(x.shape)}")
    if not np.all(np.isfinite(x)):
        raise FpgagenError("inputs contain NaN or Inf")
    return x.astype(np.float32)


def simulate(out, *, inputs=None, count: int | None = None, seed: int = 0,
             simulator: str = "verilator", waves: bool = False, stall: float = 0.3,
             progress: bool = False) -> dict:
    """Simulate a build; writes OUT/sim/results.json and OUT/sim/outputs.npy."""
    from .sim import simulate_stream

    out, graph, report = open_build(out)
    if inputs is not None and count is not None:
        raise FpgagenError("give either --inputs or --count, not both")
    if inputs is not None:
        x_int = host.run_pre(graph, _load_inputs(inputs))
    else:
        count = 100 if count is None else count
        if count < 1:
            raise FpgagenError(f"--count must be at least 1, not {count}")
        t = graph.tensors[graph.inputs[0]]
        rng = np.random.default_rng(seed)
        x_int = rng.integers(t.dtype.min, t.dtype.max + 1, size=(count, t.elems))
        if t.dtype.bipolar:
            x_int = np.where(x_int > 0, 1, -1)
    if not 0 <= stall < 1:
        raise FpgagenError(f"--stall must be in [0, 1), not {stall}")
    first, last = stream_ports(graph)
    expected = reference.run_hw(graph, x_int)
    result = simulate_stream(
        [out / "rtl" / f"{TOP_NAME}.v"], out / "sim",
        frame_words(x_int, first.dtype, first.lanes),
        frame_words(expected, last.dtype, last.lanes),
        stall_in=stall, stall_out=stall, seed=seed, simulator=simulator, waves=waves,
        progress=progress)
    got = words_values(result.out_words, last.dtype, last.lanes)
    outputs = host.run_post(graph, got)
    results = {
        "frames": result.frames,
        "mismatches": result.mismatches,
        "tlast_errors": result.tlast_errors,
        "first_mismatch": result.first_mismatch,
        "cycles_per_frame": result.cycles_per_frame,
        "estimated_cycles_per_frame": report["cycles_per_frame"],
        "latency_cycles": result.latency_cycles,
        "estimated_latency_cycles": report["latency_cycles"],
        "simulator": result.simulator,
        "stall": stall,
        "seed": seed,
        "build_seconds": round(result.build_seconds, 2),
        "sim_seconds": round(result.sim_seconds, 2),
        "cycles_total": result.cycles_total,
        "passed": result.mismatches == 0 and result.tlast_errors == 0,
    }
    if delta_stats.units(graph):  # a differential build: what it saved on these frames
        results["differential"] = delta_stats.statistics(graph, x_int, report["family"])
    (out / "sim").mkdir(exist_ok=True)
    (out / "sim" / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    np.save(out / "sim" / "outputs.npy", outputs)
    return results
