"""Differential MVAU: its reference (accumulating W @ d) against the plain MVAU's
reference over random shapes, types and foldings; spec messages; the component in
Amaranth's simulator from the encoder's wire words under stalls; its cycle count."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from streamsim import run_words
from test_nodes_delta import sparse_frames, values

from fpgagen.dtypes import BIPOLAR, IntType, unpack_lanes
from fpgagen.errors import SpecError
from fpgagen.ir import Graph
from fpgagen.nodes import delta, dmvau, estimate, mvau

X_TYPES = [BIPOLAR, IntType(2, False), IntType(3, True), IntType(4, False)]
W_TYPES = [BIPOLAR, IntType(2, True), IntType(3, True)]
OUT_TYPES = [None, BIPOLAR, IntType(2, False), IntType(3, True)]  # None: raw accumulator


def make(rng, mw, mh, x_type, w_type, out, *, pe=1, simd=1, vectors=4, narrow_bits=None):
    """(plain MVAU, differential MVAU) of the same weights and output stage."""
    w = values(rng, w_type, (mh, mw))
    raw = mvau.Spec("m", mw, mh, w, x_type, w_type, IntType(32, True), vectors=vectors)
    if out is None:
        kw = {"out_type": raw.acc_type}
    else:
        lo, hi = raw.acc_range
        levels = 1 if out.bipolar else out.max - out.min
        kw = {"out_type": out, "out_base": 0 if out.bipolar else out.min,
              "thresholds": np.sort(rng.integers(lo - 1, hi + 2, size=(mh, levels)), axis=1)}
    top = delta.DeltaFormat(mw, x_type, 1).delta_type.bits
    bits = top if narrow_bits is None else min(narrow_bits, top)
    plain = mvau.Spec("m", mw, mh, w, x_type, w_type, vectors=vectors, pe=pe, simd=simd, **kw)
    diff = dmvau.Spec("m", mw, mh, w, x_type, w_type, narrow_bits=bits, vectors=vectors,
                      pe=pe, simd=simd, **kw)
    return plain, diff


def divisor(n: int, pick: int) -> int:
    options = [k for k in range(1, n + 1) if n % k == 0]
    return options[pick % len(options)]


@settings(max_examples=60, deadline=None)
@given(mw=st.integers(1, 12), mh=st.integers(1, 8), vectors=st.integers(1, 6),
       x_type=st.sampled_from(X_TYPES), w_type=st.sampled_from(W_TYPES),
       out=st.sampled_from(OUT_TYPES), simd_pick=st.integers(0, 5), seed=st.integers(0, 10_000))
def test_reference_equals_the_plain_mvau(mw, mh, vectors, x_type, w_type, out, simd_pick, seed):
    rng = np.random.default_rng(seed)
    plain, diff = make(rng, mw, mh, x_type, w_type, out, vectors=vectors,
                       simd=divisor(mw, simd_pick))
    x = sparse_frames(rng, x_type, 3, vectors, mw)
    d = delta.deltas(x, vectors, mw)
    groups = delta.group_values(diff.fmt, d)  # the encoder's golden output
    assert np.array_equal(dmvau.reference(diff, groups), mvau.reference(plain, x))
    # the wire words stand for these deltas whatever the grouping
    assert diff.fmt == delta.DeltaFormat(mw, x_type, diff.narrow_bits, diff.simd)


def test_spec_messages_are_the_mvaus():
    w = np.ones((4, 6), dtype=np.int64)
    with pytest.raises(SpecError, match=r"m: PE=3 does not divide MH \(output channels\)=4"):
        dmvau.Spec("m", 6, 4, w, IntType(2, False), IntType(2, True), IntType(6, True), 3,
                   pe=3)
    with pytest.raises(SpecError, match=r"m: SIMD=4 does not divide MW \(input elements\)=6"):
        dmvau.Spec("m", 6, 4, w, IntType(2, False), IntType(2, True), IntType(6, True), 3,
                   simd=4)
    with pytest.raises(SpecError, match=r"m: weights have shape \(4, 6\), expected \(4, 5\)"):
        dmvau.Spec("m", 5, 4, w, IntType(2, False), IntType(2, True), IntType(6, True), 3)
    with pytest.raises(SpecError, match=r"narrow_bits must be an integer in \[1, 3\]"):
        dmvau.Spec("m", 6, 4, w, IntType(2, False), IntType(2, True), IntType(6, True), 4)
    with pytest.raises(SpecError, match=r"accumulator range \[0, 18\] does not fit"):
        dmvau.Spec("m", 6, 4, w, IntType(2, False), IntType(2, True), IntType(4, True), 3)


@settings(max_examples=16, deadline=None)
@given(x_type=st.sampled_from(X_TYPES), w_type=st.sampled_from(W_TYPES),
       out=st.sampled_from(OUT_TYPES), pe_pick=st.integers(0, 2), simd_pick=st.integers(0, 3),
       narrow=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_hardware_from_wire_words_under_stalls(x_type, w_type, out, pe_pick, simd_pick,
                                               narrow, seed):
    """Accumulators in registers (one or two groups) and in a memory (six groups);
    entries of 1, 2, 4 or all 8 input channels."""
    rng = np.random.default_rng(seed)
    pe, simd = (6, 3, 1)[pe_pick], (1, 2, 4, 8)[simd_pick]
    plain, diff = make(rng, 8, 6, x_type, w_type, out, pe=pe, simd=simd, vectors=5,
                       narrow_bits=narrow)
    x = sparse_frames(rng, x_type, 3, 5, 8)
    words = [w for f in delta.encode_frames(diff.fmt, delta.deltas(x, 5, 8), 5) for w in f]
    want = mvau.reference(plain, x)
    got, _ = run_words(diff, words, want.size // pe, stall_in=0.4, stall_out=0.4, seed=seed)
    t = diff.out_type
    assert np.array_equal(t.decode(unpack_lanes(got, pe, t.bits)).reshape(want.shape), want)


@pytest.mark.parametrize("pe,simd", [(1, 1), (2, 1), (6, 1), (2, 3), (6, 4), (1, 12)])
def test_cycles_for_the_data_and_in_the_worst_case(pe, simd):
    rng = np.random.default_rng(pe)
    _, diff = make(rng, 12, 6, IntType(3, False), IntType(3, True), IntType(2, False), pe=pe,
                   simd=simd, vectors=6, narrow_bits=2)
    x = sparse_frames(rng, diff.x_type, 4, 6, 12, keep=0.5)
    worst = np.tile(np.array([7, 0] * 3).repeat(12), (4, 1))  # every |d| = 7: wide
    for frames in (x, worst):
        d = delta.deltas(frames, 6, 12)
        words = [w for f in delta.encode_frames(diff.fmt, d, 6) for w in f]
        _, cycles = run_words(diff, words, 4 * 6 * 6 // pe, stall_in=0, stall_out=0)
        assert 0 <= cycles - diff.cycles_for(d).sum() <= 3
    assert diff.cycles_for(delta.deltas(worst, 6, 12)).tolist() == [diff.cycles()] * 4
    # the plain MVAU's SF * NF per vector, one escape per group, then the output pass
    assert diff.cycles() == 6 * (diff.sf * (diff.nf + 1) + diff.nf)
    assert diff.cycles() - 6 * (diff.sf + diff.nf) == diff.plain.cycles()


def test_estimate_and_graph_round_trip():
    rng = np.random.default_rng(0)
    for pe in (6, 1):  # accumulators in registers / in a memory
        _, diff = make(rng, 12, 6, IntType(4, False), IntType(3, True), IntType(2, False),
                       pe=pe, vectors=3)
        cost = estimate(diff, "xc7")
        assert cost.cycles == diff.cycles() and cost.lut > 0 and cost.ff > 0
    wider = estimate(dataclasses.replace(diff, simd=4), "xc7")
    assert wider.cycles < cost.cycles and wider.lut > cost.lut
    assert {"pe", "simd"} <= set(dmvau.fold_options(diff)[0])
    from fpgagen.ir import Node, Tensor

    enc = delta.Spec("enc", 12, IntType(4, False), diff.narrow_bits, vectors=3)
    graph = Graph((Node("enc", enc, ("x",), ("d",)), Node("m", diff, ("d",), ("y",))),
                  {"x": Tensor("x", (36,), enc.x_type), "d": Tensor("d", (36,), enc.out_type),
                   "y": Tensor("y", (18,), diff.out_type)}, ("x",), ("y",))
    back = Graph.from_json(graph.to_json())
    spec = back.node("m").spec
    assert spec.narrow_bits == diff.narrow_bits and np.array_equal(spec.weights, diff.weights)
    assert np.array_equal(spec.thresholds, diff.thresholds) and back.node("enc").spec == enc
