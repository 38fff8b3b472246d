"""Boards as data: one TOML file per board in this folder, or a user's own file."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import BoardError

HERE = Path(__file__).parent
FAMILIES = ("xc7", "xcup", "ecp5", "ice40")


@dataclass(frozen=True)
class Board:
    name: str
    vendor: str
    family: str
    part: str
    package: str
    lut: int
    ff: int
    bram18: int
    dsp: int
    uram: int
    clock_mhz: float
    clock_pin: str
    reset_pin: str
    toolchain: str

    def capacity(self) -> dict:
        return {"lut": self.lut, "ff": self.ff, "bram18": self.bram18, "dsp": self.dsp}


def _parse(path: Path) -> Board:
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise BoardError(f"cannot read board file '{path}': {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise BoardError(f"board file '{path}' is not valid TOML: {e}") from None
    values = {}
    for f in fields(Board):
        if f.name not in doc:
            raise BoardError(f"board file '{path}' lacks the field '{f.name}'",
                             hint="see docs/boards.md for the fields")
        value = doc[f.name]
        want = {"int": int, "float": (int, float), "str": str}[f.type]
        if not isinstance(value, want) or isinstance(value, bool):
            raise BoardError(f"board file '{path}': field '{f.name}' must be {f.type}, "
                             f"not {value!r}")
        if f.type in ("int", "float") and value < 0:
            raise BoardError(f"board file '{path}': field '{f.name}' must not be negative")
        values[f.name] = float(value) if f.type == "float" else value
    if values["family"] not in FAMILIES:
        raise BoardError(f"board file '{path}': family '{values['family']}' is not one of "
                         f"{', '.join(FAMILIES)}")
    if values["clock_mhz"] <= 0 or values["lut"] <= 0:
        raise BoardError(f"board file '{path}': clock_mhz and lut must be positive")
    return Board(**values)


def known() -> list[Board]:
    return [_parse(p) for p in sorted(HERE.glob("*.toml"))]


def get(name_or_path: str) -> Board:
    """A board by name, or from a TOML file path."""
    path = Path(name_or_path)
    if name_or_path.endswith(".toml") or path.is_file():
        if not path.is_file():
            raise BoardError(f"board file '{path}' does not exist")
        return _parse(path)
    for board in known():
        if board.name == name_or_path:
            return board
    names = ", ".join(b.name for b in known())
    raise BoardError(f"unknown board '{name_or_path}'", hint=f"known boards: {names}; "
                     "or give the path of a board .toml file")


DEFAULT = "pynq-z2"
