"""Safe, reproducible outputs: determinism, Ctrl-C, no overwrite, nothing touched
outside OUT, and the up-front refusal of designs too large to generate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DIGITS_MODEL, ROOT
from onnxgen import mlp, save

import fpgagen
from fpgagen import boards, cli, gen_budget
from fpgagen.build import compile_graph
from fpgagen.errors import FoldingError
from fpgagen.hw.emit import verilog_text


def tree(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its size and modification time."""
    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def test_two_builds_are_byte_identical_wherever_they_run(tmp_path):
    outs = [tmp_path / "a", tmp_path / "deeper" / "place" / "b"]
    for cwd, out in zip((tmp_path, ROOT), outs):
        os.makedirs(out.parent, exist_ok=True)
        subprocess.run([sys.executable, "-m", "fpgagen", "build", str(DIGITS_MODEL), "-o",
                        str(out), "-q", "--target-fps", "1e6"], cwd=cwd, check=True)
    files = sorted(p.relative_to(outs[0]) for p in (outs[0] / "rtl").rglob("*"))
    assert files and files == sorted(p.relative_to(outs[1]) for p in (outs[1] / "rtl").rglob("*"))
    for rel in [*files, Path("graph.json"), Path("report.json")]:
        a, b = (outs[0] / rel).read_bytes(), (outs[1] / rel).read_bytes()
        assert a == b, rel
        assert str(tmp_path).encode() not in a and str(ROOT).encode() not in a, rel


def test_ctrl_c_during_a_build_leaves_nothing(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    model = work / "digits.onnx"
    model.write_bytes(DIGITS_MODEL.read_bytes())
    before = tree(tmp_path)
    # the default folding of the digits MLP spends seconds in the Verilog stage
    # a child of a shell's background job starts with SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler: give the build the default, as a terminal does
    proc = subprocess.Popen([sys.executable, "-m", "fpgagen", "build", str(model), "-o",
                             str(tmp_path / "out")], stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("[fpgagen] verilog ..."):
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.stderr.read()
    code = proc.wait(timeout=300)
    assert any(line.startswith("[fpgagen] verilog ...") for line in lines), lines
    assert code == 130, "".join(lines) + rest
    assert "Traceback" not in rest and "fpgagen: interrupted" in rest
    assert tree(tmp_path) == before  # no OUT, no temporary directory, model untouched


def test_interrupt_while_replacing_keeps_the_old_build(tmp_path, monkeypatch):
    model = save(mlp(), tmp_path / "m.onnx")
    out = tmp_path / "o"
    fpgagen.build(model, out, target_fps=1e5, progress=None)
    old_report = (out / "report.json").read_bytes()
    real_rename = Path.rename

    def rename(self, target):
        if self.name.startswith(".o.partial"):  # the new build moving into place
            raise KeyboardInterrupt
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        fpgagen.build(model, out, target_fps=1e6, progress=None, force=True)
    assert (out / "report.json").read_bytes() == old_report
    assert (out / "fpgagen-build.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "o"]


def test_existing_out_is_left_alone_without_force(tmp_path, capsys):
    model = save(mlp(), tmp_path / "m.onnx")
    out = tmp_path / "o"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    before = tree(tmp_path)
    assert cli.main(["build", str(model), "-o", str(out), "-q"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert tree(tmp_path) == before


def test_a_build_touches_nothing_outside_out(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    model = save(mlp(sizes=(16, 8, 4)), tmp_path / "models" / "m.onnx")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = tree(tmp_path)
    fpgagen.build(model, tmp_path / "out", target_fps=1e5, progress=None)
    after = tree(tmp_path)
    added = {k for k in after if k not in before}
    assert all(k == "out" or k.startswith("out/") for k in added), added
    assert {k: v for k, v in after.items() if k in before} == before


def test_a_model_too_large_to_generate_is_refused_up_front(tmp_path, capsys):
    """A 512-512-512 MLP fully parallel (1e8 frames/s): millions of LUTs of lanes."""
    model = save(mlp(sizes=(512, 512, 512), act_bits=2, weight_bits=2), tmp_path / "big.onnx")
    t0 = time.perf_counter()
    code = cli.main(["build", str(model), "-o", str(tmp_path / "out"), "-q",
                             "--target-fps", "1e8"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1
    assert "too large to generate" in err and "min to generate" in err
    assert "fold more" in err and "--target-fps" in err
    assert not (tmp_path / "out").exists()
    # refused from the folded graph, before the minutes of generation it would take
    assert time.perf_counter() - t0 < gen_budget.estimate(
        compile_graph(model, board=boards.get("pynq-z2"), target_fps=1e8), "xc7")["seconds"]


def test_the_same_model_builds_with_the_default_folding(tmp_path):
    model = save(mlp(sizes=(512, 512, 512), act_bits=2, weight_bits=2), tmp_path / "big.onnx")
    graph = compile_graph(model, board=boards.get("pynq-z2"))
    est = gen_budget.check(graph, "xc7", memory_mb=4096)
    assert est["seconds"] < gen_budget.LIMIT_SECONDS


def test_refusal_names_memory_when_memory_is_short(tmp_path):
    model = save(mlp(sizes=(64, 32, 10)), tmp_path / "m.onnx")
    graph = compile_graph(model, board=boards.get("pynq-z2"), target_fps=1e6)
    with pytest.raises(FoldingError, match="GB of memory"):
        gen_budget.check(graph, "xc7", memory_mb=1)


def test_estimate_is_at_the_upper_end_of_what_generation_produces(tmp_path):
    model = save(mlp(sizes=(64, 32, 10), act_bits=2, weight_bits=2), tmp_path / "m.onnx")
    for fps in (1e4, 1e6):
        graph = compile_graph(model, board=boards.get("pynq-z2"), target_fps=fps)
        est = gen_budget.estimate(graph, "xc7")
        assert len(verilog_text(graph).encode()) <= est["verilog_mb"] * 1e6


def test_report_json_has_no_timestamps_or_paths(tmp_path):
    model = save(mlp(), tmp_path / "m.onnx")
    fpgagen.build(model, tmp_path / "o", target_fps=1e5, progress=None)
    text = (tmp_path / "o" / "report.json").read_text()
    assert str(tmp_path) not in text
    assert json.loads(text)["model"] == "m.onnx"
