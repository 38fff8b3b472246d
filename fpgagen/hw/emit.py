"""Emit Verilog for a graph."""

from __future__ import annotations

from amaranth.back import verilog

from ..ir import Graph
from .primitives import template_sources, verilog_templates
from .top import Top

TOP_NAME = "fpgagen_top"


def convert(component, name: str, **kwargs) -> str:
    """Verilog of an Amaranth component, with the ``rtl_templates/`` modules it uses."""
    with verilog_templates():
        text = verilog.convert(component, name=name, emit_src=False, **kwargs)
    return text + (template_sources() if "fpgagen_popcount" in text else "")


def verilog_text(graph: Graph) -> str:
    """The design's Verilog: ``fpgagen_top``, its submodules and the templates it uses."""
    return convert(Top(graph), TOP_NAME)
