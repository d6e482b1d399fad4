"""Registries: find models, datasets, objectives and transforms by name.

A recipe names a component; its keyword arguments are checked against the
registered function's signature and type hints (with pydantic), so a typo or a
wrong type fails with the key path at fault::

    >>> from visionnets.registry import Registry
    >>> ACTS = Registry("activation")
    >>> @ACTS.register("double")
    ... def double(scale: float = 2.0):
    ...     return lambda x: scale * x
    >>> ACTS.build("double", {"scale": 3})(2)
    6.0
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import pydantic

from visionnets.errors import ConfigError, did_you_mean


def _describe(err: dict) -> str:
    return err.get("msg", "invalid value")


def _as_function(fn: Callable) -> Callable:
    """A plain function with ``fn``'s signature and hints (pydantic validates functions, not classes)."""
    if not inspect.isclass(fn):
        return fn

    def construct(*args, **kwargs):
        return fn(*args, **kwargs)

    construct.__signature__ = inspect.signature(fn)
    construct.__annotations__ = dict(getattr(fn.__init__, "__annotations__", {}))
    construct.__module__, construct.__qualname__ = fn.__module__, fn.__qualname__
    return construct


class Registry:
    """A name -> factory mapping with argument validation."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Callable] = {}

    def register(self, name: str | None = None, *, override: bool = False):
        """Decorator that registers a factory (a function or class) under ``name``."""

        def deco(fn: Callable) -> Callable:
            key = name or fn.__name__
            if key in self._items and not override:
                raise ConfigError(f"{self.kind} {key!r} is already registered")
            self._items[key] = fn
            return fn

        return deco

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def get(self, name: str) -> Callable:
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r}{did_you_mean(name, self.names())}; "
                              f"expected one of: {', '.join(self.names())}")
        return self._items[name]

    def build(self, name: str, kwargs: dict[str, Any] | None = None, *, where: str = "",
              **extra: Any) -> Any:
        """Call the factory registered as ``name`` with ``kwargs`` validated.

        ``where`` is the recipe key path used in error messages (e.g. ``"model"``);
        ``extra`` are arguments supplied by the library (input shape, ...), not by the user.
        """
        fn = self.get(name)
        kwargs = dict(kwargs or {})
        prefix = f"{where}." if where else ""
        sig = inspect.signature(fn)
        params = sig.parameters
        accepts_var = any(p.kind is p.VAR_KEYWORD for p in params.values())
        for key in kwargs:
            if key not in params and not accepts_var:
                allowed = [k for k, p in params.items() if k not in extra
                           and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
                raise ConfigError(f"{prefix}{key}: unknown key for {self.kind} {name!r}{did_you_mean(key, allowed)}; "
                                  f"expected one of: {', '.join(allowed) or '(none)'}")
        try:
            validated = pydantic.validate_call(config={"arbitrary_types_allowed": True})(_as_function(fn))
            return validated(**extra, **kwargs)
        except pydantic.ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"{prefix}{loc}: {_describe(err)} (got {err.get('input')!r})") from None
