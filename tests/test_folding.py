"""Folding choices a user controls: --target-fps, --fit, and per-node folding files."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from conftest import DIGITS_MODEL, run_cli
from onnxgen import save
from test_cnn import tiny_cnn

from fpgagen import boards, nodes
from fpgagen.frontend import load_model, lower
from fpgagen.nodes import swg


def build(tmp_path, name, *args):
    out = tmp_path / name
    proc = run_cli("build", "-q", str(DIGITS_MODEL), "-o", str(out), *args)
    return out, proc


def test_folding_file_round_trip_reproduces_the_build(tmp_path):
    first, proc = build(tmp_path, "a", "--target-fps", "200000")
    assert proc.returncode == 0, proc.stderr
    folding = json.loads((first / "folding.json").read_text())
    assert {"pe", "simd"} <= set(folding["mvau0"])
    # no inserted converters or FIFOs: only the nodes a user can fold
    assert not any(name.startswith(("fifo", "dwc")) for name in folding)
    again, proc = build(tmp_path, "b", "--folding", str(first / "folding.json"))
    assert proc.returncode == 0, proc.stderr
    assert (again / "rtl" / "fpgagen_top.v").read_bytes() == \
        (first / "rtl" / "fpgagen_top.v").read_bytes()


def test_folding_file_overrides_one_node(tmp_path):
    base, _ = build(tmp_path, "a", "--target-fps", "200000")
    folding = json.loads((base / "folding.json").read_text())
    mw_divisor = 2 if folding["mvau0"]["simd"] != 2 else 4
    (tmp_path / "f.json").write_text(json.dumps({"mvau0": {"simd": mw_divisor, "pe": 1}}))
    out, proc = build(tmp_path, "b", "--target-fps", "200000", "--folding",
                      str(tmp_path / "f.json"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    row = next(n for n in report["nodes"] if n["name"] == "mvau0")
    assert (row["pe"], row["simd"]) == (1, mw_divisor)
    assert json.loads((out / "folding.json").read_text())["mvau0"] == \
        {"pe": 1, "simd": mw_divisor}


@pytest.mark.parametrize("content,needle", [
    ({"nope": {"pe": 2}}, "names node 'nope'"),
    ({"mvau0": {"lanes": 2}}, "no folding field 'lanes'"),
    ({"mvau0": {"pe": 0}}, "positive integer"),
    ({"mvau0": {"pe": 7}}, "does not divide"),
    ([1, 2], "must hold an object"),
    ("not json", "is not JSON"),
])
def test_bad_folding_files_give_one_line(tmp_path, content, needle):
    path = tmp_path / "f.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    out, proc = build(tmp_path, "out", "--folding", str(path))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and needle in proc.stderr, proc.stderr
    assert not out.exists()


def test_fit_uses_the_whole_board(tmp_path):
    default, proc = build(tmp_path, "a")
    assert proc.returncode == 0, proc.stderr
    fit, proc = build(tmp_path, "b", "--fit", "--board", "icebreaker")
    assert proc.returncode == 0, proc.stderr
    small = json.loads((fit / "report.json").read_text())
    assert small["fits"] and small["total"]["estimate"]["lut"] <= small["capacity"]["lut"]
    big, proc = build(tmp_path, "c", "--fit")
    report = json.loads((big / "report.json").read_text())
    assert report["throughput_fps"] >= json.loads(
        (default / "report.json").read_text())["throughput_fps"]


def test_fit_and_target_are_exclusive(tmp_path):
    out, proc = build(tmp_path, "a", "--fit", "--target-fps", "1000")
    assert proc.returncode == 2 and "either --target-fps or --fit" in proc.stderr


def test_target_fps_widens_the_window_beyond_its_channels(tmp_path):
    """A 3-channel first convolution: with one pixel's channels per word its window takes
    6*7 windows x 9 words a frame, more than 1M frames/s at 100 MHz allow; several
    window pixels per word reach it, bit-exact under stalls and at the estimated rate."""
    fps, clock = 1_000_000, boards.get("pynq-z2").clock_mhz
    budget = math.floor(clock * 1e6 / fps)
    model = save(tiny_cnn(channels=(3, 4), size=(6, 7)), tmp_path / "cnn.onnx")
    window = next(n.spec for n in lower(load_model(model)).nodes if isinstance(n.spec, swg.Spec)
                  and n.spec.channels == 3)
    per_pixel = [dataclasses.replace(window, **o) for o in swg.fold_options(window)
                 if o["simd"] <= window.channels]  # what the window could do before
    assert per_pixel and all(nodes.estimate(w, "xc7").cycles > budget for w in per_pixel)
    out = tmp_path / "out"
    proc = run_cli("build", "-q", str(model), "-o", str(out), "--board", "pynq-z2",
                   "--target-fps", str(fps))
    assert proc.returncode == 0, proc.stderr
    folding = json.loads((out / "folding.json").read_text())
    assert folding[window.name]["simd"] > 3  # whole pixels per word
    report = json.loads((out / "report.json").read_text())
    assert report["throughput_fps"] >= fps
    proc = run_cli("sim", str(out), "--count", "12")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = json.loads((out / "sim" / "results.json").read_text())
    assert res["frames"] == 12 and res["mismatches"] == 0 and res["stall"] > 0
    est = res["estimated_cycles_per_frame"]
    assert est <= budget and abs(res["cycles_per_frame"] - est) <= 0.05 * est
