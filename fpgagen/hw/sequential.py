"""Multi-cycle arithmetic and the row-bank ring shared by the row-buffered node kinds.

- :class:`ConstantDivider`: ``floor(N / d)`` for a constant numerator ``N`` and a
  variable divisor, restoring division, ``steps`` quotient bits per cycle;
- :class:`Isqrt`: ``floor(sqrt(v))`` exactly, digit by digit, ``steps`` root bits per
  cycle;
- :class:`BankRing`: per-bank state registers for a buffer split into banks that
  pipeline stages take in turn (softmax, layernorm).

Both arithmetic units take ``start`` for one cycle while idle (``busy`` low) with their
operand, and raise ``done`` for exactly one cycle, ``1 + ceil(bits / steps)`` cycles
later, with the result held in ``result`` until the next ``start``.
"""

from __future__ import annotations

import math

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


def padded_bits(bits: int, steps: int) -> int:
    """``bits`` rounded up to a whole number of cycles of ``steps`` bits."""
    return max(1, math.ceil(bits / steps)) * steps


def unit_cycles(bits: int, steps: int) -> int:
    """Cycles from ``start`` to ``done`` of a unit producing ``bits`` result bits."""
    return 1 + padded_bits(bits, steps) // steps


class ConstantDivider(wiring.Component):
    """``result = floor(numerator / divisor)``; the caller guarantees the quotient fits
    ``quotient_bits`` bits (then ``numerator >> quotient_bits < divisor``) and
    ``divisor > 0``."""

    def __init__(self, numerator: int, divisor_bits: int, quotient_bits: int, steps: int = 1):
        self.numerator, self.divisor_bits = numerator, divisor_bits
        self.steps = max(1, min(steps, quotient_bits))
        self.qbits = padded_bits(quotient_bits, self.steps)
        super().__init__({
            "start": In(1), "divisor": In(divisor_bits),
            "busy": Out(1), "done": Out(1), "result": Out(self.qbits),
        })

    def elaborate(self, platform):
        m = Module()
        qbits, dbits = self.qbits, self.divisor_bits
        divisor = Signal(dbits)
        rem = Signal(dbits + 1)
        # numerator bits still to bring down (top first); quotient bits enter at the bottom
        shifter = Signal(qbits)
        left = Signal(range(qbits // self.steps + 1))
        m.d.sync += self.done.eq(0)
        with m.If(self.start & ~self.busy):
            m.d.sync += [divisor.eq(self.divisor), self.busy.eq(1),
                         rem.eq(self.numerator >> qbits),
                         shifter.eq(self.numerator & ((1 << qbits) - 1)),
                         left.eq(qbits // self.steps)]
        with m.Elif(self.busy):
            # every step's values are named signals: unnamed expressions used twice
            # per step would be re-emitted, and the Verilog would grow with steps**2
            r, s = rem, shifter
            for k in range(self.steps):
                trial, fits = Signal(dbits + 2, name=f"trial_{k}"), Signal(name=f"fits_{k}")
                r_next, s_next = Signal(dbits + 1, name=f"rem_{k}"), Signal(qbits, name=f"q_{k}")
                m.d.comb += [trial.eq(Cat(s[-1], r)), fits.eq(trial >= divisor),
                             r_next.eq(Mux(fits, trial - divisor, trial)),
                             s_next.eq(Cat(fits, s[:-1]))]
                r, s = r_next, s_next
            m.d.sync += [rem.eq(r), shifter.eq(s), left.eq(left - 1)]
            with m.If(left == 1):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        m.d.comb += self.result.eq(shifter)
        return m


class Isqrt(wiring.Component):
    """``result = floor(sqrt(value))`` for ``value`` of ``value_bits`` bits, exact."""

    def __init__(self, value_bits: int, steps: int = 1):
        root_bits = max(1, math.ceil(value_bits / 2))
        self.steps = max(1, min(steps, root_bits))
        self.rbits = padded_bits(root_bits, self.steps)
        super().__init__({
            "start": In(1), "value": In(value_bits),
            "busy": Out(1), "done": Out(1), "result": Out(self.rbits),
        })

    def elaborate(self, platform):
        m = Module()
        rbits = self.rbits
        vbits = 2 * rbits
        rem = Signal(rbits + 2)  # the remainder never exceeds 2 * root
        root = Signal(rbits)
        pending = Signal(vbits)  # value bits still to bring down, two at a time (top first)
        left = Signal(range(rbits // self.steps + 1))
        m.d.sync += self.done.eq(0)
        with m.If(self.start & ~self.busy):
            m.d.sync += [rem.eq(0), root.eq(0), pending.eq(self.value), self.busy.eq(1),
                         left.eq(rbits // self.steps)]
        with m.Elif(self.busy):
            r, q, p = rem, root, pending
            for k in range(self.steps):  # named per step, as in the divider
                brought = Signal(rbits + 4, name=f"brought_{k}")
                trial = Signal(rbits + 2, name=f"trial_{k}")  # 4 * root + 1
                fits = Signal(name=f"fits_{k}")
                r_next, q_next = Signal(rbits + 2, name=f"rem_{k}"), Signal(rbits, name=f"root_{k}")
                m.d.comb += [brought.eq(Cat(p[-2:], r)), trial.eq(Cat(Const(1, 2), q)),
                             fits.eq(brought >= trial),
                             r_next.eq(Mux(fits, brought - trial, brought)),
                             q_next.eq(Cat(fits, q))]
                r, q, p = r_next, q_next, Cat(Const(0, 2), p)[:vbits]
            m.d.sync += [rem.eq(r), root.eq(q), pending.eq(p), left.eq(left - 1)]
            with m.If(left == 1):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        m.d.comb += self.result.eq(root)
        return m



class BankRing:
    """State registers of ``banks`` buffer banks that stages visit in ring order.

    Every bank goes ``states[0] -> states[1] -> ... -> states[0]``; each transition is
    made by one stage only, and only from its own state, so two stages never move the
    same bank in the same cycle.
    """

    def __init__(self, m: Module, banks: int, states: tuple[str, ...], name: str = "bank"):
        self.m, self.banks = m, banks
        self.code = {s: k for k, s in enumerate(states)}
        self.regs = [Signal(range(len(states)), name=f"{name}_state_{b}") for b in range(banks)]

    def counter(self, name: str) -> Signal:
        return Signal(range(max(self.banks, 2)), name=name)

    def step(self, bank: Signal) -> Value:
        return Mux(bank == self.banks - 1, 0, bank + 1)

    def is_(self, bank: Value, state: str) -> Value:
        return _mux_chain(self.regs, bank) == self.code[state]

    def move(self, when: Value, bank: Value, state: str):
        for b, reg in enumerate(self.regs):
            with self.m.If(when & (bank == b)):
                self.m.d.sync += reg.eq(self.code[state])


def _mux_chain(values: list[Value], index: Value) -> Value:
    out = values[0]
    for k, v in enumerate(values[1:], 1):
        out = Mux(index == k, v, out)
    return out


def select(m: Module, values: list[Signal], index: Value, name: str) -> Signal:
    """``values[index]`` (signals of one shape) as a named signal: used in several lanes,
    an unnamed mux chain would be emitted once per use."""
    out = Signal(values[0].shape(), name=name)
    m.d.comb += out.eq(_mux_chain(values, index))
    return out


def per_bank(m: Module, regs: list[Signal], when: Value, bank: Value, value: Value):
    """``regs[bank] <= value`` on ``when`` (one register per bank)."""
    for b, reg in enumerate(regs):
        with m.If(when & (bank == b)):
            m.d.sync += reg.eq(value)


def memory_address(word: Value, bank: Value, words: int) -> Value:
    """Address of ``word`` in ``bank``: banks are ``2**ceil(log2 words)`` apart."""
    wbits = max(1, (words - 1).bit_length())
    return Cat(word.as_unsigned()[:wbits], bank.as_unsigned())


def bank_depth(words: int, banks: int) -> int:
    return banks << max(1, (words - 1).bit_length())

