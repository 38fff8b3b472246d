"""Golden model (lowered integer graph) against the Brevitas float model."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import BNN_PYNQ_FC, DIGITS_MODEL, EXPORTERS, zoo_model

from fpgagen import reference, zoo
from fpgagen.frontend import load_model, lower
from fpgagen.ir import Graph


def _compare(model, path, x):
    graph = lower(load_model(path))
    want = zoo.torch_forward(model, x)
    got = reference.run(graph, x)
    assert got.shape == want.shape
    return graph, got, want


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", BNN_PYNQ_FC)
def test_bnn_pynq_golden_matches_brevitas(name, exporter, zoo_dir):
    model, path = zoo_model(name, exporter, zoo_dir)
    x = zoo.sample_inputs(name, 64, seed=1)
    graph, got, want = _compare(model, path, x)
    assert np.array_equal(got.argmax(1), want.argmax(1))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    # the network is not degenerate: outputs differ between inputs
    assert len({tuple(r) for r in np.round(got, 4)}) > 1


def test_exporters_give_the_same_integer_graph(zoo_dir):
    _, ts = zoo_model("tfc_2w2a", "torchscript", zoo_dir)
    _, dyn = zoo_model("tfc_2w2a", "dynamo", zoo_dir)
    a, b = lower(load_model(ts)), lower(load_model(dyn))
    assert [n.kind for n in a.nodes] == [n.kind for n in b.nodes]
    for na, nb in zip(a.nodes, b.nodes):
        assert np.array_equal(na.spec.weights, nb.spec.weights)
        assert np.array_equal(na.spec.thresholds if na.spec.thresholds is not None else 0,
                              nb.spec.thresholds if nb.spec.thresholds is not None else 0)


def test_negative_batchnorm_scales_flip_weights(zoo_dir):
    model, path = zoo_model("tfc_1w1a", "torchscript", zoo_dir)
    graph = lower(load_model(path))
    raw = [p for n, p in model.named_parameters() if n.endswith("weight") and p.ndim == 2]
    # some channels are stored negated because their BatchNorm scale is negative
    flipped = sum(int(np.sum(np.all(node.spec.weights == -np.sign(w.detach().numpy()), axis=1)))
                  for node, w in zip(graph.nodes, raw))
    assert flipped > 0


def test_digits_mlp_golden_matches_brevitas_on_real_digits():
    x_train, y_train, x_test, y_test = zoo.digits_data()
    model = zoo.digits_mlp()
    graph, got, want = _compare(model, DIGITS_MODEL, x_test)
    assert np.array_equal(got.argmax(1), want.argmax(1))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    assert (got.argmax(1) == y_test).mean() > 0.8


def test_graph_json_round_trip_keeps_the_golden_model():
    graph = lower(load_model(DIGITS_MODEL))
    again = Graph.from_json(graph.to_json())
    assert again.to_json() == graph.to_json()
    x = np.random.default_rng(0).random((8, 1, 8, 8), dtype=np.float32)
    assert np.array_equal(reference.run(graph, x), reference.run(again, x))
