"""Build outputs: files, report fields, determinism, folding for a target."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnxgen import mlp, save

import fpgagen
from fpgagen import boards, reference
from fpgagen.build import open_build
from fpgagen.errors import FoldingError
from fpgagen.passes import fold


@pytest.fixture
def model(tmp_path):
    return save(mlp(sizes=(12, 8, 6, 4), act_bits=2, weight_bits=2), tmp_path / "m.onnx")


def test_build_writes_a_complete_directory(model, tmp_path):
    res = fpgagen.build(model, tmp_path / "out", target_fps=1e6, progress=None)
    out = tmp_path / "out"
    assert (out / "rtl" / "fpgagen_top.v").read_text().count("module fpgagen_top") == 1
    rep = json.loads((out / "report.json").read_text())
    for key in ("nodes", "total", "cycles_per_frame", "throughput_fps", "latency_cycles",
                "clock_mhz", "board"):
        assert key in rep
    assert set(rep["total"]["estimate"]) == {"lut", "ff", "bram18", "dsp"}
    assert rep["cycles_per_frame"] == max(n["cycles"] for n in rep["nodes"])
    assert rep["cycles_per_frame"] <= 100  # 1e6 fps at 100 MHz
    _, graph, _ = open_build(out)
    x = np.random.default_rng(0).normal(size=(5, 1, 12)).astype(np.float32)
    assert np.array_equal(reference.run(graph, x), reference.run(res.graph, x))


def test_two_builds_are_byte_identical(model, tmp_path):
    for name in ("a", "b"):
        fpgagen.build(model, tmp_path / name, target_fps=2e5, progress=None)
    for rel in ("rtl/fpgagen_top.v", "graph.json", "report.json"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_force_replaces_an_existing_build(model, tmp_path):
    fpgagen.build(model, tmp_path / "o", target_fps=1e5, progress=None)
    fpgagen.build(model, tmp_path / "o", target_fps=1e6, progress=None, force=True)
    assert json.loads((tmp_path / "o" / "report.json").read_text())["cycles_per_frame"] <= 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "o"]


@pytest.mark.parametrize("fps", [1e4, 1e5, 1e6, 5e6])
def test_folding_meets_the_target_with_the_slowest_layer(model, fps, tmp_path):
    res = fpgagen.build(model, tmp_path / "o", target_fps=fps, progress=None)
    budget = 100e6 / fps
    cycles = [n["cycles"] for n in res.report["nodes"]]
    assert max(cycles) <= budget


def test_unreachable_target_names_the_best_rate(model, tmp_path):
    with pytest.raises(FoldingError, match=r"at most 100000000 frames/s"):
        fpgagen.build(model, tmp_path / "o", target_fps=1e9, progress=None)
    assert not (tmp_path / "o").exists()


def test_default_folding_fits_the_board(model):
    from fpgagen.frontend import load_model, lower

    graph = lower(load_model(model))
    folded, _ = fold.apply(graph, board=boards.get("pynq-z2"))
    assert fold.min_cycles(graph, "xc7") >= 1
    assert all(n.spec.cycles() >= 1 for n in folded.nodes)


def test_boards_are_valid_and_listed():
    names = [b.name for b in boards.known()]
    assert "pynq-z2" in names
    assert boards.get("pynq-z2").lut == 53200


def test_user_board_file_is_validated(tmp_path):
    from fpgagen.errors import BoardError

    bad = tmp_path / "b.toml"
    bad.write_text('name = "x"\nvendor = "y"\n')
    with pytest.raises(BoardError, match="lacks the field 'family'"):
        boards.get(str(bad))
