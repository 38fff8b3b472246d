"""Boards as data: one TOML file per board in this folder, or a user's own file.

Every field is checked when the file is read, so a mistake in a board file is one
clear ``BoardError`` line naming the file and the field (see docs/boards.md).
"""

from __future__ import annotations

import tomllib
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

from ..errors import BoardError

HERE = Path(__file__).parent
FAMILIES = ("xc7", "xcup", "ecp5", "ice40")
VENDOR_OF_FAMILY = {"xc7": "xilinx", "xcup": "xilinx", "ecp5": "lattice", "ice40": "lattice"}
TOOLCHAIN_OF_VENDOR = {"xilinx": "vivado", "lattice": "yowasp"}
PROCESSING_SYSTEMS = ("none", "zynq7", "zynqmp")
RESOURCES = ("lut", "ff", "bram18", "dsp")


@dataclass(frozen=True)
class Board:
    name: str
    vendor: str  # xilinx | lattice
    family: str  # one of FAMILIES: the Yosys synthesis family and the estimator's
    part: str  # exact part name as the vendor tool takes it
    package: str
    lut: int
    ff: int
    bram18: float  # block RAM in 18 Kb units (iCE40's 4 Kb EBRs count 4/18 each)
    dsp: int
    clock_mhz: float  # default design clock
    clock_pin: str  # board oscillator pin ("" when the clock comes from the PS only)
    reset_pin: str
    toolchain: str  # vivado | yowasp
    uram: int = 0  # UltraRAM blocks (Xilinx UltraScale+); iCE40 UP SPRAM blocks
    osc_mhz: float = 0.0  # oscillator frequency on clock_pin (0: same as clock_mhz)
    io_standard: str = "LVCMOS33"  # of the clock, reset and UART pins
    reset_active_low: bool = False
    uart_rx_pin: str = ""  # into the FPGA; "" when the board has no PL UART
    uart_tx_pin: str = ""
    ps: str = "none"  # processing system for a block design: none | zynq7 | zynqmp
    vivado_board: str = ""  # Vivado board-file name (PS presets: DDR, MIO), e.g. "zcu104"

    def capacity(self) -> dict:
        bram18 = int(self.bram18) if float(self.bram18).is_integer() else self.bram18
        return {"lut": self.lut, "ff": self.ff, "bram18": bram18, "dsp": self.dsp}

    @property
    def oscillator_mhz(self) -> float:
        return self.osc_mhz or self.clock_mhz

    @property
    def has_uart(self) -> bool:
        return bool(self.uart_rx_pin and self.uart_tx_pin)


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}
_TYPE_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}


def _field_value(path: Path, doc: dict, f) -> object:
    if f.name not in doc:
        if f.default is not MISSING:
            return f.default
        raise BoardError(f"board file '{path}' lacks the field '{f.name}'",
                         hint="see docs/boards.md for the fields")
    value = doc[f.name]
    wrong_bool = isinstance(value, bool) and f.type != "bool"
    if not isinstance(value, _TYPES[f.type]) or wrong_bool:
        raise BoardError(f"board file '{path}': field '{f.name}' must be "
                         f"{_TYPE_WORDS[f.type]}, not {value!r}")
    if f.type in ("int", "float") and value < 0:
        raise BoardError(f"board file '{path}': field '{f.name}' must not be negative, "
                         f"not {value}")
    return float(value) if f.type == "float" else value


def _check(path: Path, v: dict) -> None:
    def bad(what: str, hint: str | None = None):
        raise BoardError(f"board file '{path}': {what}", hint=hint)

    if not v["name"]:
        bad("field 'name' must not be empty")
    if v["family"] not in FAMILIES:
        bad(f"family '{v['family']}' is not one of {', '.join(FAMILIES)}")
    vendor = VENDOR_OF_FAMILY[v["family"]]
    if v["vendor"] != vendor:
        bad(f"vendor '{v['vendor']}' does not make family '{v['family']}'",
            hint=f"family {v['family']} is vendor '{vendor}'")
    if v["toolchain"] != TOOLCHAIN_OF_VENDOR[vendor]:
        bad(f"toolchain '{v['toolchain']}' does not serve {vendor} boards",
            hint=f"use toolchain = \"{TOOLCHAIN_OF_VENDOR[vendor]}\"")
    for key in ("clock_mhz", "lut", "ff"):
        if not v[key] > 0:
            bad(f"field '{key}' must be positive, not {v[key]}")
    if not v["part"]:
        bad("field 'part' must not be empty")
    if v["ps"] not in PROCESSING_SYSTEMS:
        bad(f"ps '{v['ps']}' is not one of {', '.join(PROCESSING_SYSTEMS)}")
    if v["ps"] != "none" and vendor != "xilinx":
        bad(f"ps '{v['ps']}' needs a Xilinx family, not '{v['family']}'")
    if vendor == "lattice" and not v["clock_pin"]:
        bad("field 'clock_pin' must name a pin on a Lattice board",
            hint="the bitstream's clock comes from that pin")
    if v["ps"] == "none" and not v["clock_pin"]:
        bad("field 'clock_pin' is empty but the board has no processing system (ps)")
    if bool(v["uart_rx_pin"]) != bool(v["uart_tx_pin"]):
        bad("give both 'uart_rx_pin' and 'uart_tx_pin', or neither")
    if v["ps"] == "none" and not v["uart_rx_pin"]:
        bad("a board without a processing system (ps) needs 'uart_rx_pin' and 'uart_tx_pin'",
            hint="the accelerator talks to the host over that UART")


def parse(path: Path) -> Board:
    """Read and validate one board file."""
    try:
        doc = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise BoardError(f"cannot read board file '{path}': {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise BoardError(f"board file '{path}' is not valid TOML: {e}") from None
    known_fields = {f.name for f in fields(Board)}
    unknown = sorted(set(doc) - known_fields)
    if unknown:
        raise BoardError(f"board file '{path}' has unknown field '{unknown[0]}'",
                         hint=f"fields are {', '.join(f.name for f in fields(Board))}")
    values = {f.name: _field_value(path, doc, f) for f in fields(Board)}
    _check(path, values)
    return Board(**values)


def known() -> list[Board]:
    return [parse(p) for p in sorted(HERE.glob("*.toml"))]


def get(name_or_path: str) -> Board:
    """A board by name, or from a TOML file path."""
    path = Path(name_or_path)
    if name_or_path.endswith(".toml") or path.is_file():
        if not path.is_file():
            raise BoardError(f"board file '{path}' does not exist")
        return parse(path)
    boards = known()
    for board in boards:
        if board.name == name_or_path:
            return board
    names = ", ".join(b.name for b in boards)
    raise BoardError(f"unknown board '{name_or_path}'", hint=f"known boards: {names}; "
                     "or give the path of a board .toml file")


DEFAULT = "pynq-z2"
