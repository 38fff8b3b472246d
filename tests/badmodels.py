"""A corpus of bad and hostile model files, generated (never committed as binaries).

Each case writes its files into an empty folder and returns the model path; ``needles``
are texts the one-line error must contain (the problem, and the node/op where there is
one). ``tests/test_bad_models.py`` runs every case through the CLI.

    python tests/badmodels.py DIR     # write the corpus to DIR/<case>/ to look at it

Cases marked ``fuzz`` reproduce crashes that the mutation fuzzer (tests/test_fuzz.py)
found before they were fixed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from onnxgen import mlp, save  # noqa: E402

DIGITS_MODEL = Path(__file__).resolve().parents[1] / "examples" / "digits_mlp" / "digits_mlp.onnx"


@dataclass(frozen=True)
class BadCase:
    name: str
    make: Callable[[Path], Path]  # folder -> model path (files written into the folder)
    needles: tuple[str, ...]
    fuzz: bool = False  # found by the fuzzer


CASES: list[BadCase] = []


def case(*needles: str, fuzz: bool = False):
    def register(fn):
        CASES.append(BadCase(fn.__name__, fn, needles, fuzz))
        return fn
    return register


def _save(model: onnx.ModelProto, folder: Path, name: str = "model.onnx") -> Path:
    return save(model, folder / name)


def _write(folder: Path, data: bytes) -> Path:
    path = folder / "model.onnx"
    path.write_bytes(data)
    return path


def _node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.name == name)


def _init(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(t for t in model.graph.initializer if t.name == name)


def _set_init(model: onnx.ModelProto, name: str, value) -> None:
    _init(model, name).CopyFrom(numpy_helper.from_array(np.asarray(value), name))


def _with_op(op: str, domain: str = "", **attrs):
    def add(nodes, inits, cur):
        nodes.append(helper.make_node(op, [cur], ["extra"], name="odd", domain=domain, **attrs))
        return "extra"
    return add


# ---- not an ONNX model at all ---------------------------------------------------------

@case("not a readable ONNX file")
def random_bytes(d):
    return _write(d, np.random.default_rng(0).bytes(300))


@case("not", "ONNX")
def empty_file(d):
    return _write(d, b"")


@case("ONNX")
def truncated_half(d):
    data = mlp().SerializeToString()
    return _write(d, data[: len(data) // 2])


@case("ONNX")
def truncated_digits_model(d):
    data = DIGITS_MODEL.read_bytes()
    return _write(d, data[: len(data) - 1000])


@case("no graph nodes")
def protobuf_of_another_kind(d):  # a TensorProto parses as a (meaningless) ModelProto
    return _write(d, numpy_helper.from_array(np.arange(6, dtype=np.float32)).SerializeToString())


@case("is not a file")
def model_path_is_a_folder(d):
    (d / "model.onnx").mkdir()
    return d / "model.onnx"


@case("does not exist")
def missing_model_file(d):
    return d / "nothing.onnx"


# ---- valid ONNX, nothing or something unsupported to build ------------------------------

@case("no quantizer")
def float_model(d):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(6, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], "float",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w])
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), d)


@case("op Sin is not supported", "node 'odd' (Sin)")
def unknown_op(d):
    return _save(mlp(extra=_with_op("Sin")), d)


@case("custom op domain 'com.example'", "node 'odd'")
def unknown_custom_domain(d):
    model = mlp(extra=_with_op("Frobnicate", domain="com.example"))
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    return _save(model, d)


@case("constant", "in_quant")
def non_constant_scale(d):
    model = mlp()
    _node(model, "in_quant").input[1] = "x"  # the scale is the data itself
    return _save(model, d)


@case("per-channel input quantizer", "in_quant")
def per_element_input_scale(d):
    model = mlp()
    _set_init(model, "in_s", np.full((1, 6), 0.25, np.float32))
    return _save(model, d)


@case("vary along the input dimension", "fc0")
def per_element_weight_scale(d):
    model = mlp()
    _set_init(model, "w0_s", np.random.default_rng(1).uniform(0.3, 0.7, (6, 5))
              .astype(np.float32))
    return _save(model, d)


@case("bit width", "in_quant")
def zero_bit_width(d):
    model = mlp()
    _set_init(model, "in_b", np.float32(0))
    return _save(model, d)


@case("bit width", "a0_quant")
def negative_bit_width(d):
    model = mlp()
    _set_init(model, "a0_b", np.float32(-3))
    return _save(model, d)


@case("bit width", "w0_quant")
def fractional_bit_width(d):
    model = mlp()
    _set_init(model, "w0_b", np.float32(2.5))
    return _save(model, d)


@case("20-bit", "in_quant")
def too_wide_activations(d):
    return _save(mlp(act_bits=20), d)


@case("NaN or Inf", "w0_quant")
def nan_in_weights(d):
    model = mlp()
    w = numpy_helper.to_array(_init(model, "w0")).copy()
    w[2, 1] = np.nan
    _set_init(model, "w0", w)
    return _save(model, d)


@case("NaN or Inf", "w1_quant")
def inf_in_weights(d):
    model = mlp()
    w = numpy_helper.to_array(_init(model, "w1")).copy()
    w[0, 0] = -np.inf
    _set_init(model, "w1", w)
    return _save(model, d)


@case("NaN or Inf", "a0_quant")
def nan_scale(d):
    model = mlp()
    _set_init(model, "a0_s", np.float32(np.nan))
    return _save(model, d)


@case("NaN or Inf", "scale1")
def inf_in_batchnorm_scale(d):
    model = mlp()
    g = numpy_helper.to_array(_init(model, "g1")).copy()
    g[1] = np.inf
    _set_init(model, "g1", g)
    return _save(model, d)


@case("scale must be positive", "a0_quant")
def zero_scale(d):
    model = mlp()
    _set_init(model, "a0_s", np.float32(0))
    return _save(model, d)


@case("dynamic or zero-sized shape", "input 'x'")
def dynamic_shape(d):
    model = mlp()
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    dim.dim_param = "batch"
    return _save(model, d)


@case("dynamic or zero-sized shape", "input 'x'")
def zero_sized_shape(d):
    model = mlp()
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 0
    return _save(model, d)


@case("batch size 1")
def batch_of_two(d):
    model = mlp()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    return _save(model, d)


@case("features", "fc0")
def shape_mismatch(d):
    model = mlp()
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 7
    return _save(model, d)


@case("cycle")
def cycle_in_graph(d):
    model = mlp()
    # the input quantizer now reads the last layer's output: q0 -> ... -> sc1 -> q0
    _node(model, "in_quant").input[0] = "sc0"
    return _save(model, d)


@case("'q0' is not produced by any node", "fc0")
def dangling_input(d):
    model = mlp()
    model.graph.node.remove(_node(model, "in_quant"))
    return _save(model, d)


@case("produced by more than one node", "mm0")
def duplicate_tensor_name(d):
    model = mlp()
    _node(model, "fc1").output[0] = "mm0"
    return _save(model, d)


@case("initializer", "w0", "more than once")
def duplicate_initializer(d):
    model = mlp()
    model.graph.initializer.append(numpy_helper.from_array(np.zeros((2, 2), np.float32), "w0"))
    return _save(model, d)


@case("opset 6 is not supported")
def opset_too_old(d):
    return _save(mlp(opset=6), d)


@case("opset 99 is not supported")
def opset_too_new(d):
    return _save(mlp(opset=99), d)


@case("2 inputs")
def two_inputs(d):
    model = mlp()
    model.graph.input.append(helper.make_tensor_value_info("x2", TensorProto.FLOAT, [1, 6]))
    return _save(model, d)


@case("Gemm with transA", "fc0")
def gemm_trans_a(d):
    model = mlp()
    fc = _node(model, "fc0")
    fc.op_type = "Gemm"
    fc.attribute.append(helper.make_attribute("transA", 1))
    return _save(model, d)


@case("rounding mode STOCHASTIC", "a0_quant")
def unknown_rounding_mode(d):
    model = mlp()
    q = _node(model, "a0_quant")
    for a in q.attribute:
        if a.name == "rounding_mode":
            a.s = b"STOCHASTIC"
    return _save(model, d)


# ---- crashes the mutation fuzzer found (each fixed, kept here) ----------------------------

@case("initializer 'w0'", "do not match its shape", fuzz=True)
def damaged_initializer_bytes(d):
    model = mlp()
    w = _init(model, "w0")
    w.raw_data = w.raw_data[:-3]
    return _save(model, d)


@case("initializer 'w1'", "not numeric", fuzz=True)
def undefined_tensor_type(d):
    model = mlp()
    _init(model, "w1").data_type = TensorProto.UNDEFINED
    return _save(model, d)


@case("negative dimension", "initializer 'g0'")
def negative_initializer_dimension(d):
    model = mlp()
    _init(model, "g0").dims[0] = -5
    return _save(model, d)


@case("far beyond", "input 'x'")
def absurd_input_shape(d):
    model = mlp()
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 2 ** 40
    return _save(model, d)


@case("non-empty scale", "w0_quant", fuzz=True)
def empty_quant_scale(d):
    model = mlp()
    _set_init(model, "w0_s", np.zeros(0, np.float32))
    return _save(model, d)


@case("does not broadcast to the weights", "w1_quant", fuzz=True)
def weight_scale_shape_mismatch(d):
    model = mlp()
    _set_init(model, "w1_s", np.full(2, 0.5, np.float32))
    return _save(model, d)


@case("non-zero zero points", "a0_quant", fuzz=True)
def odd_zero_point(d):
    model = mlp()
    _set_init(model, "a0_z", np.array([0.0, 1.0], np.float32))
    return _save(model, d)


@case("quantized weights are empty", "w0_quant", fuzz=True)
def empty_weights(d):
    model = mlp()
    _set_init(model, "w0", np.zeros((0, 5), np.float32))
    return _save(model, d)


@case("attribute 'rounding_mode' must be STRING, not INT", "a0_quant", fuzz=True)
def rounding_mode_of_the_wrong_type(d):
    model = mlp()
    q = _node(model, "a0_quant")
    for a in list(q.attribute):
        if a.name == "rounding_mode":
            q.attribute.remove(a)
    q.attribute.append(helper.make_attribute("rounding_mode", 3))
    return _save(model, d)


@case("attribute 'alpha' must be FLOAT, not STRING", "fc0", fuzz=True)
def string_where_a_float_belongs(d):
    model = mlp()
    fc = _node(model, "fc0")
    fc.op_type = "Gemm"
    fc.attribute.append(helper.make_attribute("alpha", "Stochastic"))
    return _save(model, d)


@case("Quant needs 4 inputs, it has 3", "in_quant", fuzz=True)
def quant_with_three_inputs(d):
    model = mlp()
    del _node(model, "in_quant").input[3]
    return _save(model, d)


@case("not UTF-8 text", fuzz=True)
def invalid_utf8_domain(d):
    data = mlp(extra=_with_op("Relu", domain="zzzq")).SerializeToString()
    assert data.count(b"zzzq") == 1
    return _write(d, data.replace(b"zzzq", b"\xff\xfe\xfd\xfc"))


@case("does not permute the weights' 2 axes", fuzz=True)
def transpose_of_weights_with_a_bad_perm(d):
    model = onnx.load(str(DIGITS_MODEL))
    t = next(n for n in model.graph.node if n.op_type == "Transpose")
    for a in t.attribute:
        if a.name == "perm":
            a.ints[:] = [0, 0, 1]
    return _save(model, d)


# ---- external weight data -----------------------------------------------------------------

def _external(d: Path, location: str = "model.onnx.data") -> Path:
    """The MLP with every initializer in ``d/model.onnx.data``, then ``location`` set."""
    path = d / "model.onnx"
    onnx.save(mlp(sizes=(16, 8, 4)), str(path), save_as_external_data=True,
              all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)
    if location != "model.onnx.data":
        model = onnx.load(str(path), load_external_data=False)
        for t in model.graph.initializer:
            for e in t.external_data:
                if e.key == "location":
                    e.value = location
        onnx.save(model, str(path))
    return path


def _secret(path: Path) -> Path:
    """A file that must never be read: the tests watch every open() for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"secret" * 1000)
    return path


@case("missing external weight data file 'model.onnx.data'")
def missing_external_data(d):
    path = _external(d)
    (d / "model.onnx.data").unlink()
    return path


@case("shorter than the model says")
def truncated_external_data(d):
    path = _external(d)
    data = d / "model.onnx.data"
    data.write_bytes(data.read_bytes()[:40])
    return path


@case("points outside the model's folder")
def external_data_parent_escape(d):
    # model in d/a/b; "../../etc/passwd" would reach d/etc/passwd, which exists
    _secret(d / "etc" / "passwd")
    (d / "a" / "b").mkdir(parents=True)
    return _external(d / "a" / "b", "../../etc/passwd")


@case("points outside the model's folder")
def external_data_hidden_escape(d):
    _secret(d / "outside.data")
    (d / "m" / "sub").mkdir(parents=True)
    return _external(d / "m", "sub/../../outside.data")


@case("not a relative path")
def external_data_absolute_path(d):
    secret = _secret(d / "outside" / "secret.data")
    (d / "m").mkdir()
    return _external(d / "m", str(secret))


@case("symbolic link")
def external_data_symlink_file(d):
    secret = _secret(d / "outside" / "secret.data")
    (d / "m").mkdir()
    path = _external(d / "m")
    (d / "m" / "model.onnx.data").unlink()
    os.symlink(secret, d / "m" / "model.onnx.data")
    return path


@case("symbolic link")
def external_data_symlinked_folder(d):
    secret = _secret(d / "outside" / "model.onnx.data")
    (d / "m").mkdir()
    os.symlink(secret.parent, d / "m" / "weights")
    return _external(d / "m", "weights/model.onnx.data")


@case("offset")
def external_data_bad_offset(d):
    path = _external(d)
    model = onnx.load(str(path), load_external_data=False)
    for e in model.graph.initializer[0].external_data:
        if e.key == "offset":
            e.value = "twelve"
    onnx.save(model, str(path))
    return path


@case("not a relative path")
def external_data_empty_location(d):
    return _external(d, "")


def write_corpus(root: Path) -> list[Path]:
    """Every case into ``root/<name>/``; returns the model paths."""
    paths = []
    for c in CASES:
        folder = root / c.name
        folder.mkdir(parents=True, exist_ok=False)
        paths.append(c.make(folder))
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/badmodels.py DIR")
    for p in write_corpus(Path(sys.argv[1])):
        print(p)
