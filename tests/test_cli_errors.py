"""Bad input: one line on stderr naming what and where, exit code 2, no OUT left behind."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import DIGITS_MODEL, run_cli
from onnx import helper
from onnxgen import mlp, save

from fpgagen.frontend import load_model, lower


def assert_user_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("fpgagen: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


def _with_op(op, **attrs):
    def add(nodes, inits, cur):
        nodes.append(helper.make_node(op, [cur], ["extra"], name="odd", **attrs))
        return "extra"
    return add


def _bad_models(tmp):
    good = mlp()
    data = good.SerializeToString()
    yield "random bytes", tmp / "rand.onnx", np.random.default_rng(0).bytes(300), \
        ("not",)
    yield "empty", tmp / "empty.onnx", b"", ("not",)
    yield "truncated", tmp / "trunc.onnx", data[: len(data) // 2], ("ONNX",)
    yield "unknown op", tmp / "sin.onnx", mlp(extra=_with_op("Sin")), ("op Sin is not supported", "odd")
    float_model = mlp()
    float_model.graph.node.pop(0)  # drop the input quantizer: q0 dangles
    yield "dangling input", tmp / "dangle.onnx", float_model, ("q0",)
    wide = mlp(act_bits=20)
    yield "too wide", tmp / "wide.onnx", wide, ("20-bit", "in_quant")
    shape = mlp()
    shape.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 7
    yield "shape mismatch", tmp / "shape.onnx", shape, ("features", "fc0")


@pytest.mark.parametrize("case", range(7))
def test_bad_models_give_one_line_and_exit_2(case, tmp_path):
    label, path, content, needles = list(_bad_models(tmp_path))[case]
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        save(content, path)
    proc = run_cli("build", str(path), "-o", str(tmp_path / "out"), "-q")
    assert_user_error(proc, *needles)
    assert not (tmp_path / "out").exists(), label
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_non_constant_scale(tmp_path):
    model = mlp()
    q = model.graph.node[0]
    q.input[1] = "x"  # the scale is now the data itself
    proc = run_cli("build", "-q", str(save(model, tmp_path / "m.onnx")), "-o", str(tmp_path / "o"))
    assert_user_error(proc, "constant")


def test_missing_external_data(tmp_path):
    model = mlp(sizes=(64, 32, 10))
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.onnx.data", size_threshold=0)
    (tmp_path / "ext.onnx.data").unlink()
    proc = run_cli("build", "-q", str(path), "-o", str(tmp_path / "o"))
    assert_user_error(proc, "missing external weight data", "ext.onnx.data")


def test_external_data_outside_the_model_folder_is_refused(tmp_path):
    model = mlp(sizes=(64, 32, 10))
    sub = tmp_path / "m"
    sub.mkdir()
    onnx.save(model, str(sub / "ext.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="ext.onnx.data", size_threshold=0)
    (sub / "ext.onnx.data").rename(tmp_path / "outside.data")
    m = onnx.load(str(sub / "ext.onnx"), load_external_data=False)
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../outside.data"
    onnx.save(m, str(sub / "ext.onnx"))
    proc = run_cli("build", "-q", str(sub / "ext.onnx"), "-o", str(tmp_path / "o"))
    assert_user_error(proc, "outside")


def test_unreachable_target_fps(tmp_path):
    proc = run_cli("build", "-q", str(DIGITS_MODEL), "-o", str(tmp_path / "o"),
                   "--target-fps", "1e12")
    assert_user_error(proc, "unreachable", "frames/s")
    assert not (tmp_path / "o").exists()


def test_unknown_board(tmp_path):
    proc = run_cli("build", "-q", str(DIGITS_MODEL), "-o", str(tmp_path / "o"), "--board", "nope")
    assert_user_error(proc, "unknown board 'nope'", "pynq-z2")


def test_existing_out_needs_force(tmp_path):
    (tmp_path / "o").mkdir()
    proc = run_cli("build", "-q", str(DIGITS_MODEL), "-o", str(tmp_path / "o"))
    assert_user_error(proc, "already exists", "--force")


@pytest.mark.parametrize("command", ["sim", "report"])
def test_sim_and_report_need_a_build(command, tmp_path):
    assert_user_error(run_cli(command, str(tmp_path / "missing")), "does not exist")
    (tmp_path / "plain").mkdir()
    assert_user_error(run_cli(command, str(tmp_path / "plain")), "not a finished fpgagen build")


def test_missing_model_file(tmp_path):
    assert_user_error(run_cli("build", "-q", str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "o")),
                      "does not exist")


def test_lowering_names_the_onnx_node():
    from fpgagen.errors import UnsupportedError

    model = mlp(extra=_with_op("Sin"))
    with pytest.raises(UnsupportedError, match=r"node 'odd' \(Sin\)"):
        lower(model)


def test_load_rejects_future_opset(tmp_path):
    from fpgagen.errors import ModelError

    with pytest.raises(ModelError, match="opset 99"):
        load_model(save(mlp(opset=99), tmp_path / "m.onnx"))
