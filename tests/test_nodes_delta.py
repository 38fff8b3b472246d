"""Delta encoder: golden deltas, the wire format against an independent decoder, spec
messages, and the component in Amaranth's simulator word for word under stalls, with
its data-dependent cycle count."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from streamsim import run_words

from fpgagen.dtypes import BIPOLAR, IntType, pack_lanes
from fpgagen.errors import SpecError
from fpgagen.nodes import delta, estimate

TYPES = [BIPOLAR, IntType(1, False), IntType(2, True), IntType(3, False), IntType(4, True)]


def values(rng, dtype, shape):
    if dtype.bipolar:
        return np.where(rng.integers(0, 2, size=shape) > 0, 1, -1)
    return rng.integers(dtype.min, dtype.max + 1, size=shape)


def sparse_frames(rng, dtype, frames, vectors, channels, keep=0.6):
    """Frames whose vectors repeat much of the previous one (and one whole vector)."""
    x = values(rng, dtype, (frames, vectors, channels))
    for t in range(1, vectors):
        same = rng.random((frames, channels)) < keep
        x[:, t][same] = x[:, t - 1][same]
    if vectors > 1:
        x[0, 1] = x[0, 0]  # a token without any nonzero delta
    return x.reshape(frames, -1)


def fields(raw: int, bits: int, count: int) -> list[int]:
    """``count`` two's complement fields of ``bits`` bits, the first lowest."""
    out = []
    for _ in range(count):
        v = raw & ((1 << bits) - 1)
        out.append(v - ((v >> (bits - 1)) << bits))
        raw >>= bits
    return out


def decode(fmt: delta.DeltaFormat, words: list[int], vectors: int) -> np.ndarray:
    """The wire words of one frame -> its dense deltas, written from the format's
    description alone (groups of ``simd`` channels)."""
    out = np.zeros((vectors, fmt.channels // fmt.simd, fmt.simd), dtype=np.int64)
    n, nb, db = fmt.simd, fmt.narrow_bits, fmt.delta_type.bits
    ib = max(1, (fmt.channels // n - 1).bit_length())
    t, k = 0, 0
    while k < len(words):
        w = words[k]
        index = (w >> (n * nb)) & ((1 << ib) - 1)
        wide, last = (w >> (n * nb + ib)) & 1, (w >> (n * nb + ib + 1)) & 1
        if wide:
            k += 1
            assert words[k] >> (n * db) == 0
            value = fields(words[k], db, n)
        else:
            value = fields(w, nb, n)
        assert any(value) or (last and not wide and index == 0), "a zero entry was sent"
        assert not (wide and all(-(1 << nb - 1) <= v < 1 << nb - 1 for v in value))
        out[t, index] = value
        t += last
        k += 1
    assert t == vectors, f"{t} token ends for {vectors} vectors"
    return out.reshape(-1)


def test_reference_is_the_difference_to_the_previous_vector():
    x = np.array([[1, 2, 3, 3, 0, 1], [0, 0, 1, 1, 1, 1]])
    spec = delta.Spec("enc", 2, IntType(2, False), 3, vectors=3)
    want = np.array([[1, 2, 2, 1, -3, -2], [0, 0, 1, 1, 0, 0]])
    assert np.array_equal(delta.reference(spec, x), want)
    # running sums give the vectors back, frame by frame
    d = delta.reference(spec, x).reshape(2, 3, 2)
    assert np.array_equal(np.cumsum(d, axis=1).reshape(2, -1), x)
    # groups of two: each group's deltas as signed digits of their 3 bits
    grouped = delta.Spec("enc", 2, IntType(2, False), 3, vectors=3, lanes=2, simd=2)
    assert np.array_equal(delta.reference(grouped, x), want[:, ::2] + want[:, 1::2] * 8)


@settings(max_examples=40, deadline=None)
@given(dtype=st.sampled_from(TYPES + [IntType(8, True), IntType(7, False)]),
       simd=st.integers(1, 8), seed=st.integers(0, 1000))
def test_group_values_hold_every_delta(dtype, simd, seed):
    """One integer per group, and back: exact for the extreme deltas too."""
    fmt = delta.DeltaFormat(simd * 3, dtype, 1, simd)
    if fmt.simd * fmt.delta_type.bits > 64:
        return
    rng = np.random.default_rng(seed)
    span = dtype.max - dtype.min
    d = rng.integers(-span, span + 1, size=(4, 6 * simd))
    d[0, :simd], d[1, :simd] = -span, span
    v = delta.group_values(fmt, d)
    assert v.shape == (4, 6) and np.array_equal(delta.dense(fmt, v), d)


@pytest.mark.parametrize("dtype", TYPES)
@pytest.mark.parametrize("narrow", [1, 2, None])
@pytest.mark.parametrize("channels,simd", [(5, 1), (6, 3), (8, 2), (4, 4)])
def test_the_wire_format_decodes_to_the_deltas(dtype, narrow, channels, simd):
    rng = np.random.default_rng(3)
    top = delta.DeltaFormat(channels, dtype, 1).delta_type.bits
    fmt = delta.DeltaFormat(channels, dtype, top if narrow is None else min(narrow, top), simd)
    x = sparse_frames(rng, dtype, 6, 4, channels)
    d = delta.deltas(x, 4, channels)
    frames = delta.encode_frames(fmt, d, 4)
    for f, words in enumerate(frames):
        assert all(0 <= w < 1 << fmt.word_bits for w in words)
        assert np.array_equal(decode(fmt, words, 4), d[f])
    stats = delta.link_stats(fmt, d, 4)
    assert stats["zero"] + stats["narrow"] + stats["wide"] == d.size
    assert stats["group_zero"] + stats["group_narrow"] + stats["group_wide"] == \
        stats["groups"] == d.size // simd
    assert stats["words"].tolist() == [len(w) for w in frames]
    assert stats["zero"] == int((d == 0).sum())
    groups = d.reshape(-1, simd)
    assert stats["group_zero"] == int((~groups.any(axis=1)).sum())


def test_wide_deltas_take_two_words_and_an_empty_token_one():
    fmt = delta.DeltaFormat(4, IntType(4, False), 3)  # deltas int5, narrow [-4, 3]
    assert fmt.escapes and fmt.word_bits == 3 + 2 + 2
    assert delta.encode_token(fmt, np.array([0, 0, 0, 0])) == [1 << 6]
    words = delta.encode_token(fmt, np.array([0, 3, 0, -9]))
    assert words == [3 | 1 << 3, 3 << 3 | 1 << 5 | 1 << 6, -9 & 0b11111]
    # groups of two: one narrow group, one wide group sent at full width
    fmt = delta.DeltaFormat(6, IntType(4, False), 3, simd=2)
    assert fmt.word_bits == max(2 * 3 + 2 + 2, 2 * 5)
    words = delta.encode_token(fmt, np.array([0, 0, 3, -1, 0, -9]))
    assert words == [3 | 0b111 << 3 | 1 << 6, 2 << 6 | 1 << 8 | 1 << 9,
                     0 | (-9 & 0b11111) << 5]


def test_spec_messages():
    with pytest.raises(SpecError, match=r"enc: narrow_bits must be an integer in \[1, 5\] "
                                        r"\(the deltas of uint4 are int5\), not 6"):
        delta.Spec("enc", 4, IntType(4, False), 6)
    with pytest.raises(SpecError, match=r"lanes=3 does not divide channels=4"):
        delta.Spec("enc", 4, IntType(4, False), 3, lanes=3)
    with pytest.raises(SpecError, match=r"simd=3 does not divide channels=4"):
        delta.Spec("enc", 4, IntType(4, False), 3, lanes=4, simd=3)
    with pytest.raises(SpecError, match=r"simd=2 does not divide lanes=3"):
        delta.Spec("enc", 6, IntType(4, False), 3, lanes=3, simd=2)
    assert delta.default_narrow_bits(IntType(4, False)) == 5  # every delta in one word
    assert delta.default_narrow_bits(IntType(8, True)) == 5  # int9 deltas split
    assert delta.default_narrow_bits(BIPOLAR) == 3


@settings(max_examples=20, deadline=None)
@given(dtype=st.sampled_from(TYPES), channels=st.sampled_from([1, 2, 4, 6, 12]),
       vectors=st.integers(1, 4), pick=st.integers(0, 20), narrow=st.integers(1, 5),
       seed=st.integers(0, 1000))
def test_hardware_sends_the_reference_words_under_stalls(dtype, channels, vectors, pick,
                                                         narrow, seed):
    """Any group size, input words of one or several groups."""
    rng = np.random.default_rng(seed)
    options = delta.fold_options(delta.Spec("enc", channels, dtype, 1))
    fold = options[pick % len(options)]
    top = delta.DeltaFormat(channels, dtype, 1).delta_type.bits
    spec = delta.Spec("enc", channels, dtype, min(narrow, top), vectors=vectors, **fold)
    lanes = spec.lanes
    x = sparse_frames(rng, dtype, 3, vectors, channels)
    want = [w for f in delta.encode_frames(spec.fmt, delta.deltas(x, vectors, channels), vectors)
            for w in f]
    words_in = pack_lanes(dtype.encode(x).reshape(-1, lanes), dtype.bits)
    got, _ = run_words(spec, words_in, len(want), stall_in=0.4, stall_out=0.4, seed=seed)
    assert got == want


@pytest.mark.parametrize("lanes,simd", [(1, 1), (3, 1), (12, 1), (4, 2), (12, 3), (6, 6)])
def test_cycles_for_the_data_and_in_the_worst_case(lanes, simd):
    """Without stalls the encoder takes ``cycles_for`` (plus its pipeline registers);
    every group nonzero and wide takes exactly the worst case ``cycles()``."""
    rng = np.random.default_rng(lanes)
    spec = delta.Spec("enc", 12, IntType(3, False), 2, vectors=6, lanes=lanes, simd=simd)
    x = sparse_frames(rng, spec.x_type, 4, 6, 12, keep=0.5)
    worst = np.tile(np.array([7, 0] * 3).repeat(12), (4, 1))  # every |d| = 7: wide
    for frames in (x, worst):
        d = delta.deltas(frames, 6, 12)
        n_out = sum(map(len, delta.encode_frames(spec.fmt, d, 6)))
        words_in = pack_lanes(spec.x_type.encode(frames).reshape(-1, lanes), 3)
        _, cycles = run_words(spec, words_in, n_out, stall_in=0, stall_out=0)
        assert 0 <= cycles - spec.cycles_for(d).sum() <= 3
    assert spec.cycles_for(delta.deltas(worst, 6, 12)).tolist() == [spec.cycles()] * 4


def test_estimate():
    for sf in (1, 4):  # previous vector in registers / in a memory
        spec = delta.Spec("enc", 8, IntType(4, True), 3, vectors=5, lanes=8 // sf)
        cost = estimate(spec, "xc7")
        assert cost.cycles == spec.cycles() == 5 * (8 * 2 + 1)
        assert cost.lut > 0 and cost.ff > 0 and cost.dsp == 0
    grouped = delta.Spec("enc", 8, IntType(4, True), 3, vectors=5, lanes=8, simd=4)
    assert estimate(grouped, "xc7").cycles == grouped.cycles() == 5 * (2 * 2 + 1)
