"""A UART bridge to the accelerator, for boards without a processing system.

Protocol (8N1, ``baud`` bits/s, no flow control): the host sends each input stream
word as ``in_bytes`` bytes, least significant first, and receives each output word as
``out_bytes`` bytes the same way. Words are a build's AXI4-Stream TDATA words (see
docs/cli.md), so the host packs frames exactly as for the simulator. Send one frame,
then read its result (stop-and-wait): each side has a FIFO of up to one frame of
words, so the accelerator never waits for the UART within a frame. A byte that
arrives while the input FIFO is full is dropped and sets the sticky ``overrun`` bit.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

MAX_FIFO_WORDS = 512  # cap on each side's FIFO (one frame of most MLPs fits)


def baud_divisor(clk_hz: float, baud: int) -> int:
    divisor = round(clk_hz / baud)
    if divisor < 4:
        raise ValueError(f"clock {clk_hz:g} Hz is too slow for {baud} baud")
    return divisor


class UartRx(wiring.Component):
    """8N1 receiver: samples the middle of each bit; ``valid`` pulses for one cycle."""

    def __init__(self, divisor: int):
        self.divisor = divisor
        super().__init__({"rx": In(1, init=1), "data": Out(8), "valid": Out(1)})

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        rx = Signal(init=1)
        rx_meta = Signal(init=1)
        m.d.sync += [rx_meta.eq(self.rx), rx.eq(rx_meta)]  # two-flop synchroniser
        timer = Signal(range(d * 3 // 2 + 1))
        bit = Signal(range(10))
        shift = Signal(8)
        busy = Signal()
        m.d.sync += self.valid.eq(0)
        with m.If(~busy):
            with m.If(~rx):  # start bit: first sample in the middle of data bit 0
                m.d.sync += [busy.eq(1), timer.eq(d + d // 2 - 1), bit.eq(0)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Elif(bit == 8):  # stop bit
            m.d.sync += busy.eq(0)
            with m.If(rx):
                m.d.sync += [self.data.eq(shift), self.valid.eq(1)]
        with m.Else():
            m.d.sync += [shift.eq(Cat(shift[1:], rx)), bit.eq(bit + 1), timer.eq(d - 1)]
        return m


class UartTx(wiring.Component):
    """8N1 transmitter: takes ``data`` when ``valid & ready``."""

    def __init__(self, divisor: int):
        self.divisor = divisor
        super().__init__({"tx": Out(1, init=1), "data": In(8), "valid": In(1),
                          "ready": Out(1)})

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        frame = Signal(10, init=0x3FF)  # stop, data[7:0], start: sent LSB first
        left = Signal(range(11))
        m.d.comb += [self.ready.eq(left == 0), self.tx.eq(frame[0])]
        with m.If(left == 0):
            with m.If(self.valid):
                m.d.sync += [frame.eq(Cat(Const(0, 1), self.data, Const(1, 1))),
                             left.eq(10), timer.eq(self.divisor - 1)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [frame.eq(Cat(frame[1:], Const(1, 1))), left.eq(left - 1),
                         timer.eq(self.divisor - 1)]
        return m


class UartBridge(wiring.Component):
    """UART bytes <-> the accelerator's AXI4-Stream words, one FIFO on each side."""

    def __init__(self, *, in_width: int, out_width: int, in_words: int, out_words: int,
                 divisor: int):
        self.in_bytes, self.out_bytes = in_width // 8, out_width // 8
        self.in_fifo_words = max(2, min(in_words, MAX_FIFO_WORDS))
        self.out_fifo_words = max(2, min(out_words, MAX_FIFO_WORDS))
        self.divisor = divisor
        super().__init__({
            "rx": In(1, init=1), "tx": Out(1, init=1), "overrun": Out(1),
            "s_axis_tdata": Out(in_width), "s_axis_tvalid": Out(1), "s_axis_tready": In(1),
            "m_axis_tdata": In(out_width), "m_axis_tvalid": In(1), "m_axis_tready": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.urx = urx = UartRx(self.divisor)
        m.submodules.utx = utx = UartTx(self.divisor)
        m.submodules.in_fifo = in_fifo = SyncFIFOBuffered(
            width=len(self.s_axis_tdata), depth=self.in_fifo_words)
        m.submodules.out_fifo = out_fifo = SyncFIFOBuffered(
            width=len(self.m_axis_tdata), depth=self.out_fifo_words)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]

        # bytes -> words, least significant byte first
        word = Signal(len(self.s_axis_tdata))
        got = Signal(range(self.in_bytes + 1))
        last_byte = got == self.in_bytes - 1
        m.d.comb += [in_fifo.w_data.eq(Cat(word[8:], urx.data) if self.in_bytes > 1
                                       else urx.data),
                     in_fifo.w_en.eq(urx.valid & last_byte & in_fifo.w_rdy)]
        with m.If(urx.valid):
            with m.If(last_byte & ~in_fifo.w_rdy):
                m.d.sync += self.overrun.eq(1)
            with m.Else():
                m.d.sync += [word.eq(Cat(word[8:], urx.data)),
                             got.eq(Mux(last_byte, 0, got + 1))]
        m.d.comb += [self.s_axis_tdata.eq(in_fifo.r_data),
                     self.s_axis_tvalid.eq(in_fifo.r_rdy),
                     in_fifo.r_en.eq(self.s_axis_tready)]

        # words -> bytes
        m.d.comb += [out_fifo.w_data.eq(self.m_axis_tdata),
                     out_fifo.w_en.eq(self.m_axis_tvalid),
                     self.m_axis_tready.eq(out_fifo.w_rdy)]
        sent = Signal(range(self.out_bytes + 1))
        m.d.comb += [utx.data.eq(out_fifo.r_data.word_select(sent, 8)),
                     utx.valid.eq(out_fifo.r_rdy)]
        with m.If(utx.valid & utx.ready):
            with m.If(sent == self.out_bytes - 1):
                m.d.sync += sent.eq(0)
                m.d.comb += out_fifo.r_en.eq(1)
            with m.Else():
                m.d.sync += sent.eq(sent + 1)
        return m
