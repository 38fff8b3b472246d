"""Read an ONNX file, with external weight data confined to the model's own folder."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from onnx import external_data_helper

from ..errors import ModelError
from .checks import check_model

MIN_OPSET, MAX_OPSET = 9, onnx.defs.onnx_opset_version()


def _external_tensors(model: onnx.ModelProto):
    yield from external_data_helper._get_all_tensors(model)


def _check_external(model: onnx.ModelProto, base: Path) -> None:
    root = os.path.realpath(base)
    for tensor in _external_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        info = {e.key: e.value for e in tensor.external_data}
        loc = info.get("location", "")
        where = f"tensor '{tensor.name}'"
        if not loc or os.path.isabs(loc) or Path(loc).drive:
            raise ModelError(f"external data location {loc!r} is not a relative path",
                             where=where, hint="external data must lie in the model's folder")
        if "\0" in loc:
            raise ModelError(f"external data location {loc!r} holds a NUL byte", where=where)
        norm = os.path.normpath(loc)
        if Path(norm).parts[:1] == ("..",):
            raise ModelError(f"external data location {loc!r} points outside the model's "
                             "folder; refused", where=where)
        full = os.path.join(root, norm)
        if os.path.islink(full) or os.path.realpath(full) != full:
            raise ModelError(f"external data {loc!r} is a symbolic link; refused",
                             where=where, hint="copy the data file next to the model")
        if not os.path.isfile(full):
            raise ModelError(f"missing external weight data file '{loc}'", where=where,
                             hint=f"keep '{loc}' next to the .onnx file (the dynamo "
                                  "exporter writes it beside the model)")
        size = os.path.getsize(full)
        try:
            offset, length = int(info.get("offset") or 0), int(info.get("length") or 0)
        except ValueError:
            raise ModelError(f"external data offset {info.get('offset')!r} or length "
                             f"{info.get('length')!r} is not a whole number", where=where,
                             hint="the model file is damaged; export again") from None
        if offset < 0 or length < 0 or offset + length > size:
            raise ModelError(f"external data '{loc}' is shorter than the model says "
                             f"(needs bytes {offset}..{offset + length}, file has {size})",
                             where=where, hint="the data file is truncated; export again")


def load_model(path: str | os.PathLike) -> onnx.ModelProto:
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file '{path}' does not exist")
    if not path.is_file():
        raise ModelError(f"model path '{path}' is not a file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ModelError(f"'{path}' is not a readable ONNX file ({type(exc).__name__})",
                         hint="is the file truncated or not an ONNX export?") from None
    if not model.graph.node or not model.opset_import:
        raise ModelError(f"'{path}' is not an ONNX model (no graph nodes or opset)",
                         hint="export the model with brevitas.export.export_qonnx")
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and not MIN_OPSET <= imp.version <= MAX_OPSET:
            raise ModelError(f"ONNX opset {imp.version} is not supported "
                             f"(supported: {MIN_OPSET} to {MAX_OPSET})",
                             hint="re-export with a supported opset_version")
    _check_external(model, path.parent)
    try:
        external_data_helper.load_external_data_for_model(model, str(path.parent))
    except Exception as exc:
        raise ModelError(f"cannot read external weight data: {exc}") from None
    check_model(model)
    return model
