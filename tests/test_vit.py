"""Vision Transformers: the digits ViT example (examples/digits_vit), the golden model
against Brevitas, the attention units the frontend builds, other shapes of ViT, the
ViT patterns fpgagen refuses, and the built Verilog bit-exact over 200 real digits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import ROOT, run_cli

import fpgagen
from fpgagen import reference, zoo
from fpgagen.frontend import load_model, lower

EX = ROOT / "examples" / "digits_vit"
VIT_MODEL = EX / "digits_vit.onnx"
MIN_ACCURACY = 0.9
MIN_AGREEMENT = 0.97  # top-1 of the integer golden model against Brevitas' float model
HW_FRAMES = 200


@pytest.fixture(scope="module")
def vit():
    return zoo.digits_vit()


@pytest.fixture(scope="module")
def held_out():
    _, _, x_test, y_test = zoo.digits_data()
    return x_test, y_test


def output_step(graph) -> float:
    """The logits' quantization step: the head's accumulator scale (first host Mul)."""
    mul = next(h for h in graph.host_post if h.op == "Mul")
    return float(np.asarray(mul.operands[1]).ravel()[0])


def test_committed_files_and_accuracy(vit, held_out):
    info = json.loads((EX / "digits_vit.json").read_text())
    x_test, y_test = held_out
    accuracy = float((zoo.torch_forward(vit, x_test).argmax(1) == y_test).mean())
    assert accuracy == pytest.approx(info["test_accuracy"], abs=1e-6)
    assert accuracy >= MIN_ACCURACY
    ops = {n.op_type for n in load_model(VIT_MODEL).graph.node}
    assert {"LayerNormalization", "Softmax", "MatMul", "Gelu", "Conv", "ReduceMean"} <= ops


def test_golden_model_against_brevitas_on_held_out_digits(vit, held_out):
    x_test, y_test = held_out
    graph = lower(load_model(VIT_MODEL))
    got = reference.run(graph, x_test)
    want = zoo.torch_forward(vit, x_test)
    agreement = float((got.argmax(1) == want.argmax(1)).mean())
    acc_golden = float((got.argmax(1) == y_test).mean())
    acc_brevitas = float((want.argmax(1) == y_test).mean())
    steps = np.abs(got - want).max() / output_step(graph)
    print(f"digits ViT: top-1 agreement {agreement:.2%}, accuracy golden {acc_golden:.2%} "
          f"vs Brevitas {acc_brevitas:.2%}, max logit difference {steps:.1f} output steps")
    assert agreement >= MIN_AGREEMENT
    assert abs(acc_golden - acc_brevitas) <= 0.01


def test_attention_becomes_dataflow_units():
    graph = lower(load_model(VIT_MODEL))
    kinds = [n.kind for n in graph.nodes]
    for kind in ("matmul", "softmax", "layernorm", "table", "offset", "pool", "add"):
        assert kind in kinds, kind
    assert kinds.count("matmul") == 2 and kinds.count("layernorm") == 3
    # no float op is left on chip: the host only quantizes the input and scales the logits
    assert [h.op for h in graph.host_post if h.op not in ("Reshape", "Gather")] == ["Mul", "Add"]
    qk, av = (n for n in graph.nodes if n.kind == "matmul")
    assert qk.spec.transpose_b and not av.spec.transpose_b
    assert qk.spec.heads == av.spec.heads == 2 and qk.spec.rows == qk.spec.n_b == 16
    # the differential build's candidates: the patch embedding and Q, K, V
    assert len(graph.meta["differential"]) == 4


@pytest.mark.parametrize("exp_unit", ["single", "split"])
def test_both_exponent_units_keep_the_agreement(exp_unit, vit, held_out):
    x_test, _ = held_out
    graph = lower(load_model(VIT_MODEL), exp_unit=exp_unit)
    (sm,) = (n.spec for n in graph.nodes if n.kind == "softmax")
    assert sm.variant == exp_unit
    got = reference.run(graph, x_test)
    want = zoo.torch_forward(vit, x_test)
    assert (got.argmax(1) == want.argmax(1)).mean() >= MIN_AGREEMENT


def test_report_shows_both_exponent_units():
    from fpgagen import boards, report
    from fpgagen.estimate_graph import graph_report

    graph = lower(load_model(VIT_MODEL), exp_unit="single")
    rep = graph_report(graph, boards.get("pynq-z2"), 100.0)
    (unit,) = rep["exp_units"]
    assert unit["variant"] == "single" and set(unit["choices"]) == {"single", "split"}
    single, split = unit["choices"]["single"], unit["choices"]["split"]
    assert single["dsp"] == 0 and split["dsp"] == 1  # the split's one multiply
    assert single["bram18"] > split["bram18"]  # a deep table against two small ones
    text = report.markdown(dict(rep, model="digits_vit.onnx"))
    assert "## Softmax exponent units" in text and "| split |" in text


def _export(model, tmp_path, name="m"):
    model.eval()
    return zoo.export(model, tmp_path / f"{name}.onnx", exporter="torchscript",
                      input_shape=zoo.DIGITS_INPUT_SHAPE)


def _random_vit(tmp_path, seed, **shape):
    """A DigitsViT with random weights whose activation quantizers have seen data."""
    torch.manual_seed(seed)
    model = zoo.load_example_module("model", "digits_vit").DigitsViT(**shape)
    x = zoo.sample_inputs(zoo.DIGITS_INPUT_SHAPE, 64, seed=1)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.from_numpy(x))
    return model, x, _export(model, tmp_path)


@pytest.mark.parametrize("dim,heads,mlp,depth,pool", [
    (12, 3, 20, 2, "mean"), (8, 1, 8, 1, "mean"), (12, 3, 16, 1, "cls")])
def test_other_vit_shapes_match_brevitas(dim, heads, mlp, depth, pool, tmp_path):
    """Odd widths, one and three heads, two blocks, a class token: untrained (random)
    weights, so the check is the golden model against Brevitas on random inputs."""
    model, x, path = _random_vit(tmp_path, dim * 10 + heads, dim=dim, heads=heads, mlp=mlp,
                                 depth=depth, pool=pool)
    graph = lower(load_model(path))
    kinds = [n.kind for n in graph.nodes]
    assert kinds.count("layernorm") == 2 * depth + 1
    assert ("prefix" in kinds and "select" in kinds) == (pool == "cls")
    got = reference.run(graph, x)
    want = zoo.torch_forward(model, x)
    agreement = float((got.argmax(1) == want.argmax(1)).mean())
    steps = np.abs(got - want).max() / output_step(graph)
    print(f"ViT dim={dim} heads={heads} depth={depth}: agreement {agreement:.2%}, "
          f"max difference {steps:.1f} steps")
    assert agreement >= 0.9


def test_class_token_vit_in_hardware(tmp_path):
    """A class token put in front (prefix) and read out (select), as Verilog."""
    _, _, path = _random_vit(tmp_path, 7, dim=8, heads=2, mlp=8, pool="cls")
    out = tmp_path / "out"
    proc = run_cli("build", "-q", str(path), "-o", str(out), "--target-fps", "50000")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("sim", str(out), "--count", "6")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = json.loads((out / "sim" / "results.json").read_text())
    assert res["frames"] == 6 and res["mismatches"] == 0 and res["tlast_errors"] == 0
    kinds = {n["kind"] for n in json.loads((out / "graph.json").read_text())["nodes"]}
    assert {"prefix", "select", "matmul", "softmax"} <= kinds


class _SDPAViT(torch.nn.Module):
    """The digits ViT's shape with separate Q/K/V projections, explicit head split and
    Brevitas' QuantScaledDotProductAttention (which only the dynamo exporter exports)."""

    def __init__(self, dim=12, heads=3):
        from brevitas.nn import QuantScaledDotProductAttention
        from brevitas.quant import Uint8ActPerTensorFixedPointMaxInit

        super().__init__()
        vm = zoo.load_example_module("model", "digits_vit")
        v = vm.DigitsViT(dim=dim, heads=heads, mlp=16)
        self.input_quant, self.patch, self.res, self.pos = v.input_quant, v.patch, v.res, v.pos
        self.ln1, self.q_ln1 = torch.nn.LayerNorm(dim), vm.act(4)
        self.q, self.k, self.v, self.o = (vm.linear(dim, dim) for _ in range(4))
        self.sdpa = QuantScaledDotProductAttention(
            q_scaled_bit_width=4, k_transposed_bit_width=4, v_bit_width=4,
            attn_output_weights_quant=Uint8ActPerTensorFixedPointMaxInit,
            attn_output_weights_bit_width=4, attn_output_weights_max_val=1.0)
        self.q_o, self.heads = vm.act(4), heads
        self.ln, self.q_ln, self.head = v.ln, v.q_ln, v.head

    def forward(self, x):
        x = self.patch(self.input_quant(x)).flatten(2).transpose(1, 2)
        x = self.res(x) + self.res(self.pos)
        b, t, d = x.shape
        h = self.q_ln1(self.ln1(x))

        def split(y):
            return y.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        y = self.sdpa(split(self.q(h)), split(self.k(h)), split(self.v(h)))
        x = x + self.res(self.o(self.q_o(y.transpose(1, 2).reshape(b, t, d))))
        return self.head(self.q_ln(self.ln(x)).mean(1))


def test_scaled_dot_product_attention_from_the_dynamo_exporter(tmp_path):
    """Separate projections, 4-D (batch, heads, tokens, dim) views, the exporter's empty
    mask (an Add of zeros) and its constant Where guard: the same dataflow units."""
    torch.manual_seed(3)
    model = _SDPAViT()
    x = zoo.sample_inputs(zoo.DIGITS_INPUT_SHAPE, 64, seed=1)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.from_numpy(x))
    model.eval()
    path = zoo.export(model, tmp_path / "sdpa.onnx", exporter="dynamo",
                      input_shape=zoo.DIGITS_INPUT_SHAPE)
    graph = lower(load_model(path))
    kinds = [n.kind for n in graph.nodes]
    assert kinds.count("matmul") == 2 and "softmax" in kinds
    got = reference.run(graph, x)
    want = zoo.torch_forward(model, x)
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95


class _Masked(torch.nn.Module):
    """The digits ViT's attention with a causal mask."""

    def __init__(self):
        super().__init__()
        self.vit = zoo.load_example_module("model", "digits_vit").DigitsViT(dim=8, heads=2,
                                                                            mlp=8)
        self.register_buffer("mask", torch.triu(torch.full((16, 16), float("-inf")), 1))

    def forward(self, x):
        v = self.vit
        x = v.patch(v.input_quant(x)).flatten(2).transpose(1, 2)
        x = v.res(x) + v.res(v.pos)
        b = v.blocks[0]
        h = b.q_ln1(b.ln1(x))
        return v.res(b.attn(h, h, h, attn_mask=self.mask, need_weights=False)[0])


class _LayerNormOut(torch.nn.Module):
    """Patch embedding and a LayerNorm with no quantizer after it."""

    def __init__(self):
        super().__init__()
        v = zoo.load_example_module("model", "digits_vit").DigitsViT(dim=8, heads=2, mlp=8)
        self.input_quant, self.patch, self.res, self.ln = v.input_quant, v.patch, v.res, v.ln
        self.q_ln, self.head = v.q_ln, v.head

    def tokens(self, x):
        return self.res(self.patch(self.input_quant(x)).flatten(2).transpose(1, 2))

    def forward(self, x):
        return self.ln(self.tokens(x))


class _MeanOverChannels(_LayerNormOut):
    def forward(self, x):
        x = self.tokens(x)
        return self.head(self.q_ln(x.mean(dim=2, keepdim=True).expand(-1, -1, 8)).mean(1))


@pytest.mark.parametrize("module,message", [
    (_Masked, "attention mask"),
    (_LayerNormOut, "LayerNormalization at the model output"),
    (_MeanOverChannels, "ReduceMean is supported over the outer axes"),
])
def test_unsupported_vit_patterns_fail_in_one_line(module, message, tmp_path):
    torch.manual_seed(0)
    path = _export(module(), tmp_path)
    out = tmp_path / "out"
    proc = run_cli("build", "-q", str(path), "-o", str(out))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()


def test_dropout_in_training_mode_is_refused(tmp_path):
    """A Dropout left in training mode (ratio 0.1, training_mode true) before the first
    LayerNorm; the same Dropout in inference mode is an identity."""
    import onnx
    from onnx import helper, numpy_helper

    for training, code in ((True, 2), (False, 0)):
        model = onnx.load(VIT_MODEL)
        g = model.graph
        ln = next(n for n in g.node if n.op_type == "LayerNormalization")
        g.initializer.extend([numpy_helper.from_array(np.asarray(0.1, np.float32), "p"),
                              numpy_helper.from_array(np.asarray(training), "t")])
        drop = helper.make_node("Dropout", [ln.input[0], "p", "t"], ["dropped"], name="drop")
        ln.input[0] = "dropped"
        g.node.insert(list(g.node).index(ln), drop)
        path = tmp_path / f"dropout_{training}.onnx"
        onnx.save(model, path)
        proc = run_cli("build", "-q", str(path), "-o", str(tmp_path / f"out_{training}"))
        assert proc.returncode == code, proc.stderr
        if training:
            assert "node 'drop' (Dropout): Dropout in training mode" in proc.stderr


@pytest.mark.parametrize("attention", [
    "plain", pytest.param("differential", marks=pytest.mark.slow)])
def test_hardware_on_200_held_out_digits_through_the_cli(attention, held_out, tmp_path):
    x_test, y_test = held_out
    x = x_test[:HW_FRAMES]
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out"
    proc = run_cli("build", "-q", str(VIT_MODEL), "-o", str(out), "--target-fps", "50000",
                   "--attention", attention)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("sim", str(out), "--inputs", str(tmp_path / "x.npy"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = json.loads((out / "sim" / "results.json").read_text())
    assert res["frames"] == HW_FRAMES and res["mismatches"] == 0 and res["tlast_errors"] == 0
    scores = np.load(out / "sim" / "outputs.npy")
    assert np.array_equal(scores, fpgagen.golden(VIT_MODEL, x))
    measured, est = res["cycles_per_frame"], res["estimated_cycles_per_frame"]
    accuracy = float((scores.argmax(1) == y_test[:HW_FRAMES]).mean())
    print(f"digits ViT ({attention}) in hardware: {accuracy:.2%} on {HW_FRAMES} digits; "
          f"{measured:g} cycles/frame measured, {est} estimated")
    assert abs(measured - est) <= 0.10 * est, (measured, est)


@pytest.mark.slow
def test_retrain_reproduces_committed_weights(vit, held_out):
    """train.py's recipe gives back the committed weights (single-threaded, seeded)."""
    trained = zoo.digits_vit(train=True)
    info = json.loads((EX / "digits_vit.json").read_text())
    x_test, y_test = held_out
    accuracy = float((zoo.torch_forward(trained, x_test).argmax(1) == y_test).mean())
    assert accuracy == pytest.approx(info["test_accuracy"], abs=1e-6)
    a, b = trained.state_dict(), vit.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)
