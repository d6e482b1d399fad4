"""Load plain-data pickles (the CIFAR ``cifar-10-batches-py`` batches) without executing code.

A pickle is a small program: its ``GLOBAL``/``STACK_GLOBAL`` opcodes import any callable and
``REDUCE`` calls it, so ``pickle.load`` on a file from the internet can run ``os.system``.
:class:`RestrictedUnpickler` resolves only the handful of globals that plain data needs and
refuses every other one with a :class:`~visionnets.errors.DataError`:

- ``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct`` (limited to
  building a plain ``numpy.ndarray``), ``numpy.ndarray`` and ``numpy.dtype`` (object dtypes
  refused): how NumPy arrays pickle;
- ``numpy.core.numeric._frombuffer`` / ``numpy._core.numeric._frombuffer``: NumPy arrays at
  pickle protocol 5;
- ``_codecs.encode(text, "latin1")``: how Python 3 writes ``bytes`` at protocol 2.

Dicts, lists, tuples, str, bytes, int, float, bool and None are pickle opcodes, not globals,
so they load as usual. After loading, the result is walked and anything that is not one of
those (or a non-object ndarray) is refused too. Python 2 strings are decoded as latin-1, as
the CIFAR batches need (NumPy's recommended setting)::

    >>> import pickle, numpy as np
    >>> blob = pickle.dumps({"data": np.arange(3, dtype=np.uint8), "labels": [1, 2, 3]})
    >>> loads_restricted(blob)["labels"]
    [1, 2, 3]
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np

from visionnets.errors import DataError

_PLAIN = (str, bytes, int, float, bool, type(None))


def _check_dtype(dt: np.dtype) -> np.dtype:
    if dt.hasobject:
        raise pickle.UnpicklingError(f"refused: numpy dtype {dt} holds Python objects")
    return dt


def _safe_dtype(*args):
    return _check_dtype(np.dtype(*args))


def _safe_reconstruct(subtype, shape, dtype_code):
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"refused: array subtype {subtype!r}")
    return np.ndarray.__new__(np.ndarray, shape, dtype_code)


def _safe_frombuffer(buf, dtype, shape, order):
    dt = _check_dtype(np.dtype(dtype))
    return np.frombuffer(buf, dtype=dt).reshape(shape, order=order).copy()


def _safe_encode(text, encoding="utf-8"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refused: _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
    ("numpy.core.numeric", "_frombuffer"): _safe_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _safe_frombuffer,
    ("_codecs", "encode"): _safe_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only the globals plain NumPy data needs (see module doc)."""

    def find_class(self, module: str, name: str):
        fn = _ALLOWED.get((module, name))
        if fn is None:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: only plain data "
                                         f"(dict, list, str, bytes, numbers, numpy arrays) is allowed")
        return fn

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused: persistent ids")


def _check_plain(obj, where: str = "") -> None:
    """Refuse anything but containers of plain values and non-object numpy arrays."""
    if isinstance(obj, np.ndarray):
        if type(obj) is not np.ndarray or obj.dtype.hasobject:
            raise pickle.UnpicklingError(f"refused: {where or 'value'} is a {type(obj).__name__} "
                                         f"of dtype {obj.dtype}")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if type(k) not in (str, bytes, int):
                raise pickle.UnpicklingError(f"refused: dict key of type {type(k).__name__}")
            _check_plain(v, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        if type(obj) not in (list, tuple):
            raise pickle.UnpicklingError(f"refused: {where or 'value'} is a {type(obj).__name__}")
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
    elif type(obj) not in _PLAIN:
        raise pickle.UnpicklingError(f"refused: {where or 'value'} is a {type(obj).__name__}")


def loads_restricted(data: bytes, name: str | os.PathLike = "<bytes>"):
    """Unpickle plain data from ``data``; anything else is a DataError naming ``name``."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
        _check_plain(obj)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, OverflowError, MemoryError) as exc:
        raise DataError(f"{name}: not a plain-data pickle ({exc})") from None
    return obj


def load_restricted(path: str | os.PathLike):
    """Unpickle plain data from the file at ``path`` (see :func:`loads_restricted`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    return loads_restricted(data, path)
