"""Pool: golden model vs plain loops (and with the sliding window, vs pooling an image),
spec checks, hardware vs golden model under stalls, full rate."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from streamsim import run_spec

from fpgagen.dtypes import BIPOLAR, IntType
from fpgagen.errors import SpecError
from fpgagen.hw.emit import verilog_text
from fpgagen.ir import Graph, Node, Tensor
from fpgagen.nodes import pool, swg
from fpgagen.nodes.base import divisors
from fpgagen.passes import fifos, widths
from fpgagen.sim import simulate_stream
from fpgagen.simulate import frame_words, words_values

INT4 = IntType(4, True)
UINT3 = IntType(3, False)


def loop_pool(x, windows, positions, channels, mode):
    out = np.zeros((x.shape[0], windows * channels), dtype=np.int64)
    for f in range(x.shape[0]):
        for w in range(windows):
            for c in range(channels):
                values = [x[f, (w * positions + p) * channels + c] for p in range(positions)]
                if mode == "max":
                    best = values[0]
                    for v in values[1:]:
                        best = v if v > best else best
                    out[f, w * channels + c] = best
                else:
                    total = 0
                    for v in values:
                        total += v
                    out[f, w * channels + c] = total
    return out


def random_values(dtype, shape, rng):
    return dtype.decode(rng.integers(0, 1 << dtype.bits, size=shape))


def test_worked_example():
    s = pool.Spec("p", 2, 3, "max", INT4, INT4, windows=2)
    x = np.array([[-8, 1, -3, 7, -5, 2, 0, 0, 1, -1, 3, -2]])
    # window 0: ch0 (-8, -3, -5) ch1 (1, 7, 2); window 1: ch0 (0, 1, 3) ch1 (0, -1, -2)
    assert pool.reference(s, x).tolist() == [[-3, 7, 3, 0]]
    s = dataclasses.replace(s, mode="sum", out_type=IntType(6, True))
    assert pool.reference(s, x).tolist() == [[-16, 10, 4, -3]]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("mode,in_type", [("max", INT4), ("max", UINT3), ("max", BIPOLAR),
                                          ("sum", INT4), ("sum", UINT3), ("sum", BIPOLAR)])
def test_reference_matches_loops(seed, mode, in_type):
    rng = np.random.default_rng(seed)
    windows, positions, channels = 3, 5, 4
    out_type = in_type if mode == "max" else pool.sum_type(in_type, positions)
    s = pool.Spec("p", channels, positions, mode, in_type, out_type, windows=windows)
    x = random_values(in_type, (2, s.in_elems), rng)
    got = pool.reference(s, x)
    assert np.array_equal(got, loop_pool(x, windows, positions, channels, mode))
    assert out_type.contains(got)


def test_bipolar_max_is_or_of_the_bits():
    s = pool.Spec("p", 1, 3, "max", BIPOLAR, BIPOLAR, windows=8)
    bits = np.array([[(w >> k) & 1 for w in range(8) for k in range(3)]])
    got = pool.reference(s, bits * 2 - 1)
    assert got.tolist() == [[-1] + [1] * 7]


def test_sum_type_is_the_narrowest():
    assert pool.sum_type(UINT3, 4) == IntType(5, False)  # 0..28
    assert pool.sum_type(INT4, 4) == IntType(6, True)  # -32..28
    assert pool.sum_type(BIPOLAR, 9) == IntType(5, True)  # -9..9


@pytest.mark.parametrize("k,stride,pad", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_with_the_sliding_window_it_is_max_pooling(k, stride, pad):
    """Sliding window padded with the type's minimum, then max: ONNX MaxPool (-inf pads)."""
    rng = np.random.default_rng(k)
    h, w, c = 7, 6, 3
    window = swg.Spec("w", c, h, w, k, k, INT4, stride, stride, pad, pad, pad, pad,
                      pad_value=INT4.min)
    s = pool.Spec("p", c, k * k, "max", INT4, INT4, windows=window.out_h * window.out_w)
    img = random_values(INT4, (h, w, c), rng)
    got = pool.reference(s, swg.reference(window, img.reshape(1, -1)))
    expected = np.zeros((window.out_h, window.out_w, c), dtype=np.int64)
    for oy in range(window.out_h):
        for ox in range(window.out_w):
            y0, x0 = oy * stride - pad, ox * stride - pad
            patch = img[max(y0, 0):y0 + k, max(x0, 0):x0 + k]
            expected[oy, ox] = patch.max(axis=(0, 1))
    assert np.array_equal(got.reshape(expected.shape), expected)


@pytest.mark.parametrize("kwargs,message", [
    ({"pe": 4}, r"PE=4 does not divide channels=6 \(choose PE from 1, 2, 3, 6\)"),
    ({"positions": 0}, r"positions must be a positive integer, not 0"),
    ({"mode": "avg"}, r"pool mode 'avg' is not supported \(use 'max' or 'sum'"),
    ({"out_type": IntType(5, True)},
     r"a max pool's output type int5 differs from its input type int4 \(the maximum"),
    ({"mode": "sum"}, r"sums of 9 values of int4 span \[-72, 63\], which does not fit the "
                      r"output type int4 \(use int8 or wider\)"),
    ({"mode": "sum", "in_type": BIPOLAR, "out_type": BIPOLAR},
     r"sums of 9 values of bipolar span \[-9, 9\], which does not fit the output type "
     r"bipolar \(use int5 or wider\)"),
])
def test_spec_errors(kwargs, message):
    args = {"name": "pool0", "channels": 6, "positions": 9, "mode": "max",
            "in_type": INT4, "out_type": INT4}
    args.update(kwargs)
    with pytest.raises(SpecError, match=message) as err:
        pool.Spec(**args)
    assert err.value.where == "pool0"


def test_fold_options_and_cycles():
    s = pool.Spec("p", 12, 4, "max", INT4, INT4, windows=5)
    options = pool.fold_options(s)
    assert [o["pe"] for o in options] == [1, 2, 3, 4, 6, 12]
    for o in options:
        folded = dataclasses.replace(s, **o)
        assert folded.cycles() == 5 * 4 * 12 // o["pe"]
        assert pool.estimate(folded, "xc7").cycles == folded.cycles()


def test_estimate_counts_running_words_in_registers_or_memory():
    few = pool.Spec("p", 8, 4, "sum", UINT3, pool.sum_type(UINT3, 4), pe=4)  # 2 words
    many = dataclasses.replace(few, channels=512, pe=1)  # 512 words of 5 bits
    assert pool.estimate(few, "xc7").ff >= 2 * 4 * 5
    cost = pool.estimate(many, "xc7")
    # a memory (LUT RAM or block RAM, whichever the estimator's memory placement
    # finds cheaper), not 2560 registers
    assert cost.ff < 100 and (cost.bram18 >= 1 or cost.lut >= 5 * 512 // 64)
    big = dataclasses.replace(many, channels=4096, in_type=INT4,
                              out_type=pool.sum_type(INT4, 4))
    assert pool.estimate(big, "xc7").bram18 >= 1


# ---- hardware -----------------------------------------------------------------------

in_types = st.one_of(
    st.just(BIPOLAR),
    st.builds(IntType, st.integers(1, 6), st.just(False)),
    st.builds(IntType, st.integers(2, 6), st.just(True)),
)
stalls = st.sampled_from([0.0, 0.5, 0.9])


@st.composite
def cases(draw):
    in_type = draw(in_types)
    mode = draw(st.sampled_from(pool.MODES))
    channels = draw(st.integers(1, 8))
    pe = draw(st.sampled_from(divisors(channels)))  # channels / pe: registers and memory
    positions = draw(st.integers(1, 5))
    out_type = in_type
    if mode == "sum":
        out_type = pool.sum_type(in_type, positions)
        if draw(st.booleans()):
            out_type = IntType(out_type.bits + 2, True)  # wider than needed is fine
    spec = pool.Spec("p", channels, positions, mode, in_type, out_type,
                     windows=draw(st.integers(1, 3)), pe=pe)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = random_values(in_type, (draw(st.integers(1, 3)), spec.in_elems), rng)
    return spec, x


@settings(max_examples=30, deadline=None)
@given(cases(), stalls, stalls, st.integers(0, 1000))
def test_hardware_matches_reference(case, stall_in, stall_out, seed):
    spec, x = case
    # a lost or stuck word shows as no progress long before the default budget
    got = run_spec(spec, x, stall_in=stall_in, stall_out=stall_out, seed=seed,
                   max_cycles=2000 + 100 * x.size)
    assert np.array_equal(got, pool.reference(spec, x))


@pytest.mark.parametrize("mode", pool.MODES)
@pytest.mark.parametrize("pe", [6, 3, 1])  # 1 and 2 running words in registers, 6 in memory
def test_hardware_takes_one_word_per_cycle(mode, pe):
    in_type = IntType(5, True)
    out_type = in_type if mode == "max" else pool.sum_type(in_type, 4)
    spec = pool.Spec("p", 6, 4, mode, in_type, out_type, windows=3, pe=pe)
    frames = 4
    x = random_values(in_type, (frames, spec.in_elems), np.random.default_rng(pe))
    # run_spec fails once the last word takes longer than the steady rate + latency
    got = run_spec(spec, x, stall_in=0, stall_out=0, max_cycles=frames * spec.cycles() + 4)
    assert np.array_equal(got, pool.reference(spec, x))


def _max_pooling_chain():
    window = swg.Spec("window", 4, 8, 6, 2, 2, INT4, 2, 2, 1, 1, 1, 1, simd=4,
                      pad_value=INT4.min)
    reduce = pool.Spec("pool", 4, 4, "max", INT4, INT4,
                       windows=window.out_h * window.out_w, pe=2)
    tensors = {t.name: t for t in (Tensor("x", (window.in_elems,), INT4),
                                   Tensor("w", (window.out_elems,), INT4),
                                   Tensor("y", (reduce.out_elems,), INT4))}
    graph = Graph((Node("window", window, ("x",), ("w",)), Node("pool", reduce, ("w",), ("y",))),
                  tensors, ("x",), ("y",))
    return window, reduce, graph


def test_specs_survive_graph_json():
    _, _, graph = _max_pooling_chain()
    loaded = Graph.from_json(graph.to_json())
    assert [n.spec for n in loaded.nodes] == [n.spec for n in graph.nodes]
    assert [n.kind for n in loaded.nodes] == ["sliding_window", "pool"]


def test_max_pooling_chain_as_verilog(tmp_path):
    """Sliding window -> (width converter, FIFOs) -> pool as generated Verilog in cocotb:
    bit-exact under stalls, and the stall-free cycles per frame are the estimate."""
    window, reduce, graph = _max_pooling_chain()
    graph, _ = widths.apply(graph)
    graph, _ = fifos.apply(graph)
    x = random_values(INT4, (30, window.in_elems), np.random.default_rng(2))
    want = pool.reference(reduce, swg.reference(window, x))
    rtl = tmp_path / "fpgagen_top.v"
    rtl.write_text(verilog_text(graph))
    res = simulate_stream([rtl], tmp_path / "sim", frame_words(x, INT4, window.simd),
                          frame_words(want, INT4, reduce.pe), stall_in=0.5, stall_out=0.5)
    assert res.mismatches == 0, res.first_mismatch
    assert np.array_equal(words_values(res.out_words, INT4, reduce.pe), want)
    estimate = max(window.cycles(), reduce.cycles())  # 5x4 windows of 2x2 pixels
    assert abs(res.cycles_per_frame - estimate) <= 0.05 * estimate
