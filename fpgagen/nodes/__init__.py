"""Registry of node kinds: one module per kind, looked up by spec type or kind name.

Adding a node kind means adding its module here; nothing else needs its details.
"""

from __future__ import annotations

from types import ModuleType

from . import (
    dwc,
    fifo,
    labelselect,
    layernorm,
    matmul,
    mvau,
    pool,
    softmax,
    swg,
    table,
    thresholding,
)

_MODULES: tuple[ModuleType, ...] = (mvau, thresholding, labelselect, dwc, fifo, swg, pool,
                                    table, softmax, layernorm, matmul)

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


def reference(spec, x):
    return module_for(spec).reference(spec, x)


def component(spec):
    return module_for(spec).Component(spec)


def estimate(spec, family: str):
    return module_for(spec).estimate(spec, family)
