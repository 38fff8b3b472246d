"""Threshold derivation: float chain + quantizer -> integer thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from fpgagen.errors import UnsupportedError
from fpgagen.frontend import thresholds as thr
from fpgagen.ir import HostOp

F32 = np.float32


def quant(bits, signed=True, narrow=False, scale=1.0, mode="ROUND"):
    return HostOp("Quant", (None, np.asarray(scale, F32), np.asarray(0, F32),
                            np.asarray(bits, F32)),
                  {"signed": int(signed), "narrow": int(narrow), "rounding_mode": mode})


def direct(chain, q, acc):
    return thr.quantizer_levels(q, thr.apply_chain(chain, acc.astype(F32)))


@pytest.mark.parametrize("bits,signed,narrow", [(2, True, True), (3, False, False),
                                                (4, True, False), (8, False, False)])
def test_thresholds_reproduce_the_float_chain_exactly(bits, signed, narrow):
    rng = np.random.default_rng(bits)
    channels = 7
    scale = rng.uniform(-2, 2, channels).astype(F32)  # negative scales: decreasing channels
    bias = rng.uniform(-20, 20, channels).astype(F32)
    chain = [HostOp("Mul", (None, scale)), HostOp("Add", (None, bias)),
             HostOp("Relu", (None,))]
    q = quant(bits, signed, narrow, scale=0.37)
    lo, hi = np.full(channels, -300), np.full(channels, 250)
    t = thr.derive(chain, q, lo, hi, "test")
    acc = np.arange(-300, 251)[:, None].repeat(channels, 1)
    sign = np.where(t.flip, -1, 1)
    count = ((acc * sign)[..., None] >= t.thresholds[None]).sum(-1)
    assert np.array_equal(t.out_base + count, direct(chain, q, acc))
    assert t.flip.tolist() == (scale < 0).tolist()


def test_bipolar_quantizer_gives_one_threshold():
    chain = [HostOp("Add", (None, np.asarray([-3.5, 2.0], F32)))]
    q = HostOp("BipolarQuant", (None, np.asarray(1.0, F32)))
    t = thr.derive(chain, q, np.array([-10, -10]), np.array([10, 10]), "test")
    assert t.out_type.bipolar and t.thresholds.tolist() == [[4], [-2]]


def test_non_monotone_chain_is_refused():
    chain = [HostOp("Pow", (None, np.asarray(2.0, F32)))]  # x**2 is not monotone
    with pytest.raises(UnsupportedError, match="not a monotone function"):
        thr.derive(chain, quant(4, False), np.array([-8]), np.array([8]), "node 'n' (Quant)")


def test_nonzero_zero_point_is_refused():
    q = HostOp("Quant", (None, np.asarray(1, F32), np.asarray(1, F32), np.asarray(4, F32)),
               {"signed": 1})
    with pytest.raises(UnsupportedError, match="zero points"):
        thr.derive([], q, np.array([0]), np.array([3]), "node 'n' (Quant)")
