"""List the datasets and check their files against known checksums.

``visionnets data list`` shows every dataset, its options and where its files were found;
``visionnets data check [NAME]`` hashes the files found (SHA-256, or the published MD5 for the
original CIFAR pickles) and exits 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

from visionnets.errors import DataError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="verify dataset files against their known checksums",
                           description="Verify dataset files against their known checksums.")
    check.add_argument("name", nargs="?", metavar="NAME",
                       help="dataset to check (default: every dataset that has files)")
    lst = sub.add_parser("list", help="list datasets, their options and where their files are",
                         description="List datasets, their options and where their files are.")
    for p in (check, lst):
        # SUPPRESS: do not overwrite a --data-dir given before the action
        p.add_argument("--data-dir", metavar="DIR", default=argparse.SUPPRESS,
                       help="data root searched first (then $VISIONNETS_DATA, ~/.cache/visionnets)")


def run(args: argparse.Namespace) -> int:
    from visionnets.data import resolve_roots

    roots = resolve_roots(getattr(args, "data_dir", None))
    if args.data_command == "list":
        return list_datasets(roots)
    return check(args.name, roots)


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths]] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


def _options(fn) -> str:
    params = [p for n, p in inspect.signature(fn).parameters.items()
              if n not in ("roots", "val_fraction", "seed")]
    return ", ".join(f"{p.name}={p.default!r}" for p in params) or "-"


def list_datasets(roots: list[Path]) -> int:
    from visionnets.data import DATASETS, DEFAULT_DATASET, KNOWN_FILES, locate

    rows = []
    for name in DATASETS.names():
        fn = DATASETS.get(name)
        if name not in KNOWN_FILES:
            where = "bundled/generated (no files)"
        else:
            try:
                where = str(locate(name, roots).folder)
            except DataError:
                where = "not found"
        doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        rows.append([name + (" (default)" if name == DEFAULT_DATASET else ""), where,
                     _options(fn), doc])
    print_table(["dataset", "files", "options", "description"], rows)
    print(f"data roots searched: {', '.join(map(str, roots))}")
    return 0


def check(name: str | None, roots: list[Path]) -> int:
    """Hash every known file present for ``name`` (or every dataset); 1 on a mismatch, else 0."""
    from visionnets.data import KNOWN_FILES, locate
    from visionnets.data.files import file_digest

    if name is not None and name not in KNOWN_FILES:
        raise DataError(f"dataset {name!r} has no files to check; datasets with files: "
                        f"{', '.join(sorted(KNOWN_FILES))}")
    rows, bad, missing = [], 0, 0
    for ds in [name] if name else sorted(KNOWN_FILES):
        try:
            found = locate(ds, roots)
        except DataError:
            if name is not None:
                raise
            rows.append([ds, "-", "-", "MISSING", f"not found under {', '.join(map(str, roots))}"])
            missing += 1
            continue
        # every known file present in that folder, for every layout (gzip and raw, npz and pickle)
        seen = set()
        for lay in KNOWN_FILES[ds]:
            folder = found.folder if lay is found.layout else None
            if folder is None:
                base = found.folder.parent if found.layout.subdir else found.folder
                folder = base / lay.subdir if lay.subdir else base
            for kf in lay.known_files():
                path = folder / kf.name
                if path in seen or not path.is_file():
                    continue
                seen.add(path)
                if kf.digest is None:
                    rows.append([ds, str(path), "-", "UNKNOWN", "no published checksum"])
                    continue
                got = file_digest(path, kf.algorithm)
                ok = got == kf.digest
                bad += not ok
                rows.append([ds, str(path), kf.algorithm, "ok" if ok else "MISMATCH",
                             got[:16] if ok else f"got {got}, expected {kf.digest}"])
    print_table(["dataset", "file", "hash", "status", "digest"], rows)
    checked = sum(r[3] in ("ok", "MISMATCH") for r in rows)
    print(f"{checked} files checked, {bad} mismatched, {missing} datasets not found")
    return 1 if bad else 0
