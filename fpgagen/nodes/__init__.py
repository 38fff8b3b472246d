"""Registry of node kinds: one module per kind, looked up by spec type or kind name.

Adding a node kind means adding its module here; nothing else needs its details.
Port names and views (``in_ports``, ``out_ports``, ``port``) follow ``base.py``.
"""

from __future__ import annotations

from fractions import Fraction
from types import ModuleType

from . import (
    add,
    delta,
    dmvau,
    dup,
    dwc,
    fifo,
    labelselect,
    layernorm,
    matmul,
    mvau,
    offset,
    pool,
    prefix,
    select,
    softmax,
    swg,
    table,
    thresholding,
    vvau,
)
from .base import DEFAULT_FILL_WORDS, Port, in_ports, out_ports, port

_MODULES: tuple[ModuleType, ...] = (mvau, thresholding, labelselect, dwc, fifo, swg, pool,
                                    dup, add, table, softmax, layernorm, matmul, vvau,
                                    delta, dmvau, offset, prefix, select)

_BY_KIND: dict[str, ModuleType] = {m.KIND: m for m in _MODULES}
_BY_SPEC: dict[type, ModuleType] = {m.Spec: m for m in _MODULES}


def module_for(spec) -> ModuleType:
    try:
        return _BY_SPEC[type(spec)]
    except KeyError:
        raise TypeError(f"no node kind registered for spec {type(spec).__name__}") from None


def kind_of(spec) -> str:
    return module_for(spec).KIND


def spec_class(kind: str) -> type:
    return _BY_KIND[kind].Spec


def kinds() -> list[str]:
    return list(_BY_KIND)


def reference(spec, *inputs):
    """The golden model: one array, or a tuple for a kind with several outputs."""
    return module_for(spec).reference(spec, *inputs)


def reference_outputs(spec, *inputs) -> tuple:
    """The golden model's outputs as a tuple, one array per output port."""
    out = reference(spec, *inputs)
    return out if isinstance(out, tuple) else (out,)


def fill_words(spec) -> int:
    """Input words a node may take ahead of its output (see ``base.py``)."""
    module = module_for(spec)
    return module.fill_words(spec) if hasattr(module, "fill_words") else DEFAULT_FILL_WORDS


def frame_lag(spec) -> tuple[Fraction, Fraction]:
    """Least and most part of a frame a node holds its input ahead of its output (see
    ``base.py``): by default none at least, and at most its ``fill_words`` if it
    declares them, else none (each word leaves once it has arrived)."""
    module = module_for(spec)
    if hasattr(module, "frame_lag"):
        return module.frame_lag(spec)
    if not hasattr(module, "fill_words"):
        return Fraction(0), Fraction(0)
    first = port(spec, in_ports(spec)[0])
    return Fraction(0), Fraction(module.fill_words(spec), first.words)


def burst_words(spec) -> int:
    """Input words a node takes in one burst before a pause (0: it reads evenly).

    The FIFO in front of such a node holds a whole burst, so that its producer keeps
    working through the pause instead of waiting for the next burst word by word.
    """
    module = module_for(spec)
    return module.burst_words(spec) if hasattr(module, "burst_words") else 0


def input_lead_words(spec, port_name: str) -> int:
    """Words of a frame on input ``port_name`` that may wait while the node consumes its
    other inputs (0: it takes its inputs together; a matmul takes all of B before A).

    The FIFO in front of that port holds them too (``passes/fifos.py``), or a fork
    feeding both ports stalls on the waiting branch and starves the other.
    """
    module = module_for(spec)
    return (module.input_lead_words(spec, port_name) if hasattr(module, "input_lead_words")
            else 0)


def component(spec):
    return module_for(spec).Component(spec)


def estimate(spec, family: str):
    return module_for(spec).estimate(spec, family)


__all__ = ["Port", "component", "estimate", "fill_words", "frame_lag", "in_ports", "kind_of",
           "kinds", "module_for", "out_ports", "port", "reference", "reference_outputs", "spec_class"]
