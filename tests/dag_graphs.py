"""Hand-built dataflow DAGs (IR directly): residual blocks with a fork and a join.

A fork is just a tensor read by two nodes; ``prepared`` runs the passes that make it
hardware (duplicators, width converters, FIFOs). Foldings are chosen by hand, unlike
each other, so that converters sit on both branches.
"""

from __future__ import annotations

import numpy as np

from fpgagen.dtypes import IntType
from fpgagen.ir import Graph, Node, Tensor
from fpgagen.nodes import add, mvau, swg, thresholding
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


def prepared(graph: Graph) -> Graph:
    """The passes after folding: duplicators, width converters, FIFOs."""
    for apply in (forks.apply, widths.apply, fifos.apply):
        graph, _ = apply(graph)
    return graph
