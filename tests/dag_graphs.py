"""Hand-built dataflow DAGs (IR directly): residual blocks with a fork and a join.

A fork is just a tensor read by two nodes; ``prepared`` runs the passes that make it
hardware (duplicators, width converters, FIFOs). Foldings are chosen by hand, unlike
each other, so that converters sit on both branches.
"""

from __future__ import annotations

import numpy as np

from fpgagen.dtypes import IntType
from fpgagen.ir import Graph, Node, Tensor
from fpgagen.nodes import add, matmul, mvau, swg, thresholding
from fpgagen.passes import fifos, forks, widths

UINT2 = IntType(2, False)
INT2 = IntType(2, True)


def values(rng, dtype, shape):
    if dtype.bipolar:
        return np.where(rng.integers(0, 2, size=shape) > 0, 1, -1)
    return rng.integers(dtype.min, dtype.max + 1, size=shape)


def _thresholds(rng, lo: int, hi: int, rows: int, levels: int) -> np.ndarray:
    return np.sort(rng.integers(lo, hi + 2, size=(rows, levels)), axis=1)


def _conv(rng, name, dtype, h, w, c, oc, k, stride, pad, simd, mvau_simd, pe, out=UINT2):
    """Sliding window + MVAU with thresholds: a quantized convolution, NHWC."""
    window = swg.Spec(f"{name}_window", c, h, w, k, k, dtype, stride, stride,
                      pad, pad, pad, pad, simd=simd)
    weights = values(rng, INT2, (oc, k * k * c))
    raw = mvau.Spec(name, k * k * c, oc, weights, dtype, INT2, IntType(32, True),
                    vectors=window.out_h * window.out_w)
    lo, hi = raw.acc_range
    matrix = mvau.Spec(name, k * k * c, oc, weights, dtype, INT2, out,
                       thresholds=_thresholds(rng, lo, hi, oc, out.max - out.min),
                       vectors=raw.vectors, pe=pe, simd=mvau_simd)
    return window, matrix


class Builder:
    """Collects nodes and tensors; ``node`` returns the output tensor's name."""

    def __init__(self, x_shape, dtype):
        self.nodes, self.tensors = [], {"x": Tensor("x", x_shape, dtype)}

    def node(self, spec, inputs, shape, dtype) -> str:
        out = f"{spec.name}_out"
        self.tensors[out] = Tensor(out, shape, dtype)
        self.nodes.append(Node(spec.name, spec, tuple(inputs), (out,)))
        return out

    def conv(self, src, window, matrix) -> str:
        wins = self.node(window, [src], (window.out_elems,), window.dtype)
        return self.node(matrix, [wins], (window.out_h, window.out_w, matrix.mh),
                         matrix.out_type)

    def graph(self, out) -> Graph:
        return Graph(tuple(self.nodes), self.tensors, ("x",), (out,))


def residual_block(seed=0, *, h=6, w=5, c=4, ka=1, kb=2) -> Graph:
    """x -> window(3x3, pad 1) -> MVAU(thresholds) -> add(with x via the fork) ->
    thresholding. The skip path is the input itself."""
    rng = np.random.default_rng(seed)
    b = Builder((h, w, c), UINT2)
    window, matrix = _conv(rng, "conv", UINT2, h, w, c, c, 3, 1, 1, simd=2, mvau_simd=6, pe=2)
    long = b.conv("x", window, matrix)
    join = add.Spec("residual", c, matrix.out_type, UINT2, ka=ka, kb=kb, vectors=h * w, pe=4)
    total = b.node(join, [long, "x"], (h, w, c), join.out_type)
    lo, hi = join.out_type.min, join.out_type.max
    requant = thresholding.Spec("requant", c, join.out_type, UINT2,
                                _thresholds(rng, lo, hi, c, 3), 0, vectors=h * w, pe=1)
    return b.graph(b.node(requant, [total], (h, w, c), UINT2))


def downsampling_block(seed=0, *, h=8, w=6, c=2, oc=4) -> Graph:
    """Both branches compute: 3x3 stride-2 conv then 3x3 conv on one, a 1x1 stride-2
    conv on the other (a ResNet downsampling block), then the add; the add is the
    output (its exact sum)."""
    rng = np.random.default_rng(seed)
    b = Builder((h, w, c), UINT2)
    win1, conv1 = _conv(rng, "conv1", UINT2, h, w, c, oc, 3, 2, 1, simd=1, mvau_simd=9, pe=2)
    mid = b.conv("x", win1, conv1)
    oh, ow = win1.out_h, win1.out_w
    win2, conv2 = _conv(rng, "conv2", UINT2, oh, ow, oc, oc, 3, 1, 1, simd=4, mvau_simd=12,
                        pe=4)
    long = b.conv(mid, win2, conv2)
    win_s, conv_s = _conv(rng, "shortcut", UINT2, h, w, c, oc, 1, 2, 0, simd=2, mvau_simd=2,
                          pe=1)
    short = b.conv("x", win_s, conv_s)
    join = add.Spec("residual", oc, conv2.out_type, conv_s.out_type, ka=3, kb=-1,
                    vectors=oh * ow, pe=2)
    return b.graph(b.node(join, [long, short], (oh, ow, oc), join.out_type))


def two_blocks(seed=0) -> Graph:
    """Two residual blocks in a row: a fork after a join."""
    first = residual_block(seed)
    second = residual_block(seed + 1)
    rename = {t: f"b2_{t}" for t in second.tensors if t != "x"}
    rename["x"] = first.outputs[0]
    nodes = list(first.nodes) + [
        Node(f"b2_{n.name}", n.spec, tuple(rename[t] for t in n.inputs),
             tuple(rename[t] for t in n.outputs)) for n in second.nodes]
    tensors = dict(first.tensors)
    tensors.update({rename[t]: Tensor(rename[t], v.shape, v.dtype)
                    for t, v in second.tensors.items() if t != "x"})
    return Graph(tuple(nodes), tensors, ("x",), (rename[second.outputs[0]],))


def fork_join(rng) -> Graph:
    """The smallest graph around a 3-way duplicator and two adds: x read three times,
    ``(2*thr(x) - 3*x) + x``, signed input, unlike foldings on the branches."""
    int4 = IntType(4, True)
    b = Builder((6, 4), int4)
    thr = thresholding.Spec("thr", 4, int4, UINT2, _thresholds(rng, -8, 7, 4, 3), 0,
                            vectors=6, pe=2)
    branch = b.node(thr, ["x"], (6, 4), UINT2)
    first = add.Spec("add1", 4, UINT2, int4, ka=2, kb=-3, vectors=6, pe=4)
    inner = b.node(first, [branch, "x"], (6, 4), first.out_type)
    second = add.Spec("add2", 4, first.out_type, int4, vectors=6, pe=1)
    return prepared(b.graph(b.node(second, [inner, "x"], (6, 4), second.out_type)))


def _projection(rng, name, tokens, dim, out_dim, dtype, out, pe, simd):
    """A quantized linear layer over tokens (an MVAU with thresholds): Q, K or V."""
    weights = values(rng, INT2, (out_dim, dim))
    raw = mvau.Spec(name, dim, out_dim, weights, dtype, INT2, IntType(32, True),
                    vectors=tokens)
    lo, hi = raw.acc_range
    return mvau.Spec(name, dim, out_dim, weights, dtype, INT2, out,
                     thresholds=_thresholds(rng, lo, hi, out_dim, out.max - out.min),
                     out_base=out.min, vectors=tokens, pe=pe, simd=simd)


def attention_scores(seed=0, *, tokens=6, dim=4, heads=2, d=3, pingpong=False) -> Graph:
    """x (tokens x dim) -> fork -> Q and K projections (int3, heads x d per token) ->
    matmul QKᵀ per head: the exact scores are the output."""
    rng = np.random.default_rng(seed)
    int3 = IntType(3, True)
    b = Builder((tokens, dim), UINT2)
    q = b.node(_projection(rng, "q", tokens, dim, heads * d, UINT2, int3, d, dim), ["x"],
               (tokens, heads * d), int3)
    k = b.node(_projection(rng, "k", tokens, dim, heads * d, UINT2, int3, d, dim), ["x"],
               (tokens, heads * d), int3)
    qk = matmul.Spec("qk", tokens, tokens, d, int3, int3, True, heads, pe=1, simd=d,
                     pingpong=pingpong)
    return b.graph(b.node(qk, [q, k], (tokens, heads * tokens), qk.out_type))


def attention_values(seed=0, *, tokens=4, dim=3, heads=2, d=2, pingpong=True) -> Graph:
    """x -> fork -> uint3 attention weights (heads x tokens per token) and V (int3) ->
    matmul AV per head: the merged heads (exact) are the output."""
    rng = np.random.default_rng(seed)
    int3, uint3 = IntType(3, True), IntType(3, False)
    b = Builder((tokens, dim), UINT2)
    attn = b.node(_projection(rng, "weights", tokens, dim, heads * tokens, UINT2, uint3, 2,
                              dim), ["x"], (tokens, heads * tokens), uint3)
    v = b.node(_projection(rng, "v", tokens, dim, heads * d, UINT2, int3, 1, 1), ["x"],
               (tokens, heads * d), int3)
    av = matmul.Spec("av", tokens, tokens, d, uint3, int3, False, heads, pe=d, simd=2,
                     pingpong=pingpong)
    return b.graph(b.node(av, [attn, v], (tokens, heads * d), av.out_type))


def attention(seed=0, *, tokens=6, dim=4, heads=2, d=2) -> Graph:
    """A whole attention: x -> fork -> Q, K, V projections; QKᵀ per head (pingpong) ->
    thresholding to uint3 weights -> AV per head with V: the merged heads (exact) are
    the output."""
    rng = np.random.default_rng(seed)
    int3, uint3 = IntType(3, True), IntType(3, False)
    b = Builder((tokens, dim), UINT2)
    proj = {name: b.node(_projection(rng, name, tokens, dim, heads * d, UINT2, int3, d, dim),
                         ["x"], (tokens, heads * d), int3) for name in ("q", "k", "v")}
    qk = matmul.Spec("qk", tokens, tokens, d, int3, int3, True, heads, pe=2, simd=d,
                     pingpong=True)
    scores = b.node(qk, [proj["q"], proj["k"]], (tokens, heads * tokens), qk.out_type)
    lo, hi = qk.out_type.min, qk.out_type.max
    weights = thresholding.Spec("weights", heads * tokens, qk.out_type, uint3,
                                _thresholds(rng, lo, hi, heads * tokens, 7), 0,
                                vectors=tokens, pe=2)
    attn = b.node(weights, [scores], (tokens, heads * tokens), uint3)
    av = matmul.Spec("av", tokens, tokens, d, uint3, int3, False, heads, pe=d, simd=2)
    return b.graph(b.node(av, [attn, proj["v"]], (tokens, heads * d), av.out_type))


def prepared(graph: Graph) -> Graph:
    """The passes after folding: duplicators, width converters, FIFOs."""
    for apply in (forks.apply, widths.apply, fifos.apply):
        graph, _ = apply(graph)
    return graph
