"""Graph -> graph passes, each ``apply(graph, ...) -> (graph, changed)``.

The build pipeline is the literal list in :data:`PIPELINE`, read top to bottom.
"""

from __future__ import annotations

from . import fifos, fold, widths

PIPELINE = (
    ("fold", fold.apply),  # PE/SIMD per node for the target
    ("width converters", widths.apply),  # where neighbouring foldings differ
    ("fifos", fifos.apply),  # between every pair of nodes
)

__all__ = ["PIPELINE", "fold", "widths", "fifos"]
