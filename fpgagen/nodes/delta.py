"""Delta encoder: a stream of vectors (tokens, pixels) -> the sparse stream of their
differences, for the differential MVAU (``dmvau.py``).

Integer function, per frame of ``vectors`` vectors of ``channels`` elements, in stream
order::

    d[t] = x[t] - x[t-1]        (x[-1] = 0 at the start of every frame)

The node's golden model (``reference``) gives them per group of ``simd`` consecutive
channels as one integer, ``sum_k d[c*simd + k] * 2**(k * delta_type.bits)`` (signed
digits: ``group_values``, ``dense`` back), shape (frames, vectors * channels / simd);
with ``simd = 1`` that is the deltas themselves. On the wire they travel sparse, in groups of ``simd``
consecutive channels (the differential MVAU's SIMD step; ``DeltaFormat``): one word per
group with a nonzero delta when all its deltas fit ``narrow_bits`` signed bits, two
words when one is wider, all-zero groups not at all, and a word even for a token
whose deltas are all zero, so that the reader sees every token end. The IR tensor
between encoder and MVAU has the wire word as its type and ``vectors * channels /
simd`` (the groups it stands for, a word each when none is wide) as its element count;
the count of words actually sent depends on the data
(``encode_frames`` gives them; ``link_stats`` counts them).

Wire words (``DeltaFormat.word_bits`` bits, low to high):
``value`` (``simd`` fields of ``narrow_bits``, signed, channel ``index * simd + k`` in
field ``k``), ``index`` (the group, ``index_bits``), ``wide`` (1 bit), ``last`` (1 bit,
the token's last entry).

- a narrow entry (every delta of the group fits): ``value`` = the group's deltas,
  ``wide = 0``;
- a wide entry (the escape): first word ``index``, ``wide = 1``, ``last`` (``value``
  unused), then a second word holding the group's deltas at full width, field ``k`` at
  bit ``k * delta_type.bits`` (two's complement);
- a token's entries come in group order; ``last = 1`` on its final entry, or, for
  a token without any nonzero delta, on an end word (``value = 0``, ``index = 0``).

With ``simd = 1`` a group is one channel: one word per nonzero delta, two per wide one.

Hardware: an input word (``lanes`` elements, a multiple of ``simd``) is accepted (the
previous token's word at its place read from a register queue or a memory), its
deltas computed and written to an emitter register, which sends its nonzero groups one
per cycle. One entry is held back until the next is found, so that the token's final
entry can carry ``last``. Cycles per token: one per input word without a nonzero group,
one per nonzero group (two if wide), one to close the token if its last word has a
nonzero group; the worst case (every group nonzero and wide) is ``cycles()``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..dtypes import IntType, smallest_type
from ..errors import SpecError
from ..estimate import adder_luts, memory, mux_luts
from ..hw.primitives import REGISTER_WORDS, running_words
from .base import (
    Cost,
    check_divides,
    check_positive,
    divisors,
    lane_layout,
    lane_shape,
    lane_stream,
    lane_value,
)

KIND = "delta"
ADAPTS_LANES = True  # takes its producer's word width (passes/fold.py)
MAX_WORD_BITS = 64  # a wire word is one IR element (dtypes.IntType)


@dataclass(frozen=True)
class DeltaFormat:
    """The wire format of a delta stream (see the module docstring)."""

    channels: int  # elements per vector
    x_type: IntType  # the values whose differences travel
    narrow_bits: int  # signed bits of a delta in a one-word entry
    simd: int = 1  # channels per group (one entry)

    @property
    def delta_type(self) -> IntType:
        span = self.x_type.max - self.x_type.min
        return smallest_type(-span, span)

    @property
    def groups(self) -> int:
        return self.channels // self.simd

    @property
    def index_bits(self) -> int:
        return max(1, (self.groups - 1).bit_length())

    @property
    def narrow_range(self) -> tuple[int, int]:
        return -(1 << (self.narrow_bits - 1)), (1 << (self.narrow_bits - 1)) - 1

    @property
    def escapes(self) -> bool:
        """Whether some delta needs the two-word form."""
        lo, hi = self.narrow_range
        return self.delta_type.min < lo or self.delta_type.max > hi

    @property
    def value_bits(self) -> int:
        return self.simd * self.narrow_bits

    @property
    def word_bits(self) -> int:
        return max(self.value_bits + self.index_bits + 2, self.simd * self.delta_type.bits)

    @property
    def word_type(self) -> IntType:
        return IntType(self.word_bits, False)

    # field offsets
    @property
    def index_at(self) -> int:
        return self.value_bits

    @property
    def wide_at(self) -> int:
        return self.value_bits + self.index_bits

    @property
    def last_at(self) -> int:
        return self.wide_at + 1

    def check(self, where: str) -> None:
        nb, top = self.narrow_bits, self.delta_type.bits
        check_positive(where, self.simd, "simd")
        check_divides(where, self.simd, self.channels, "simd", "channels")
        if not isinstance(nb, int) or isinstance(nb, bool) or not 1 <= nb <= top:
            raise SpecError(f"narrow_bits must be an integer in [1, {top}] (the deltas of "
                            f"{self.x_type} are {self.delta_type}), not {nb!r}", where=where,
                            hint=f"{top} sends every delta in one word")
        if self.word_bits > MAX_WORD_BITS:
            raise SpecError(f"groups of simd={self.simd} need {self.word_bits}-bit wire words, "
                            f"more than {MAX_WORD_BITS}", where=where,
                            hint="largest group that fits: "
                                 f"{max(fitting_groups(self.channels, self.x_type, nb))}")

    def word(self, index: int, values, wide: bool, last: bool) -> int:
        """An entry's (first) word; ``values``: the group's deltas (ignored if wide)."""
        raw = 0 if wide else pack_fields(values, self.narrow_bits)
        return raw | index << self.index_at | int(wide) << self.wide_at | int(last) << self.last_at

    def wide_word(self, values) -> int:
        """A wide entry's second word: the group's deltas at full width."""
        return pack_fields(values, self.delta_type.bits)


def fitting_groups(channels: int, x_type: IntType, narrow_bits: int) -> list[int]:
    """The group sizes (divisors of ``channels``) whose wire words fit ``MAX_WORD_BITS``."""
    return [g for g in divisors(channels)
            if DeltaFormat(channels, x_type, narrow_bits, g).word_bits <= MAX_WORD_BITS]


def largest_group(channels: int, x_type: IntType, narrow_bits: int, simd: int) -> int:
    """The largest fitting group size up to ``simd``."""
    return max(g for g in fitting_groups(channels, x_type, narrow_bits) if g <= simd)


def pack_fields(values, bits: int) -> int:
    """Signed values in consecutive ``bits``-bit fields, the first lowest."""
    mask = (1 << bits) - 1
    return sum((int(v) & mask) << (k * bits) for k, v in enumerate(np.ravel(values)))


def default_narrow_bits(x_type: IntType) -> int:
    """Up to 5-bit deltas (inputs of up to 4 bits) all in one word; wider ones split at
    about half their width (at least 5 bits).

    On the digits CNN's 4-bit activations (bench/differential.py) a 5-bit field for
    every delta moved fewer bits than any narrower field with escapes: neighbouring
    pixels of small images differ by much of the range.
    """
    top = DeltaFormat(1, x_type, 1).delta_type.bits
    return top if top <= 5 else max(5, (top + 2) // 2)


def deltas(x: np.ndarray, vectors: int, channels: int) -> np.ndarray:
    """The golden deltas (frames, vectors * channels) of values x (frames, same)."""
    v = np.asarray(x, dtype=np.int64).reshape(x.shape[0], vectors, channels)
    prev = np.concatenate([np.zeros_like(v[:, :1]), v[:, :-1]], axis=1)
    return (v - prev).reshape(x.shape[0], -1)


def group_values(fmt: DeltaFormat, d: np.ndarray) -> np.ndarray:
    """Dense deltas (frames, n * channels) -> one integer per group (frames, n * groups):
    the group's deltas as signed digits of ``delta_type.bits`` bits, the first lowest."""
    d = np.asarray(d, dtype=np.int64)
    g = d.reshape(d.shape[0], -1, fmt.simd)
    scale = np.int64(1) << (np.arange(fmt.simd, dtype=np.int64) * fmt.delta_type.bits)
    return (g * scale).sum(axis=2)


def dense(fmt: DeltaFormat, values: np.ndarray) -> np.ndarray:
    """``group_values`` back: one integer per group -> the dense deltas."""
    bits = fmt.delta_type.bits
    rest = np.asarray(values, dtype=np.int64)
    half, digits = np.int64(1) << (bits - 1), []
    for _ in range(fmt.simd):
        digit = ((rest + half) & ((half << 1) - 1)) - half  # the low signed digit
        digits.append(digit)
        rest = (rest - digit) >> bits
    return np.stack(digits, axis=-1).reshape(rest.shape[0], -1)


def encode_token(fmt: DeltaFormat, d: np.ndarray) -> list[int]:
    """The wire words of one token's deltas (``channels`` values)."""
    lo, hi = fmt.narrow_range
    groups = np.asarray(d, dtype=np.int64).reshape(fmt.groups, fmt.simd)
    idx = np.flatnonzero(groups.any(axis=1))
    if idx.size == 0:
        return [fmt.word(0, [0], wide=False, last=True)]
    words = []
    for k, g in enumerate(idx.tolist()):
        values, last = groups[g], k == idx.size - 1
        if ((lo <= values) & (values <= hi)).all():
            words.append(fmt.word(g, values, wide=False, last=last))
        else:
            words += [fmt.word(g, values, wide=True, last=last), fmt.wide_word(values)]
    return words


def encode_frames(fmt: DeltaFormat, d: np.ndarray, vectors: int) -> list[list[int]]:
    """Wire words per frame of the deltas d (frames, vectors * channels)."""
    tokens = np.asarray(d, dtype=np.int64).reshape(d.shape[0], vectors, fmt.channels)
    return [[w for tok in frame for w in encode_token(fmt, tok)] for frame in tokens]


def link_stats(fmt: DeltaFormat, d: np.ndarray, vectors: int) -> dict:
    """Counts over deltas d (frames, vectors * channels): per delta (``zero``,
    ``narrow``, ``wide``: whether it fits ``narrow_bits``), per group (``group_zero``,
    ``group_narrow``, ``group_wide``: how it travels), and per frame and token arrays
    (``nonzero_groups``, ``wide_groups``: frames x vectors; ``words``, ``bits``)."""
    tokens = np.asarray(d, dtype=np.int64).reshape(d.shape[0], vectors, fmt.groups, fmt.simd)
    lo, hi = fmt.narrow_range
    nonzero = tokens != 0
    wide = nonzero & ((tokens < lo) | (tokens > hi))
    g_nonzero, g_wide = nonzero.any(axis=3), wide.any(axis=3)
    nnz, n_wide = g_nonzero.sum(axis=2), g_wide.sum(axis=2)  # (frames, vectors)
    words = nnz + n_wide + (nnz == 0)
    n_wide_deltas = int(wide.sum())
    return {"deltas": tokens.size, "zero": int((~nonzero).sum()), "wide": n_wide_deltas,
            "narrow": int(nonzero.sum()) - n_wide_deltas,
            "groups": g_nonzero.size, "group_zero": int((~g_nonzero).sum()),
            "group_wide": int(n_wide.sum()), "group_narrow": int(nnz.sum() - n_wide.sum()),
            "nonzero_groups": nnz, "wide_groups": n_wide,
            "words": words.sum(axis=1), "bits": words.sum(axis=1) * fmt.word_bits}


@dataclass(frozen=True)
class Spec:
    name: str
    channels: int  # elements per vector
    x_type: IntType  # input element type
    narrow_bits: int
    vectors: int = 1  # vectors per frame
    lanes: int = 1  # input elements per word (a multiple of simd)
    simd: int = 1  # channels per group (the differential MVAU's SIMD)

    def __post_init__(self):
        n = self.name
        for what in ("channels", "vectors", "lanes", "simd"):
            check_positive(n, getattr(self, what), what)
        check_divides(n, self.lanes, self.channels, "lanes", "channels")
        self.fmt.check(n)
        check_divides(n, self.simd, self.lanes, "simd", "lanes")

    @property
    def fmt(self) -> DeltaFormat:
        return DeltaFormat(self.channels, self.x_type, self.narrow_bits, self.simd)

    # ---- stream view ---------------------------------------------------------
    @property
    def in_type(self) -> IntType:
        return self.x_type

    @property
    def out_type(self) -> IntType:
        return self.fmt.word_type

    @property
    def in_elems(self) -> int:
        return self.vectors * self.channels

    @property
    def out_elems(self) -> int:
        """The groups the stream stands for (its words depend on the data)."""
        return self.vectors * self.fmt.groups

    @property
    def in_lanes(self) -> int:
        return self.lanes

    @property
    def out_lanes(self) -> int:
        return 1

    @property
    def sf(self) -> int:
        return self.channels // self.lanes

    def cycles(self) -> int:
        """Worst case: every group nonzero (and wide, if any can be), then the close."""
        return self.vectors * (self.fmt.groups * (1 + self.fmt.escapes) + 1)

    def cycles_for(self, d: np.ndarray) -> np.ndarray:
        """Cycles per frame this encoder takes for deltas d (frames, vectors * channels)."""
        per = self.lanes // self.simd  # groups per input word
        nonzero = (np.asarray(d).reshape(d.shape[0], self.vectors, self.sf, per, self.simd)
                   != 0).any(axis=4).sum(axis=3)
        stats = link_stats(self.fmt, d, self.vectors)
        per_word = np.maximum(nonzero, 1).sum(axis=2)
        close = nonzero[:, :, -1] > 0  # the held-back entry goes out after the last word
        return (per_word + stats["wide_groups"] + close).sum(axis=1)


def reference(spec: Spec, x: np.ndarray) -> np.ndarray:
    return group_values(spec.fmt, deltas(x, spec.vectors, spec.channels))


# ---- hardware ---------------------------------------------------------------------


class Component(wiring.Component):
    """Input word (A) -> deltas (B) -> emitter (E, one entry per cycle) -> output reg.

    The emitter and the held-back entry advance only when the output register can
    take a word (``~o.valid | o.ready``); B moves into E when E is empty or done, and a
    new input word enters B when B is empty or moving.
    """

    def __init__(self, spec: Spec):
        self.spec = spec
        super().__init__({
            "i": In(lane_stream(spec.x_type, spec.lanes)),
            "o": Out(lane_stream(spec.out_type, 1)),
        })

    def elaborate(self, platform):
        s, f = self.spec, self.spec.fmt
        m = Module()
        lanes, sf = s.lanes, s.sf
        x_layout = lane_layout(s.x_type, lanes)
        d_shape = lane_shape(f.delta_type)

        adv = Signal()  # the output register can take a word
        m.d.comb += adv.eq(~self.o.valid | self.o.ready)

        # ---- A: accept, read the previous token's word at this place ----------
        b_valid, b_fresh, b_last = Signal(), Signal(), Signal()
        b_x = Signal(x_layout)
        word = Signal(range(max(sf, 2)))
        token = Signal(range(max(s.vectors, 2)))
        b_word = Signal.like(word)
        e_take = Signal()  # E is free for B's word
        b_move = Signal()
        accept = Signal()
        m.d.comb += [
            b_move.eq(b_valid & e_take),
            self.i.ready.eq(~b_valid | b_move),
            accept.eq(self.i.valid & self.i.ready),
        ]
        with m.If(accept):
            m.d.sync += [b_x.eq(self.i.payload), b_word.eq(word), b_fresh.eq(token == 0),
                         b_last.eq(word == sf - 1), b_valid.eq(1)]
            m.d.sync += word.eq(Mux(word == sf - 1, 0, word + 1))
            with m.If(word == sf - 1):
                m.d.sync += token.eq(Mux(token == s.vectors - 1, 0, token + 1))
        with m.Elif(b_move):
            m.d.sync += b_valid.eq(0)
        prev = running_words(m, x_layout, sf, word, accept, b_word, b_move, b_x)

        # ---- B: deltas (x[-1] = 0 for a frame's first token) --------------------
        b_d = Signal(data.ArrayLayout(d_shape, lanes))
        for lane in range(lanes):
            xv = lane_value(b_x[lane], s.x_type)
            pv = lane_value(prev[lane], s.x_type)
            m.d.comb += b_d[lane].eq(Mux(b_fresh, xv, xv - pv))

        # ---- E: send the nonzero groups, one entry held back ----------------------
        simd, per = s.simd, lanes // s.simd  # channels per group, groups per word
        g_layout = data.ArrayLayout(d_shape, simd)
        e_valid, e_last = Signal(), Signal()
        e_d = Signal(data.ArrayLayout(d_shape, lanes))
        e_mask = Signal(per)  # the groups still to send
        e_base = Signal(f.index_bits)
        p_valid = Signal()  # the held-back entry
        p_index = Signal(f.index_bits)
        p_d = Signal(g_layout)
        s_valid = Signal()  # the second word of a wide entry, to send next
        s_d = Signal(g_layout)

        pick = Signal(range(max(per, 2)))
        for grp in reversed(range(per)):  # the lowest nonzero group wins
            with m.If(e_mask[grp]):
                m.d.comb += pick.eq(grp)
        one_left = Signal()
        m.d.comb += one_left.eq((e_mask & (e_mask - 1)) == 0)
        picked = Signal(g_layout)
        for grp in range(per):
            with m.If(pick == grp):
                m.d.comb += picked.eq(Cat(*(e_d[grp * simd + k] for k in range(simd))))

        lo, hi = f.narrow_range
        p_wide = Signal()
        m.d.comb += p_wide.eq(Cat(*((p_d[k] < lo) | (p_d[k] > hi) for k in range(simd))).any())
        out_valid = Signal()
        out_word = Signal(f.word_bits)
        e_done = Signal()
        p_narrow = Cat(*(p_d[k][:f.narrow_bits] for k in range(simd)))

        def send_p(last):
            m.d.comb += [out_valid.eq(1),
                         out_word.eq(Cat(Mux(p_wide, 0, p_narrow), p_index, p_wide, last))]
            m.d.sync += [s_valid.eq(p_wide), s_d.eq(p_d)]

        with m.If(adv):
            with m.If(s_valid):
                m.d.comb += [out_valid.eq(1), out_word.eq(s_d.as_value())]
                m.d.sync += s_valid.eq(0)
            with m.Elif(e_valid & (e_mask != 0)):
                with m.If(p_valid):
                    send_p(0)
                m.d.sync += [p_valid.eq(1), p_index.eq(e_base + pick), p_d.eq(picked),
                             e_mask.eq(e_mask & ~(Const(1, per) << pick)[:per])]
                m.d.comb += e_done.eq(one_left & ~e_last)
            with m.Elif(e_valid):
                with m.If(e_last):
                    with m.If(p_valid):
                        send_p(1)
                    with m.Else():
                        m.d.comb += [out_valid.eq(1),
                                     out_word.eq(f.word(0, [0], False, True))]
                    m.d.sync += p_valid.eq(0)
                m.d.comb += e_done.eq(1)
        m.d.comb += e_take.eq(~e_valid | e_done)
        with m.If(e_take):
            m.d.sync += e_valid.eq(b_valid)
            with m.If(b_valid):
                m.d.sync += [e_d.eq(b_d), e_base.eq(b_word * per), e_last.eq(b_last),
                             e_mask.eq(Cat(*(Cat(*(b_d[grp * simd + k] != 0
                                                   for k in range(simd))).any()
                                             for grp in range(per))))]

        with m.If(adv):
            m.d.sync += self.o.valid.eq(out_valid)
            with m.If(out_valid):
                m.d.sync += self.o.payload.eq(out_word)
        return m


def fold_options(spec: Spec) -> list[dict]:
    """Groups of any size; input words of whole groups. The group size must be its
    readers' SIMD (``passes/differential.match_groups``)."""
    return [{"simd": simd, "lanes": lanes}
            for simd in fitting_groups(spec.channels, spec.x_type, spec.narrow_bits)
            for lanes in divisors(spec.channels) if lanes % simd == 0]


def fill_words(spec: Spec) -> int:
    """A held-back entry may wait for its token's end: a whole vector, plus the
    B, E and output registers."""
    return spec.sf + 3


def estimate(spec: Spec, family: str) -> Cost:
    s, f = spec, spec.fmt
    xbits, dbits = s.x_type.bits, f.delta_type.bits
    per = s.lanes // s.simd  # groups per input word
    lut = s.lanes * (adder_luts(dbits, family) + 1)  # subtract, nonzero test
    lut += mux_luts(s.simd * dbits, per, family) + 2 * per  # pick a group, priority
    lut += 2 * f.word_bits + adder_luts(f.index_bits, family) + 20  # word, index, control
    ff = (s.lanes * (xbits + dbits) + per + 2 * s.simd * dbits + f.index_bits * 2
          + f.word_bits + 8
          + 2 * max(1, s.sf.bit_length()) + max(1, s.vectors.bit_length()))
    bram = 0
    if s.sf <= REGISTER_WORDS:
        ff += s.sf * s.lanes * xbits
    else:
        ml, mf, bram = memory(s.lanes * xbits, s.sf, family)
        lut, ff = lut + ml, ff + mf
    return Cost(cycles=s.cycles(), lut=int(lut), ff=int(ff), bram18=bram, dsp=0)

