"""Mutation fuzzing: damaged and edited models may only raise fpgagen's own error.

Valid models (the digits MLP, Brevitas export; onnxgen MLPs) are mutated at the byte
level (bit flips, truncation, spliced bytes) and at the ONNX level (attributes, shapes,
initializers, ops, inputs, opsets), then compiled with ``fpgagen.build.compile_graph``
(load, lower, fold, widths, FIFOs). Anything but an ``FpgagenError`` is a crash.

``make test`` runs a bounded, seeded set (``test_seeded_mutants``); ``make fuzz`` runs
``test_fuzz_long`` with hypothesis for ``FPGAGEN_FUZZ_EXAMPLES`` examples per seed model.
Each crash found was fixed and became a case in ``tests/badmodels.py`` (``fuzz=True``).
"""

from __future__ import annotations

import os
import random
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from badmodels import DIGITS_MODEL
from onnx import TensorProto, helper, numpy_helper
from onnxgen import mlp

from fpgagen import boards
from fpgagen.build import compile_graph
from fpgagen.errors import FpgagenError

SEEDED_MUTANTS = 240  # per run of `make test`; a few seconds on one core
LONG_EXAMPLES = int(os.environ.get("FPGAGEN_FUZZ_EXAMPLES", "0"))
BOARD = boards.get("pynq-z2")

OPS = ["Quant", "BipolarQuant", "MatMul", "Gemm", "Add", "Mul", "Sub", "Div", "Relu",
       "Reshape", "Flatten", "Transpose", "BatchNormalization", "ArgMax", "Identity",
       "Constant", "Conv", "Concat", "Softmax", "Sin", "Trunc", "MultiThreshold", "Loop"]
DOMAINS = ["", "ai.onnx", "qonnx.custom_op.general", "finn.custom_op.general", "com.evil"]
ODD_INTS = [0, 1, -1, 2, 3, 7, 64, -(2 ** 31), 2 ** 31 - 1, 2 ** 62, -(2 ** 63)]
ODD_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-38, 1e38, float("nan"), float("inf"),
              -float("inf"), 3.0, 2.5]
DTYPES = [np.float32, np.float64, np.float16, np.int8, np.int64, np.uint8, np.bool_,
          np.int32]


def seed_models() -> dict[str, bytes]:
    return {
        "digits": DIGITS_MODEL.read_bytes(),
        "mlp": mlp().SerializeToString(),
        "mlp_wide": mlp(sizes=(10, 8, 8, 4), act_bits=2, weight_bits=4, seed=3)
        .SerializeToString(),
        "mlp_gemm": _gemm_mlp().SerializeToString(),
    }


def _gemm_mlp() -> onnx.ModelProto:
    """An onnxgen MLP whose first layer is a Gemm with transB and a bias."""
    model = mlp(sizes=(8, 6, 3), seed=5)
    fc = next(n for n in model.graph.node if n.name == "fc0")
    w = next(t for t in model.graph.initializer if t.name == "w0")
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w).T.copy(), "w0"))
    fc.op_type = "Gemm"
    fc.input.append("bias0")
    fc.attribute.extend([helper.make_attribute("transB", 1)])
    model.graph.initializer.append(numpy_helper.from_array(np.full(6, 0.25, np.float32),
                                                           "bias0"))
    return model


# ---- byte-level mutators ----------------------------------------------------------------

def flip_bits(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(buf))
        buf[i] ^= 1 << rng.randrange(8)
    return bytes(buf)


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[:rng.randrange(len(data))]


def splice(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data))
    n = rng.randint(1, 16)
    junk = bytes(rng.randrange(256) for _ in range(n))
    kind = rng.randrange(3)
    if kind == 0:
        return data[:i] + junk + data[i + n:]  # overwrite
    if kind == 1:
        return data[:i] + junk + data[i:]  # insert
    return data[:i] + data[i + n:]  # delete


# ---- ONNX-level mutators (edit the ModelProto in place) -----------------------------------

def _pick(rng, seq):
    return seq[rng.randrange(len(seq))] if len(seq) else None


def edit_attribute(rng: random.Random, m: onnx.ModelProto) -> None:
    node = _pick(rng, m.graph.node)
    choice = rng.randrange(4)
    if choice == 0 and node.attribute:
        node.attribute.remove(_pick(rng, node.attribute))
        return
    name = (_pick(rng, node.attribute).name if node.attribute and choice < 3
            else _pick(rng, ["axis", "perm", "transA", "transB", "signed", "narrow",
                             "rounding_mode", "alpha", "beta", "epsilon", "shape", "value"]))
    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)
    kind = rng.randrange(5)
    if kind == 0:
        value = _pick(rng, ODD_INTS)
    elif kind == 1:
        value = _pick(rng, ODD_FLOATS)
    elif kind == 2:
        value = _pick(rng, ["ROUND", "FLOOR", "", "Stochastic", "\u00e9", "x" * 50])
    elif kind == 3:
        value = [_pick(rng, ODD_INTS) for _ in range(rng.randint(0, 4))]
        if not value:
            value = [0]
    else:
        value = numpy_helper.from_array(np.asarray(_pick(rng, ODD_FLOATS), np.float32))
    node.attribute.append(helper.make_attribute(name, value))


def edit_shape(rng: random.Random, m: onnx.ModelProto) -> None:
    vi = _pick(rng, list(m.graph.input) + list(m.graph.output))
    tt = vi.type.tensor_type
    dims = tt.shape.dim
    choice = rng.randrange(5)
    if choice == 0 and len(dims):
        _pick(rng, dims).dim_value = _pick(rng, [0, 1, 2, 3, 5, 64, 2 ** 20, 2 ** 40, 2 ** 62])
    elif choice == 1 and len(dims):
        _pick(rng, dims).dim_param = "n"
    elif choice == 2 and len(dims):
        del dims[rng.randrange(len(dims))]
    elif choice == 3:
        tt.shape.dim.add().dim_value = rng.randint(1, 4)
    else:
        tt.elem_type = _pick(rng, [TensorProto.INT8, TensorProto.FLOAT16, TensorProto.STRING,
                                   TensorProto.DOUBLE, 0])


def edit_initializer(rng: random.Random, m: onnx.ModelProto) -> None:
    init = _pick(rng, m.graph.initializer)
    if init is None:
        return
    try:
        arr = numpy_helper.to_array(init)
    except Exception:  # damaged by an earlier mutation
        return
    choice = rng.randrange(8)
    if choice == 0 and arr.size:
        arr = arr.astype(np.float32).copy()
        arr.flat[rng.randrange(arr.size)] = _pick(rng, ODD_FLOATS)
    elif choice == 1:
        arr = arr.reshape(-1)
    elif choice == 2:
        arr = arr.T.copy()
    elif choice == 3:
        arr = np.zeros((0,) + arr.shape[1:], arr.dtype)
    elif choice == 4:
        arr = arr.astype(_pick(rng, DTYPES))
    elif choice == 5:
        arr = np.asarray(_pick(rng, ODD_FLOATS), np.float32)
    elif choice == 6:
        arr = np.concatenate([arr.reshape(-1)] * 2) if arr.size else arr
    else:  # damage the stored bytes: raw data no longer matches the dims
        raw = numpy_helper.from_array(arr, init.name)
        raw.raw_data = raw.raw_data[:max(0, len(raw.raw_data) - rng.randint(1, 8))]
        init.CopyFrom(raw)
        return
    init.CopyFrom(numpy_helper.from_array(np.asarray(arr), init.name))


def edit_node(rng: random.Random, m: onnx.ModelProto) -> None:
    g = m.graph
    node = _pick(rng, g.node)
    names = [t for n in g.node for t in n.output] + [i.name for i in g.initializer] + \
        [i.name for i in g.input] + ["", "nowhere"]
    choice = rng.randrange(9)
    if choice == 0:
        node.op_type = _pick(rng, OPS)
    elif choice == 1 and len(node.input) > 1:
        a, b = rng.sample(range(len(node.input)), 2)
        node.input[a], node.input[b] = node.input[b], node.input[a]
    elif choice == 2 and len(node.input):
        node.input[rng.randrange(len(node.input))] = _pick(rng, names)
    elif choice == 3 and len(node.input):
        del node.input[rng.randrange(len(node.input))]
    elif choice == 4:
        node.input.append(_pick(rng, names))
    elif choice == 5:
        node.domain = _pick(rng, DOMAINS)
    elif choice == 6:
        g.node.remove(node)
    elif choice == 7:
        g.node.insert(rng.randrange(len(g.node) + 1), node)  # a duplicate
    else:
        node.output[0] = _pick(rng, names) or "renamed"


def edit_opset(rng: random.Random, m: onnx.ModelProto) -> None:
    imp = _pick(rng, m.opset_import)
    imp.version = _pick(rng, [1, 7, 9, 11, 13, 17, 18, 21, 26, 99, -1])


BYTE_MUTATORS: list[Callable[[random.Random, bytes], bytes]] = [flip_bits, truncate, splice]
MODEL_MUTATORS: list[Callable[[random.Random, onnx.ModelProto], None]] = [
    edit_attribute, edit_shape, edit_initializer, edit_initializer, edit_node, edit_node,
    edit_opset]


def mutate(rng: random.Random, data: bytes) -> tuple[bytes, list[str]]:
    """One to three stacked mutations of a serialized model; returns (bytes, their names)."""
    done = []
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.3:
            fn = _pick(rng, BYTE_MUTATORS)
            data = fn(rng, data) if data else data
        else:
            fn = _pick(rng, MODEL_MUTATORS)
            model = onnx.ModelProto()
            try:
                model.ParseFromString(data)
            except Exception:  # an earlier byte mutation broke it: stays broken
                continue
            if not model.graph.node:
                continue
            fn(rng, model)
            data = model.SerializeToString()
        done.append(fn.__name__)
    return data, done


def check_mutant(data: bytes, path: Path, target_fps=None) -> str | None:
    """Compile ``data``; returns a crash description, None when fpgagen behaved."""
    path.write_bytes(data)
    try:
        compile_graph(path, board=BOARD, target_fps=target_fps)
    except FpgagenError as e:
        if "\n" in str(e):
            return f"multi-line error: {str(e)!r}"
    except RecursionError:
        return "RecursionError"
    except Exception:
        return traceback.format_exc(limit=6)
    return None


def run_mutants(seed_name: str, data: bytes, rngs, tmp: Path) -> tuple[int, list[str]]:
    crashes, tried = [], 0
    for k, rng in enumerate(rngs):
        mutant, how = mutate(rng, data)
        tried += 1
        crash = check_mutant(mutant, tmp / f"{seed_name}_{k}.onnx",
                             target_fps=_pick(rng, [None, None, 1e3, 1e5]))
        if crash:
            crashes.append(f"{seed_name} {how}: {crash}")
    return tried, crashes


@pytest.mark.parametrize("seed_name", sorted(seed_models()))
def test_seeded_mutants(seed_name, tmp_path):
    data = seed_models()[seed_name]
    n = SEEDED_MUTANTS // 4
    base = sorted(seed_models()).index(seed_name) * 100_000
    tried, crashes = run_mutants(seed_name, data,
                                 (random.Random(base + i) for i in range(n)), tmp_path)
    assert tried == n
    assert not crashes, f"{len(crashes)} of {n} mutants crashed:\n" + "\n".join(crashes[:3])


def test_mutators_change_the_model():
    """The fuzzer is no use if its mutations are no-ops: most mutants must differ."""
    data = seed_models()["mlp"]
    changed = sum(mutate(random.Random(i), data)[0] != data for i in range(100))
    assert changed >= 90


def test_check_mutant_reports_a_crash(tmp_path, monkeypatch):
    """A non-fpgagen exception inside compile_graph is reported, not swallowed."""
    import test_fuzz

    def boom(*args, **kwargs):
        raise ZeroDivisionError("injected")

    monkeypatch.setattr(test_fuzz, "compile_graph", boom)
    assert "ZeroDivisionError" in check_mutant(b"", tmp_path / "m.onnx")


@pytest.mark.skipif(not LONG_EXAMPLES, reason="set FPGAGEN_FUZZ_EXAMPLES (make fuzz)")
@pytest.mark.parametrize("seed_name", sorted(seed_models()))
def test_fuzz_long(seed_name, tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    data = seed_models()[seed_name]

    @settings(max_examples=LONG_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.randoms(use_true_random=False))
    def one(rng):
        mutant, how = mutate(rng, data)
        crash = check_mutant(mutant, tmp_path / "m.onnx",
                             target_fps=_pick(rng, [None, None, 1e3, 1e5]))
        assert crash is None, f"{seed_name} {how}: {crash}"

    one()
