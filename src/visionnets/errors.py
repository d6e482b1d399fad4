"""Errors raised by visionnets.

Every message names the file, key or shape at fault and what was expected, in one line.
The command line prints ``error: <message>`` and exits with status 2.
"""


class VisionnetsError(Exception):
    """Base class of every error visionnets raises on purpose."""


class ConfigError(VisionnetsError, ValueError):
    """A recipe, a ``--set`` override or a constructor argument is wrong."""


class DataError(VisionnetsError, ValueError):
    """A dataset file is missing, corrupt or of the wrong shape."""


class CheckpointError(VisionnetsError, ValueError):
    """A checkpoint or run directory is missing, corrupt or does not fit the model."""


class TrainingError(VisionnetsError, RuntimeError):
    """Training cannot go on (for example the loss became NaN)."""


class MissingExtraError(VisionnetsError, ImportError):
    """An optional dependency is not installed; the message names the extra."""


def did_you_mean(name: object, choices) -> str:
    """`` (did you mean 'x'?)`` for the choice nearest to ``name``, or ``""`` when none is near.

    >>> did_you_mean("epoch", ["epochs", "batch_size"])
    " (did you mean 'epochs'?)"
    """
    import difflib

    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def per_stage(value, count: int | None, key: str, kind: type = int, minimum: int = 0) -> list:
    """``value`` as one entry per stage: a single value stands for every one of ``count`` stages,
    a list must hold ``count`` (any number where ``count`` is None: the stages are not known yet).
    Each entry is a ``kind`` (a bool is no int), ints at least ``minimum``; a ConfigError naming
    ``key`` otherwise. The one rule for the per-stage options of ``le2012`` and ``pretrain_stages``.

    >>> per_stage(3, 2, "model.kernel"), per_stage([True, False], 2, "tied", bool)
    ([3, 3], [True, False])
    """
    values = value if isinstance(value, list) else [value] * (count or 1)
    fits = all(isinstance(v, kind) and not (kind is int and isinstance(v, bool)) and (kind is not int or v >= minimum)
               for v in values)
    if not fits or (count is not None and len(values) != count):
        what = f"one int >= {minimum}" if kind is int else "true or false" if kind is bool else f"one {kind.__name__}"
        per = "a list of one per stage" if count is None else f"one per stage ({count})"
        raise ConfigError(f"{key}: expected {what} or {per}, got {value!r}")
    return values


def require(module: str, extra: str):
    """Import an optional dependency or raise a MissingExtraError naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{module!r} is not installed; install it with: pip install 'visionnets[{extra}]'"
        ) from exc
