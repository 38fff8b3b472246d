"""Train the 4-bit digits ViT and export it to QONNX.

    python examples/digits_vit/train.py [--out DIR] [--epochs N]

Writes into DIR (default: this folder):
    digits_vit.onnx       the QONNX export (TorchScript exporter: the dynamo exporter
                          cannot export QuantMultiheadAttention)
    digits_vit.pt         the trained state dict (what fpgagen.zoo.digits_vit() loads)
    digits_vit.json       test accuracy, input shape, split sizes, seed

Data and augmentation as for the digits CNN (fpgagen.zoo.digits_data(): the first 1437
of scikit-learn's digits train, the remaining 360 test; shifts by up to one pixel and
stroke-intensity jitter). Seeded and single-threaded, so deterministic on a machine.
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
NAME = "digits_vit"

SEED = 0
EPOCHS = 150
BATCH_SIZE = 64
LR = 0.005
WEIGHT_DECAY = 0.01
LABEL_SMOOTHING = 0.1


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    return float((zoo.torch_forward(model, x).argmax(1) == y).mean())


def train_model(seed: int = SEED, epochs: int = EPOCHS, verbose: bool = False):
    """Train a DigitsViT; return (model in eval mode, test accuracy)."""
    augment = zoo.load_example_module("train", "digits_cnn").augment
    x_tr, y_tr, x_te, y_te = zoo.digits_data()
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        model = zoo.load_example_module("model", NAME).DigitsViT()
        opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, LR, total_steps=epochs * -(-len(xt) // BATCH_SIZE))
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
                      f"test acc {accuracy(model, x_te, y_te):.4f}", flush=True)
        model.eval()
        return model, accuracy(model, x_te, y_te)
    finally:
        torch.set_num_threads(threads)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    model, test_acc = train_model(args.seed, args.epochs, verbose=True)
    zoo.write_example(NAME, model, test_acc, args.out, exporter="torchscript", seed=args.seed,
                      epochs=args.epochs, train_seconds=time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
