"""Shared fixtures: exported zoo models (cached per session) and small helpers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIGITS_MODEL = ROOT / "examples" / "digits_mlp" / "digits_mlp.onnx"

BNN_PYNQ_FC = [f"{net}_{prec}" for net in ("tfc", "sfc", "lfc")
               for prec in ("1w1a", "1w2a", "2w2a")]
EXPORTERS = ("torchscript", "dynamo")


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("zoo")


_cache: dict = {}


def zoo_model(name: str, exporter: str, directory: Path):
    """(torch model, onnx path) for a BNN-PYNQ net, built and exported once per session."""
    from fpgagen import zoo

    key = (name, exporter)
    if key not in _cache:
        model = _cache.get(name) or zoo.bnn_pynq(name, seed=0)
        _cache[name] = model
        path = zoo.export(model, directory / f"{name}_{exporter}.onnx", exporter=exporter)
        _cache[key] = (model, path)
    return _cache[key]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fpgagen", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=900)
