"""Matmul between two token streams: golden model vs numpy per head (attention's QKᵀ
and AV), spec checks, folding, estimate, hardware vs golden model with random stalls on
every port, and the stall-free frame time against ``cycles()``."""

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st
from streamsim import run_ports

from fpgagen import nodes
from fpgagen.dtypes import BIPOLAR, IntType, pack_lanes
from fpgagen.errors import SpecError
from fpgagen.ir import Graph, Node, Tensor
from fpgagen.nodes import matmul as mm
from fpgagen.nodes.base import divisors

INT4 = IntType(4, True)
UINT8 = IntType(8, False)


def values(rng, dtype, shape):
    if dtype.bipolar:
        return np.where(rng.integers(0, 2, size=shape) > 0, 1, -1)
    return rng.integers(dtype.min, dtype.max + 1, size=shape)


def per_head_numpy(spec, a, b):
    """Each head's matrices cut out of the tokens, multiplied by numpy, merged back."""
    out = np.zeros((a.shape[0], spec.rows, spec.heads * spec.cols), dtype=np.int64)
    for f in range(a.shape[0]):
        tokens_a = a[f].reshape(spec.rows, -1)
        tokens_b = b[f].reshape(spec.n_b, -1)
        for h in range(spec.heads):
            a_h = tokens_a[:, h * spec.inner:(h + 1) * spec.inner]
            b_h = tokens_b[:, h * spec.d_b:(h + 1) * spec.d_b]
            out[f, :, h * spec.cols:(h + 1) * spec.cols] = (
                a_h @ b_h.T if spec.transpose_b else a_h @ b_h)
    return out.reshape(a.shape[0], -1)


@st.composite
def specs(draw, max_dim=6, foldings=True):
    transpose_b = draw(st.booleans())
    rows, n_b, d_b = (draw(st.integers(1, max_dim)) for _ in range(3))
    heads = draw(st.integers(1, 3))
    a_type, b_type = (draw(st.sampled_from([BIPOLAR, IntType(draw(st.integers(1, 8)),
                                                               draw(st.booleans()))]))
                      for _ in range(2))
    inner, cols = (d_b, n_b) if transpose_b else (n_b, d_b)
    pe = draw(st.sampled_from(divisors(cols))) if foldings else 1
    simd = draw(st.sampled_from(divisors(inner))) if foldings else 1
    return mm.Spec("mm", rows, n_b, d_b, a_type, b_type, transpose_b, heads, pe, simd,
                   pingpong=draw(st.booleans()))


def operands(spec, seed, frames):
    rng = np.random.default_rng(seed)
    return (values(rng, spec.a_type, (frames, nodes.port(spec, "a").elems)),
            values(rng, spec.b_type, (frames, nodes.port(spec, "b").elems)))


@settings(max_examples=60, deadline=None)
@given(specs(max_dim=9), st.integers(0, 2**32 - 1))
def test_reference_is_numpy_per_head(spec, seed):
    a, b = operands(spec, seed, 3)
    got = mm.reference(spec, a, b)
    assert np.array_equal(got, per_head_numpy(spec, a, b))
    lo, hi = mm.acc_bounds(spec.a_type, spec.b_type, spec.inner)
    assert got.min() >= lo and got.max() <= hi and spec.out_type.contains([lo, hi])


def test_attention_with_two_heads():
    """Q Kᵀ per head, then A V per head merged back into tokens, as the ViT computes it."""
    rng = np.random.default_rng(1)
    tokens, heads, d = 5, 2, 3
    q, k, v = (rng.integers(-8, 8, size=(tokens, heads * d)) for _ in range(3))
    qk = mm.Spec("qk", tokens, tokens, d, INT4, INT4, transpose_b=True, heads=heads)
    scores = mm.reference(qk, q.ravel()[None], k.ravel()[None]).reshape(tokens, heads,
                                                                       tokens)
    for h in range(heads):
        cut = slice(h * d, (h + 1) * d)
        assert np.array_equal(scores[:, h], q[:, cut] @ k[:, cut].T)
    weights = rng.integers(0, 256, size=(tokens, heads * tokens))  # uint8 attention
    av = mm.Spec("av", tokens, tokens, d, UINT8, INT4, transpose_b=False, heads=heads)
    mixed = mm.reference(av, weights.ravel()[None], v.ravel()[None]).reshape(tokens, -1)
    merged = np.concatenate([weights[:, h * tokens:(h + 1) * tokens] @ v[:, h * d:(h + 1) * d]
                             for h in range(heads)], axis=1)
    assert np.array_equal(mixed, merged)


def test_out_type_is_the_exact_range_and_reached():
    s = mm.Spec("mm", 1, 1, 4, INT4, IntType(3, False))
    assert mm.acc_bounds(INT4, IntType(3, False), 4) == (-224, 196)
    assert s.out_type == IntType(9, True)
    assert mm.acc_type(INT4, INT4, 4) == IntType(10, True)  # 4 * 64 = 256
    assert mm.reference(mm.Spec("mm", 1, 1, 4, INT4, INT4), np.full((1, 4), -8),
                        np.full((1, 4), -8)).tolist() == [[256]]
    assert mm.Spec("mm", 1, 3, 2, BIPOLAR, BIPOLAR, False).out_type == IntType(3, True)


@pytest.mark.parametrize("kwargs,message", [
    ({"pe": 4}, r"pe=4 does not divide cols \(n_b with transpose_b\)=6 \(choose pe from "
                r"1, 2, 3, 6\)"),
    ({"simd": 3}, r"simd=3 does not divide inner \(d_b with transpose_b\)=8 \(choose simd "
                  r"from 1, 2, 4, 8\)"),
    ({"transpose_b": False, "pe": 3}, r"pe=3 does not divide cols \(d_b\)=8"),
    ({"transpose_b": False, "simd": 4}, r"simd=4 does not divide inner \(n_b\)=6"),
    ({"transpose_b": 1}, r"transpose_b must be True or False, not 1"),
    ({"pingpong": "yes"}, r"pingpong must be True or False, not 'yes'"),
    ({"heads": 0}, r"heads must be a positive integer, not 0"),
    ({"n_b": 2.0}, r"n_b must be a positive integer, not 2.0"),
    ({"a_type": "int4"}, r"a_type must be an IntType, not 'int4'"),
    ({"a_type": IntType(24, True), "b_type": IntType(16, True)},
     r"sums of 8 products of int24 and int16 span \[-2199022993408, 2199023255552\]: 43 "
     r"bits, more than the 32 supported on chip \(narrow the operand types\)"),
])
def test_spec_errors(kwargs, message):
    args = {"name": "attn0.qk", "rows": 5, "n_b": 6, "d_b": 8, "a_type": INT4,
            "b_type": INT4}
    args.update(kwargs)
    with pytest.raises(SpecError, match=message) as err:
        mm.Spec(**args)
    assert err.value.where == "attn0.qk"


def test_ports_folding_and_cycles():
    qk = mm.Spec("qk", 17, 17, 8, INT4, INT4, heads=2, pe=1, simd=4)
    assert nodes.in_ports(qk) == ("a", "b") and nodes.out_ports(qk) == ("o",)
    assert nodes.port(qk, "a") == nodes.Port(INT4, 4, 17 * 16)
    assert nodes.port(qk, "b") == nodes.Port(INT4, 4, 17 * 16)
    assert nodes.port(qk, "o") == nodes.Port(IntType(11, True), 1, 17 * 34)  # 8 * 64
    assert qk.steps == 2 * 17 * 2 and qk.b_words == 68
    assert qk.cycles() == 68 + 17 * 68
    av = mm.Spec("av", 17, 17, 8, UINT8, INT4, False, heads=2, pe=8, simd=17, pingpong=True)
    assert nodes.port(av, "b").lanes == 8 and nodes.port(av, "a").lanes == 17
    assert av.steps == 2 and av.cycles() == max(av.b_words, 17 * 2) == 34
    options = mm.fold_options(av)
    assert {"pe": 8, "simd": 17} in options and len(options) == 4 * 2
    # the fold pass's view: the cheapest folding within a budget
    from fpgagen.passes.fold import _best
    for budget in (30_000, 600, 80):
        best = _best(mm.Spec("qk", 17, 17, 8, INT4, INT4, heads=2), budget, "xc7")
        assert best.cycles() <= budget
    assert _best(qk, 40, "xc7") is None  # B alone takes more


def test_fifo_hooks():
    s = mm.Spec("qk", 4, 6, 4, INT4, INT4, heads=2, simd=2)
    assert nodes.input_lead_words(s, "a") == s.a_words == 16
    assert nodes.input_lead_words(s, "b") == 0
    pp = mm.Spec("qk", 4, 6, 4, INT4, INT4, heads=2, simd=2, pingpong=True)
    assert nodes.input_lead_words(pp, "a") == 32
    assert nodes.fill_words(s) == 16 + mm.PIPELINE_WORDS
    assert nodes.fill_words(pp) == 32 + mm.PIPELINE_WORDS


def test_estimate_counts_multipliers_and_buffers():
    small = mm.Spec("qk", 4, 4, 4, INT4, INT4, heads=2, pe=2, simd=2)
    wide = mm.Spec("qk", 4, 4, 4, INT4, INT4, heads=2, pe=4, simd=4)
    assert mm.estimate(wide, "xc7").lut > mm.estimate(small, "xc7").lut
    assert mm.estimate(small, "xc7").dsp == 0  # 4 x 4 bits: LUT multipliers
    assert mm.estimate(mm.Spec("qk", 4, 4, 4, UINT8, UINT8, pe=2), "xc7").dsp == 2
    big = mm.Spec("av", 64, 64, 64, UINT8, UINT8, False, heads=4)  # 16k x 8 bits of B
    one, two = (mm.estimate(mm.Spec("av", 64, 64, 64, UINT8, UINT8, False, heads=4,
                                    pingpong=p), "xc7") for p in (False, True))
    assert one.bram18 >= 64 * 64 * 4 * 8 / 18432 and two.bram18 > one.bram18
    assert one.cycles == big.cycles() and two.cycles < one.cycles


def test_graph_json_round_trip():
    s = mm.Spec("av", 3, 4, 2, UINT8, INT4, False, heads=2, pe=2, simd=4, pingpong=True)
    tensors = {"q": Tensor("q", (3, 8), UINT8), "v": Tensor("v", (4, 4), INT4),
               "y": Tensor("y", (3, 4), s.out_type)}
    graph = Graph((Node("av", s, ("q", "v"), ("y",)),), tensors, ("q",), ("y",))
    assert Graph.from_json(graph.to_json()).node("av").spec == s


# ---- hardware -----------------------------------------------------------------------

stalls = st.sampled_from([0.0, 0.5, 0.9])


@settings(max_examples=30, deadline=None)
@given(specs(max_dim=5), st.integers(0, 2**32 - 1), st.integers(1, 3), stalls, stalls,
       st.integers(0, 1000))
def test_hardware_matches_reference(spec, seed, frames, stall_in, stall_out, sim_seed):
    a, b = operands(spec, seed, frames)
    (got,) = run_ports(spec, a, b, stall_in=stall_in, stall_out=stall_out, seed=sim_seed,
                       max_cycles=3000 + 100 * (a.size + b.size))
    assert np.array_equal(got, mm.reference(spec, a, b))


def steady_cycles(spec, frames=6) -> float:
    """Cycles between frames' first output words, both inputs always valid, the output
    always ready (second half of the run: the first frames include the fill)."""
    dut = nodes.component(spec)
    a, b = operands(spec, 0, frames)
    per_frame = nodes.port(spec, "o").words
    times: list[int] = []

    def feed(stream, name, x):
        view = nodes.port(spec, name)
        words = pack_lanes(view.dtype.encode(x).reshape(-1, view.lanes), view.dtype.bits)

        async def drive(ctx):
            for word in words:
                ctx.set(stream.payload.as_value(), word)
                ctx.set(stream.valid, 1)
                await ctx.tick().until(stream.ready)
            ctx.set(stream.valid, 0)
        return drive

    async def consume(ctx):
        ctx.set(dut.o.ready, 1)
        cycle = 0
        while len(times) < frames * per_frame:
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            cycle += 1
            if valid:
                times.append(cycle)
            assert cycle < 10 * frames * spec.cycles() + 1000, "no progress"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(feed(dut.a, "a", a))
    sim.add_testbench(feed(dut.b, "b", b))
    sim.add_testbench(consume)
    sim.run()
    firsts = times[::per_frame]
    half = frames // 2
    return (firsts[-1] - firsts[half]) / (frames - 1 - half)


@pytest.mark.parametrize("transpose_b,pe,simd,pingpong", [
    (True, 1, 1, False), (True, 2, 4, False), (False, 2, 1, False), (False, 4, 3, False),
    (True, 1, 2, True),  # compute-bound: B loads while the rows are computed
    (True, 3, 4, True),  # B-bound
    (False, 4, 6, True),
])
def test_frame_time_is_cycles(transpose_b, pe, simd, pingpong):
    s = mm.Spec("mm", 3, 6, 4, INT4, IntType(5, False), transpose_b, heads=2, pe=pe,
                simd=simd, pingpong=pingpong)
    assert steady_cycles(s) == s.cycles() == mm.estimate(s, "xc7").cycles
