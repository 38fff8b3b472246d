"""FIFO: an elastic buffer of ``depth`` stream words between two nodes.

Integer function: the identity. Its purpose is timing and elasticity: ``i.ready``
comes from the fill level register only, never combinationally from ``o.ready``, so
a FIFO cuts the ready path of the pipeline it sits in, and it absorbs rate
differences up to ``depth`` words.

Shallow FIFOs (depth <= ``LUTRAM_MAX_DEPTH``) use an asynchronous-read memory
(distributed RAM), at full rate from depth 2. Deeper ones use a synchronous-read
memory plus an output register, which maps to block RAM; those run at full rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..dtypes import IntType
from ..errors import SpecError
from ..estimate import LUTRAM_MAX_DEPTH, adder_luts, control_luts, memory
from .base import Cost, check_divides, check_positive, divisors, lane_stream

KIND = "fifo"


@dataclass(frozen=True)
class Spec:
    name: str
    elems: int  # elements per frame
    dtype: IntType
    lanes: int
    depth: int  # stream words held

    def __post_init__(self):
        n = self.name
        for what in ("elems", "lanes", "depth"):
            check_positive(n, getattr(self, what), what)
        check_divides(n, self.lanes, self.elems, "lanes", "elems")
        if self.depth < 2:
            raise SpecError(f"FIFO depth must be at least 2, not {self.depth}", where=n,
                            hint="a depth-1 FIFO halves the throughput; use 2 or more")

    # ---- stream view ---------------------------------------------------------
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

    @property
    def width(self) -> int:
        return self.lanes * self.dtype.bits

    @property
    def distributed(self) -> bool:
        return self.depth <= LUTRAM_MAX_DEPTH

    def cycles(self) -> int:
        return self.elems // self.lanes


def reference(spec: Spec, x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.int64).reshape(-1, spec.elems)


# ---- hardware ---------------------------------------------------------------------


class Component(wiring.Component):
    def __init__(self, spec: Spec):
        self.spec = spec
        super().__init__({
            "i": In(lane_stream(spec.dtype, spec.lanes)),
            "o": Out(lane_stream(spec.dtype, spec.lanes)),
        })

    def elaborate(self, platform):
        s = self.spec
        m = Module()
        # Both keep w_rdy = (level != depth) from registers only.
        fifo_cls = SyncFIFO if s.distributed else SyncFIFOBuffered
        m.submodules.fifo = fifo = fifo_cls(width=s.width, depth=s.depth)
        m.d.comb += [
            fifo.w_data.eq(self.i.payload),
            fifo.w_en.eq(self.i.valid),
            self.i.ready.eq(fifo.w_rdy),
            self.o.payload.eq(fifo.r_data),
            self.o.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.o.ready),
        ]
        return m


def fold_options(spec: Spec) -> list[dict]:
    return [{"lanes": lanes} for lanes in divisors(spec.elems)]


def estimate(spec: Spec, family: str) -> Cost:
    s = spec
    ptr = max(1, (s.depth - 1).bit_length())
    if s.distributed:  # asynchronous read: no read register
        mem_lut, mem_ff, bram = memory(s.width, s.depth, family, sync_read=False,
                                       block_ram=False)
        ff = 3 * ptr + 1 + mem_ff
    else:  # synchronous read of depth - 1 words plus the output register
        mem_lut, mem_ff, bram = memory(s.width, s.depth - 1, family)
        ff = 3 * ptr + 2 + s.width + mem_ff
    lut = mem_lut + 3 * adder_luts(ptr, family) + control_luts(4, family)
    return Cost(cycles=s.cycles(), lut=int(lut), ff=int(ff), bram18=bram, dsp=0)
