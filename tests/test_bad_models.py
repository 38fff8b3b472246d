"""The bad-model corpus (tests/badmodels.py) through the CLI.

Every case: exit code 2, exactly one stderr line ``fpgagen: error: ...`` naming the
problem (and the node/op), no traceback, no OUT, no temporary directory left behind.
Files outside the model's folder that hostile external-data locations point at are
never opened: an audit hook watches every ``open``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from badmodels import CASES
from conftest import run_cli

from fpgagen import cli

_opened: list[str] = []
_watching = False


def _audit(event: str, args) -> None:
    if _watching and event == "open" and isinstance(args[0], (str, bytes, Path)):
        _opened.append(str(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed; it only records while watching


def assert_one_error_line(code: int, stderr: str, needles) -> str:
    assert code == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("fpgagen: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _secret_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.read_bytes()[:6] == b"secret"]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_model_in_process(case, tmp_path, capsys):
    global _watching
    work = tmp_path / "work"
    work.mkdir()
    model = case.make(work)
    secrets = {str(p.resolve()) for p in _secret_files(work)}
    out = tmp_path / "out"
    before = sorted(p.name for p in tmp_path.iterdir())
    _opened.clear()
    _watching = True
    try:
        code = cli.main(["build", str(model), "-o", str(out), "-q"])
    finally:
        _watching = False
    err = capsys.readouterr().err
    assert_one_error_line(code, err, case.needles)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temp dirs
    read = {str(Path(p).resolve()) for p in _opened}
    assert not secrets & read, f"read a file outside the model's folder: {secrets & read}"


def test_corpus_is_large_and_covers_the_issue_list():
    names = {c.name for c in CASES}
    assert len(CASES) >= 30
    for needed in ("random_bytes", "empty_file", "truncated_half", "float_model", "unknown_op",
                   "unknown_custom_domain", "non_constant_scale", "per_element_input_scale",
                   "zero_bit_width", "negative_bit_width", "nan_in_weights", "nan_scale",
                   "dynamic_shape", "zero_sized_shape", "cycle_in_graph", "dangling_input",
                   "duplicate_tensor_name", "opset_too_old", "opset_too_new",
                   "missing_external_data", "external_data_parent_escape",
                   "external_data_absolute_path", "external_data_symlink_file"):
        assert needed in names
    assert sum(c.fuzz for c in CASES) >= 5  # crashes the fuzzer found, kept


def test_audit_hook_sees_reads(tmp_path):
    """The 'never read' check above would be empty if the hook saw nothing."""
    global _watching
    probe = tmp_path / "probe"
    probe.write_text("x")
    _opened.clear()
    _watching = True
    try:
        probe.read_text()
    finally:
        _watching = False
    assert str(probe) in _opened


@pytest.mark.parametrize("name", ["random_bytes", "nan_in_weights",
                                  "external_data_parent_escape", "cycle_in_graph"])
def test_bad_model_through_a_real_process(name, tmp_path):
    case = next(c for c in CASES if c.name == name)
    work = tmp_path / "work"
    work.mkdir()
    model = case.make(work)
    proc = run_cli("build", str(model), "-o", str(tmp_path / "out"))  # progress on too
    assert_one_error_line(proc.returncode, "\n".join(
        line for line in proc.stderr.splitlines() if not line.startswith("[fpgagen]")),
        case.needles)
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]
