"""The demo: a binarized MLP trained on scikit-learn's digits, built, simulated bit-exact
on the 360 held-out digits in cocotb, and reported. Run with `make demo`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MODEL = HERE / "digits_mlp" / "digits_mlp.onnx"


def fpgagen(*args: str) -> None:
    cmd = [sys.executable, "-m", "fpgagen", *args]
    print("$ fpgagen " + " ".join(args), flush=True)
    code = subprocess.call(cmd)
    if code:
        sys.exit(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo-out")
    parser.add_argument("--target-fps", default="1000000")
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    from fpgagen.zoo import digits_data

    _, _, x_test, y_test = digits_data()
    inputs = out.with_name(out.name + "-digits.npy")
    np.save(inputs, x_test)

    fpgagen("build", str(MODEL), "-o", str(out), "--board", "pynq-z2",
            "--target-fps", args.target_fps, "--force")
    fpgagen("sim", str(out), "--inputs", str(inputs))
    fpgagen("report", str(out))

    results = json.loads((out / "sim" / "results.json").read_text())
    logits = np.load(out / "sim" / "outputs.npy")
    accuracy = float((logits.argmax(1) == y_test).mean())
    print(f"\nhardware (simulated) accuracy on {len(y_test)} held-out digits: "
          f"{100 * accuracy:.1f}%  |  {results['mismatches']} mismatches against the "
          f"golden model  |  {results['cycles_per_frame']:.0f} cycles/frame simulated, "
          f"{results['estimated_cycles_per_frame']} estimated")


if __name__ == "__main__":
    main()
