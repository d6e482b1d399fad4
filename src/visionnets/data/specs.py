"""Recipe specs to objects: ``data.transforms`` and ``data.augment`` lists, by name.

A spec is a name or ``{"name": name, **options}``; options are checked against the named
callable's signature, and a name found in the other list gets a hint where it belongs::

    >>> build_augment(["hflip"])
    Augment([hflip(p=0.5)])
"""

from __future__ import annotations

from typing import Any

from visionnets.data.augment import AUGMENTS, Augment
from visionnets.data.transforms import TRANSFORMS, Compose
from visionnets.errors import ConfigError
from visionnets.registry import Registry


def parse_spec(spec: Any, where: str) -> tuple[str, dict[str, Any]]:
    """A spec is a name or ``{"name": name, **options}``; returns ``(name, options)``."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict):
        if "name" not in spec:
            raise ConfigError(f"{where}.name: missing; each entry is a name or a mapping with 'name'")
        opts = {k: v for k, v in spec.items() if k != "name"}
        if not isinstance(spec["name"], str):
            raise ConfigError(f"{where}.name: expected a string, got {spec['name']!r}")
        return spec["name"], opts
    raise ConfigError(f"{where}: expected a name or a mapping with 'name', got {spec!r}")


def build_from_specs(registry: Registry, specs: Any, where: str,
                     other: tuple[Registry, str] | None = None) -> list:
    """Build each spec of a list with ``registry``; errors name ``where[i].key``."""
    if specs is None:
        return []
    if isinstance(specs, (str, dict)):
        specs = [specs]
    if not isinstance(specs, (list, tuple)):
        raise ConfigError(f"{where}: expected a list of names or mappings, got {specs!r}")
    built = []
    for i, spec in enumerate(specs):
        at = f"{where}[{i}]"
        name, opts = parse_spec(spec, at)
        if name not in registry:
            hint = ""
            if other is not None and name in other[0]:
                hint = f" ({name!r} is an {other[0].kind}: put it under {other[1]})"
            raise ConfigError(f"{at}.name: unknown {registry.kind} {name!r}{hint}; "
                              f"expected one of: {', '.join(registry.names())}")
        built.append(registry.build(name, opts, where=at))
    return built


def build_transforms(specs: Any, where: str = "data.transforms") -> Compose | None:
    """A :class:`Compose` of the named transforms (not yet fitted), or None for no transforms."""
    built = build_from_specs(TRANSFORMS, specs, where, other=(AUGMENTS, "data.augment"))
    return Compose(built) if built else None


def build_augment(specs: Any, where: str = "data.augment") -> Augment | None:
    """An :class:`Augment` of the named augmentations, or None when ``specs`` is empty."""
    steps = build_from_specs(AUGMENTS, specs, where, other=(TRANSFORMS, "data.transforms"))
    return Augment(steps) if steps else None
