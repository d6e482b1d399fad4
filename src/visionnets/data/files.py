"""Where dataset files live, which files a dataset needs, and their known checksums.

A *data root* is a folder that holds one folder per dataset (``mnist/``, ``cifar10/``, ...),
as ``../shared/data`` does. A root given explicitly (the ``root`` argument: the command line's
``--data-dir``, a recipe's ``data.root``) is the only place searched: the data a user names is
the data used, or the error says what is missing there. With none given, the roots are, in order:

1. the environment variable ``VISIONNETS_DATA``,
2. ``~/.cache/visionnets``.

Inside a root, a dataset's files are looked for in ``<root>/<name>/`` and then in ``<root>``
itself (a folder that directly holds the dataset's own files is accepted too)::

    >>> from pathlib import Path
    >>> resolve_roots("/data", env={"VISIONNETS_DATA": "/elsewhere"})
    [PosixPath('/data')]

A dataset declares one or more :class:`Layout` (for example MNIST's four IDX files, each
gzip-compressed or raw); :func:`locate` returns the first folder holding a complete layout, or
raises a :class:`DataError` that lists the expected file names and every place looked in.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from visionnets.errors import DataError

ENV_VAR = "VISIONNETS_DATA"
DEFAULT_ROOT = Path("~/.cache/visionnets")


def resolve_roots(root: str | os.PathLike | None = None, *,
                  env: Mapping[str, str] | None = None) -> list[Path]:
    """The data roots to search: ``[root]`` when one is given, else ``$VISIONNETS_DATA`` and
    ``~/.cache/visionnets``, in that order.

    Duplicates are dropped; folders need not exist (a missing one is simply not found).
    ``env`` defaults to ``os.environ`` (tests pass their own).
    """
    if root is not None and str(root) != "":
        return [Path(root).expanduser()]
    env = os.environ if env is None else env
    cands = []
    if env.get(ENV_VAR):
        cands.append(Path(env[ENV_VAR]))
    cands.append(DEFAULT_ROOT)
    roots: list[Path] = []
    for c in cands:
        c = c.expanduser()
        if c not in roots:
            roots.append(c)
    return roots


@dataclass(frozen=True)
class KnownFile:
    """A file name and its published digest (``algorithm`` is a :mod:`hashlib` name)."""

    name: str
    digest: str | None = None
    algorithm: str = "sha256"


@dataclass(frozen=True)
class Need:
    """One file a layout needs; any of ``choices`` will do (e.g. the gzip or the raw IDX file)."""

    choices: tuple[KnownFile, ...]

    @property
    def label(self) -> str:
        return " or ".join(c.name for c in self.choices)

    def find(self, folder: Path) -> Path | None:
        for c in self.choices:
            p = folder / c.name
            if p.is_file():
                return p
        return None


@dataclass(frozen=True)
class Layout:
    """A complete set of files that makes up a dataset, in ``subdir`` of the dataset folder."""

    label: str
    needs: tuple[Need, ...]
    subdir: str = ""

    def known_files(self) -> list[KnownFile]:
        return [c for n in self.needs for c in n.choices]


@dataclass(frozen=True)
class Located:
    """Where :func:`locate` found a dataset: the folder, the layout and one path per need."""

    folder: Path
    layout: Layout
    paths: tuple[Path, ...]


# name -> layouts, filled by each dataset module with declare_files().
KNOWN_FILES: dict[str, tuple[Layout, ...]] = {}


def declare_files(dataset: str, *layouts: Layout) -> None:
    """Record the layouts (files and checksums) of ``dataset`` for locate() and ``data check``."""
    KNOWN_FILES[dataset] = layouts


def candidate_folders(dataset: str, roots: list[Path]) -> list[Path]:
    """``<root>/<dataset>`` then ``<root>`` for each root, in order."""
    out: list[Path] = []
    for r in roots:
        for c in (r / dataset, r):
            if c not in out:
                out.append(c)
    return out


def locate(dataset: str, roots: list[Path], layouts: tuple[Layout, ...] | None = None) -> Located:
    """The first folder (in root order) that holds a complete layout of ``dataset``.

    Layouts are tried in the order given within each folder, so a dataset lists the one it
    prefers first. Raises a DataError naming the expected files and every folder looked in.
    """
    layouts = KNOWN_FILES[dataset] if layouts is None else layouts
    looked: list[str] = []
    for base in candidate_folders(dataset, roots):
        for lay in layouts:
            folder = base / lay.subdir if lay.subdir else base
            paths = [n.find(folder) for n in lay.needs]
            if all(p is not None for p in paths):
                return Located(folder, lay, tuple(paths))
            have = sum(p is not None for p in paths)
            note = f" (has {have} of {len(paths)} {lay.label} files)" if have else ""
            looked.append(f"{folder}{note}")
    expected = "; ".join(dict.fromkeys(
        f"{lay.label}: " + ", ".join(n.label for n in lay.needs) for lay in layouts))
    raise DataError(
        f"dataset {dataset!r} not found; expected files [{expected}]; looked in: "
        f"{', '.join(dict.fromkeys(looked))} (pass --data-dir DIR or set ${ENV_VAR})"
    )


def file_digest(path: Path, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
