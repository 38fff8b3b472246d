"""Graph -> graph passes, each ``apply(graph, ...) -> (graph, changed)``.

The build pipeline is the literal list in :data:`PIPELINE`, read top to bottom.
"""

from __future__ import annotations

from . import fifos, fold, forks, widths

PIPELINE = (
    ("fold", fold.apply),  # PE/SIMD per node for the target
    ("forks", forks.apply),  # a stream duplicator where a tensor has several readers
    ("width converters", widths.apply),  # on every edge whose foldings differ
    ("fifos", fifos.apply),  # on every edge; joins' FIFOs sized from the dataflow
)

__all__ = ["PIPELINE", "fold", "forks", "widths", "fifos"]
