"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class FpgagenError(Exception):
    """A problem with the user's input: model, options, or build directory.

    ``where`` names the place (node and op) and ``hint`` says what to do; both are
    optional. ``str(err)`` is the one line the CLI prints.
    """

    def __init__(self, what: str, *, where: str | None = None, hint: str | None = None):
        self.what = what
        self.where = where
        self.hint = hint
        super().__init__(self.line())

    def line(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        if self.hint:
            text += f" ({self.hint})"
        return text


class ModelError(FpgagenError):
    """The ONNX file cannot be read, or holds something fpgagen does not support."""


class UnsupportedError(ModelError):
    """A valid model uses an op, pattern or data type outside fpgagen's support."""


class SpecError(FpgagenError):
    """A node's parameters (widths, folding, shapes) are inconsistent."""


class FoldingError(FpgagenError):
    """A requested folding or target cannot be realised."""


class BoardError(FpgagenError):
    """Unknown board name or a malformed board file."""


class BuildDirError(FpgagenError):
    """A path given as a build directory is missing or is not a finished build."""


class SimulationError(FpgagenError):
    """The simulator could not be built or run."""


class SynthesisError(FpgagenError):
    """Yosys or nextpnr could not be run, or failed on the design."""


def node_where(name: str, op: str | None = None) -> str:
    """The ``where`` text for a node: ``node 'fc0' (MatMul)``."""
    return f"node '{name}' ({op})" if op else f"node '{name}'"
