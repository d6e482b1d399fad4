"""The native kernels of ``LocallyConnected2d`` (``_lc_native.c``): built on first use, loaded with ctypes.

The locally connected layer's float32 CPU kernels run through three small C functions (AVX-512
GEMM micro-kernels that read the input where it lies: no unfolded copy; see the C file). They
are compiled on the first call that can use them, with the system C compiler (``$CC``, else
``cc``, ``gcc`` or ``clang``), into a cache folder (``$VISIONNETS_CACHE_DIR``, else
``$XDG_CACHE_HOME/visionnets``, else ``~/.cache/visionnets``), once per source version: the
library file is written under a temporary name and renamed, so concurrent processes (DDP
workers, test runners) never load a half-written file. Compilation takes about a second.

Where they cannot run, the layer keeps its torch kernels (batched GEMMs over an unfolded band),
which give the same results to float32 rounding: for other dtypes (float64, bfloat16), other
devices, CPUs without AVX-512 (as torch reports: ``torch.backends.cpu.get_cpu_capability()``),
no C compiler (one warning says why), or when switched off with ``VISIONNETS_NATIVE=0`` or
:func:`use_native`.

The kernels split the locations between ``torch.get_num_threads()`` OpenMP threads. The library
is linked against the OpenMP runtime torch itself has loaded (found in ``/proc/self/maps``), so
it runs on torch's own thread pool: threads of a second runtime, or Python threads, would share
the cores with torch's workers, which spin for a while after each parallel region (measured:
2 threads made a forward pass 13 ms against 10 on one thread, before this). Where no runtime
can be found the library is built without OpenMP and runs on one thread. The input gradient is
accumulated per thread and summed, since the windows of neighbouring locations overlap.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch

__all__ = ["available", "use_native", "threads", "run", "cache_dir"]

SOURCE = Path(__file__).with_name("_lc_native.c")
FLAGS = ("-O3", "-std=c99", "-mavx512f", "-fPIC")
FUNCTIONS = ("vn_lc_fwd", "vn_lc_bwd_x", "vn_lc_bwd_w")

_enabled = os.environ.get("VISIONNETS_NATIVE", "1") != "0"
_lib: ctypes.CDLL | None = None
_tried = False
_lock = threading.Lock()


def cache_dir() -> Path:
    """Where the compiled library is kept."""
    if os.environ.get("VISIONNETS_CACHE_DIR"):
        return Path(os.environ["VISIONNETS_CACHE_DIR"]) / "native"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "visionnets" / "native"


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _openmp_runtime() -> str | None:
    """The path of the OpenMP runtime this process has loaded (torch's), or None."""
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "/" in line}
    except OSError:
        return None
    torch_dir = os.path.dirname(torch.__file__)
    for stem in ("libgomp", "libiomp5", "libomp"):
        # torch's own copy first, where another library brought a second one
        found = sorted((not p.startswith(torch_dir), p) for p in paths
                       if os.path.basename(p).startswith(stem) and ".so" in p)
        if found:
            return found[0][1]
    return None


def _build() -> ctypes.CDLL:
    cc = _compiler()
    if cc is None:
        raise OSError("no C compiler found (set CC)")
    omp = _openmp_runtime()
    compile_flags = (*FLAGS, "-fopenmp") if omp else FLAGS
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join((cc, *compile_flags, str(omp))).encode()).hexdigest()[:16]
    path = cache_dir() / f"lc_native-{key}.so"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".build-") as tmp:
            obj, lib = os.path.join(tmp, "lc.o"), os.path.join(tmp, "lc.so")
            steps = [[cc, *compile_flags, "-c", str(SOURCE), "-o", obj],
                     [cc, "-shared", obj, "-o", lib, *([omp] if omp else [])]]
            for cmd in steps:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
                if res.returncode != 0:
                    raise OSError(f"{' '.join(cmd[:2])} ... failed on {SOURCE.name}: "
                                  f"{(res.stderr.strip().splitlines() or ['?'])[-1]}")
            os.replace(lib, path)
    lib = ctypes.CDLL(str(path))
    for name in FUNCTIONS:
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.c_int] + [ctypes.c_int64] * 4 + [ctypes.c_void_p] * 5 + \
            ([ctypes.c_int64] if name == "vn_lc_bwd_x" else [])
        fn.restype = ctypes.c_int
    return lib


def _library() -> ctypes.CDLL | None:
    global _lib, _tried
    if not _tried:
        with _lock:
            if not _tried:
                try:
                    _lib = _build()
                except (OSError, subprocess.SubprocessError) as e:
                    warnings.warn(f"visionnets: the native LocallyConnected2d kernels are not available "
                                  f"({e}); using the torch kernels", RuntimeWarning, stacklevel=3)
                _tried = True
    return _lib


@functools.lru_cache(maxsize=None)
def _cpu_ok() -> bool:
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def available(*tensors: torch.Tensor) -> bool:
    """Whether the native kernels will run on these tensors (float32, CPU, non-empty)."""
    if not _enabled or not all(t.device.type == "cpu" and t.dtype == torch.float32 and t.numel() > 0
                               for t in tensors):
        return False
    return _cpu_ok() and _library() is not None


@contextlib.contextmanager
def use_native(enabled: bool):
    """Switch the native kernels on or off inside a ``with`` block (tests, comparisons)."""
    global _enabled
    before, _enabled = _enabled, bool(enabled)
    try:
        yield
    finally:
        _enabled = before


def threads(locations: int) -> int:
    """How many threads the kernels use for this many locations: torch's thread count at most."""
    return max(1, min(torch.get_num_threads(), locations))


def run(name: str, *args) -> None:
    """Call the C function ``name`` (arguments after the thread count, see ``_lc_native.c``)."""
    if getattr(_library(), name)(*args) != 0:
        raise MemoryError(f"visionnets native kernel {name}: out of memory")
