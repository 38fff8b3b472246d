"""Table: an elementwise function of a narrow integer input, as a lookup table.

Integer function (per element ``x`` of ``in_type``, at most ``MAX_IN_BITS`` bits)::

    out = table[x - in_type.min]

``table`` has one entry per input value (``2**in_bits`` entries), each of ``out_type``.
Any function of the quantized input (GELU, exp of a small range, a requantization)
is exactly such a table: :func:`table_from_function` builds one from a float function
and the input and output quantizers.

The stream carries ``vectors * channels`` elements per frame (channel minor), like a
thresholding. Folding: ``pe`` elements per word, one word per cycle; the table is one
read-only memory per lane.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Module, Signal, Value, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..dtypes import IntType
from ..errors import SpecError
from ..estimate import memory_cost
from ..hw.primitives import rom_read_port
from .base import (
    Cost,
    SameShapeStream,
    check_divides,
    check_positive,
    divisors,
    lane_layout,
    lane_stream,
)

KIND = "table"
ADAPTS_LANES = True  # cheap to widen: folding matches its neighbours' words (fold.py)
MAX_IN_BITS = 8  # 256 entries; wider inputs are better served by other kinds

# Brevitas rounding modes -> float64 rounding (np.rint rounds half to even, like ROUND)
ROUNDING: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "ROUND": np.rint, "FLOOR": np.floor, "CEIL": np.ceil, "ROUND_TO_ZERO": np.trunc,
}


@dataclass(frozen=True, eq=False)
class Spec(SameShapeStream):
    name: str
    channels: int
    in_type: IntType
    out_type: IntType
    table: np.ndarray  # (2**in_type.bits,) integers of out_type; entry k is f(min + k)
    vectors: int = 1  # channel vectors per frame
    pe: int = 1

    def __post_init__(self):
        n = self.name
        for what in ("channels", "vectors", "pe"):
            check_positive(n, getattr(self, what), what)
        check_divides(n, self.pe, self.channels, "PE", "channels")
        for side, t in (("input", self.in_type), ("output", self.out_type)):
            if t.bipolar:
                raise SpecError(f"a table's {side} type cannot be bipolar", where=n,
                                hint="a function of a bipolar value is a thresholding "
                                "or a sign flip in the next layer's weights")
        if self.in_type.bits > MAX_IN_BITS:
            raise SpecError(f"a table over {self.in_type} would need "
                            f"{1 << self.in_type.bits} entries", where=n,
                            hint=f"tables take inputs of at most {MAX_IN_BITS} bits; "
                            "requantize the input first")
        t = np.asarray(self.table)
        if t.shape != (1 << self.in_type.bits,):
            raise SpecError(f"the table has shape {t.shape}, expected "
                            f"({1 << self.in_type.bits},): one entry per {self.in_type} "
                            "value", where=n)
        if not np.issubdtype(t.dtype, np.integer):
            raise SpecError(f"table entries must be integers, not {t.dtype}", where=n,
                            hint="build the table with table_from_function")
        t = t.astype(np.int64)
        if not self.out_type.contains(t):
            raise SpecError(f"table entries span [{t.min()}, {t.max()}], which does not "
                            f"fit the output type {self.out_type}", where=n)
        object.__setattr__(self, "table", t)

    # ---- stream view ---------------------------------------------------------
    @property
    def frame_elems(self) -> int:
        return self.vectors * self.channels

    def cycles(self) -> int:
        return self.vectors * self.channels // self.pe


def reference(spec: Spec, x: np.ndarray) -> np.ndarray:
    return spec.table[np.asarray(x, dtype=np.int64) - spec.in_type.min]


def table_from_function(fn: Callable[[np.ndarray], np.ndarray], in_type: IntType,
                        in_scale: float, out_type: IntType, out_scale: float,
                        rounding: str = "ROUND", *, where: str = "table") -> np.ndarray:
    """The table of ``Quant_out(fn(x * in_scale))`` over every value ``x`` of ``in_type``.

    Evaluated in float64: ``fn`` gets ``x * in_scale``, the result is divided by
    ``out_scale``, rounded with the Brevitas ``rounding`` mode (``ROUND`` is half to even)
    and clamped to ``out_type`` like an integer quantizer. Checked: every value finite,
    scales positive.
    """
    if rounding not in ROUNDING:
        raise SpecError(f"rounding mode {rounding!r} is not supported", where=where,
                        hint=f"use one of {', '.join(ROUNDING)}")
    for what, scale in (("input", in_scale), ("output", out_scale)):
        if not (np.isfinite(scale) and scale > 0):
            raise SpecError(f"the {what} scale must be positive and finite, not {scale!r}",
                            where=where)
    x = np.arange(in_type.min, in_type.max + 1, dtype=np.int64)
    with np.errstate(all="ignore"):  # a non-finite value is reported below
        y = np.asarray(fn(x.astype(np.float64) * float(in_scale)), dtype=np.float64)
    if y.shape != x.shape:
        raise SpecError(f"the function gave shape {y.shape} for {x.shape} inputs", where=where,
                        hint="use an elementwise function")
    if not np.all(np.isfinite(y)):
        bad = int(x[~np.isfinite(y)][0])
        raise SpecError(f"the function is not finite at input {bad} "
                        f"(x = {bad * in_scale!r})", where=where)
    levels = ROUNDING[rounding](y / float(out_scale))
    return np.clip(levels, out_type.min, out_type.max).astype(np.int64)


# ---- hardware ---------------------------------------------------------------------


class Component(wiring.Component):
    """Stall-all pipeline: accept + table read (S1) -> output register.

    The table's read ports and both registers advance only when the output register
    can take a value (``~o.valid | o.ready``). One word per cycle.
    """

    def __init__(self, spec: Spec):
        self.spec = spec
        super().__init__({
            "i": In(lane_stream(spec.in_type, spec.pe)),
            "o": Out(lane_stream(spec.out_type, spec.pe)),
        })

    def elaborate(self, platform):
        s = self.spec
        m = Module()
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]

        # addressed by the lane's raw bits: entry of value v sits at v's encoding
        raw_order = s.in_type.decode(np.arange(1 << s.in_type.bits)) - s.in_type.min
        init = s.out_type.encode(s.table[raw_order]).tolist()
        y = Signal(lane_layout(s.out_type, s.pe))
        for p in range(s.pe):
            port = rom_read_port(m, f"table_{p}", unsigned(s.out_type.bits), init)
            m.d.comb += [port.addr.eq(Value.cast(self.i.payload[p]).as_unsigned()),
                         port.en.eq(advance),
                         y[p].eq(port.data)]

        v1 = Signal()
        with m.If(advance):
            m.d.sync += [v1.eq(self.i.valid), self.o.valid.eq(v1)]
            with m.If(v1):
                m.d.sync += self.o.payload.eq(y)
        return m


def fold_options(spec: Spec) -> list[dict]:
    return [{"pe": pe} for pe in divisors(spec.channels)]


def estimate(spec: Spec, family: str) -> Cost:
    s = spec
    lut, bram = memory_cost(s.out_type.bits, len(s.table), family)
    lut, bram = lut * s.pe, bram * s.pe  # one copy per read port
    ff = s.pe * 2 * s.out_type.bits + 2
    return Cost(cycles=s.cycles(), lut=int(lut + 4), ff=int(ff), bram18=bram, dsp=0)
