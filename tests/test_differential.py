"""``--attention differential``: the pass on hand-built graphs (a residual convolution
block, a whole attention with Q/K/V sharing one encoder) bit-exact in Amaranth's
simulator under stalls; its errors; and the digits CNN built plain and differential,
both bit-exact as Verilog in cocotb on real digits, with identical outputs and the
statistics in ``fpgagen sim`` and ``fpgagen report``."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import DIGITS_MODEL, ROOT, run_cli
from dag_graphs import attention, prepared, residual_block, values
from streamsim import run_top

import fpgagen
from fpgagen import boards, delta_stats, host, nodes, reference, zoo
from fpgagen.build import compile_graph
from fpgagen.dtypes import IntType
from fpgagen.errors import FpgagenError
from fpgagen.ir import Graph, Node, Tensor
from fpgagen.nodes import delta, dmvau, dup, mvau
from fpgagen.passes import differential, fold

CNN_MODEL = ROOT / "examples" / "digits_cnn" / "digits_cnn.onnx"


def kinds(graph: Graph) -> list[str]:
    return [n.kind for n in graph.nodes]


def repeating(rng, dtype, frames, vectors, channels):
    """Frames whose vectors repeat much of the previous one: many zero deltas."""
    x = values(rng, dtype, (frames, vectors, channels))
    for t in range(1, vectors):
        same = rng.random((frames, channels)) < 0.6
        x[:, t][same] = x[:, t - 1][same]
    return x.reshape(frames, -1)


def test_residual_block_with_a_differential_convolution():
    plain = residual_block(seed=4)
    graph, changed = differential.apply(plain)  # every MVAU with several vectors
    assert changed and kinds(graph).count("dmvau") == 1 and "delta" in kinds(graph)
    assert graph.meta["differential"] == ["conv"]
    hw = prepared(graph)
    x = repeating(np.random.default_rng(1), IntType(2, False), 3, 30, 4)
    want = reference.run_hw(plain, x)
    assert np.array_equal(reference.run_hw(hw, x), want)
    got, _ = run_top(hw, x, stall_in=0.5, stall_out=0.5, seed=2)
    assert np.array_equal(got, want)


def test_q_k_v_share_one_encoder_through_a_duplicator():
    plain = attention(seed=3)
    graph, _ = differential.apply(plain, ["q", "k", "v"])
    encoders = [n for n in graph.nodes if isinstance(n.spec, delta.Spec)]
    assert len(encoders) == 1 and kinds(graph).count("dmvau") == 3
    hw = prepared(graph)
    (fork,) = [n for n in hw.nodes if isinstance(n.spec, dup.Spec)]
    assert fork.spec.copies == 3 and fork.spec.dtype == encoders[0].spec.out_type
    x = repeating(np.random.default_rng(5), IntType(2, False), 4, 6, 4)
    got, _ = run_top(hw, x, stall_in=0.5, stall_out=0.5, seed=6)
    assert np.array_equal(got, reference.run_hw(plain, x))


def test_the_frontends_candidates_win_and_the_rest_stays_plain():
    plain = attention(seed=3)
    graph, _ = differential.apply(plain.replace(meta={"differential": ["v"]}))
    assert [n.name for n in graph.nodes if isinstance(n.spec, dmvau.Spec)] == ["v"]
    assert all(isinstance(graph.node(n).spec, mvau.Spec) for n in ("q", "k"))


def _single_vector_graph() -> Graph:
    w = np.ones((2, 3), dtype=np.int64)
    spec = mvau.Spec("fc", 3, 2, w, IntType(2, False), IntType(2, True), IntType(4, False))
    return Graph((Node("fc", spec, ("x",), ("y",)),),
                 {"x": Tensor("x", (3,), spec.in_type), "y": Tensor("y", (2,), spec.out_type)},
                 ("x",), ("y",))


def test_errors_name_the_problem():
    with pytest.raises(FpgagenError, match=r"^--attention differential: no MVAU in this model "
                                           r"processes more than one vector per frame"):
        differential.apply(_single_vector_graph())
    with pytest.raises(FpgagenError, match=r"node 'nope' is not in the graph \(MVAUs: q, k, v"):
        differential.apply(attention(), ["nope"])
    with pytest.raises(FpgagenError, match=r"node 'qk' is a matmul, not an MVAU"):
        differential.apply(attention(), ["qk"])


def test_cli_refuses_a_model_without_deltas(tmp_path):
    proc = run_cli("build", "-q", str(DIGITS_MODEL), "-o", str(tmp_path / "out"),
                   "--attention", "differential")
    assert proc.returncode == 2 and not (tmp_path / "out").exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "fpgagen: error: --attention differential: no MVAU in this model"), proc.stderr


FRAMES = 24  # real digits through each build


def _build_and_sim(tmp_path, attention_kind: str) -> tuple[dict, str]:
    out = tmp_path / attention_kind
    proc = run_cli("build", "-q", str(CNN_MODEL), "-o", str(out), "--target-fps", "20000",
                   "--attention", attention_kind)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("sim", str(out), "--inputs", str(tmp_path / "x.npy"), "--stall", "0.3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = json.loads((out / "sim" / "results.json").read_text())
    assert res["frames"] == FRAMES and res["mismatches"] == 0 and res["tlast_errors"] == 0
    return res, proc.stdout


@pytest.fixture
def digits(tmp_path):
    _, _, x_test, _ = zoo.digits_data()
    np.save(tmp_path / "x.npy", x_test[:FRAMES])
    return x_test[:FRAMES]


def test_digits_cnn_differential_in_cocotb(tmp_path, digits):
    """Bit-exact under random stalls, its outputs the plain golden model's (which the
    plain build equals in cocotb: test_digits_cnn.py); the sim and the report show
    what the differential units did on these digits."""
    res, stdout = _build_and_sim(tmp_path, "differential")
    assert "differential units over 24 frames" in stdout
    outputs = np.load(tmp_path / "differential" / "sim" / "outputs.npy")
    assert np.array_equal(outputs, fpgagen.golden(CNN_MODEL, digits))

    stats = res["differential"]
    assert [u["node"] for u in stats["units"]] == ["mvau0", "mvau1", "mvau2"]
    for u in stats["units"]:
        assert u["zero_fraction"] + u["narrow_fraction"] + u["wide_fraction"] == \
            pytest.approx(1, abs=1e-3)
        assert u["group_zero_fraction"] + u["group_narrow_fraction"] + \
            u["group_wide_fraction"] == pytest.approx(1, abs=1e-3)
        assert u["group_zero_fraction"] <= u["zero_fraction"]  # a group skips if all do
        assert u["macs_skipped_fraction"] == pytest.approx(u["group_zero_fraction"], abs=1e-3)
        assert u["cycles_data_max"] <= u["cycles_worst"]
    measured, worst = res["cycles_per_frame"], res["estimated_cycles_per_frame"]
    assert measured <= worst  # the worst case bounds what the data takes

    proc = run_cli("report", str(tmp_path / "differential"), "--format", "md")
    assert proc.returncode == 0, proc.stderr
    assert "## Differential units" in proc.stdout and "mvau1" in proc.stdout
    rep = json.loads((tmp_path / "differential" / "report.json").read_text())
    assert rep["differential"]["data"]["units"] == stats["units"]
    assert rep["differential"]["measured_cycles_per_frame"] == measured
    # the statistics equal a recount from the golden model's deltas
    graph = Graph.from_json((tmp_path / "differential" / "graph.json").read_text())
    again = delta_stats.statistics(graph, host.run_pre(graph, digits))
    assert again["units"] == stats["units"]


@pytest.mark.slow
def test_digits_cnn_plain_and_differential_identical_in_cocotb(tmp_path, digits):
    plain, _ = _build_and_sim(tmp_path, "plain")
    diff, _ = _build_and_sim(tmp_path, "differential")
    assert "differential" not in plain and "differential" in diff
    assert np.array_equal(np.load(tmp_path / "plain" / "sim" / "outputs.npy"),
                          np.load(tmp_path / "differential" / "sim" / "outputs.npy"))


def _groups(graph: Graph) -> dict[str, set[int]]:
    """Per encoder: its group size and its readers' SIMDs (one value when they agree)."""
    out = {}
    for node in graph.nodes:
        if isinstance(node.spec, delta.Spec):
            readers = graph.consumers(node.outputs[0])
            assert all(isinstance(r.spec, dmvau.Spec) for r in readers)
            out[node.name] = {node.spec.simd} | {r.spec.simd for r in readers}
            assert graph.tensors[node.outputs[0]].dtype == node.spec.out_type
            assert node.spec.lanes % node.spec.simd == 0
    return out


def test_folding_gives_an_encoder_and_its_readers_one_group():
    """A budget only SIMD groups meet: Q, K and V and their shared encoder take one
    group size, the delta tensor the wire word of that group; bit-exact under stalls."""
    plain = attention(seed=3, tokens=6, dim=8)
    graph, _ = differential.apply(plain, ["q", "k", "v"])
    one = next(n.spec for n in graph.nodes if isinstance(n.spec, dmvau.Spec))
    budget = dataclasses.replace(one, pe=one.mh, simd=2).cycles()
    assert budget < dataclasses.replace(one, pe=one.mh, simd=1).cycles()  # not at SIMD 1
    folded = fold.fold_for_cycles(graph, budget, "xc7")
    (group,) = _groups(folded).values()
    assert len(group) == 1 and group.pop() > 1
    assert max(nodes.estimate(n.spec, "xc7").cycles for n in folded.nodes) <= budget
    x = repeating(np.random.default_rng(5), IntType(2, False), 3, 6, 8)
    got, _ = run_top(prepared(folded), x, stall_in=0.5, stall_out=0.5, seed=6)
    assert np.array_equal(got, reference.run_hw(plain, x))


def test_a_plain_folding_applies_to_the_differential_build():
    plain = attention(seed=3, tokens=6, dim=8)
    graph, _ = differential.apply(plain, ["q", "k", "v"])
    chosen = fold.folding_of(fold.fold_for_cycles(plain, 24, "xc7"))
    diff = fold.apply_overrides(graph, chosen)
    for name in ("q", "k", "v"):
        assert fold.folding_of(diff)[name] == chosen[name]
    # readers that disagree: the largest group the file names wins for all of them
    mixed = fold.apply_overrides(graph, {"q": {"simd": 2}, "k": {"pe": 2, "simd": 4}})
    assert list(_groups(mixed).values()) == [{4}]
    assert mixed.node("k").spec.pe == 2 and mixed.node("v").spec.simd == 4
    x = repeating(np.random.default_rng(7), IntType(2, False), 2, 6, 8)
    got, _ = run_top(prepared(mixed), x, stall_in=0.3, stall_out=0.3, seed=8)
    assert np.array_equal(got, reference.run_hw(plain, x))


def test_a_plain_builds_folding_file_applies_to_the_digits_cnn():
    """Today's use: fold plain, feed its folding.json to the differential build; a
    SIMD whose wire word would pass 64 bits becomes the largest group that fits."""
    board = boards.get("pynq-z2")
    plain = compile_graph(CNN_MODEL, board=board, target_fps=20000).meta["folding"]
    graph = compile_graph(CNN_MODEL, board=board, attention="differential", folding=plain)
    for unit in delta_stats.units(graph):
        want, got = plain[unit.name], unit.spec
        fmt = unit.spec.fmt
        assert got.pe == want["pe"]
        assert got.simd == delta.largest_group(fmt.channels, fmt.x_type, fmt.narrow_bits,
                                               want["simd"])
        assert delta_stats.encoder_of(graph, unit).spec.simd == got.simd
    assert any(u.spec.simd < plain[u.name]["simd"] for u in delta_stats.units(graph))
