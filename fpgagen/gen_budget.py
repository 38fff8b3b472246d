"""Refuse, before any Verilog is generated, a design too large to generate here.

Generation cost (Amaranth elaboration, then Yosys writing Verilog) grows with the
logic (estimated LUTs: every lane is elaborated) and with the memory contents (one
Verilog line per memory word). The coefficients are upper-end fits to measurements
on a 2-core machine (single MVAUs of 16 to 8192 lanes and 64 to 1M memory words, and
whole MLPs; table in docs/robustness.md). The estimate is deliberately rough; the
limits are far above any design that fits a board, so only a folding that could never
be built (a fully parallel wide layer, hundreds of millions of weights) is refused,
with the estimate and a hint, instead of an out-of-memory kill an hour later.
``FPGAGEN_NO_SIZE_LIMIT=1`` in the environment skips the refusal.
"""

from __future__ import annotations

import os

import numpy as np

from . import nodes
from .errors import FoldingError
from .ir import Graph

SECONDS_PER_NODE = 0.1
SECONDS_PER_LUT = 4e-4
SECONDS_PER_INIT_WORD = 2e-5
VERILOG_BYTES_PER_NODE = 12_000  # control, FIFOs, ports: what a tiny node costs
VERILOG_BYTES_PER_LUT = 100
VERILOG_BYTES_PER_INIT_WORD = 40
BASE_MEMORY_MB = 150
MEMORY_BYTES_PER_LUT = 2048
MEMORY_BYTES_PER_INIT_WORD = 400

LIMIT_SECONDS = 1800.0
LIMIT_VERILOG_MB = 500.0
MEMORY_SHARE = 0.8  # of the memory available now
SKIP_ENV = "FPGAGEN_NO_SIZE_LIMIT"


def init_words(spec) -> int:
    """Memory words holding the spec's constants (weights, thresholds...), upper end.

    A kind stores its constant arrays in memories whose words hold ``in_lanes``
    elements (an MVAU's weight rows hold SIMD weights).
    """
    elements = sum(v.size for v in vars(spec).values() if isinstance(v, np.ndarray))
    return -(-elements // max(1, getattr(spec, "in_lanes", 1)))


def estimate(graph: Graph, family: str) -> dict:
    """Estimated LUTs, memory words, Verilog size, generation time and peak memory."""
    lut = sum(nodes.estimate(n.spec, family).lut for n in graph.nodes)
    words = sum(init_words(n.spec) for n in graph.nodes)
    count = len(graph.nodes)
    return {
        "lut": lut,
        "init_words": words,
        "verilog_mb": (VERILOG_BYTES_PER_NODE * count + VERILOG_BYTES_PER_LUT * lut
                       + VERILOG_BYTES_PER_INIT_WORD * words) / 1e6,
        "seconds": SECONDS_PER_NODE * count + SECONDS_PER_LUT * lut
        + SECONDS_PER_INIT_WORD * words,
        "memory_mb": BASE_MEMORY_MB + (MEMORY_BYTES_PER_LUT * lut
                                       + MEMORY_BYTES_PER_INIT_WORD * words) / 1e6,
    }


def available_memory_mb() -> float | None:
    """MemAvailable from /proc/meminfo (Linux), None elsewhere."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check(graph: Graph, family: str, *, memory_mb: float | None = None) -> dict:
    """The estimate, or a FoldingError when it exceeds a limit."""
    est = estimate(graph, family)
    if os.environ.get(SKIP_ENV) == "1":
        return est
    memory_mb = available_memory_mb() if memory_mb is None else memory_mb
    too_big = []
    if est["seconds"] > LIMIT_SECONDS:
        too_big.append(f"about {est['seconds'] / 60:.0f} min to generate "
                       f"(limit {LIMIT_SECONDS / 60:.0f})")
    if est["verilog_mb"] > LIMIT_VERILOG_MB:
        too_big.append(f"about {est['verilog_mb']:.0f} MB of Verilog "
                       f"(limit {LIMIT_VERILOG_MB:.0f})")
    if memory_mb is not None and est["memory_mb"] > MEMORY_SHARE * memory_mb:
        too_big.append(f"about {est['memory_mb'] / 1024:.1f} GB of memory "
                       f"({memory_mb / 1024:.1f} GB available)")
    if too_big:
        raise FoldingError(
            f"this folding is too large to generate: {', '.join(too_big)}; estimated from "
            f"{est['lut']} LUTs of logic and {est['init_words']} memory words",
            hint="fold more: lower --target-fps, or leave it out for the default folding "
                 f"that fits the board ({SKIP_ENV}=1 skips this check)")
    return est
