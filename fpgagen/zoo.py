"""Models the project is tested and demoed on.

* ``bnn_pynq(name)``: the standard BNN-PYNQ networks (TFC/SFC/LFC, and CNV) from
  ``brevitas_examples`` with seeded random weights and BatchNorm statistics
  calibrated on seeded random inputs (the pretrained weights cannot be downloaded
  here). The BatchNorm affine parameters are made non-trivial on purpose: about a
  quarter of the channels of every hidden BatchNorm (at least one per layer) get a
  NEGATIVE scale, so a compiler that folds BN + sign/quantizer into thresholds must
  flip the comparison for those channels.
* ``digits_mlp()``: the demo network of ``examples/digits_mlp`` (binarized MLP
  trained on scikit-learn's embedded 8x8 digits), with its committed weights.
* ``digits_cnn()``: the 4-bit CNN of ``examples/digits_cnn``, trained on the same
  digits, with its committed weights.
* ``export``, ``torch_forward``, ``sample_inputs``, ``digits_data``: helpers.

torch and brevitas are imported inside the functions, so ``import fpgagen.zoo``
works without them; numpy is the only module-level dependency.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: models trained on the digits, each in ``examples/<name>/`` with ``model.py``,
#: ``train.py`` and its committed ``<name>.pt``: name -> the model class in model.py
DIGITS_EXAMPLES = {"digits_mlp": "DigitsMLP", "digits_cnn": "DigitsCNN", "digits_vit": "DigitsViT"}

#: BNN-PYNQ networks ``bnn_pynq`` builds, with their ONNX input shapes (batch 1).
#: brevitas_examples ships no lfc_2w2a configuration: it is lfc_1w2a's with 2-bit weights.
BNN_PYNQ_MODELS: dict[str, tuple[int, ...]] = {
    **{n: (1, 1, 28, 28) for n in (
        "tfc_1w1a", "tfc_1w2a", "tfc_2w2a",
        "sfc_1w1a", "sfc_1w2a", "sfc_2w2a",
        "lfc_1w1a", "lfc_1w2a", "lfc_2w2a")},
    **{n: (1, 3, 32, 32) for n in ("cnv_1w1a", "cnv_1w2a", "cnv_2w2a")},
}

DIGITS_INPUT_SHAPE = (1, 1, 8, 8)
DIGITS_TRAIN_SAMPLES = 1437  # sklearn's order: first 1437 train, remaining 360 test

#: fraction of hidden BatchNorm channels given a negative scale by ``bnn_pynq``
NEGATIVE_BN_FRACTION = 0.25


# --------------------------------------------------------------------------- data

def digits_data():
    """scikit-learn's 8x8 digits, split as the demo model was trained.

    Returns ``(x_train, y_train, x_test, y_test)``: x float32 (N, 1, 8, 8) with
    values pixel/16 in [0, 1], y int64 labels; train = the first 1437 samples in
    sklearn's order, test = the remaining 360.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / np.float32(16.0)).reshape(-1, *DIGITS_INPUT_SHAPE[1:])
    y = d.target.astype(np.int64)
    n = DIGITS_TRAIN_SAMPLES
    return x[:n], y[:n], x[n:], y[n:]


def input_shape(name: str) -> tuple[int, ...]:
    """ONNX input shape (batch 1) of a zoo model: a BNN-PYNQ name or a digits example."""
    if name in DIGITS_EXAMPLES:
        return DIGITS_INPUT_SHAPE
    try:
        return BNN_PYNQ_MODELS[name]
    except KeyError:
        raise ValueError(f"unknown zoo model {name!r}; known: "
                         + ", ".join([*DIGITS_EXAMPLES, *BNN_PYNQ_MODELS])) from None


def sample_inputs(name_or_shape: str | Sequence[int], n: int, seed: int) -> np.ndarray:
    """``n`` seeded float32 inputs, uniform in [0, 1).

    ``name_or_shape``: a zoo model name, or a shape. A 4-d shape is taken as the
    full (batch, C, H, W) input shape and its batch dimension replaced by ``n``;
    any other shape is the per-sample shape. Result: (n, *per_sample_shape).
    """
    if isinstance(name_or_shape, str):
        shape = input_shape(name_or_shape)
    else:
        shape = tuple(int(s) for s in name_or_shape)
    per_sample = shape[1:] if len(shape) == 4 else shape
    rng = np.random.default_rng(seed)
    return rng.random((n, *per_sample), dtype=np.float32)


# --------------------------------------------------------------------------- torch helpers

def torch_forward(model, x: np.ndarray) -> np.ndarray:
    """Run ``model`` in eval mode without gradients: float32 numpy in, float32 numpy out."""
    import torch

    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    if hasattr(out, "value"):  # a brevitas QuantTensor
        out = out.value
    return out.detach().cpu().numpy().astype(np.float32, copy=False)


def quant_act_outputs(model, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Outputs of every activation quantizer (QuantIdentity/QuantReLU/QuantHardTanh)
    of ``model`` on ``x``, in execution order, as (module name, array) pairs.

    The first one of a BNN-PYNQ net or the digits MLP is the input quantizer; the
    rest are the hidden activations.
    """
    import torch
    from brevitas.nn import QuantHardTanh, QuantIdentity, QuantReLU

    got: list[tuple[str, np.ndarray]] = []
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, (QuantIdentity, QuantReLU, QuantHardTanh)):
            def hook(mod, inp, out, name=name):
                v = out.value if hasattr(out, "value") else out
                got.append((name, v.detach().cpu().numpy().copy()))
            hooks.append(m.register_forward_hook(hook))
    try:
        model.eval()
        with torch.no_grad():
            model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    finally:
        for h in hooks:
            h.remove()
    return got


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' prints, warnings and torch.onnx log lines.

    What was printed is attached to an exception raised inside, if any.
    """
    buf = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo",
                                               "torch.fx", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                yield
    except BaseException as exc:
        text = buf.getvalue().strip()
        if text and hasattr(exc, "add_note"):
            exc.add_note("exporter output:\n" + text[-4000:])
        raise
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def export(model, path, *, exporter: str = "torchscript", input_shape=None) -> Path:
    """Export ``model`` to QONNX at ``path`` with Brevitas; return the .onnx path.

    ``exporter``: "torchscript" (single self-contained file) or "dynamo" (writes
    ``NAME.onnx.data`` beside ``NAME.onnx``). ``input_shape``: full input shape
    with batch, default ``model.input_shape`` (set by this module's builders).
    """
    import torch

    if exporter not in ("torchscript", "dynamo"):
        raise ValueError(f"exporter must be 'torchscript' or 'dynamo', not {exporter!r}")
    shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError("input_shape not given and the model has no .input_shape")
    shape = tuple(int(s) for s in shape)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = path.with_name(path.name + ".data")
    if data.exists():  # a stale side file from an earlier dynamo export
        data.unlink()
    example = torch.from_numpy(sample_inputs(shape, shape[0], seed=0))
    was_training = model.training
    model.eval()
    try:
        with _quiet():
            from brevitas.export import export_qonnx

            export_qonnx(model, example, export_path=str(path),
                         dynamo=(exporter == "dynamo"))
    finally:
        model.train(was_training)
    return path


# --------------------------------------------------------------------------- BNN-PYNQ

def _bn_modules(model):
    from torch.nn.modules.batchnorm import _BatchNorm

    return [m for m in model.modules() if isinstance(m, _BatchNorm)]


def _tensor_norms(model):
    return [m for m in model.modules()
            if type(m).__name__ == "TensorNorm" and hasattr(m, "running_mean")]


def _randomise(model, gen) -> None:
    """Seeded re-initialisation of weights and affine parameters (see module doc)."""
    import torch
    from brevitas.nn import QuantConv2d, QuantLinear

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (QuantLinear, QuantConv2d)):
                # BNN-PYNQ's own init range; latent weights in [-1, 1]
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 2 - 1)
                if m.bias is not None:
                    m.bias.copy_((torch.rand(m.bias.shape, generator=gen) * 2 - 1) * 0.1)
        for bn in _bn_modules(model):
            c = bn.num_features
            mag = 0.5 + 1.5 * torch.rand(c, generator=gen)           # |gamma| in [0.5, 2)
            neg = torch.rand(c, generator=gen) < NEGATIVE_BN_FRACTION
            if not bool(neg.any()):
                neg[int(torch.randint(c, (1,), generator=gen))] = True
            bn.weight.copy_(torch.where(neg, -mag, mag))
            # beta within +-0.5|gamma|: both signs survive the following quantizer
            bn.bias.copy_((torch.rand(c, generator=gen) - 0.5) * mag)
        for tn in _tensor_norms(model):
            tn.weight.fill_(float(0.5 + 1.5 * torch.rand(1, generator=gen)))
            tn.bias.fill_(float(torch.rand(1, generator=gen) * 2 - 1))


def calibrate(model, x: np.ndarray) -> None:
    """Set BatchNorm / TensorNorm running statistics from inputs ``x`` (numpy).

    Layer by layer in execution order: only the BN being calibrated is in train
    mode (momentum=None, i.e. a cumulative average, stats reset first); all others
    and Dropout are in eval mode, so each BN sees exactly the eval-mode activations
    of the layers before it. TensorNorm gets the mean / unbiased variance of its
    eval-mode input. Ends with ``model.eval()``.
    """
    import torch

    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    bns = _bn_modules(model)  # model.modules() order == construction order == execution
    with torch.no_grad():
        for bn in bns:
            model.eval()
            momentum = bn.momentum
            bn.reset_running_stats()
            bn.momentum = None
            bn.train()
            try:
                model(xt)
            finally:
                bn.momentum = momentum
        model.eval()
        for tn in _tensor_norms(model):
            seen: list = []
            h = tn.register_forward_pre_hook(lambda m, inp, seen=seen: seen.append(inp[0]))
            try:
                model(xt)
            finally:
                h.remove()
            v = seen[0].value if hasattr(seen[0], "value") else seen[0]
            tn.running_mean.fill_(float(v.mean()))
            tn.running_var.fill_(float(v.var(unbiased=True)))
    model.eval()


def bnn_pynq(name: str, *, seed: int = 0, calib_samples: int = 64):
    """A BNN-PYNQ network with seeded random weights and calibrated BatchNorm.

    ``name``: one of ``BNN_PYNQ_MODELS`` (tfc/sfc/lfc/cnv at 1w1a, 1w2a, 2w2a). Steps: ``torch.manual_seed(seed)``, build
    via ``model_with_cfg(name, pretrained=False)``, re-initialise weights uniform
    in [-1, 1] and the BatchNorm affine parameters with a seeded generator (about
    25% of each hidden BN's channels get a negative scale; see module doc), then
    calibrate BN statistics on ``calib_samples`` inputs ``sample_inputs(name,
    calib_samples, seed)``. Returned in eval mode, with ``.input_shape`` set and
    ``.calib_inputs`` holding the calibration inputs (numpy).
    """
    import torch
    from brevitas_examples.bnn_pynq.models import model_with_cfg

    shape = input_shape(name)
    if name in DIGITS_EXAMPLES:
        raise ValueError(f"{name} is not a BNN-PYNQ network; use zoo.{name}()")
    torch.manual_seed(seed)
    if name == "lfc_2w2a":
        from brevitas_examples.bnn_pynq.models import get_model_cfg, model_impl

        cfg = get_model_cfg("lfc_1w2a")
        cfg.set("QUANT", "WEIGHT_BIT_WIDTH", "2")
        model = model_impl[cfg.get("MODEL", "ARCH")](cfg)
    else:
        model, _cfg = model_with_cfg(name, pretrained=False)
    gen = torch.Generator().manual_seed(seed)
    _randomise(model, gen)
    x = sample_inputs(name, calib_samples, seed)
    calibrate(model, x)
    model.input_shape = shape
    model.calib_inputs = x
    model.zoo_name = name
    return model


# --------------------------------------------------------------------------- digits examples

def load_example_module(stem: str, example: str = "digits_mlp"):
    """Import ``examples/<example>/<stem>.py`` (the examples folder is no package)."""
    mod_name = f"fpgagen_examples_{example}_{stem}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    file = EXAMPLES / example / f"{stem}.py"
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: {example} needs the repository's "
                                "examples/ folder")
    spec = importlib.util.spec_from_file_location(mod_name, file)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[mod_name]
        raise
    return mod


_load_example_module = load_example_module  # the name the MLP's tests know


def _digits_example(name: str, train: bool):
    """A model of ``DIGITS_EXAMPLES`` in eval mode: committed weights, or trained afresh."""
    import torch

    if train:
        model, _acc = load_example_module("train", name).train_model()
    else:
        model = getattr(load_example_module("model", name), DIGITS_EXAMPLES[name])()
        state = torch.load(EXAMPLES / name / f"{name}.pt", map_location="cpu",
                           weights_only=True)
        model.load_state_dict(state)
    model.eval()
    model.input_shape = DIGITS_INPUT_SHAPE
    model.zoo_name = name
    return model


def write_example(name: str, model, test_accuracy: float, out: Path, *, exporter: str,
                  seed: int, epochs: int, train_seconds: float) -> None:
    """A digits example's files after training: ``NAME.pt``, the QONNX export
    ``NAME.onnx`` and ``NAME.json`` (accuracies, input shape, split, seed, epochs)."""
    import torch

    x_tr, y_tr, x_te, y_te = digits_data()
    train_accuracy = float((torch_forward(model, x_tr).argmax(1) == y_tr).mean())
    print(f"trained in {train_seconds:.1f} s: train acc {train_accuracy:.4f}, held-out test "
          f"acc {test_accuracy:.4f} ({round(test_accuracy * len(y_te))}/{len(y_te)})")
    torch.save(model.state_dict(), out / f"{name}.pt")
    t0 = time.perf_counter()
    path = export(model, out / f"{name}.onnx", exporter=exporter,
                  input_shape=DIGITS_INPUT_SHAPE)
    print(f"exported ({exporter}) in {time.perf_counter() - t0:.1f} s: {path}")
    info = {
        "test_accuracy": round(test_accuracy, 6),
        "train_accuracy": round(train_accuracy, 6),
        "input_shape": list(DIGITS_INPUT_SHAPE),
        "train_samples": int(len(y_tr)),
        "test_samples": int(len(y_te)),
        "seed": seed,
        "epochs": epochs,
        "exporter": exporter,
    }
    (out / f"{name}.json").write_text(json.dumps(info, indent=2) + "\n")


def digits_mlp(train: bool = False):
    """The demo binarized MLP (``examples/digits_mlp/model.py``), in eval mode.

    ``train=False`` loads the committed weights ``examples/digits_mlp/digits_mlp.pt``;
    ``train=True`` trains it afresh (seeded, the same recipe as train.py, a few
    seconds). ``.input_shape`` is (1, 1, 8, 8).
    """
    return _digits_example("digits_mlp", train)


def digits_cnn(train: bool = False):
    """The 4-bit digits CNN (``examples/digits_cnn/model.py``), in eval mode.

    ``train=False`` loads the committed weights ``examples/digits_cnn/digits_cnn.pt``;
    ``train=True`` trains it afresh (seeded, the same recipe as train.py, well under a
    minute). ``.input_shape`` is (1, 1, 8, 8).
    """
    return _digits_example("digits_cnn", train)


def digits_vit(train: bool = False):
    """The 4-bit digits ViT (``examples/digits_vit/model.py``), in eval mode.

    ``train=False`` loads the committed weights ``examples/digits_vit/digits_vit.pt``;
    ``train=True`` trains it afresh (seeded, train.py's recipe, a few minutes).
    ``.input_shape`` is (1, 1, 8, 8). Export it with the TorchScript exporter.
    """
    return _digits_example("digits_vit", train)
