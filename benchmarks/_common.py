"""Helpers shared by the benchmark scripts: machine facts, atomic JSON, table printing."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_identity() -> dict:
    """Vendor, family and model of the CPU: the same VM name runs on hosts of different
    generations (AMD family 25 is Zen 3/4, whose AVX-512 runs at half width; 26 is Zen 5), and
    their speeds differ by up to 2x, so every result says which one it ran on."""
    from visionnets.device import cpu_info

    info = cpu_info()
    return {k.replace(" ", "_"): info[k] for k in ("vendor_id", "cpu family", "model", "model name") if k in info}


def machine() -> dict:
    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "cpu": cpu_identity(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def write_json(name: str, payload: dict) -> Path:
    from visionnets.train.checkpoint import atomic_write_text

    path = RESULTS / f"{name}.json"
    atomic_write_text(path, json.dumps({"machine": machine(), **payload}, indent=1) + "\n")
    return path


def plain_epoch(model, opt, x, y, perm, batch: int) -> None:
    """One epoch of a hand-written PyTorch loop over ``x[perm]`` (the reference the Trainer is
    timed against): FPROP, cross-entropy, BPROP, update, no bookkeeping."""
    import torch.nn.functional as F

    model.train()
    for lo in range(0, len(perm), batch):
        idx = perm[lo:lo + batch]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def table(rows: list[dict], cols: list[str]) -> str:
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    widths = [max(len(c), *(len(fmt(r.get(c, ""))) for r in rows)) for c in cols]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"
    out = [line(cols), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line([fmt(r.get(c, "")) for c in cols]) for r in rows]
    return "\n".join(out)


def data_dir(arg: str | None) -> str:
    root = arg or os.environ.get("VISIONNETS_DATA") or str(Path(__file__).resolve().parents[2] / "shared" / "data")
    return root
