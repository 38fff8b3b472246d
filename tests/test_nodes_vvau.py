"""VVAU (depthwise convolution): golden model vs plain loops and, after a sliding window,
vs a numpy depthwise convolution; spec checks; estimate; hardware vs golden model under
stalls; full rate; graph.json round trip; a window -> vvau chain in Amaranth's simulator."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from dag_graphs import prepared
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streamsim import run_spec, run_top

from fpgagen.dtypes import BIPOLAR, IntType
from fpgagen.errors import SpecError
from fpgagen.ir import Graph, Node, Tensor
from fpgagen.nodes import swg, vvau
from fpgagen.nodes.base import divisors

INT4 = IntType(4, True)
INT3 = IntType(3, True)
UINT3 = IntType(3, False)
TYPES = [BIPOLAR, IntType(2, True), UINT3, INT4]


def random_values(dtype, shape, rng):
    return dtype.decode(rng.integers(0, 1 << dtype.bits, size=shape))


def make_spec(rng, channels, positions, in_type, w_type, *, out=None, pe=1, vectors=1):
    """A spec with random weights; ``out`` None: raw accumulator, else random thresholds
    (some beyond the reachable range) for that output type."""
    w = random_values(w_type, (channels, positions), rng)
    raw = vvau.Spec("v", channels, positions, w, in_type, w_type, IntType(32, True),
                    vectors=vectors)
    if out is None:
        return dataclasses.replace(raw, out_type=raw.acc_type, pe=pe)
    lo, hi = raw.acc_range
    levels = 1 if out.bipolar else out.max - out.min
    t = np.sort(rng.integers(lo - 1, hi + 2, size=(channels, levels)), axis=1)
    return dataclasses.replace(raw, out_type=out, thresholds=t,
                               out_base=0 if out.bipolar else out.min, pe=pe)


def loop_reference(s: vvau.Spec, x: np.ndarray) -> np.ndarray:
    """The VVAU function as plain loops over pixels, channels and positions."""
    out = []
    for frame in x:
        row = []
        for v in range(s.vectors):
            for c in range(s.channels):
                acc = 0
                for p in range(s.positions):
                    acc += int(s.weights[c, p]) * int(frame[(v * s.positions + p) * s.channels + c])
                if s.thresholds is None:
                    row.append(acc)
                else:
                    n = sum(1 for t in s.thresholds[c] if acc >= t)
                    row.append(2 * n - 1 if s.out_type.bipolar else s.out_base + n)
        out.append(row)
    return np.array(out, dtype=np.int64)


def test_worked_example():
    # 2 channels, 3 positions, input (p, c): [[1, -2], [3, 4], [-5, 6]]
    s = vvau.Spec("v", 2, 3, np.array([[1, 0, -1], [2, 1, 1]]), INT4, INT3, IntType(6, True))
    x = np.array([[1, -2, 3, 4, -5, 6]])
    assert vvau.reference(s, x).tolist() == [[1 * 1 + 0 * 3 - 1 * -5, 2 * -2 + 4 + 6]]  # 6, 6
    s = dataclasses.replace(s, out_type=UINT3, thresholds=np.array([[0, 6, 7], [-9, 7, 9]]))
    assert vvau.reference(s, x).tolist() == [[2, 1]]


@pytest.mark.parametrize("in_type", TYPES)
@pytest.mark.parametrize("w_type", TYPES)
@pytest.mark.parametrize("out", [None, BIPOLAR, IntType(2, False)])
def test_reference_equals_loops(in_type, w_type, out):
    rng = np.random.default_rng(5)
    s = make_spec(rng, 3, 5, in_type, w_type, out=out, vectors=2)
    x = random_values(in_type, (3, s.in_elems), rng)
    got = vvau.reference(s, x)
    assert np.array_equal(got, loop_reference(s, x))
    assert s.out_type.contains(got)


def depthwise_conv(img: np.ndarray, w: np.ndarray, stride: tuple[int, int],
                   pads: tuple[int, int, int, int]) -> np.ndarray:
    """ONNX Conv with group = channels: img (C, H, W), w (C, 1, KH, KW) -> (C, OH, OW)."""
    top, left, bottom, right = pads
    padded = np.pad(img, ((0, 0), (top, bottom), (left, right)))
    c, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    oh = (padded.shape[1] - kh) // stride[0] + 1
    ow = (padded.shape[2] - kw) // stride[1] + 1
    out = np.zeros((c, oh, ow), dtype=np.int64)
    for a in range(kh):
        for b in range(kw):
            patch = padded[:, a:a + stride[0] * oh:stride[0], b:b + stride[1] * ow:stride[1]]
            out += w[:, 0, a, b][:, None, None] * patch
    return out


@pytest.mark.parametrize("h,w,k_h,k_w,stride,pads", [
    (6, 5, 3, 3, (1, 1), (1, 1, 1, 1)),
    (7, 6, 3, 3, (2, 2), (1, 1, 1, 1)),
    (5, 8, 3, 2, (1, 2), (0, 1, 2, 0)),
    (4, 4, 1, 1, (2, 1), (0, 0, 0, 0)),
])
def test_window_then_vvau_is_the_depthwise_convolution(h, w, k_h, k_w, stride, pads):
    rng = np.random.default_rng(h * w)
    channels = 3
    window = swg.Spec("w", channels, h, w, k_h, k_w, INT4, *stride, *pads)
    weights = rng.integers(-4, 4, size=(channels, 1, k_h, k_w))  # ONNX (C, 1, KH, KW)
    s = vvau.Spec("v", channels, k_h * k_w, weights.reshape(channels, k_h * k_w), INT4, INT3,
                  IntType(16, True), vectors=window.out_h * window.out_w)
    img = random_values(INT4, (channels, h, w), rng)
    got = vvau.reference(s, swg.reference(window, img.transpose(1, 2, 0).reshape(1, -1)))
    want = depthwise_conv(img, weights, stride, pads)
    assert np.array_equal(got.reshape(window.out_h, window.out_w, channels),
                          want.transpose(1, 2, 0))


def test_acc_range_is_the_reachable_range():
    w = np.array([[1, -1, 2], [-3, 0, 1]])
    s = vvau.Spec("v", 2, 3, w, UINT3, INT3, IntType(8, True))
    assert s.acc_range == (-21, 21)  # channel 0 reaches [-7, 21], channel 1 [-21, 7]
    assert s.acc_type == IntType(6, True)
    xnor = vvau.Spec("v", 1, 9, np.ones((1, 9), int), BIPOLAR, BIPOLAR, IntType(5, True))
    assert xnor.acc_range == (-9, 9) and xnor.xnor


def test_thresholds_are_clipped_to_the_reachable_range():
    s = vvau.Spec("v", 1, 2, np.array([[1, 1]]), BIPOLAR, IntType(2, True), IntType(2, False),
                  thresholds=np.array([[-100, 0, 100]]))
    assert s.thresholds.tolist() == [[-2, 0, 3]]


@pytest.mark.parametrize("kwargs,message", [
    ({"pe": 4}, r"PE=4 does not divide channels=6 \(choose PE from 1, 2, 3, 6\)"),
    ({"positions": 0}, r"positions must be a positive integer, not 0"),
    ({"weights": np.zeros((6, 4), int)},
     r"weights have shape \(6, 4\), expected \(channels, positions\) = \(6, 9\) \(one row"),
    ({"weights": np.full((6, 9), 4)}, r"weights do not fit int3"),
    ({"out_type": IntType(5, True)},
     r"accumulator range \[-63, 72\] does not fit the output type int5 \(use int8 or wider\)"),
    ({"thresholds": np.zeros((5, 3), int)},
     r"thresholds have shape \(5, 3\), expected \(6, levels\) with levels >= 1"),
    ({"thresholds": np.tile([2, 1, 3], (6, 1))},
     r"thresholds must be ascending in each channel \(sort each row"),
    ({"thresholds": np.zeros((6, 2), int), "out_type": BIPOLAR},
     r"2 thresholds from base 0 do not fit the output type bipolar \(a bipolar output "
     r"takes exactly one threshold per channel\)"),
    ({"thresholds": np.zeros((6, 4), int), "out_type": IntType(2, False)},
     r"4 thresholds from base 0 do not fit the output type uint2 \(widen the output type\)"),
])
def test_spec_errors(kwargs, message):
    args = {"name": "dw0", "channels": 6, "positions": 9, "weights": np.full((6, 9), -1),
            "in_type": INT4, "weight_type": INT3, "out_type": IntType(8, True)}
    args.update(kwargs)
    with pytest.raises(SpecError, match=message) as err:
        vvau.Spec(**args)
    assert err.value.where == "dw0"


def test_fold_options_and_cycles():
    s = make_spec(np.random.default_rng(0), 12, 9, INT4, INT3, vectors=5)
    options = vvau.fold_options(s)
    assert [o["pe"] for o in options] == divisors(12)
    for o in options:
        folded = dataclasses.replace(s, **o)
        assert folded.cycles() == 5 * 9 * 12 // o["pe"]
        assert vvau.estimate(folded, "xc7").cycles == folded.cycles()


def test_estimate_grows_with_pe_and_puts_big_weights_in_block_ram():
    rng = np.random.default_rng(1)
    s = make_spec(rng, 512, 9, INT4, INT4, out=INT4)
    costs = [vvau.estimate(dataclasses.replace(s, pe=pe), "xc7") for pe in (1, 8, 64)]
    assert costs[0].lut < costs[1].lut < costs[2].lut
    assert costs[0].bram18 >= 1  # 4608 weights x 4 bits
    wide = make_spec(rng, 4, 9, IntType(8, True), IntType(8, True), pe=4)
    assert vvau.estimate(wide, "xc7").dsp == 4  # an 8 x 8 product per channel
    xnor = make_spec(rng, 64, 9, BIPOLAR, BIPOLAR, out=BIPOLAR, pe=64)
    assert vvau.estimate(xnor, "xc7").dsp == 0


def test_fill_words_is_a_window_and_the_pipeline():
    s = make_spec(np.random.default_rng(2), 6, 9, INT4, INT3, pe=2)
    assert vvau.fill_words(s) == 9 * 3 + 3


# ---- hardware -----------------------------------------------------------------------

in_types = st.one_of(st.just(BIPOLAR), st.builds(IntType, st.integers(1, 5), st.just(False)),
                     st.builds(IntType, st.integers(2, 5), st.just(True)))
w_types = st.one_of(st.just(BIPOLAR), st.builds(IntType, st.integers(2, 4), st.just(True)),
                    st.builds(IntType, st.integers(1, 3), st.just(False)))
stalls = st.sampled_from([0.0, 0.5, 0.9])


@st.composite
def cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    channels = draw(st.integers(1, 8))
    pe = draw(st.sampled_from(divisors(channels)))  # 1, 2 running words in registers, more in memory
    positions = draw(st.sampled_from([1, 2, 4, 9]))
    out = draw(st.sampled_from([None, BIPOLAR, IntType(2, False), IntType(3, True)]))
    spec = make_spec(rng, channels, positions, draw(in_types), draw(w_types), out=out, pe=pe,
                     vectors=draw(st.integers(1, 3)))
    x = random_values(spec.in_type, (draw(st.integers(1, 3)), spec.in_elems), rng)
    return spec, x


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), stalls, stalls, st.integers(0, 1000))
def test_hardware_matches_reference(case, stall_in, stall_out, seed):
    spec, x = case
    # a lost or stuck word shows as no progress long before the default budget
    got = run_spec(spec, x, stall_in=stall_in, stall_out=stall_out, seed=seed,
                   max_cycles=2000 + 100 * x.size)
    assert np.array_equal(got, vvau.reference(spec, x))


@pytest.mark.parametrize("in_type,w_type,out,pe", [
    (INT4, INT3, IntType(3, False), 6),  # one channel group: running sums in a register
    (INT4, BIPOLAR, None, 3),  # two groups: registers
    (BIPOLAR, BIPOLAR, BIPOLAR, 1),  # six groups: memory; XNOR count
    (BIPOLAR, INT3, None, 2),  # three groups: memory
])
def test_hardware_takes_one_word_per_cycle(in_type, w_type, out, pe):
    rng = np.random.default_rng(pe)
    spec = make_spec(rng, 6, 9, in_type, w_type, out=out, pe=pe, vectors=3)
    frames = 4
    x = random_values(in_type, (frames, spec.in_elems), rng)
    # run_spec fails once the last word takes longer than the steady rate + latency
    got = run_spec(spec, x, stall_in=0, stall_out=0, max_cycles=frames * spec.cycles() + 4)
    assert np.array_equal(got, vvau.reference(spec, x))


def test_a_wrong_weight_in_hardware_is_caught():
    rng = np.random.default_rng(3)
    spec = make_spec(rng, 4, 9, INT4, INT3, pe=2, vectors=2)
    x = random_values(INT4, (4, spec.in_elems), rng)
    w = spec.weights.copy()
    w[3, 8] = 1 if w[3, 8] != 1 else 2
    broken = dataclasses.replace(spec, weights=w)
    assert not np.array_equal(run_spec(broken, x), vvau.reference(spec, x))


def _depthwise_chain(rng, *, pe=2):
    """A padded, strided 3x3 window on a non-square image, then a thresholded vvau."""
    window = swg.Spec("window", 4, 7, 5, 3, 3, INT3, 2, 1, 1, 1, 1, 1, simd=4)
    dw = make_spec(rng, 4, 9, INT3, INT3, out=UINT3, pe=pe,
                   vectors=window.out_h * window.out_w)
    dw = dataclasses.replace(dw, name="dw")
    tensors = {t.name: t for t in (Tensor("x", (window.in_elems,), INT3),
                                   Tensor("win", (window.out_elems,), INT3),
                                   Tensor("y", (dw.out_elems,), UINT3))}
    graph = Graph((Node("window", window, ("x",), ("win",)), Node("dw", dw, ("win",), ("y",))),
                  tensors, ("x",), ("y",))
    return window, dw, graph


def test_specs_survive_graph_json():
    _, dw, graph = _depthwise_chain(np.random.default_rng(4))
    raw = dataclasses.replace(dw, out_type=dw.acc_type, thresholds=None)
    graph = graph.replace(
        nodes=(*graph.nodes, Node("dw_raw", raw, ("win",), ("acc",))),
        tensors={**graph.tensors, "acc": Tensor("acc", (raw.out_elems,), raw.out_type)},
        outputs=("y", "acc"))
    loaded = Graph.from_json(graph.to_json())
    assert [n.kind for n in loaded.nodes] == ["sliding_window", "vvau", "vvau"]
    assert loaded.nodes[0].spec == graph.nodes[0].spec
    for before, after in zip(graph.nodes[1:], loaded.nodes[1:]):
        for f in dataclasses.fields(vvau.Spec):
            a, b = getattr(before.spec, f.name), getattr(after.spec, f.name)
            assert (a is None and b is None) or np.array_equal(a, b), f.name


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_window_then_vvau_in_hardware(stall):
    """Sliding window -> (width converter, FIFOs) -> vvau as one top in Amaranth's
    simulator: bit-exact under stalls; without stalls a frame takes the estimate."""
    rng = np.random.default_rng(6)
    window, dw, graph = _depthwise_chain(rng)
    x = random_values(INT3, (4, window.in_elems), rng)
    got, ends = run_top(prepared(graph), x, stall_in=stall, stall_out=stall, seed=1)
    assert np.array_equal(got, vvau.reference(dw, swg.reference(window, x)))
    if stall == 0.0:
        estimate = max(window.cycles(), dw.cycles())
        assert abs((ends[-1] - ends[1]) / (len(ends) - 2) - estimate) <= 0.05 * estimate
