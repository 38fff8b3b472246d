"""Emit Verilog for a graph."""

from __future__ import annotations

from amaranth.back import verilog

from ..ir import Graph
from .top import Top

TOP_NAME = "fpgagen_top"


def verilog_text(graph: Graph) -> str:
    top = Top(graph)
    return verilog.convert(top, name=TOP_NAME, emit_src=False)
