"""Boards as data: the shipped boards, validation of a user's board file, the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fpgagen import boards
from fpgagen.errors import BoardError

# facts from the vendors' data sheets / board manuals
EXPECTED = {
    "pynq-z2": ("xc7", "xc7z020clg400-1", 53200, 280, 220),
    "zcu104": ("xcup", "xczu7ev-ffvc1156-2-e", 230400, 624, 1728),
    "kv260": ("xcup", "xck26-sfvc784-2LV-c", 117120, 288, 1248),
    "arty-a7-35": ("xc7", "xc7a35ticsg324-1L", 20800, 100, 90),
    "arty-a7-100": ("xc7", "xc7a100tcsg324-1", 63400, 270, 240),
    "ulx3s-85f": ("ecp5", "LFE5U-85F-6BG381C", 83640, 208, 156),
    "orangecrab-25f": ("ecp5", "LFE5U-25F-8MG285C", 24288, 56, 28),
    "icebreaker": ("ice40", "iCE40UP5K-SG48", 5280, pytest.approx(30 * 4 / 18, abs=1e-3), 8),
}

GOOD = """\
name = "mine"
vendor = "lattice"
family = "ecp5"
part = "LFE5U-45F-6BG381C"
package = "CABGA381"
lut = 43848
ff = 43848
bram18 = 108
dsp = 72
clock_mhz = 25.0
clock_pin = "G2"
reset_pin = "R1"
uart_rx_pin = "M1"
uart_tx_pin = "L4"
toolchain = "yowasp"
"""


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_board_facts(name):
    b = boards.get(name)
    family, part, lut, bram18, dsp = EXPECTED[name]
    assert (b.family, b.part, b.lut, b.bram18, b.dsp) == (family, part, lut, bram18, dsp)
    assert b.clock_mhz > 0
    if b.vendor == "lattice":
        assert b.clock_pin and b.has_uart and b.toolchain == "yowasp"
    if b.ps == "none":
        assert b.has_uart  # the host link of a board without a processing system


def test_every_board_file_is_listed_and_valid():
    names = [b.name for b in boards.known()]
    assert sorted(names) == sorted(EXPECTED)


def write(tmp_path, text, name="b.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_users_board_file(tmp_path):
    b = boards.get(write(tmp_path, GOOD))
    assert (b.name, b.lut, b.bram18, b.ps, b.uram) == ("mine", 43848, 108, "none", 0)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('family = "ecp5"\n', ""), "lacks the field 'family'"),
    (lambda t: t.replace("lut = 43848", 'lut = "many"'), "field 'lut' must be an integer"),
    (lambda t: t.replace("lut = 43848", "lut = true"), "field 'lut' must be an integer"),
    (lambda t: t.replace("dsp = 72", "dsp = -1"), "field 'dsp' must not be negative"),
    (lambda t: t.replace("clock_mhz = 25.0", "clock_mhz = 0"), "'clock_mhz' must be positive"),
    (lambda t: t.replace('"ecp5"', '"virtex2"'), "family 'virtex2' is not one of"),
    (lambda t: t.replace('vendor = "lattice"', 'vendor = "xilinx"'),
     "vendor 'xilinx' does not make family 'ecp5'"),
    (lambda t: t.replace('toolchain = "yowasp"', 'toolchain = "vivado"'),
     "toolchain 'vivado' does not serve lattice boards"),
    (lambda t: t.replace('clock_pin = "G2"', 'clock_pin = ""'), "'clock_pin' must name a pin"),
    (lambda t: t.replace('uart_tx_pin = "L4"\n', ""), "give both 'uart_rx_pin'"),
    (lambda t: t + 'ps = "zynq7"\n', "ps 'zynq7' needs a Xilinx family"),
    (lambda t: t + "colour = 3\n", "unknown field 'colour'"),
    (lambda t: t.replace("lut = 43848", "lut = [1"), "is not valid TOML"),
])
def test_malformed_board_files_name_the_field(tmp_path, edit, message):
    with pytest.raises(BoardError, match=message) as info:
        boards.get(write(tmp_path, edit(GOOD)))
    assert "\n" not in str(info.value)


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(BoardError) as info:
        boards.get("de10-nano")
    for name in EXPECTED:
        assert name in str(info.value)


def test_missing_board_file(tmp_path):
    with pytest.raises(BoardError, match="does not exist"):
        boards.get(str(tmp_path / "nope.toml"))


def cli(*args):
    return subprocess.run([sys.executable, "-m", "fpgagen", *args], capture_output=True,
                          text=True, timeout=120)


def test_cli_lists_boards_with_capacities():
    proc = cli("boards")
    assert proc.returncode == 0, proc.stderr
    for name, (_, part, lut, _, dsp) in EXPECTED.items():
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith(name + " "))
        assert part in line and str(lut) in line and str(dsp) in line


def test_cli_build_with_a_malformed_board_file(tmp_path):
    bad = write(tmp_path, GOOD.replace("lut = 43848", 'lut = "x"'))
    proc = cli("build", "-q", "unused.onnx", "-o", str(tmp_path / "o"), "--board", bad)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("fpgagen: error: ")
    assert "field 'lut'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()
