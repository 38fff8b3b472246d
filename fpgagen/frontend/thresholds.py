"""Turn "integer accumulator -> float ops -> quantizer" into integer thresholds.

The float chain (BatchNorm, scales, biases, clips...) followed by a quantizer is a
monotone step function of the integer accumulator in each channel. Its thresholds
are found by binary search on the chain itself, evaluated in float32 exactly as the
exported model computes it, so the integer result equals the float model's levels
for every reachable accumulator value. The result is then verified.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..dtypes import BIPOLAR, IntType
from ..errors import UnsupportedError
from ..ir import HostOp
from ..onnx_ops import F32, bipolar_levels, evaluate, quant_levels, quant_range, trunc_levels

EXHAUSTIVE_CHECK = 4_000_000  # accumulator values x channels verified one by one


def apply_chain(chain: list[HostOp], value: np.ndarray) -> np.ndarray:
    for op in chain:
        value = evaluate(op.op, [value if o is None else o for o in op.operands], op.attrs)
    return value


def quantizer_levels(quant: HostOp, value: np.ndarray) -> np.ndarray:
    """Integer levels of a Quant/BipolarQuant applied to ``value``."""
    if quant.op == "BipolarQuant":
        return bipolar_levels(value).astype(np.int64)
    if quant.op == "Trunc":
        return trunc_levels(value, *quant.operands[1:], quant.attrs).astype(np.int64)
    _, scale, zp, bits = quant.operands
    return quant_levels(value, scale, zp, bits, quant.attrs).astype(np.int64)


def quantizer_type(quant: HostOp, where: str) -> tuple[IntType, list[int]]:
    """The on-chip type of a quantizer's levels and the sorted list of its levels."""
    if quant.op == "BipolarQuant":
        return BIPOLAR, [-1, 1]
    bits = quant.operands[-1]  # Quant: (x, scale, zp, bits); Trunc: (..., out_bits)
    zp = quant.operands[2]
    bits_f = float(np.asarray(bits).ravel()[0])
    if np.asarray(bits).size != 1 or bits_f != int(bits_f) or bits_f < 1:
        raise UnsupportedError(f"bit width {np.asarray(bits).ravel().tolist()} is not a "
                               "positive integer", where=where)
    bits_i = int(bits_f)
    if bits_i > 16:
        raise UnsupportedError(f"{bits_i}-bit activations are wider than the 16 supported",
                               where=where, hint="quantize activations to 16 bits or less")
    if np.any(np.asarray(zp) != 0):
        raise UnsupportedError("non-zero zero points are not supported", where=where,
                               hint="use symmetric or unsigned quantizers with zero_point=0")
    signed = bool(quant.attrs.get("signed", 1))
    narrow = bool(quant.attrs.get("narrow", 0))
    if signed and bits_i < 2:
        raise UnsupportedError("a signed 1-bit Quant is not supported", where=where,
                               hint="use a bipolar (BipolarQuant) quantizer")
    lo, hi = quant_range(bits_i, signed, narrow)
    return IntType(bits_i, signed), list(range(lo, hi + 1))


@dataclass
class Thresholds:
    thresholds: np.ndarray  # (channels, levels-1), ascending
    out_type: IntType
    out_base: int
    flip: np.ndarray  # (channels,) bool: the function decreases; negate the input


def derive(chain: list[HostOp], quant: HostOp, lo: np.ndarray, hi: np.ndarray,
           where: str) -> Thresholds:
    """Thresholds of ``quant(chain(a))`` for integer a in [lo[c], hi[c]] per channel."""
    out_type, levels = quantizer_type(quant, where)
    lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
    channels = lo.shape[0]

    def f(a: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return quantizer_levels(quant, apply_chain(chain, a.astype(F32)))

    flip = (f(lo[None]) > f(hi[None]))[0]
    sign = np.where(flip, -1, 1)
    glo, ghi = np.where(flip, -hi, lo), np.where(flip, -lo, hi)

    def g(a):
        return f(a * sign)

    targets = np.asarray(levels[1:], np.int64)[:, None]  # (L, 1)
    nlev = targets.shape[0]
    left = np.broadcast_to(glo, (nlev, channels)).copy()
    right = np.broadcast_to(ghi + 1, (nlev, channels)).copy()
    while True:
        active = left < right
        if not active.any():
            break
        mid = (left + right) // 2
        reached = g(np.where(active, mid, glo)) >= targets
        right = np.where(active & reached, mid, right)
        left = np.where(active & ~reached, mid + 1, left)
    thresholds = left.T.copy()  # (channels, L)
    _verify(g, thresholds, levels, glo, ghi, where)
    out_base = levels[0] if not out_type.bipolar else 0
    return Thresholds(thresholds, out_type, out_base, flip)


def _verify(g, thresholds, levels, glo, ghi, where):
    channels = thresholds.shape[0]
    span = int((ghi - glo).max()) + 1
    if span * channels <= EXHAUSTIVE_CHECK:
        a = np.minimum(glo[None] + np.arange(span)[:, None], ghi[None])
    else:
        rng = np.random.default_rng(0)
        picks = [glo[None] + (rng.random((4096, channels)) * (ghi - glo + 1)).astype(np.int64)]
        for d in (-1, 0):
            picks.append(np.clip(thresholds.T + d, glo, ghi))
        a = np.concatenate(picks)
    want = g(a)
    count = (a[..., None] >= thresholds[None]).sum(-1)
    got = np.asarray(levels)[count]
    if not np.array_equal(got, want):
        bad = np.argwhere(got != want)[0]
        raise UnsupportedError(
            f"the activation is not a monotone function of the accumulator in channel "
            f"{int(bad[1])}", where=where,
            hint="only monotone float ops (scales, biases, BatchNorm, ReLU, clips) may "
                 "stand between a layer and its quantizer")
