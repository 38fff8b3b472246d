"""The host's share of a run: float pre-processing up to the first quantizer, and the
float post-processing (dequantization, final affine, argmax) after the last layer."""

from __future__ import annotations

import numpy as np

from .errors import FpgagenError
from .frontend.thresholds import apply_chain
from .ir import Graph


def run_pre(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Float model inputs (frames, *input_shape[1:]) or (frames, *input_shape) -> ints."""
    shape = tuple(graph.meta["input_shape"])
    x = np.asarray(x, dtype=np.float32)
    if x.shape[1:] == shape[1:]:
        pass
    elif x.shape[1:] == shape:
        x = x.reshape((x.shape[0],) + shape[1:])
    else:
        raise FpgagenError(f"inputs have shape {list(x.shape)}; the model takes "
                           f"(N, {', '.join(map(str, shape[1:]))})",
                           hint="pass a float array of N frames in the model's input shape")
    frames = [apply_chain(list(graph.host_pre), x[i:i + 1]) for i in range(x.shape[0])]
    out = np.stack([f.reshape(-1) for f in frames]).astype(np.int64)
    return out


def run_post(graph: Graph, y: np.ndarray) -> np.ndarray:
    """Integer hardware outputs (frames, elems) -> the model's float outputs."""
    frames = [apply_chain(list(graph.host_post), y[i:i + 1].astype(np.float32))
              for i in range(y.shape[0])]
    return np.concatenate(frames, axis=0)
