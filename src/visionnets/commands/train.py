"""Train a model from a recipe (a file or a bundled name), or resume a run directory.

``--executor`` picks where the steps run: ``local`` (one process, the default), ``downpour``
(asynchronous Downpour SGD on Ray: ``--replicas R --ps-shards S --n-fetch N --n-push N
[--address ADDR]``) or ``ddp`` (synchronous data parallel with torch.distributed:
``--workers W``) or ``model_parallel`` (the model split into K spatial blocks, one process each:
``--partitions K``; ``--partitions`` alone picks it). Every executor writes the same run directory; ``--resume`` continues a run
with the executor and options it was started with.
"""

from __future__ import annotations

import argparse

from visionnets.errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", nargs="?", help="recipe file or bundled recipe name (see `visionnets recipes`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--data", metavar="KIND:PATH",
                   help="train on your own files: folder:DIR (a sub-folder of images per class) or "
                        "arrays:FILE.npz (x and y); further options with --set data.options.size=32 ...")
    p.add_argument("--data-dir", help="dataset root (default: $VISIONNETS_DATA, then ~/.cache/visionnets)")
    p.add_argument("--out", help="write the run exactly into this directory")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a run from its last checkpoint, exactly as planned (its recipe, executor, options)")
    p.add_argument("--extend", type=int, metavar="EPOCHS",
                   help="with --resume: train the run on to EPOCHS epochs in all (a cosine schedule restarts "
                        "for the added epochs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    g = p.add_argument_group("distributed training")
    g.add_argument("--executor", choices=["local", "downpour", "ddp", "model_parallel"],
                   help="local (default; a resumed run: its own): one process; downpour: asynchronous SGD "
                        "with a sharded parameter server on Ray; ddp: synchronous data parallel (torch.distributed); "
                        "model_parallel: the model split into spatial blocks (--partitions)")
    g.add_argument("--replicas", type=int, metavar="R", help="downpour: model replicas (default 2)")
    g.add_argument("--ps-shards", type=int, metavar="S", help="downpour: parameter-server shards (default 1)")
    g.add_argument("--n-fetch", type=int, metavar="N", help="downpour: fetch parameters every N steps (default 1)")
    g.add_argument("--n-push", type=int, metavar="N", help="downpour: push gradients every N steps (default 1)")
    g.add_argument("--ps-optimizer", choices=["recipe", "adagrad"],
                   help="downpour: the shards' optimizer: the recipe's (default) or Adagrad, as in DistBelief")
    g.add_argument("--address", metavar="ADDR",
                   help="downpour: join this Ray cluster (default: a local Ray listening on 127.0.0.1 only)")
    g.add_argument("--workers", type=int, metavar="W", help="ddp: worker processes (default 2)")
    g.add_argument("--partitions", type=int, metavar="K",
                   help="model_parallel: split every feature map into K blocks, one process each (default 2); "
                        "downpour: split each replica so (default 1; --ps-shards a multiple of K)")


# the options of each executor: given to another, they are an error
_DISTRIBUTED = {"replicas": "downpour", "ps_shards": "downpour", "n_fetch": "downpour", "n_push": "downpour",
                "ps_optimizer": "downpour", "address": "downpour", "workers": "ddp",
                "partitions": ("model_parallel", "downpour")}


def user_data(spec: str) -> list[str]:
    """``folder:DIR`` or ``arrays:FILE`` as recipe overrides (the path made absolute: the run can move)."""
    import json
    from pathlib import Path

    kind, sep, path = spec.partition(":")
    if not sep or kind not in ("folder", "arrays") or not path:
        raise ConfigError(f"--data {spec!r}: expected folder:DIR or arrays:FILE.npz")
    return [f"data.name={kind}", f"data.options={json.dumps({'path': str(Path(path).expanduser().resolve())})}"]


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
    overrides = list(args.overrides)
    if args.data is not None:
        if args.resume is not None:
            raise ConfigError("train: --data cannot be combined with --resume (the run holds its data)")
        overrides = user_data(args.data) + overrides
    executor = args.executor or ("model_parallel" if args.partitions is not None
                                 else None if args.resume is not None else "local")  # a resume: the run's own
    opts = {}
    for key, owner in _DISTRIBUTED.items():
        value = getattr(args, key, None)
        if value is None:
            continue
        owners = owner if isinstance(owner, tuple) else (owner,)
        if executor is not None and executor not in owners:
            raise ConfigError(f"train: --{key.replace('_', '-')} applies to --executor {' or '.join(owners)}, "
                              f"not {executor}")
        opts[key] = value
    result = api.train(args.recipe, overrides, data_dir=args.data_dir, out=args.out, resume=args.resume,
                       progress=not args.no_progress, executor=executor, extend=args.extend, **opts)
    report(result)
    return 0
