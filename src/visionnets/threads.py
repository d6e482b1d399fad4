"""How many CPU threads torch should use: the cores this process may run on, less those that
other processes keep busy.

Why: torch's OpenMP threads spin while they wait for one another. When another process holds a
core, a parallel region waits for a thread the kernel has descheduled, and a 2-thread step gets
slower than a 1-thread one, not faster. Measured on 2 cores with two CPU-bound processes beside
(``benchmarks/contention.py``): an RBM fit took 2.7x, an MLP epoch 2.9x and a locally connected
net's epoch 2.3x their 1-thread time at torch's default 2 threads; on the quiet machine 2
threads made the locally connected net 1.6x faster than 1. A yielding wait policy
(``OMP_WAIT_POLICY=PASSIVE``) removes the collapse but cost quiet MLP steps about a third of their
speed (by hand), and it must be set before torch is imported. So visionnets counts the others.

``auto_threads()`` reads the CPU time the whole machine spent (``/proc/stat``; in a container
on a larger host, the cgroup's ``cpu.stat``) against this process's own, over the time since
its last call (at least 50 ms: the first call waits that long; a call sooner than that after
the last one gets the last answer), and answers
``cores - round(others' busy cores)``, at least 1. The Trainer asks before every epoch and the
estimators of ``visionnets.unsupervised`` before every ``fit``. A number overrides the choice
everywhere: ``threads`` in a recipe, ``n_threads`` on an estimator, or the environment variable
``VISIONNETS_THREADS``; ``OMP_NUM_THREADS``, when set, is kept too. Where the load cannot be read
(not Linux), all the cores are used.

Thread counts change float32 rounding in some kernels (convolutions), so two runs on a machine
whose load differs may differ in the last bits; pin ``threads`` for bit-identical repeats.

    >>> choose_threads(cores=2, others_busy=0.1)
    2
    >>> choose_threads(cores=2, others_busy=1.0)
    1
    >>> choose_threads(cores=16, others_busy=3.4)
    13
"""

from __future__ import annotations

import contextlib
import numbers
import os
import resource
import time

import torch

from visionnets.errors import ConfigError

MIN_WINDOW_S = 0.05
_last: tuple[float, float, float] | None = None     # (wall, machine busy CPU-seconds, own CPU-seconds)
_last_answer: float | None = None                   # what the measurement ending at _last found


def available_cores() -> int:
    """The cores this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def choose_threads(cores: int, others_busy: float | None) -> int:
    """``cores`` less the cores other processes keep busy (rounded), at least 1; ``None``: ``cores``."""
    if others_busy is None:
        return max(1, cores)
    return max(1, min(cores, cores - round(others_busy)))


def _busy_seconds() -> float | None:
    """CPU-seconds the machine (or this container's cgroup) has spent working, or None."""
    try:
        with open("/proc/stat") as f:
            lines = f.read(1 << 20).splitlines()
        n_cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
        if n_cpus <= available_cores():
            vals = [int(v) for v in lines[0].split()[1:]]
            idle = vals[3] + (vals[4] if len(vals) > 4 else 0)      # idle + iowait
            return (sum(vals[:8]) - idle) / os.sysconf("SC_CLK_TCK")
        with open("/sys/fs/cgroup/cpu.stat") as f:                 # a container on a bigger host
            for line in f:
                if line.startswith("usage_usec"):
                    return int(line.split()[1]) / 1e6
    except (OSError, ValueError, IndexError):
        return None
    return None


def _own_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def others_busy() -> float | None:
    """Cores kept busy by other processes since the last call; None where the load cannot be
    read. The first call of a process waits for a 50 ms window; a call less than 50 ms after
    the last measurement answers as that one did (no wait: back-to-back ``fit`` calls of small
    estimators would otherwise spend most of their time waiting)."""
    global _last, _last_answer
    now, busy, own = time.monotonic(), _busy_seconds(), _own_seconds()
    if busy is None:
        return None
    recent = _last is not None and now - _last[0] < MIN_WINDOW_S
    if recent and _last_answer is not None:
        return _last_answer
    if _last is None or recent:
        start = _last if _last is not None else (now, busy, own)
        time.sleep(max(0.0, MIN_WINDOW_S - (now - start[0])))
        now, busy, own = time.monotonic(), _busy_seconds(), _own_seconds()
        if busy is None:
            return None
    else:
        start = _last
    _last = (now, busy, own)
    wall = now - start[0]
    _last_answer = max(0.0, ((busy - start[1]) - (own - start[2])) / wall) if wall > 0 else None
    return _last_answer


def pinned_threads() -> int | None:
    """``VISIONNETS_THREADS`` as a number of threads, or None when it is not set."""
    raw = os.environ.get("VISIONNETS_THREADS", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"VISIONNETS_THREADS={raw!r}; expected a whole number >= 1")
    return int(raw)


def auto_threads(requested: int | None = None) -> int:
    """``requested`` if given, else ``VISIONNETS_THREADS``, else ``OMP_NUM_THREADS`` (a count given
    to the whole process, e.g. by a job scheduler), else the cores others leave free."""
    if requested is not None:
        if not isinstance(requested, numbers.Integral) or isinstance(requested, bool) or requested < 1:
            raise ConfigError(f"threads={requested!r}; expected None or an int >= 1")
        return int(requested)
    pinned = pinned_threads()
    if pinned is not None:
        return pinned
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) >= 1:          # the process was given a count: keep it
        return int(omp)
    return choose_threads(available_cores(), others_busy())


@contextlib.contextmanager
def using_threads(requested: int | None = None):
    """Run the block with ``auto_threads(requested)`` torch threads, then restore the count."""
    before = torch.get_num_threads()
    n = auto_threads(requested)
    if n != before:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
