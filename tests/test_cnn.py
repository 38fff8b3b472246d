"""Convolutional networks: lowering (NHWC streams, Conv, pools, residual adds, Trunc),
golden model against Brevitas, bad input, and whole networks as Verilog in cocotb."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
from conftest import run_cli
from onnx import TensorProto, helper
from onnxgen import QONNX, _const, quant_node, save

from fpgagen import golden, zoo, zoo_cnn
from fpgagen.errors import FpgagenError
from fpgagen.frontend import load_model, lower


def tiny_cnn(*, conv=None, pool=None, act_bits=2, channels=(3, 4), size=(6, 7), seed=0,
             pool_op="MaxPool") -> onnx.ModelProto:
    """x -> Quant -> Conv(Quant W) -> BatchNorm -> Relu -> Quant -> pool -> Flatten ->
    MatMul(Quant W) -> y, with Conv/pool attributes overridable."""
    rng = np.random.default_rng(seed)
    cin, cout = channels
    h, w = size
    conv = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [1, 1], **(conv or {})}
    pool = {"kernel_shape": [2, 2], "strides": [2, 2], **(pool or {})}
    nodes, inits = [], []
    nodes.append(quant_node("x", "q0", 0.125, 4, "in", inits=inits))
    kh, kw = conv["kernel_shape"]
    groups = conv.get("group", 1)
    inits.append(_const("cw", rng.normal(size=(cout, cin // groups, kh, kw))))
    nodes.append(quant_node("cw", "cwq", 0.5, 3, "cw", inits=inits))
    nodes.append(helper.make_node("Conv", ["q0", "cwq"], ["c"], name="conv0", **conv))
    for name, value in (("bn_s", rng.uniform(0.5, 1.5, cout)), ("bn_b", rng.normal(size=cout)),
                        ("bn_m", rng.normal(size=cout)), ("bn_v", rng.uniform(1, 2, cout))):
        inits.append(_const(name, value))
    nodes.append(helper.make_node("BatchNormalization", ["c", "bn_s", "bn_b", "bn_m", "bn_v"],
                                  ["bn"], name="bn0", epsilon=1e-5))
    nodes.append(helper.make_node("Relu", ["bn"], ["r"], name="relu0"))
    nodes.append(quant_node("r", "a", 0.5, act_bits, "act", signed=0, inits=inits))
    nodes.append(helper.make_node(pool_op, ["a"], ["p"], name="pool0", **pool))
    nodes.append(helper.make_node("Flatten", ["p"], ["f"], name="flat", axis=1))
    x = np.zeros((1, cin, h, w), np.float32)
    probe = _probe_shape(nodes, inits, x, "f")
    inits.append(_const("fw", rng.normal(size=(probe[1], 5))))
    nodes.append(quant_node("fw", "fwq", 0.25, 3, "fw", inits=inits))
    nodes.append(helper.make_node("MatMul", ["f", "fwq"], ["y"], name="fc"))
    graph = helper.make_graph(
        nodes, "tiny_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, h, w])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                   helper.make_opsetid(QONNX, 1)])


def _probe_shape(nodes, inits, x, name):
    """The shape of tensor ``name`` for input ``x``, by lowering a model that ends there."""
    from fpgagen.onnx_ops import evaluate

    values = {i.name: onnx.numpy_helper.to_array(i) for i in inits}
    values["x"] = x
    for node in nodes:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type in ("Conv", "MaxPool", "AveragePool"):
            values[node.output[0]] = _shape_only(node.op_type, values, node, attrs)
        else:
            values[node.output[0]] = evaluate(node.op_type, [values[i] for i in node.input],
                                              attrs)
    return values[name].shape


def _shape_only(op, values, node, attrs):
    x = values[node.input[0]]
    kh, kw = attrs["kernel_shape"]
    pt, pl, pb, pr = attrs.get("pads", [0, 0, 0, 0])
    sh, sw = attrs.get("strides", [1, 1])
    c = values[node.input[1]].shape[0] if op == "Conv" else x.shape[1]
    oh = max(1, (x.shape[2] + pt + pb - kh) // sh + 1)  # a window too large: the
    ow = max(1, (x.shape[3] + pl + pr - kw) // sw + 1)  # frontend refuses it
    return np.zeros((1, c, oh, ow), np.float32)


def onnx_reference(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """The model's float semantics, op by op (numpy; Conv and pools written out here)."""
    from fpgagen.onnx_ops import evaluate

    outs = []
    for frame in x:
        values = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
        values["x"] = frame[None].astype(np.float32)
        for node in model.graph.node:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            ins = [values[i] for i in node.input]
            if node.op_type == "Conv":
                values[node.output[0]] = _conv(ins[0], ins[1], attrs)
            elif node.op_type in ("MaxPool", "AveragePool"):
                values[node.output[0]] = _pool(node.op_type, ins[0], attrs)
            else:
                values[node.output[0]] = evaluate(node.op_type, ins, attrs)
        outs.append(values[model.graph.output[0].name])
    return np.concatenate(outs)


def _conv(x, w, attrs):
    pt, pl, pb, pr = attrs.get("pads", [0, 0, 0, 0])
    sh, sw = attrs.get("strides", [1, 1])
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    oc, cpg, kh, kw = w.shape  # channels per group
    groups = x.shape[1] // cpg
    opg = oc // groups
    oh, ow = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    out = np.zeros((1, oc, oh, ow), np.float32)
    for g in range(groups):
        wg = w[g * opg:(g + 1) * opg]
        for i in range(oh):
            for j in range(ow):
                win = xp[0, g * cpg:(g + 1) * cpg, i * sh:i * sh + kh, j * sw:j * sw + kw]
                out[0, g * opg:(g + 1) * opg, i, j] = np.tensordot(
                    wg, win, axes=([1, 2, 3], [0, 1, 2]))
    return out


def _pool(op, x, attrs):
    kh, kw = attrs["kernel_shape"]
    sh, sw = attrs.get("strides", [1, 1])
    oh, ow = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    out = np.zeros((1, x.shape[1], oh, ow), np.float32)
    for i in range(oh):
        for j in range(ow):
            win = x[0, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            out[0, :, i, j] = win.max(axis=(1, 2)) if op == "MaxPool" else win.mean(axis=(1, 2))
    return out


# ---- lowering: layout, conv, pools ----------------------------------------------------

@pytest.mark.parametrize("conv,pool,size", [
    ({}, {}, (6, 7)),                                                # padded 3x3, odd width
    ({"strides": [2, 1], "pads": [0, 1, 1, 0]}, {}, (9, 8)),         # asymmetric
    ({"kernel_shape": [1, 1], "pads": [0, 0, 0, 0]}, {"kernel_shape": [3, 3],
                                                      "strides": [1, 2]}, (5, 6)),
    ({"kernel_shape": [2, 3], "pads": [1, 0, 0, 2], "strides": [1, 2]},
     {"kernel_shape": [2, 2], "strides": [1, 1]}, (5, 5)),
])
def test_golden_equals_the_onnx_semantics(conv, pool, size):
    model = tiny_cnn(conv=conv, pool=pool, size=size)
    graph = lower(model)
    kinds = [n.kind for n in graph.nodes]
    assert kinds[kinds.index("mvau") + 1:][:2] == ["sliding_window", "pool"]
    x = np.random.default_rng(1).uniform(-1, 1, size=(16, 3, *size)).astype(np.float32)
    want = onnx_reference(model, x)
    got = golden(graph, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert len(np.unique(got)) > 4  # the test sees varied outputs


@pytest.mark.parametrize("conv", [
    {"group": 4, "pads": [1, 1, 1, 1]},
    {"group": 4, "kernel_shape": [3, 2], "strides": [2, 1], "pads": [0, 1, 1, 0]},
])
def test_depthwise_golden_equals_the_onnx_semantics(conv):
    model = tiny_cnn(conv=conv, channels=(4, 4), size=(7, 6))
    graph = lower(model)
    assert [n.kind for n in graph.nodes][:2] == ["sliding_window", "vvau"]
    x = np.random.default_rng(4).uniform(-1, 1, size=(12, 4, 7, 6)).astype(np.float32)
    np.testing.assert_allclose(golden(graph, x), onnx_reference(model, x), rtol=1e-5,
                               atol=1e-5)


def test_average_pool_with_counted_padding():
    model = tiny_cnn(pool_op="AveragePool", pool={"kernel_shape": [2, 2], "strides": [2, 2]})
    graph = lower(model)
    x = np.random.default_rng(2).uniform(-1, 1, size=(8, 3, 6, 7)).astype(np.float32)
    np.testing.assert_allclose(golden(graph, x), onnx_reference(model, x), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("conv,pool,pool_op,needle", [
    ({"dilations": [2, 2]}, {}, "MaxPool", "dilation"),
    ({"group": 2, "pads": [1, 1, 1, 1]}, {}, "MaxPool", "grouped convolution (group=2)"),
    ({"auto_pad": "SAME_UPPER"}, {}, "MaxPool", "auto_pad"),
    ({}, {"ceil_mode": 1}, "MaxPool", "ceil_mode"),
    ({}, {"pads": [1, 1, 1, 1]}, "AveragePool", "count_include_pad"),
    ({"kernel_shape": [9, 9], "pads": [0, 0, 0, 0]}, {}, "MaxPool", "does not fit"),
])
def test_unsupported_windows_are_named(conv, pool, pool_op, needle, tmp_path):
    model = tiny_cnn(conv=conv, pool=pool, pool_op=pool_op, channels=(4, 4))
    with pytest.raises(FpgagenError, match=re.escape(needle)):
        lower(model)
    proc = run_cli("build", "-q", str(save(model, tmp_path / "m.onnx")), "-o",
                   str(tmp_path / "out"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert needle in proc.stderr and "node '" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_bipolar_padding_is_refused():
    model = tiny_cnn()
    # the conv input quantizer becomes bipolar: 0 padding cannot be represented
    node = model.graph.node[0]
    bipolar = helper.make_node("BipolarQuant", [node.input[0], node.input[1]], node.output,
                               domain=QONNX, name="in_quant")
    model.graph.node.remove(node)
    model.graph.node.insert(0, bipolar)
    with pytest.raises(FpgagenError, match="bipolar"):
        lower(model)


# ---- Brevitas networks: golden model against the float model -------------------------

@pytest.fixture(scope="module")
def resnet():
    return zoo_cnn.small_resnet(seed=0)


@pytest.fixture(scope="module")
def mobilenet():
    return zoo_cnn.small_mobilenet(seed=0)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("net,kind,count", [("resnet", "add", 2), ("mobilenet", "vvau", 2)])
def test_small_networks_golden_match_brevitas(net, kind, count, exporter, request, tmp_path):
    model = request.getfixturevalue(net)
    path = zoo.export(model, tmp_path / f"{net}.onnx", exporter=exporter)
    graph = lower(load_model(path))
    kinds = [n.kind for n in graph.nodes]
    assert kinds.count(kind) == count and "pool" in kinds
    x = zoo.sample_inputs(model.input_shape, 48, seed=3)
    want = zoo.torch_forward(model, x)
    got = golden(graph, x)
    assert np.array_equal(got.argmax(1), want.argmax(1))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_cnv_golden_matches_brevitas(exporter, zoo_dir):
    from conftest import zoo_model

    model, path = zoo_model("cnv_1w1a", exporter, zoo_dir)
    graph = lower(load_model(path))
    assert [n.kind for n in graph.nodes].count("pool") == 2
    x = zoo.sample_inputs("cnv_1w1a", 16, seed=4)
    want = zoo.torch_forward(model, x)
    got = golden(graph, x)
    assert np.array_equal(got.argmax(1), want.argmax(1))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ---- whole networks as Verilog -------------------------------------------------------

def _build_and_sim(model_path, out, *build_args, count=20):
    proc = run_cli("build", "-q", str(model_path), "-o", str(out), *build_args)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("sim", str(out), "--count", str(count))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((out / "sim" / "results.json").read_text())


@pytest.mark.parametrize("conv", [{}, {"group": 4, "pads": [1, 1, 1, 1]}],
                         ids=["dense", "depthwise"])
def test_tiny_cnn_bit_exact_in_cocotb(conv, tmp_path):
    path = save(tiny_cnn(conv=conv, channels=(4, 4), size=(6, 7)), tmp_path / "cnn.onnx")
    res = _build_and_sim(path, tmp_path / "out", count=30)
    assert res["frames"] == 30 and res["mismatches"] == 0
    est = res["estimated_cycles_per_frame"]
    assert abs(res["cycles_per_frame"] - est) <= 0.05 * est


@pytest.mark.parametrize("net", ["resnet", "mobilenet"])
def test_small_networks_bit_exact_in_cocotb(net, request, tmp_path):
    path = zoo.export(request.getfixturevalue(net), tmp_path / f"{net}.onnx",
                      exporter="torchscript")
    res = _build_and_sim(path, tmp_path / "out", count=12)
    assert res["frames"] == 12 and res["mismatches"] == 0
    est = res["estimated_cycles_per_frame"]
    assert abs(res["cycles_per_frame"] - est) <= 0.05 * est
