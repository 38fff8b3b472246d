"""The digits CNN example (examples/digits_cnn): the committed files, the golden model
against the Brevitas model on the 360 held-out digits for both exporters, and the built
Verilog bit-exact on the same digits through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import EXPORTERS, ROOT, run_cli

import fpgagen
from fpgagen import reference, zoo
from fpgagen.frontend import load_model, lower
from fpgagen.nodes import mvau

EX = ROOT / "examples" / "digits_cnn"
CNN_MODEL = EX / "digits_cnn.onnx"
MIN_ACCURACY = 0.9


@pytest.fixture(scope="module")
def cnn():
    return zoo.digits_cnn()


@pytest.fixture(scope="module")
def held_out():
    _, _, x_test, y_test = zoo.digits_data()
    return x_test, y_test


@pytest.fixture(scope="module")
def exported(cnn, tmp_path_factory) -> dict[str, Path]:
    """The committed TorchScript export, and a dynamo export of the same weights."""
    dynamo = zoo.export(cnn, tmp_path_factory.mktemp("cnn") / "digits_cnn.onnx",
                        exporter="dynamo")
    return {"torchscript": CNN_MODEL, "dynamo": dynamo}


def test_committed_files_and_accuracy(cnn, held_out):
    assert CNN_MODEL.stat().st_size < 200_000
    assert not (EX / "digits_cnn.onnx.data").exists()  # TorchScript: one file
    info = json.loads((EX / "digits_cnn.json").read_text())
    x_test, y_test = held_out
    accuracy = float((zoo.torch_forward(cnn, x_test).argmax(1) == y_test).mean())
    assert accuracy == pytest.approx(info["test_accuracy"], abs=1e-6)
    assert accuracy >= MIN_ACCURACY
    # what the example is for: padded 3x3 convolutions, a max pool, BatchNorm
    nodes = onnx.load(CNN_MODEL).graph.node
    convs = [n for n in nodes if n.op_type == "Conv"]
    pads = [list(a.ints) for n in convs for a in n.attribute if a.name == "pads"]
    assert len(convs) == 3 and [1, 1, 1, 1] in pads
    assert {"MaxPool", "BatchNormalization", "Gemm"} <= {n.op_type for n in nodes}


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_golden_matches_brevitas_on_held_out_digits(exporter, cnn, held_out, exported):
    x_test, y_test = held_out
    graph = lower(load_model(exported[exporter]))
    assert {"sliding_window", "pool", "mvau"} <= {n.kind for n in graph.nodes}
    got = reference.run(graph, x_test)
    want = zoo.torch_forward(cnn, x_test)
    assert got.shape == want.shape == (len(x_test), 10)
    assert np.array_equal(got.argmax(1), want.argmax(1))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    assert (got.argmax(1) == y_test).mean() >= MIN_ACCURACY


def test_exporters_give_the_same_integer_graph(exported):
    a, b = (lower(load_model(exported[e])) for e in EXPORTERS)
    assert [n.kind for n in a.nodes] == [n.kind for n in b.nodes]
    for na, nb in zip(a.nodes, b.nodes):
        if isinstance(na.spec, mvau.Spec):
            assert np.array_equal(na.spec.weights, nb.spec.weights)
            assert np.array_equal(na.spec.thresholds if na.spec.thresholds is not None else 0,
                                  nb.spec.thresholds if nb.spec.thresholds is not None else 0)


def test_hardware_on_held_out_digits_through_the_cli(held_out, tmp_path):
    x_test, y_test = held_out
    np.save(tmp_path / "x.npy", x_test)
    out = tmp_path / "out"
    proc = run_cli("build", "-q", str(CNN_MODEL), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("sim", str(out), "--inputs", str(tmp_path / "x.npy"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = json.loads((out / "sim" / "results.json").read_text())
    assert res["frames"] == len(x_test) and res["mismatches"] == 0 and res["tlast_errors"] == 0
    scores = np.load(out / "sim" / "outputs.npy")
    assert np.array_equal(scores, fpgagen.golden(CNN_MODEL, x_test))
    accuracy = float((scores.argmax(1) == y_test).mean())
    measured, est = res["cycles_per_frame"], res["estimated_cycles_per_frame"]
    print(f"digits_cnn in hardware: {accuracy:.2%} on {len(y_test)} held-out digits; "
          f"{measured:g} cycles/frame measured, {est} estimated")
    assert accuracy >= MIN_ACCURACY

    assert abs(measured - est) <= 0.05 * est, (measured, est)


@pytest.mark.slow
def test_retrain_reproduces_committed_weights(cnn, held_out):
    """train.py's recipe gives back the committed weights (single-threaded, seeded)."""
    import torch

    trained = zoo.digits_cnn(train=True)
    info = json.loads((EX / "digits_cnn.json").read_text())
    x_test, y_test = held_out
    accuracy = float((zoo.torch_forward(trained, x_test).argmax(1) == y_test).mean())
    assert accuracy == pytest.approx(info["test_accuracy"], abs=1e-6)
    a, b = trained.state_dict(), cnn.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)
