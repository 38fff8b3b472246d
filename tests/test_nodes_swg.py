"""Sliding window: golden model vs plain loops and a direct convolution, spec checks,
hardware vs golden model under stalls, and the steady-state rate."""

import dataclasses

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st
from streamsim import run_spec

from fpgagen.dtypes import BIPOLAR, IntType, pack_lanes
from fpgagen.errors import SpecError
from fpgagen.nodes import component, swg
from fpgagen.nodes.base import divisors

UINT4 = IntType(4, False)
INT3 = IntType(3, True)


def loop_windows(s: swg.Spec, x: np.ndarray) -> np.ndarray:
    """Window by window, element by element, padding by explicit bounds checks."""
    out = np.zeros((x.shape[0], s.out_elems), dtype=np.int64)
    for f in range(x.shape[0]):
        img = x[f].reshape(s.ifm_h, s.ifm_w, s.channels)
        e = 0
        for oy in range(s.out_h):
            for ox in range(s.out_w):
                for kh in range(s.k_h):
                    for kw in range(s.k_w):
                        yy = oy * s.stride_h + kh - s.pad_top
                        xx = ox * s.stride_w + kw - s.pad_left
                        for c in range(s.channels):
                            inside = 0 <= yy < s.ifm_h and 0 <= xx < s.ifm_w
                            out[f, e] = img[yy, xx, c] if inside else s.pad_value
                            e += 1
    return out


def random_values(dtype, shape, rng):
    return dtype.decode(rng.integers(0, 1 << dtype.bits, size=shape))


def test_worked_example():
    # 1 channel, 3x3 image 1..9, 2x2 kernel, stride 1, padding 1 on the right only
    s = swg.Spec("w", 1, 3, 3, 2, 2, UINT4, pad_right=1)
    x = np.arange(1, 10).reshape(1, 9)
    assert (s.out_h, s.out_w) == (2, 3)
    expected = [[1, 2, 4, 5], [2, 3, 5, 6], [3, 0, 6, 0],
                [4, 5, 7, 8], [5, 6, 8, 9], [6, 0, 9, 0]]
    assert swg.reference(s, x).reshape(6, 4).tolist() == expected


GEOMETRIES = [
    # channels, ifm_h, ifm_w, k_h, k_w, stride_h, stride_w, pads (top, left, bottom, right)
    (3, 5, 7, 3, 3, 1, 1, (1, 1, 1, 1)),  # "same" padding, non-square image
    (2, 6, 5, 3, 2, 2, 1, (0, 1, 2, 0)),  # non-square kernel, uneven strides and padding
    (2, 6, 7, 1, 1, 2, 2, (0, 0, 0, 0)),  # 1x1 stride 2: stride beyond the kernel
    (1, 9, 8, 2, 3, 4, 3, (1, 0, 0, 2)),  # stride beyond the kernel, rows skipped
    (4, 4, 3, 4, 3, 1, 1, (0, 0, 0, 0)),  # kernel == image: one window
    (2, 2, 2, 3, 3, 1, 1, (2, 2, 2, 2)),  # padding wider than the image
    (2, 5, 5, 5, 5, 1, 1, (2, 2, 2, 2)),  # 5x5 "same"
]


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("dtype,pad_value", [(UINT4, 0), (INT3, 0), (INT3, -4)])
def test_reference_matches_loops(geometry, dtype, pad_value):
    c, h, w, kh, kw, sh, sw, pads = geometry
    s = swg.Spec("w", c, h, w, kh, kw, dtype, sh, sw, *pads, pad_value=pad_value)
    x = random_values(dtype, (2, s.in_elems), np.random.default_rng(kh * 10 + kw))
    assert np.array_equal(swg.reference(s, x), loop_windows(s, x))
    assert s.out_h == (h + pads[0] + pads[2] - kh) // sh + 1


def test_windows_times_permuted_weights_is_the_convolution():
    """The windows' (kh, kw, c) order matches ONNX weights (OC, IC, KH, KW) permuted to
    (OC, KH, KW, IC): window @ W.T is the ONNX convolution, computed here by loops."""
    rng = np.random.default_rng(3)
    ic, oc, h, w, k, stride, pad = 3, 4, 6, 5, 3, 2, 1
    s = swg.Spec("w", ic, h, w, k, k, INT3, stride, stride, pad, pad, pad, pad)
    nchw = rng.integers(-4, 4, size=(ic, h, w))
    weights = rng.integers(-2, 2, size=(oc, ic, k, k))
    x = nchw.transpose(1, 2, 0).reshape(1, -1)  # NHWC stream
    mvau_w = weights.transpose(0, 2, 3, 1).reshape(oc, k * k * ic)
    got = swg.reference(s, x).reshape(s.out_h, s.out_w, k * k * ic) @ mvau_w.T
    padded = np.pad(nchw, ((0, 0), (pad, pad), (pad, pad)))
    conv = np.zeros((oc, s.out_h, s.out_w), dtype=np.int64)
    for o in range(oc):
        for oy in range(s.out_h):
            for ox in range(s.out_w):
                for i in range(ic):
                    for a in range(k):
                        for b in range(k):
                            conv[o, oy, ox] += (weights[o, i, a, b]
                                                * padded[i, oy * stride + a, ox * stride + b])
    assert np.array_equal(got, conv.transpose(1, 2, 0))


@pytest.mark.parametrize("kwargs,message", [
    ({"simd": 4}, r"SIMD=4 does not divide channels=6 \(choose SIMD from 1, 2, 3, 6\)"),
    ({"simd": 12}, r"SIMD=12 is neither a divisor of channels=6 nor whole kernel columns or "
                   r"rows of pixels \(3x3 kernel\) \(choose SIMD from 1, 2, 3, 6, 18, 54\)"),
    ({"k_h": 0}, r"k_h must be a positive integer, not 0"),
    ({"stride_w": 0}, r"stride_w must be a positive integer, not 0"),
    ({"pad_left": -1}, r"pad_left must be a non-negative integer, not -1"),
    ({"pad_bottom": 3}, r"padding bottom=3 is not smaller than the kernel \(k_h=3\) "
                        r"\(padding of at most kernel - 1 per side is supported\)"),
    ({"k_w": 6}, r"kernel 3x6 is larger than the padded image 5x4"),
    ({"dtype": BIPOLAR, "pad_top": 1},
     r"padding with 0 on a bipolar stream \(0 is not a bipolar value; use a convolution "
     r"without padding, or pad a max pool with -1\)"),
    ({"pad_value": 16, "pad_top": 1}, r"padding value 16 does not fit uint4"),
])
def test_spec_errors(kwargs, message):
    args = {"name": "conv0_window", "channels": 6, "ifm_h": 5, "ifm_w": 4, "k_h": 3,
            "k_w": 3, "dtype": UINT4}
    args.update(kwargs)
    with pytest.raises(SpecError, match=message) as err:
        swg.Spec(**args)
    assert err.value.where == "conv0_window"


def test_bipolar_without_padding_or_padded_with_minus_one_is_fine():
    swg.Spec("w", 2, 4, 4, 3, 3, BIPOLAR)
    s = swg.Spec("w", 2, 4, 4, 3, 3, BIPOLAR, pad_top=1, pad_value=-1)
    x = random_values(BIPOLAR, (1, s.in_elems), np.random.default_rng(0))
    assert np.array_equal(swg.reference(s, x), loop_windows(s, x))


def test_fold_options_and_cycles():
    s = swg.Spec("w", 12, 6, 6, 3, 3, UINT4)
    options = swg.fold_options(s)
    # channels, then a kernel row (3 pixels) and the whole window (9) per word
    assert [o["simd"] for o in options] == [1, 2, 3, 4, 6, 12, 36, 108]
    for o in options:
        folded = dataclasses.replace(s, **o)
        # 4x4 windows of 3x3 pixels out; 6x6 pixels in, at most one per word
        in_words = 6 * 6 * 12 // min(o["simd"], 12)
        assert folded.cycles() == max(in_words, 4 * 4 * 9 * 12 // o["simd"])
        assert swg.estimate(folded, "xc7").cycles == folded.cycles()
    assert dataclasses.replace(s, simd=108).cycles() == 6 * 6  # input-bound
    input_bound = swg.Spec("w", 4, 8, 8, 1, 1, UINT4, 2, 2, simd=2)
    assert input_bound.cycles() == 8 * 8 * 2


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_buffer_is_a_power_of_two_holding_a_window(geometry):
    c, h, w, kh, kw, sh, sw, pads = geometry
    s = swg.Spec("w", c, h, w, kh, kw, UINT4, sh, sw, *pads)
    depth = s.buffer_depth
    assert depth & (depth - 1) == 0 and depth >= s.span >= kw * c


def test_taps_shape_the_words():
    s = swg.Spec("w", 2, 6, 6, 3, 2, UINT4, simd=2)
    row, rows = dataclasses.replace(s, simd=4), dataclasses.replace(s, simd=12)
    assert (row.taps, row.tap_cols, row.tap_rows, row.in_lanes) == (2, 2, 1, 2)
    assert rows.tap_offsets == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert swg.Spec("w", 3, 6, 6, 1, 1, UINT4, simd=3).taps == 1
    assert [o["simd"] for o in swg.fold_options(swg.Spec("w", 3, 6, 6, 1, 1, UINT4))] == [1, 3]


def test_each_tap_costs_a_copy_of_the_buffer():
    s = swg.Spec("w", 4, 10, 10, 3, 3, UINT4, 1, 1, 1, 1, 1, 1, simd=4)
    one, window = swg.estimate(s, "xc7"), swg.estimate(dataclasses.replace(s, simd=36), "xc7")
    assert window.cycles == 100 < one.cycles == 900
    assert window.lut > one.lut and window.ff > one.ff
    assert window.bram18 == 9 * one.bram18


def test_cnv_sized_buffer_fits_block_ram():
    s = swg.Spec("w", 64, 30, 30, 3, 3, BIPOLAR, simd=64)
    assert s.buffer_depth == 128  # 4 rows of 30 pixels, rounded up
    cost = swg.estimate(s, "xc7")
    assert cost.bram18 == 2 and cost.cycles == 28 * 28 * 9


# ---- hardware -----------------------------------------------------------------------

dtypes = st.one_of(
    st.builds(IntType, st.integers(1, 5), st.just(False)),
    st.builds(IntType, st.integers(2, 5), st.just(True)),
    st.just(BIPOLAR),
)
stalls = st.sampled_from([0.0, 0.5, 0.9])


@st.composite
def cases(draw):
    dtype = draw(dtypes)
    k_h, k_w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    pads = [0, 0, 0, 0]
    if not dtype.bipolar and draw(st.booleans()):
        pads = [draw(st.integers(0, k - 1)) for k in (k_h, k_w, k_h, k_w)]
    ifm_h = draw(st.integers(max(1, k_h - pads[0] - pads[2]), 7))
    ifm_w = draw(st.integers(max(1, k_w - pads[1] - pads[3]), 7))
    channels = draw(st.integers(1, 4))
    pad_value = draw(st.sampled_from([0, dtype.min])) if not dtype.bipolar else 0
    spec = swg.Spec("w", channels, ifm_h, ifm_w, k_h, k_w, dtype,
                    draw(st.integers(1, 3)), draw(st.integers(1, 3)), *pads,
                    simd=draw(st.sampled_from(divisors(channels))), pad_value=pad_value)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = random_values(dtype, (draw(st.integers(1, 3)), spec.in_elems), rng)
    return spec, x


@settings(max_examples=30, deadline=None)
@given(cases(), stalls, stalls, st.integers(0, 1000))
def test_hardware_matches_reference(case, stall_in, stall_out, seed):
    spec, x = case
    # a lost or stuck word shows as no progress long before the default budget
    got = run_spec(spec, x, stall_in=stall_in, stall_out=stall_out, seed=seed,
                   max_cycles=2000 + 100 * spec.out_elems * x.shape[0] // spec.simd)
    assert np.array_equal(got, swg.reference(spec, x))


@settings(max_examples=25, deadline=None)
@given(cases(), stalls, stalls, st.integers(0, 1000), st.data())
def test_hardware_with_taps_matches_reference(case, stall_in, stall_out, seed, data):
    """Several window pixels per word (kernel columns or rows, read through as many
    ports), with padding, strides and stalls."""
    spec, x = case
    taps = [o["simd"] for o in swg.fold_options(spec) if o["simd"] > spec.channels]
    if not taps:  # a 1x1 kernel: one pixel is a whole window
        return
    spec = dataclasses.replace(spec, simd=data.draw(st.sampled_from(taps)))
    got = run_spec(spec, x, stall_in=stall_in, stall_out=stall_out, seed=seed,
                   max_cycles=2000 + 100 * spec.cycles() * x.shape[0])
    assert np.array_equal(got, swg.reference(spec, x))


def test_hardware_after_reset_starts_a_clean_frame():
    """Reset in the middle of a frame (words held in the buffer and in flight), then a
    whole frame: the output is that frame's windows and nothing else."""
    spec = swg.Spec("w", 2, 5, 4, 3, 3, UINT4, pad_top=1, pad_left=1, simd=1)
    rng = np.random.default_rng(9)
    junk, frame = (random_values(UINT4, (1, spec.in_elems), rng) for _ in range(2))
    dut = component(spec)
    top = Module()
    top.domains.sync = domain = ClockDomain()
    top.submodules.dut = dut
    raw = [pack_lanes(UINT4.encode(f).reshape(-1, 1), UINT4.bits) for f in (junk, frame)]
    got = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for word in raw[0][:23]:  # part of a frame; some windows come out
            ctx.set(dut.i.payload.as_value(), word)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        ctx.set(domain.rst, 1)
        await ctx.tick()
        ctx.set(domain.rst, 0)
        words = list(raw[1])
        n_out = spec.out_elems
        for _ in range(20 * n_out):
            if words:
                ctx.set(dut.i.payload.as_value(), words[0])
            ctx.set(dut.i.valid, bool(words))
            _, _, ready, valid, payload = await ctx.tick().sample(
                dut.i.ready, dut.o.valid, dut.o.payload.as_value())
            if words and ready:
                words.pop(0)
            if valid:
                got.append(UINT4.decode(payload))
        ctx.set(dut.i.valid, 0)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert np.array_equal(np.array(got), swg.reference(spec, frame)[0])


def steady_cycles_per_frame(spec, frames: int = 6) -> float:
    """Cycles between frame ends with a producer and a consumer that never stall."""
    dut = component(spec)
    x = np.zeros((frames, spec.in_elems), dtype=np.int64)
    words = pack_lanes(spec.in_type.encode(x).reshape(-1, spec.in_lanes), spec.in_type.bits)
    per_frame = spec.out_elems // spec.out_lanes
    ends = []

    async def producer(ctx):
        for word in words:
            ctx.set(dut.i.payload.as_value(), word)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        ctx.set(dut.o.ready, 1)
        received = cycle = 0
        while received < frames * per_frame:
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            cycle += 1
            received += valid
            if valid and received % per_frame == 0:
                ends.append(cycle)
            assert cycle < 10 * frames * spec.cycles() + 1000, "no progress"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return (ends[-1] - ends[1]) / (frames - 2)


@pytest.mark.parametrize("geometry", GEOMETRIES + [
    (2, 10, 10, 3, 3, 1, 1, (0, 0, 0, 0)),  # CNV-like: output-bound, next frame prefetched
    (2, 8, 9, 3, 3, 2, 2, (1, 1, 1, 1)),  # ResNet-like downsampling
    (1, 2, 4, 1, 4, 4, 2, (0, 2, 0, 0)),  # frames start with padding: wait for input
    (3, 7, 5, 4, 4, 3, 3, (1, 0, 0, 2)),
])
def test_steady_rate_is_the_estimate(geometry):
    """One word per cycle on the busier side, no per-row or per-frame bubbles."""
    c, h, w, kh, kw, sh, sw, pads = geometry
    s = swg.Spec("w", c, h, w, kh, kw, UINT4, sh, sw, *pads, simd=c // 2 or 1)
    assert steady_cycles_per_frame(s) == s.cycles()


@pytest.mark.parametrize("geometry", [
    (2, 10, 10, 3, 3, 1, 1, (0, 0, 0, 0)),
    (3, 7, 5, 3, 3, 1, 1, (1, 1, 1, 1)),
    (2, 8, 9, 3, 3, 2, 2, (1, 1, 1, 1)),
    (1, 6, 8, 2, 4, 1, 2, (1, 0, 0, 3)),
])
def test_steady_rate_with_taps_is_the_estimate(geometry):
    """Every wider word choice: one pixel in or one word out per cycle, whichever is busier."""
    c, h, w, kh, kw, sh, sw, pads = geometry
    s = swg.Spec("w", c, h, w, kh, kw, UINT4, sh, sw, *pads)
    for simd in [o["simd"] for o in swg.fold_options(s) if o["simd"] > c]:
        folded = dataclasses.replace(s, simd=simd)
        assert steady_cycles_per_frame(folded) == folded.cycles(), simd
