"""Dup: one stream in, ``copies`` identical streams out (the fork of a skip path).

Integer function: every output is the input. Inserted by ``passes/forks.py`` wherever
a tensor has several consumers; ports ``i`` and ``o0``, ``o1``, ...

Hardware: one word register and a pending bit per output. Output ``k`` offers the
held word while its bit is set and clears it when taken, so each consumer takes each
word exactly once, in its own cycle: one side may run ahead of the other by that one
word. The next word enters when every output has taken the held one (or takes it in
this cycle), which gives one word per cycle when all consumers are ready.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..dtypes import IntType
from ..errors import SpecError
from ..estimate import adder_luts
from .base import Cost, check_divides, check_positive, divisors, lane_layout, lane_stream

KIND = "dup"


@dataclass(frozen=True)
class Spec:
    name: str
    elems: int  # elements per frame
    dtype: IntType
    lanes: int
    copies: int = 2

    in_ports = ("i",)

    def __post_init__(self):
        n = self.name
        for what in ("elems", "lanes", "copies"):
            check_positive(n, getattr(self, what), what)
        check_divides(n, self.lanes, self.elems, "lanes", "elems")
        if self.copies < 2:
            raise SpecError(f"a duplicator needs at least 2 copies, not {self.copies}",
                            where=n, hint="a tensor with one consumer needs no duplicator")

    @property
    def out_ports(self) -> tuple[str, ...]:
        return tuple(f"o{k}" for k in range(self.copies))

    # ---- stream view (every port alike) --------------------------------------
    @property
    def in_type(self) -> IntType:
        return self.dtype

    @property
    def out_type(self) -> IntType:
        return self.dtype

    @property
    def in_elems(self) -> int:
        return self.elems

    @property
    def out_elems(self) -> int:
        return self.elems

    @property
    def in_lanes(self) -> int:
        return self.lanes

    @property
    def out_lanes(self) -> int:
        return self.lanes

    def cycles(self) -> int:
        return self.elems // self.lanes


def reference(spec: Spec, x: np.ndarray) -> tuple[np.ndarray, ...]:
    v = np.asarray(x, dtype=np.int64).reshape(-1, spec.elems)
    return tuple(v.copy() for _ in range(spec.copies))


# ---- hardware ---------------------------------------------------------------------


class Component(wiring.Component):
    def __init__(self, spec: Spec):
        self.spec = spec
        ports = {"i": In(lane_stream(spec.dtype, spec.lanes))}
        ports.update({name: Out(lane_stream(spec.dtype, spec.lanes))
                      for name in spec.out_ports})
        super().__init__(ports)

    def elaborate(self, platform):
        s = self.spec
        m = Module()
        outs = [getattr(self, name) for name in s.out_ports]
        held = Signal(lane_layout(s.dtype, s.lanes))
        pending = Signal(s.copies)  # bit k: output k has not taken the held word yet
        taken = Cat(*(o.ready for o in outs))
        for k, o in enumerate(outs):
            m.d.comb += [o.valid.eq(pending[k]), o.payload.eq(held)]
        # every output is done with the held word by the end of this cycle
        m.d.comb += self.i.ready.eq((~pending | taken).all())
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [held.eq(self.i.payload), pending.eq(-1)]
        with m.Else():
            m.d.sync += pending.eq(pending & ~taken)
        return m


def fold_options(spec: Spec) -> list[dict]:
    return [{"lanes": lanes} for lanes in divisors(spec.elems)]


def fill_words(spec: Spec) -> int:
    return 1


def estimate(spec: Spec, family: str) -> Cost:
    s = spec
    width = s.lanes * s.dtype.bits
    lut = 2 * s.copies + adder_luts(1, family)  # pending bits and the all-done reduction
    return Cost(cycles=s.cycles(), lut=int(lut), ff=width + s.copies, bram18=0, dsp=0)
