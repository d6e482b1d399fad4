"""Shared fixtures. Real datasets come from $VISIONNETS_DATA or ../shared/data beside the repo.

A test that needs them skips with the reason where they are absent, and fails under CI=true.
"""

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path | None:
    env = os.environ.get("VISIONNETS_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if cand.is_dir():
            return cand
    return None


def need_data(*names: str) -> Path:
    """The data root holding every folder in ``names``; skip (or fail under CI=true) otherwise."""
    root = _data_root()
    missing = [n for n in names if root is None or not (root / n).is_dir()]
    if missing:
        reason = (f"real data {missing} not found under $VISIONNETS_DATA or {REPO.parent / 'shared' / 'data'}")
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: the data must be present)")
        pytest.skip(reason)
    return root


@pytest.fixture
def data_root():
    return need_data()


# The suite's tensors are small: one thread avoids oversubscription on a shared 2-core machine
# (measured 37x faster for tiny ops under load than 2 threads).
torch.set_num_threads(1)
# ... and the Trainer and estimators, which otherwise choose by the machine's load
# (visionnets.threads; tested in test_threads.py), keep to it too, in this process and in the
# CLI subprocesses: so a run's numbers never depend on what else the machine is doing.
os.environ.setdefault("VISIONNETS_THREADS", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def need_ray():
    """Skip where Ray (the ``distributed`` extra) is absent; fail under CI=true."""
    try:
        import ray  # noqa: F401
    except ImportError:
        reason = "ray is not installed (pip install 'visionnets[distributed]')"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; CI=true: the distributed extra must be installed")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray (2 CPUs, loopback only) for every test that needs it: it starts once."""
    need_ray()
    from visionnets.distributed.cluster import start_ray

    ray, started = start_ray(num_cpus=2)
    yield ray
    if started:
        ray.shutdown()
