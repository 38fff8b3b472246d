"""Sliding window: the windows of a convolution or pooling, one after another.

Integer function: the input frame is an image ``(ifm_h, ifm_w, channels)`` in NHWC
order, padded by ``pad_top/left/bottom/right``. For each output pixel ``(oy, ox)`` in
raster order the output holds its ``k_h x k_w`` window in ``(kh, kw, c)`` order::

    out[oy, ox, kh, kw, c] = img[oy*stride_h + kh - pad_top, ox*stride_w + kw - pad_left, c]

with ``pad_value`` (0 unless set; ``dtype.min`` pads a max pool) outside the image.
That is the column order of an MVAU weight matrix ``(OC, KH*KW*IC)``. Dilation 1;
padding smaller than the kernel.

Folding: ``simd`` elements per output word. Up to ``channels`` (a divisor of it) they
are channels of one pixel, and input words are as wide. Beyond, an output word holds
``taps = simd / channels`` whole pixels of the window: a run of kernel columns of one
kernel row (``taps`` divides ``k_w``) or whole kernel rows (``taps`` is a multiple of
``k_w`` dividing ``k_h * k_w``), up to a whole window per word; input words are then
one pixel each (``in_lanes = channels``). The reader reads the ``taps`` pixels through
as many read ports of the line buffer (one copy of the buffer each in block RAM).

Hardware: a circular buffer of ``buffer_depth`` input words in a ``Memory``. The
writer stores input words in arrival order; the reader walks the windows with
counters and reads each word at ``window_base + offset``. One signed register,
``lead``, is the number of words written beyond the current window's first (virtual)
word: a word is readable when ``offset < lead``, and the writer may go on while
``lead < buffer_depth``, so it never overwrites a word the current or a later window
still needs (windows' first real words never move backwards). Padding words are
constants that need no input, but they wait for the first input word of their frame,
so that every output frame follows its input frame (no word of the next frame leaves
early). Both sides run at one word per cycle.

The depth is the larger of the window's span (``(k_h - 1)`` rows plus ``k_w`` pixels:
less and the reader would deadlock) and what lets the writer run one window advance
(next column, row or frame) ahead of the reader, so that the reader never waits for
input in steady state: a frame takes ``max(input words, output words)`` cycles. It is
rounded up to a power of two so that addresses wrap for free (block RAMs come in
power-of-two depths anyway). For a 3x3 stride-1 window that is about two rows with
"same" padding and about four rows without (the next frame's first rows arrive while
the last windows are read; with the span alone, a 12x12 image loses 14 cycles a
frame), comparable to FINN's ``k_h + stride_h`` rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..dtypes import IntType
from ..errors import SpecError
from ..estimate import adder_luts, compare_luts, lut_inputs, memory
from .base import Cost, check_divides, check_positive, divisors, lane_stream

KIND = "sliding_window"
ADAPTS_LANES = True  # cheap to widen: folding matches its neighbours' words (fold.py)


def _check_non_negative(name: str, value, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SpecError(f"{what} must be a non-negative integer, not {value!r}", where=name)
    return value


@dataclass(frozen=True)
class Spec:
    name: str
    channels: int
    ifm_h: int
    ifm_w: int
    k_h: int
    k_w: int
    dtype: IntType
    stride_h: int = 1
    stride_w: int = 1
    pad_top: int = 0
    pad_left: int = 0
    pad_bottom: int = 0
    pad_right: int = 0
    simd: int = 1  # elements per output word: channels, or whole pixels (taps)
    pad_value: int = 0  # what padding positions hold (dtype.min makes a max pool's -inf)

    def __post_init__(self):
        n = self.name
        for what in ("channels", "ifm_h", "ifm_w", "k_h", "k_w", "stride_h", "stride_w",
                     "simd"):
            check_positive(n, getattr(self, what), what)
        for what in ("pad_top", "pad_left", "pad_bottom", "pad_right"):
            _check_non_negative(n, getattr(self, what), what)
        self._check_simd()
        for side, pad, k, axis in (("top", self.pad_top, self.k_h, "k_h"),
                                   ("bottom", self.pad_bottom, self.k_h, "k_h"),
                                   ("left", self.pad_left, self.k_w, "k_w"),
                                   ("right", self.pad_right, self.k_w, "k_w")):
            if pad >= k:
                raise SpecError(f"padding {side}={pad} is not smaller than the kernel "
                                f"({axis}={k})", where=n,
                                hint="padding of at most kernel - 1 per side is supported")
        padded_h = self.ifm_h + self.pad_top + self.pad_bottom
        padded_w = self.ifm_w + self.pad_left + self.pad_right
        if self.k_h > padded_h or self.k_w > padded_w:
            raise SpecError(f"kernel {self.k_h}x{self.k_w} is larger than the padded image "
                            f"{padded_h}x{padded_w}", where=n)
        if self.padded and not self.dtype.contains(self.pad_value):
            if self.dtype.bipolar:
                raise SpecError(f"padding with {self.pad_value} on a bipolar stream", where=n,
                                hint=f"{self.pad_value} is not a bipolar value; use a "
                                "convolution without padding, or pad a max pool with -1")
            raise SpecError(f"padding value {self.pad_value} does not fit {self.dtype}",
                            where=n)

    def _check_simd(self):
        if self.simd in _simd_choices(self.channels, self.k_h, self.k_w):
            return
        if self.simd <= self.channels:
            check_divides(self.name, self.simd, self.channels, "SIMD", "channels")
        shown = ", ".join(map(str, _simd_choices(self.channels, self.k_h, self.k_w)))
        raise SpecError(f"SIMD={self.simd} is neither a divisor of channels={self.channels} "
                        f"nor whole kernel columns or rows of pixels ({self.k_h}x{self.k_w} "
                        "kernel)", where=self.name, hint=f"choose SIMD from {shown}")

    # ---- folding -------------------------------------------------------------
    @property
    def taps(self) -> int:
        """Window pixels per output word (1 while ``simd`` is at most the channels)."""
        return max(1, self.simd // self.channels)

    @property
    def tap_cols(self) -> int:
        """Kernel columns an output word spans."""
        return min(self.taps, self.k_w)

    @property
    def tap_rows(self) -> int:
        """Kernel rows an output word spans."""
        return max(1, self.taps // self.k_w)

    @property
    def tap_offsets(self) -> list[tuple[int, int]]:
        """(row, column) of each of a word's pixels from its first, in window order."""
        return [(j // self.tap_cols, j % self.tap_cols) for j in range(self.taps)]

    # ---- geometry ------------------------------------------------------------
    @property
    def padded(self) -> bool:
        return any((self.pad_top, self.pad_left, self.pad_bottom, self.pad_right))

    @property
    def out_h(self) -> int:
        return (self.ifm_h + self.pad_top + self.pad_bottom - self.k_h) // self.stride_h + 1

    @property
    def out_w(self) -> int:
        return (self.ifm_w + self.pad_left + self.pad_right - self.k_w) // self.stride_w + 1

    @property
    def cf(self) -> int:
        """Input words per pixel (channel fold)."""
        return self.channels // self.in_lanes

    @property
    def span(self) -> int:
        """Words from a window's first (virtual) word to its last, inclusive."""
        return ((self.k_h - 1) * self.ifm_w + self.k_w) * self.cf

    @property
    def advances(self) -> dict[str, int]:
        """Words the window's first (virtual) word moves by: next column, row, frame.

        May be negative for a row with wide left and right padding (never below the
        previous window's first real word, see the module docstring).
        """
        w, cf = self.ifm_w, self.cf
        row_end = (self.out_w - 1) * self.stride_w
        moves = {"frame": ((self.ifm_h - (self.out_h - 1) * self.stride_h) * w - row_end) * cf}
        if self.out_h > 1:
            moves["row"] = (self.stride_h * w - row_end) * cf
        if self.out_w > 1:
            moves["column"] = self.stride_w * cf
        return moves

    @property
    def buffer_depth(self) -> int:
        """Line buffer words: see the module docstring. A power of two, at least 2."""
        ahead = max(self.advances.values()) + (self.k_h - 1) * (self.ifm_w - self.k_w) * self.cf
        # a frame that starts with padding waits for its first word: the writer must be
        # able to store it while the reader is still in the last window
        first_word = self.advances["frame"] + (self.pad_top * self.ifm_w + self.pad_left) * self.cf
        need = max(self.span, ahead + 2, first_word + 2)
        return 1 << (need - 1).bit_length()

    # ---- stream view ---------------------------------------------------------
    @property
    def in_type(self) -> IntType:
        return self.dtype

    @property
    def out_type(self) -> IntType:
        return self.dtype

    @property
    def in_elems(self) -> int:
        return self.ifm_h * self.ifm_w * self.channels

    @property
    def out_elems(self) -> int:
        return self.out_h * self.out_w * self.k_h * self.k_w * self.channels

    @property
    def in_lanes(self) -> int:
        return min(self.simd, self.channels)

    @property
    def out_lanes(self) -> int:
        return self.simd

    def cycles(self) -> int:
        return max(self.in_elems // self.in_lanes, self.out_elems // self.simd)


def _simd_choices(channels: int, k_h: int, k_w: int) -> list[int]:
    """Divisors of the channels, then whole pixels: columns of a kernel row, then rows."""
    taps = divisors(k_w)[1:] + [r * k_w for r in divisors(k_h)[1:]]
    return divisors(channels) + [t * channels for t in taps]


def reference(spec: Spec, x: np.ndarray) -> np.ndarray:
    s = spec
    frames = x.shape[0]
    img = np.asarray(x, dtype=np.int64).reshape(frames, s.ifm_h, s.ifm_w, s.channels)
    img = np.pad(img, ((0, 0), (s.pad_top, s.pad_bottom), (s.pad_left, s.pad_right), (0, 0)),
                 constant_values=s.pad_value)
    # windows[f, oy, ox, kh, kw, c] by strided indexing: rows oy*sh + kh, cols ox*sw + kw
    rows = (np.arange(s.out_h) * s.stride_h)[:, None] + np.arange(s.k_h)[None, :]
    cols = (np.arange(s.out_w) * s.stride_w)[:, None] + np.arange(s.k_w)[None, :]
    win = img[:, rows[:, None, :, None], cols[None, :, None, :], :]
    return win.reshape(frames, s.out_elems)


# ---- hardware ---------------------------------------------------------------------


def _counter(n: int) -> Signal:
    return Signal(range(max(n, 2)))


class Component(wiring.Component):
    """Writer (input -> buffer) and reader (issue -> memory read -> output register).

    The reader is a stall-all pipeline: its counters, the read port and the output
    register advance only when the output register can take a value. The writer is
    independent of the output: ``i.ready`` depends on the ``lead`` register only.
    """

    def __init__(self, spec: Spec):
        self.spec = spec
        super().__init__({
            "i": In(lane_stream(spec.dtype, spec.in_lanes)),
            "o": Out(lane_stream(spec.dtype, spec.simd)),
        })

    def elaborate(self, platform):
        s = self.spec
        m = Module()
        depth, cf, w = s.buffer_depth, s.cf, s.ifm_w
        abits = (depth - 1).bit_length()
        moves = s.advances
        first_lead = (s.pad_top * w + s.pad_left) * cf  # the first window starts above/left
        in_words = s.in_elems // s.in_lanes
        bound = in_words + 2 * depth + max(abs(v) for v in moves.values())
        cols, rows = s.tap_cols, s.tap_rows  # the kernel pixels one output word spans

        m.submodules.buffer = mem = Memory(shape=unsigned(s.in_lanes * s.dtype.bits),
                                           depth=depth, init=[])
        wport = mem.write_port()
        rports = [mem.read_port(domain="sync") for _ in range(s.taps)]

        lead = Signal(signed(bound.bit_length() + 1), init=first_lead)
        # words written into the frame the reader is in: its padding waits for one
        into_frame = Signal(signed(bound.bit_length() + 1))
        base = Signal(unsigned(abits), init=-first_lead % depth)  # window's first word
        wptr = Signal(unsigned(abits))

        # ---- writer --------------------------------------------------------------
        accept = Signal()
        m.d.comb += [
            self.i.ready.eq(lead < depth),
            accept.eq(self.i.valid & self.i.ready),
            wport.addr.eq(wptr), wport.data.eq(self.i.payload), wport.en.eq(accept),
        ]
        with m.If(accept):
            m.d.sync += wptr.eq(wptr + 1)

        # ---- reader: counters of the word to issue -------------------------------
        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)
        c, kw, kh = _counter(cf), _counter(s.k_w), _counter(s.k_h)
        ox, oy = _counter(s.out_w), _counter(s.out_h)
        offset = _counter(s.span)
        # image coordinates of the word (x, y) and of its window's corner (x0, y0)
        x_last = (s.out_w - 1) * s.stride_w - s.pad_left + s.k_w - 1
        y_last = (s.out_h - 1) * s.stride_h - s.pad_top + s.k_h - 1
        x = Signal(range(-s.pad_left, x_last + 1), init=-s.pad_left)
        y = Signal(range(-s.pad_top, y_last + 1), init=-s.pad_top)
        x0 = Signal(range(-s.pad_left, x_last + 1), init=-s.pad_left)
        y0 = Signal(range(-s.pad_top, y_last + 1), init=-s.pad_top)

        # per pixel of the word: padding, or readable (its offset within what is written)
        pads, readable = [], []
        for j, (dy, dx) in enumerate(s.tap_offsets):
            outside = []
            if s.pad_left:
                outside.append(x + dx < 0)
            if s.pad_right:
                outside.append(x + dx >= w)
            if s.pad_top:
                outside.append(y + dy < 0)
            if s.pad_bottom:
                outside.append(y + dy >= s.ifm_h)
            is_pad = Signal(name=f"is_pad_{j}")
            if outside:
                m.d.comb += is_pad.eq(Cat(*outside).any())
            pads.append(is_pad)
            readable.append(Mux(is_pad, into_frame > 0, offset + (dy * w + dx) * cf < lead))

        issue = Signal()
        m.d.comb += issue.eq(advance & Cat(*readable).all())

        last_c, last_kw, last_kh = c == cf - 1, kw == s.k_w - cols, kh == s.k_h - rows
        last_ox, last_oy = ox == s.out_w - 1, oy == s.out_h - 1
        row_end = last_c & last_kw
        window_end = row_end & last_kh

        move = Signal(signed(lead.shape().width))  # how far the window's first word moves
        with m.If(~last_ox):
            m.d.comb += move.eq(moves.get("column", 0))
        with m.Elif(~last_oy):
            m.d.comb += move.eq(moves.get("row", 0))
        with m.Else():
            m.d.comb += move.eq(moves["frame"])
        moving = Signal()
        m.d.comb += moving.eq(issue & window_end)

        m.d.sync += lead.eq(lead + accept - Mux(moving, move, 0))
        next_frame = moving & last_ox & last_oy
        m.d.sync += into_frame.eq(into_frame + accept - Mux(next_frame, in_words, 0))
        with m.If(moving):
            m.d.sync += base.eq(base + move)  # modulo the power-of-two depth

        with m.If(issue):
            m.d.sync += c.eq(Mux(last_c, 0, c + 1))
            with m.If(last_c):
                m.d.sync += [kw.eq(Mux(last_kw, 0, kw + cols)), x.eq(x + cols)]
            with m.If(~row_end):  # cols > 1 only when cf == 1
                m.d.sync += offset.eq(offset + cols)
            with m.Elif(~last_kh):  # next row(s) of the window
                m.d.sync += [offset.eq(offset + (rows * w - s.k_w + cols) * cf - cf + 1),
                             kh.eq(kh + rows), x.eq(x0), y.eq(y + rows)]
            with m.Else():  # next window
                m.d.sync += [offset.eq(0), kh.eq(0)]
                with m.If(~last_ox):
                    m.d.sync += [ox.eq(ox + 1), x0.eq(x0 + s.stride_w), x.eq(x0 + s.stride_w),
                                 y.eq(y0)]
                with m.Else():
                    m.d.sync += [ox.eq(0), x0.eq(-s.pad_left), x.eq(-s.pad_left)]
                    with m.If(~last_oy):
                        m.d.sync += [oy.eq(oy + 1), y0.eq(y0 + s.stride_h),
                                     y.eq(y0 + s.stride_h)]
                    with m.Else():
                        m.d.sync += [oy.eq(0), y0.eq(-s.pad_top), y.eq(-s.pad_top)]

        for rport, (dy, dx) in zip(rports, s.tap_offsets):
            m.d.comb += [rport.addr.eq(base + offset + (dy * w + dx) * cf),
                         rport.en.eq(advance)]

        # ---- S1: the pixels read, or padding; output register --------------------
        v1 = Signal()
        pad1 = [Signal(name=f"pad1_{j}") for j in range(s.taps)]
        lane_bits = int(s.dtype.encode(s.pad_value)) if s.padded else 0
        pad_word = Const(sum(lane_bits << (k * s.dtype.bits) for k in range(s.in_lanes)),
                         unsigned(s.in_lanes * s.dtype.bits))
        with m.If(advance):
            m.d.sync += [v1.eq(issue)] + [p1.eq(p) for p1, p in zip(pad1, pads)]
            m.d.sync += self.o.valid.eq(v1)
            with m.If(v1):
                m.d.sync += self.o.payload.eq(Cat(*(Mux(p1, pad_word, rport.data)
                                                    for p1, rport in zip(pad1, rports))))
        return m


def fold_options(spec: Spec) -> list[dict]:
    return [{"simd": simd} for simd in _simd_choices(spec.channels, spec.k_h, spec.k_w)]


def narrow_fold_options(spec: Spec) -> list[dict]:
    """Within one pixel: wider words cost a copy of the line buffer per pixel, so folding
    takes them only for a budget that needs them (``passes/fold.py``)."""
    return [{"simd": simd} for simd in divisors(spec.channels)]


def fill_words(spec: Spec) -> int:
    """The writer runs up to the line buffer's depth ahead; then issue and output registers."""
    return spec.buffer_depth + 2


def frame_lag(spec: Spec) -> tuple[Fraction, Fraction]:
    """Least and most, over the output words ``k``, of ``need(k) / input words - (k + 1) /
    output words``, where ``need(k)`` is the input words taken before word ``k`` can leave.

    What the line buffer must hold back, as opposed to what it may (``fill_words``): a
    word needs its pixel and every pixel an earlier word needed (the output is in order;
    padding needs none), so a window waits for its last real pixel, and a strided window
    runs ahead of its input in frame position (it skips rows). The least is also
    what a blocked window holds, which its writer fills to the buffer's depth. A word
    of several pixels (``taps``) needs what its last pixel needs.
    """
    s = spec
    oy, ox, kh, kw = np.meshgrid(np.arange(s.out_h), np.arange(s.out_w), np.arange(s.k_h),
                                 np.arange(s.k_w), indexing="ij")
    y, x = oy * s.stride_h + kh - s.pad_top, ox * s.stride_w + kw - s.pad_left
    real = (y >= 0) & (y < s.ifm_h) & (x >= 0) & (x < s.ifm_w)
    last = np.maximum.accumulate(np.where(real, y * s.ifm_w + x, -1).ravel())
    last = last.reshape(-1, s.taps)[:, -1]  # q: a word's pixels, from here on
    in_words, out_words, cf = s.in_elems // s.in_lanes, s.out_elems // s.simd, s.cf
    q = np.arange(last.size, dtype=np.int64)
    # the word c of position q needs at most (last + 1) * cf words and at least
    # last * cf + c + 1 when last is its own pixel; linear in c, so its ends bound it
    most = max(((last + 1) * cf * out_words - (q + 1) * cf * in_words).max(),
               ((last * cf + 1) * out_words - (q * cf + 1) * in_words).max())
    # blocked at position q it holds at least what q needed, and its writer goes on
    # until the buffer holds ``buffer_depth`` words from the window's first
    corner = ((oy * s.stride_h - s.pad_top) * s.ifm_w + ox * s.stride_w - s.pad_left).ravel()
    corner = corner.reshape(-1, s.taps)[:, 0]
    held = np.maximum(np.maximum(last, 0) * cf, corner * cf + s.buffer_depth)
    least = (held * out_words - (q + 1) * cf * in_words).min()
    scale = in_words * out_words
    return Fraction(int(least), scale), Fraction(int(most), scale)


# The window's logic beside its buffer, counted a LUT per adder or compared bit, is
# this share of that on LUT6 in Yosys: 0.63 over 38 xc7 windows of CNV-1w1a/1w2a/2w2a,
# digits_cnn, digits_vit, small_mobilenet and small_resnet (0.52..0.73 but one of 26
# LUTs), where ECP5 measures 0.89 and iCE40 1.15 of it (kept as counted).
LUT6_LOGIC_SHARE = 0.63


def estimate(spec: Spec, family: str) -> Cost:
    """One copy of the line buffer per read port (``taps``), each tap's address adder,
    readable compare and padding checks, as ``elaborate`` builds them: the image
    coordinates and the words-into-frame count only feed the padding checks, so an
    unpadded window has none (Yosys removes them)."""
    s = spec
    width = s.simd * s.dtype.bits
    buffer_bits = s.in_lanes * s.dtype.bits
    mem_lut, mem_ff, bram = memory(buffer_bits, s.buffer_depth, family, sync_read=False,
                                   read_ports=s.taps)
    abits = (s.buffer_depth - 1).bit_length()
    in_words = s.in_elems // s.in_lanes
    bound = in_words + 2 * s.buffer_depth + max(abs(v) for v in s.advances.values())
    lead_bits = bound.bit_length() + 1  # the signed words-ahead count, as the hardware
    counter_bits = sum(max(1, (n - 1).bit_length()) for n in
                       (s.cf, s.k_w, s.k_h, s.out_w, s.out_h, s.span))
    coord_bits = (4 * max(2, (max(s.ifm_h, s.ifm_w) + max(s.k_h, s.k_w)).bit_length() + 1)
                  if s.padded else 0)  # x, y and the window's corner x0, y0
    frame_counts = 2 if s.padded else 1  # words ahead, and into the frame for the padding
    logic = adder_luts(counter_bits + coord_bits, family)
    logic += (2 + s.taps) * adder_luts(abits, family)  # write pointer, base, tap addresses
    logic += 2 * frame_counts * adder_luts(lead_bits, family)
    logic += compare_luts(lead_bits, family) * (1 + s.taps)  # readable? writable?
    if s.padded:
        logic += width + 4 * s.taps * compare_luts(coord_bits // 4, family)  # the padding
    logic += 20  # control
    if lut_inputs(family) == 6:  # ABC merges the counters with their wrap compares
        logic = math.ceil(LUT6_LOGIC_SHARE * logic)
    lut = mem_lut + logic
    ff = counter_bits + coord_bits + 2 * abits + frame_counts * lead_bits + 2 * width + 4
    # a buffer in logic is flip-flops; its read registers are the window's, counted
    # above (digits_cnn's nine-tap windows on iCE40: 1312 SB_DFFE for 1024 + 288)
    ff += mem_ff
    return Cost(cycles=s.cycles(), lut=int(lut), ff=int(ff), bram18=bram, dsp=0)
