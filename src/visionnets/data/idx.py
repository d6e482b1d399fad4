"""A strict reader of IDX files (the MNIST format), gzip-compressed or raw.

IDX layout (big-endian): two zero bytes, a type code, the number of dimensions ``d``,
then ``d`` 32-bit sizes, then ``prod(sizes)`` values row-major. MNIST uses type 0x08
(unsigned byte), so image files start with magic ``0x00000803 = 2051`` and label files with
``0x00000801 = 2049``.

Every defect (bad magic, a truncated or over-long body, a broken gzip stream) is a
:class:`~visionnets.errors.DataError` that names the file::

    >>> import numpy as np, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "labels-idx1-ubyte"
    >>> write_idx(p, np.array([3, 1, 4], dtype=np.uint8))
    >>> read_idx(p)
    array([3, 1, 4], dtype=uint8)
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from visionnets.errors import DataError
from visionnets.io import atomic_write_bytes

# IDX type code -> numpy dtype (big-endian as stored)
_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
          0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {v.newbyteorder("="): k for k, v in _TYPES.items()}


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def read_bytes(path: Path) -> bytes:
    """The file's contents, gunzipped when it starts with the gzip magic (not by its name)."""
    path = Path(path)
    try:
        if is_gzip(path):
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None


def parse_idx(data: bytes, name: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into an array of the native byte order; ``name`` is used in errors."""
    if len(data) < 4:
        raise DataError(f"{name}: {len(data)} bytes is too short for an IDX header")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    magic = struct.unpack(">I", data[:4])[0]
    if zero != 0 or code not in _TYPES or ndim == 0:
        raise DataError(f"{name}: bad IDX magic number {magic} (0x{magic:08x}); expected "
                        f"0x0000TTDD with a known type TT and DD >= 1 dimensions")
    head = 4 + 4 * ndim
    if len(data) < head:
        raise DataError(f"{name}: truncated IDX header ({len(data)} bytes, expected {head})")
    dims = struct.unpack(f">{ndim}I", data[4:head])
    dtype = _TYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    body = len(data) - head
    if body != expected:
        what = "truncated" if body < expected else "has trailing bytes"
        raise DataError(f"{name}: {what}: header says {' x '.join(map(str, dims))} "
                        f"({expected} data bytes) but the file holds {body}")
    arr = np.frombuffer(data, dtype=dtype, offset=head).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | os.PathLike, expect_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (gzip or raw); with ``expect_magic``, refuse any other magic number."""
    path = Path(path)
    data = read_bytes(path)
    if expect_magic is not None and len(data) >= 4:
        magic = struct.unpack(">I", data[:4])[0]
        if magic != expect_magic:
            raise DataError(f"{path}: bad IDX magic number {magic} (0x{magic:08x}); "
                            f"expected {expect_magic} (0x{expect_magic:08x})")
    return parse_idx(data, path)


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file, atomically; gzip it when ``compress`` (default: name ends in .gz)."""
    path = Path(path)
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise DataError(f"{path}: dtype {array.dtype} has no IDX type code")
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=_TYPES[code]).tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        payload = gzip.compress(payload)
    atomic_write_bytes(path, payload)
