"""The tutorial's toy: regression of cos(x) with 1 input, 1 output, 3 hidden layers of 1000 units.

Trains the bundled ``cosine`` recipe, reports the final test MSE (mean of (y - yhat)^2, and the
recipe's loss 1/2 (y - yhat)^2), and copies the fit figure to docs/images/cosine_fit.png.

    python benchmarks/cosine.py [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import torch

from _common import table, write_json
from visionnets import api


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--out", default=f"runs/bench/cosine-{time.strftime('%Y%m%d-%H%M%S')}")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    res = api.train("cosine", args.overrides, out=args.out)
    wall = time.perf_counter() - t0
    test = res.dataset.test
    with torch.no_grad():
        pred = res.model.cpu().eval()(test.x)
    mse = torch.mean((pred - test.y) ** 2).item()
    row = {"recipe": "cosine", "test_mse": mse, "test_loss_half_sq": res.final["test_loss"],
           "target_variance": test.y.var().item(), "epochs": res.final["epochs_run"], "wall_s": round(wall, 1)}
    print(table([row], list(row)), file=sys.stderr)
    fig = Path(res.run_dir) / "figures" / "fit.png"
    if fig.exists():
        dest = Path(__file__).resolve().parents[1] / "docs" / "images" / "cosine_fit.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fig, dest)
    print(f"wrote {write_json('cosine', {'row': row, 'overrides': args.overrides, 'history': res.history})}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
