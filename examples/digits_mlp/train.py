"""Train the binarized digits MLP and export it to QONNX.

    python examples/digits_mlp/train.py [--out DIR] [--exporter torchscript|dynamo]

Writes into DIR (default: this folder):
    digits_mlp.onnx       the QONNX export (dynamo also writes digits_mlp.onnx.data)
    digits_mlp.pt         the trained state dict (what fpgagen.zoo.digits_mlp() loads)
    digits_mlp.json       test accuracy, input shape, split sizes, seed

Data: scikit-learn's embedded 8x8 digits (no download), pixels / 16 in [0, 1];
train = the first 1437 samples in sklearn's order, test = the remaining 360.
Training is seeded and single-threaded, so it is deterministic on a given machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
NAME = "digits_mlp"
TRAIN_SAMPLES = 1437

# The recipe (see README.md for how it was chosen).
SEED = 0
EPOCHS = 80
BATCH_SIZE = 64
LR = 0.03
LABEL_SMOOTHING = 0.1
INTENSITY_JITTER = 0.3  # augmentation: each training image scaled by U(0.7, 1.3), clipped to 1


def _model_module():
    """examples/digits_mlp/model.py, imported under the name fpgagen.zoo uses."""
    name = "fpgagen_examples_digits_mlp_model"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "model.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def load_data():
    """(x_train, y_train, x_test, y_test) as numpy; the same as fpgagen.zoo.digits_data()."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / np.float32(16.0)).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    return x[:TRAIN_SAMPLES], y[:TRAIN_SAMPLES], x[TRAIN_SAMPLES:], y[TRAIN_SAMPLES:]


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
    return float((pred == y).mean())


def recalibrate(model, x: np.ndarray) -> None:
    """Recompute BatchNorm / TensorNorm statistics from the final weights on ``x``.

    During training the running statistics are exponential averages over batches
    seen while the weights (and the train-mode layers before) kept changing. Here
    each norm layer in turn gets the exact mean / variance of its eval-mode input
    over all of ``x`` (BN in train mode with momentum=None, one full batch).
    """
    from torch.nn.modules.batchnorm import _BatchNorm

    xt = torch.from_numpy(x)
    with torch.no_grad():
        for bn in [m for m in model.modules() if isinstance(m, _BatchNorm)]:
            model.eval()
            momentum, bn.momentum = bn.momentum, None
            bn.reset_running_stats()
            bn.train()
            model(xt)
            bn.momentum = momentum
        model.eval()
        tn = model.features[-1]  # TensorNorm, fed by the last QuantLinear
        seen = []
        h = tn.register_forward_pre_hook(lambda m, inp: seen.append(inp[0]))
        model(xt)
        h.remove()
        tn.running_mean.fill_(float(seen[0].mean()))
        tn.running_var.fill_(float(seen[0].var(unbiased=True)))
    model.eval()


def train_model(seed: int = SEED, epochs: int = EPOCHS, verbose: bool = False):
    """Train a DigitsMLP; return (model in eval mode, test accuracy)."""
    x_tr, y_tr, x_te, y_te = load_data()
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic, and no spinning on a busy machine
    try:
        torch.manual_seed(seed)
        model = _model_module().DigitsMLP()
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
        gen = torch.Generator().manual_seed(seed)
        for epoch in range(epochs):
            model.train()
            perm = torch.randperm(len(xt), generator=gen)
            for i in range(0, len(xt), BATCH_SIZE):
                idx = perm[i:i + BATCH_SIZE]
                xb = xt[idx]
                # stroke intensity varies between writers, and the input quantizer
                # thresholds at 0.5: jitter the intensity so the net sees that variation
                gain = 1 + INTENSITY_JITTER * (2 * torch.rand(len(idx), 1, 1, 1, generator=gen) - 1)
                xb = (xb * gain).clamp(0, 1)
                loss = torch.nn.functional.cross_entropy(model(xb), yt[idx],
                                                         label_smoothing=LABEL_SMOOTHING)
                opt.zero_grad()
                loss.backward()
                opt.step()
                model.clip_weights(-1.0, 1.0)
            sched.step()
            if verbose and (epoch + 1) % 10 == 0:
                print(f"epoch {epoch + 1:3d}  loss {loss.item():.3f}  "
                      f"test acc {accuracy(model, x_te, y_te):.4f}")
        recalibrate(model, x_tr)
        return model, accuracy(model, x_te, y_te)
    finally:
        torch.set_num_threads(threads)


def export(model, path: Path, exporter: str) -> Path:
    from brevitas.export import export_qonnx

    data = path.with_name(path.name + ".data")
    if data.exists():
        data.unlink()
    example = torch.zeros(1, 1, 8, 8)
    model.eval()
    export_qonnx(model, example, export_path=str(path), dynamo=(exporter == "dynamo"))
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: %(default)s)")
    ap.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    model, test_acc = train_model(args.seed, args.epochs, verbose=True)
    t_train = time.perf_counter() - t0
    x_tr, y_tr, x_te, y_te = load_data()
    train_acc = accuracy(model, x_tr, y_tr)
    print(f"trained in {t_train:.1f} s: train acc {train_acc:.4f}, test acc {test_acc:.4f}")

    torch.save(model.state_dict(), args.out / f"{NAME}.pt")
    t0 = time.perf_counter()
    onnx_path = export(model, args.out / f"{NAME}.onnx", args.exporter)
    t_export = time.perf_counter() - t0
    print(f"exported ({args.exporter}) in {t_export:.1f} s: {onnx_path}")

    info = {
        "test_accuracy": round(test_acc, 6),
        "train_accuracy": round(train_acc, 6),
        "input_shape": [1, 1, 8, 8],
        "train_samples": int(len(y_tr)),
        "test_samples": int(len(y_te)),
        "seed": args.seed,
        "epochs": args.epochs,
        "exporter": args.exporter,
    }
    (args.out / f"{NAME}.json").write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
