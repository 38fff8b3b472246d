"""Project files a user takes to the board (``fpgagen build --board B``).

Xilinx boards get ``OUT/vivado/`` (``vivado.py``), Lattice boards ``OUT/lattice/``
(``lattice.py``); boards without a processing system reach the host through the UART
bridge of ``board_top.py``.
"""

from __future__ import annotations

from ..boards import Board
from ..ir import Graph
from . import lattice, vivado
from .board_top import board_top_verilog, stream_geometry


def project_files(graph: Graph, board: Board, clock_mhz: float) -> dict[str, str]:
    """Files (paths relative to OUT) for the board's vendor flow."""
    top = board_top_verilog(graph, board) if board.ps == "none" else None
    if board.vendor == "lattice":
        return lattice.project_files(board, top)
    g = stream_geometry(graph)
    return vivado.project_files(board, clock_mhz, g["in_width"], g["out_width"], top)
