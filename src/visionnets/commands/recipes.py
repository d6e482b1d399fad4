"""List the bundled recipes, or print one (to copy and edit)."""

from __future__ import annotations

import argparse

import yaml

from visionnets.recipes import bundled_recipes, find_recipe


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="print this recipe's YAML")


def run(args: argparse.Namespace) -> int:
    if args.name:
        print(find_recipe(args.name).read_text(), end="")
        return 0
    rows = []
    for name, path in bundled_recipes().items():
        raw = yaml.safe_load(path.read_text()) or {}
        rows.append((name, str(raw.get("description", "")).strip().splitlines()[0] if raw.get("description") else ""))
    width = max(len(n) for n, _ in rows)
    for name, desc in rows:
        print(f"{name:<{width}}  {desc}")
    return 0
