"""``fpgagen_board``: the accelerator on a board without a processing system.

Ports are board pins only: ``clk`` (the board oscillator), ``rst`` (the reset
button, of the board's polarity), ``uart_rx`` and ``uart_tx``. Inside, a power-on
reset, the UART bridge (``uart.py``) and ``fpgagen_top`` as an instance, so the
accelerator's Verilog is the build's own ``rtl/fpgagen_top.v``, unchanged.
"""

from __future__ import annotations

from amaranth.hdl import ClockDomain, Elaboratable, Instance, Module, Signal

from ..hw.emit import TOP_NAME, convert
from ..hw.top import axis_width, stream_ports
from ..ir import Graph
from .uart import UartBridge, baud_divisor

BOARD_TOP = "fpgagen_board"
BAUD = 115200
POWER_ON_RESET_CYCLES = 255


def stream_geometry(graph: Graph) -> dict:
    """TDATA widths and words per frame of the build's two streams."""
    first, last = stream_ports(graph)
    return {"in_width": axis_width(first.dtype.bits * first.lanes),
            "out_width": axis_width(last.dtype.bits * last.lanes),
            "in_words": first.words, "out_words": last.words}


class BoardTop(Elaboratable):
    """``reset``: the reset pin's port name, ``rst`` (active high), ``rst_n`` (active
    low) or None (no button: power-on reset only)."""

    def __init__(self, graph: Graph, clk_mhz: float, reset: str | None, baud: int = BAUD):
        if reset not in ("rst", "rst_n", None):
            raise ValueError(f"reset must be 'rst', 'rst_n' or None, not {reset!r}")
        self.geometry = stream_geometry(graph)
        self.divisor = baud_divisor(clk_mhz * 1e6, baud)
        self.clk = Signal()
        self.rst = Signal(name=reset) if reset else None
        self.reset_active_low = reset == "rst_n"
        self.uart_rx = Signal(init=1)
        self.uart_tx = Signal(init=1)

    def ports(self) -> list[Signal]:
        return [p for p in (self.clk, self.rst, self.uart_rx, self.uart_tx) if p is not None]

    def elaborate(self, platform):
        m = Module()
        m.domains.por = por = ClockDomain("por", reset_less=True)
        m.domains.sync = sync = ClockDomain("sync")
        m.d.comb += [por.clk.eq(self.clk), sync.clk.eq(self.clk)]

        # reset: held for a while after configuration, and while the button is pressed
        por_count = Signal(range(POWER_ON_RESET_CYCLES + 1))
        button = Signal()
        if self.rst is not None:
            button_meta = Signal()
            pressed = ~self.rst if self.reset_active_low else self.rst
            m.d.por += [button_meta.eq(pressed), button.eq(button_meta)]
        with m.If(por_count != POWER_ON_RESET_CYCLES):
            m.d.por += por_count.eq(por_count + 1)
        m.d.comb += sync.rst.eq((por_count != POWER_ON_RESET_CYCLES) | button)

        g = self.geometry
        m.submodules.bridge = bridge = UartBridge(divisor=self.divisor, **g)
        m.d.comb += [bridge.rx.eq(self.uart_rx), self.uart_tx.eq(bridge.tx)]
        m.submodules.accelerator = Instance(
            TOP_NAME,
            i_clk=sync.clk, i_rst=sync.rst,
            i_s_axis_tdata=bridge.s_axis_tdata, i_s_axis_tvalid=bridge.s_axis_tvalid,
            o_s_axis_tready=bridge.s_axis_tready,
            o_m_axis_tdata=bridge.m_axis_tdata, o_m_axis_tvalid=bridge.m_axis_tvalid,
            i_m_axis_tready=bridge.m_axis_tready, o_m_axis_tlast=Signal(),
        )
        return m


def reset_port(board) -> str | None:
    if not board.reset_pin:
        return None
    return "rst_n" if board.reset_active_low else "rst"


def board_top_verilog(graph: Graph, board) -> str:
    """``fpgagen_board`` for ``board``, clocked by its oscillator."""
    top = BoardTop(graph, board.oscillator_mhz, reset_port(board))
    return convert(top, BOARD_TOP, ports=top.ports())
