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

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Module, Signal, Value, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..dtypes import IntType
from ..errors import SpecError
from ..estimate import lut_inputs, memory_cost, memory_placement
from ..hw.primitives import rom_read_port
from .base import (
    Cost,
    SameShapeStream,
    check_divides,
    check_positive,
    divisors,
    lane_layout,
    lane_stream,
    memo_on_array,
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
        t = t.astype(np.int64, copy=False)  # the same array: estimates memoise on it
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


# ---- estimate ---------------------------------------------------------------------
# A table in logic is a ROM of known contents: Yosys turns it into a multiplexer tree
# over the address (memory_map: the address MSB at the root, constant words at the
# leaves) that constant folding and ABC's structural hashing reduce to a shared
# decision diagram per lane, and ABC maps each output bit (column) from there. A
# column that is constant or an address bit costs no LUT; identical (or complementary)
# columns are built once. Calibrated against Yosys on 45 tables (9 functions x 5
# widths, 4..8-bit inputs) and the digits ViT's GELU table: median error 7% on xc7
# and ecp5; GELU at 64 lanes 898 LUTs on xc7 as Yosys (ecp5 +8%).

CONTROL_LUTS = 2  # the stall-all handshake (measured on xc7 and ecp5)


def _columns(spec: Spec) -> list[np.ndarray]:
    """The table's distinct non-trivial output bits, each as a 0/1 array indexed by the
    raw address (what the hardware reads): constants and address bits (or their
    complements) dropped, a column equal to another or its complement kept once."""
    n = spec.in_type.bits
    raw_order = spec.in_type.decode(np.arange(1 << n)) - spec.in_type.min
    words = spec.out_type.encode(spec.table[raw_order]).astype(np.int64)
    address = np.arange(1 << n)
    trivial = {tuple((address >> i) & 1) for i in range(n)}
    seen, out = set(), []
    for b in range(spec.out_type.bits):
        col = ((words >> b) & 1).astype(np.uint8)
        key = tuple(col) if col[0] == 0 else tuple(1 - col)
        if col.min() != col.max() and key not in trivial and key not in seen:
            seen.add(key)
            out.append(col)
    return out


def _support(col: np.ndarray, bits: int) -> list[int]:
    address = np.arange(len(col))
    return [i for i in range(bits) if not np.array_equal(col, col[address ^ (1 << i)])]


def _wide_lut_luts(col: np.ndarray, bits: int) -> float:
    """LUT6 families: ABC maps a column of up to 8 inputs as one LUT7/LUT8 (two or
    four LUT6 joined by the free MUXF7/MUXF8), split on two of its inputs that ABC
    picks; a cofactor on those that is constant costs no LUT. Counted as the mean over
    the choices of split inputs (ABC's pick varies from table to table)."""
    support = _support(col, bits)
    if len(support) <= 6:
        return 1.0
    address = np.arange(len(col))
    counts = []
    for split in itertools.combinations(support, len(support) - 6):
        key = sum(((address >> v) & 1) << j for j, v in enumerate(split))
        counts.append(sum(int(np.ptp(col[key == k]) > 0) for k in range(1 << len(split))))
    return sum(counts) / len(counts)


def _decision_diagram(columns: list[np.ndarray]) -> tuple[list[tuple], list]:
    """The shared reduced decision diagram of ``columns`` (address MSB at the root,
    complements shared). Nodes ``(var, lo, hi)`` in children-first order; a reference
    is ``None`` (a constant), ``("x", var)`` (an address bit) or ``("n", index)``."""
    nodes: list[tuple] = []
    memo: dict[tuple, object] = {}

    def ref(tt: np.ndarray):
        if tt.min() == tt.max():
            return None
        key = (len(tt), (tt if tt[0] == 0 else 1 - tt).tobytes())
        if key not in memo:
            var = len(tt).bit_length() - 2
            while np.array_equal(tt[: 1 << var], tt[1 << var: 2 << var]):
                var -= 1  # the diagram skips address bits the function ignores
            lo, hi = ref(tt[: 1 << var]), ref(tt[1 << var: 2 << var])
            if lo is None and hi is None:
                memo[key] = ("x", var)
            else:
                nodes.append((var, lo, hi))
                memo[key] = ("n", len(nodes) - 1)
        return memo[key]

    roots = [ref(c) for c in columns]
    return nodes, roots


def _cover_luts(nodes: list[tuple], roots: list, k: int, max_cuts: int = 12) -> int:
    """LUTs of an area-oriented cover of the decision diagram by k-input LUTs: each
    node's cuts (up to ``max_cuts``, by area flow), then the best cut from each root."""
    fanout = [0] * len(nodes)
    for r in [c for _, lo, hi in nodes for c in (lo, hi)] + roots:
        if r is not None and r[0] == "n":
            fanout[r[1]] += 1
    cuts: list[list[frozenset]] = []
    flow: list[float] = []

    def leaf_cuts(r) -> list[frozenset]:
        if r is None:
            return [frozenset()]
        return [frozenset([r])] if r[0] == "x" else cuts[r[1]]

    for var, lo, hi in nodes:
        found: dict[frozenset, float] = {}
        for a in leaf_cuts(lo):
            for b in leaf_cuts(hi):
                cut = a | b | {("x", var)}
                if len(cut) <= k and cut not in found:
                    found[cut] = 1 + sum(flow[leaf[1]] / fanout[leaf[1]]
                                         for leaf in cut if leaf[0] == "n")
        best = sorted(found.items(), key=lambda c: (c[1], len(c[0])))[:max_cuts]
        flow.append(best[0][1])
        cuts.append([frozenset([("n", len(cuts))])] + [c for c, _ in best])
    used, stack = set(), [r[1] for r in roots if r is not None and r[0] == "n"]
    while stack:
        i = stack.pop()
        if i not in used:
            used.add(i)
            stack += [leaf[1] for leaf in cuts[i][1] if leaf[0] == "n"]
    return len(used)


def lane_luts(spec: Spec, family: str) -> int:
    """LUTs of one lane's table in logic (memoised per table array and types)."""
    def compute() -> int:
        columns, bits = _columns(spec), spec.in_type.bits
        if lut_inputs(family) >= 6:
            return math.ceil(sum(_wide_lut_luts(c, bits) for c in columns))
        # LUT4 families (abc -lut 4, no wide multiplexers): ABC decomposes the diagram
        return _cover_luts(*_decision_diagram(columns), lut_inputs(family))
    return memo_on_array(spec.table, ("lane_luts", spec.in_type, spec.out_type,
                                      lut_inputs(family)), compute)


def rom_cost(values: np.ndarray, family: str) -> tuple[int, float]:
    """(luts, bram18) of a ROM of these unsigned contents with one read port (another
    kind's lookup, e.g. the softmax's exponent tables): placed as Yosys places a ROM,
    in logic costed per output bit from the contents as a table's lane (up to
    ``MAX_IN_BITS`` address bits; the address beyond the contents repeats the last
    entry, as a clipped lookup reads it)."""
    values = np.asarray(values, dtype=np.int64)
    bits = max(1, int(values.max()).bit_length())
    addr = max(1, (len(values) - 1).bit_length())
    where, _ = memory_placement(bits, len(values), family, writable=False)
    if where == "block" or addr > MAX_IN_BITS:
        return memory_cost(bits, len(values), family, writable=False)

    def compute() -> int:
        padded = np.concatenate([values, np.full((1 << addr) - len(values), values[-1])])
        lane = Spec("rom", 1, IntType(addr, False), IntType(bits, False), padded)
        return lane_luts(lane, family)
    return memo_on_array(values, ("rom_luts", lut_inputs(family)), compute), 0


def estimate(spec: Spec, family: str) -> Cost:
    s = spec
    live = memo_on_array(s.table, ("live_bits", s.in_type, s.out_type), lambda: sum(
        int(np.ptp((s.out_type.encode(s.table) >> b) & 1) > 0) for b in range(s.out_type.bits)))
    ff = s.pe * 2 * live + 2  # the read register and the output register
    where, _ = memory_placement(s.out_type.bits, len(s.table), family, writable=False)
    if where == "block":  # a ROM per lane in block RAM
        lut, bram = memory_cost(s.out_type.bits, len(s.table), family, writable=False)
        return Cost(cycles=s.cycles(), lut=int(lut * s.pe + CONTROL_LUTS), ff=int(ff),
                    bram18=bram * s.pe, dsp=0)
    return Cost(cycles=s.cycles(), lut=s.pe * lane_luts(s, family) + CONTROL_LUTS,
                ff=int(ff), bram18=0, dsp=0)
