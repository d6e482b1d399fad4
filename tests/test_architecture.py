"""The structure the training core promises, checked on the source: one place for each rule.

- no import cycle between the modules of ``src/visionnets`` (lazy imports inside functions count);
- no ``_private`` name imported from another package;
- ``metrics.jsonl`` is named (as a path) only by the run directory module, which reads and writes it;
- each seed formula's constants appear only in the seeds module.
"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
SEED_CONSTANTS = {1_000_003, 7_919, 104_729}


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()
TREES = {name: ast.parse(path.read_text()) for name, path in MODULES.items()}


def _imports(name: str, tree: ast.AST):
    """(imported module, imported name or None) for every import in the module, at any depth."""
    is_pkg = MODULES[name].name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[:len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            for alias in node.names:
                yield base, alias.name


def _graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, tree in TREES.items():
        for base, imported in _imports(name, tree):
            target = f"{base}.{imported}" if imported and f"{base}.{imported}" in MODULES else base
            if target in MODULES and target != name:
                edges[name].add(target)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or MODULES.get(module, Path()).name == "__init__.py" else ""


def test_no_import_cycle():
    edges = _graph()
    assert sum(len(v) for v in edges.values()) > 100          # the walk sees the imports
    assert _cycles(edges) == []


def test_no_private_name_crosses_a_package():
    crossing = []
    for name, tree in TREES.items():
        for base, imported in _imports(name, tree):
            if not base.startswith("visionnets") or not imported:
                continue
            target = f"{base}.{imported}" if f"{base}.{imported}" in MODULES else base
            private = imported.startswith("_") and not imported.startswith("__")
            if private and _package(target) != _package(name):
                crossing.append((name, base, imported))
    assert crossing == []


def _constants(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            yield node.value


def test_metrics_file_is_named_by_the_run_directory_alone():
    users = sorted(name for name, tree in TREES.items() if "metrics.jsonl" in set(_constants(tree)))
    assert users == ["visionnets.train.rundir"]


def test_seed_formulas_live_in_the_seeds_module():
    users = sorted(name for name, tree in TREES.items()
                   if SEED_CONSTANTS & {c for c in _constants(tree) if type(c) is int})
    assert users == ["visionnets.train.seeds"]
