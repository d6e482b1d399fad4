"""Train a model from a recipe (a file or a bundled name), or resume a run directory."""

from __future__ import annotations

import argparse

from visionnets.errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", nargs="?", help="recipe file or bundled recipe name (see `visionnets recipes`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--data-dir", help="dataset root (default: $VISIONNETS_DATA, then ~/.cache/visionnets)")
    p.add_argument("--out", help="write the run exactly into this directory")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")


def report(result) -> None:
    f = result.final
    lines = [f"run directory: {result.run_dir}"]
    if f.get("test_error") is not None:
        lines.append(f"test error: {100 * f['test_error']:.2f}% (best epoch {f['best_epoch']} of {f['epochs_run']})")
    elif f.get("test_loss") is not None:
        lines.append(f"test loss: {f['test_loss']:.6g} (best epoch {f['best_epoch']} of {f['epochs_run']})")
    lines.append(f"training time: {f['train_seconds_total']:.1f} s")
    figs = sorted((result.run_dir / "figures").glob("*.png"))
    if figs:
        lines.append("figures: " + ", ".join(str(p) for p in figs))
    if (result.run_dir / "report.html").exists():
        lines.append(f"report: {result.run_dir / 'report.html'}")
    print("\n".join(lines))


def run(args: argparse.Namespace) -> int:
    from visionnets import api

    if args.recipe is None and args.resume is None:
        raise ConfigError("train: give a RECIPE, or --resume RUN_DIR")
    if args.recipe is not None and args.resume is not None:
        raise ConfigError("train: give either a RECIPE or --resume RUN_DIR (the run holds its recipe), not both")
    if args.resume is not None and args.out is not None:
        raise ConfigError("train: --out cannot be combined with --resume (the run is continued in place)")
    result = api.train(args.recipe, args.overrides, data_dir=args.data_dir, out=args.out,
                       resume=args.resume, progress=not args.no_progress)
    report(result)
    return 0
