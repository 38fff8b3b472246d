"""Train the 4-bit digits CNN and export it to QONNX.

    python examples/digits_cnn/train.py [--out DIR] [--exporter torchscript|dynamo]

Writes into DIR (default: this folder):
    digits_cnn.onnx       the QONNX export (dynamo also writes digits_cnn.onnx.data)
    digits_cnn.pt         the trained state dict (what fpgagen.zoo.digits_cnn() loads)
    digits_cnn.json       test accuracy, input shape, split sizes, seed

Data: fpgagen.zoo.digits_data(), scikit-learn's embedded 8x8 digits (no download),
pixels / 16 in [0, 1]; train = the first 1437 samples in sklearn's order, test = the
remaining 360. Training is seeded and single-threaded, so it is deterministic on a
given machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fpgagen import zoo

HERE = Path(__file__).resolve().parent
NAME = "digits_cnn"

# The recipe (see README.md for how it was chosen).
SEED = 0
EPOCHS = 30
BATCH_SIZE = 64
LR = 0.01
LABEL_SMOOTHING = 0.1
MAX_SHIFT = 1           # augmentation: each training image shifted by up to 1 pixel
INTENSITY_JITTER = 0.3  # augmentation: each training image scaled by U(0.7, 1.3), clipped to 1


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    return float((zoo.torch_forward(model, x).argmax(1) == y).mean())


def augment(xb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shifts of up to MAX_SHIFT pixels (zero fill) and stroke-intensity jitter.

    Writers place digits slightly differently in the 8x8 box and press differently hard;
    the held-out digits come from other writers than the training ones.
    """
    n = len(xb)
    pad = torch.nn.functional.pad(xb, (MAX_SHIFT,) * 4)
    dy, dx = (torch.randint(0, 2 * MAX_SHIFT + 1, (2, n), generator=gen))
    rows = (dy[:, None] + torch.arange(8))[:, :, None].expand(n, 8, 8)
    cols = (dx[:, None] + torch.arange(8))[:, None, :].expand(n, 8, 8)
    shifted = pad[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)
    gain = 1 + INTENSITY_JITTER * (2 * torch.rand(n, 1, 1, 1, generator=gen) - 1)
    return (shifted * gain).clamp(0, 1)


def train_model(seed: int = SEED, epochs: int = EPOCHS, verbose: bool = False):
    """Train a DigitsCNN; return (model in eval mode, test accuracy)."""
    x_tr, y_tr, x_te, y_te = zoo.digits_data()
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic, and no spinning on a busy machine
    try:
        torch.manual_seed(seed)
        model = zoo.load_example_module("model", "digits_cnn").DigitsCNN()
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
        gen = torch.Generator().manual_seed(seed)
        for epoch in range(epochs):
            model.train()
            perm = torch.randperm(len(xt), generator=gen)
            for i in range(0, len(xt), BATCH_SIZE):
                idx = perm[i:i + BATCH_SIZE]
                loss = torch.nn.functional.cross_entropy(model(augment(xt[idx], gen)), yt[idx],
                                                         label_smoothing=LABEL_SMOOTHING)
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()
            if verbose and (epoch + 1) % 5 == 0:
                print(f"epoch {epoch + 1:3d}  loss {loss.item():.3f}  "
                      f"test acc {accuracy(model, x_te, y_te):.4f}")
        # the running BatchNorm averages were taken while the weights moved: recompute
        # them exactly from the final weights, layer by layer
        zoo.calibrate(model, x_tr)
        return model, accuracy(model, x_te, y_te)
    finally:
        torch.set_num_threads(threads)


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
    zoo.write_example(NAME, model, test_acc, args.out, exporter=args.exporter, seed=args.seed,
                      epochs=args.epochs, train_seconds=time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
