"""Starting (or joining) Ray, with nothing listening beyond the loopback interface by default.

Ray is an optional extra (``pip install 'visionnets[distributed]'``); it is imported here only.
A local Ray normally advertises, and binds its gRPC servers to, the machine's network address.
For a local instance visionnets sets ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (Ray then uses the
loopback address for the node, as it does on laptops), turns the dashboard and usage
statistics off, and passes ``_node_ip_address="127.0.0.1"``: every Ray server of the session
listens on 127.0.0.1 only. With ``address=...`` visionnets joins that cluster as it is.

Priority. Ray starts its worker processes 15 nice levels below the process that started it
(its ``RAY_worker_niceness`` default): on a machine where anything else runs (CI, a notebook, a
workstation) the parameter-server shards and replicas then get a few percent of a core and
training stalls. For a local Ray visionnets sets ``RAY_worker_niceness=0``: the actors run at
the priority of the process that started them. To choose another, set the variable yourself
before training (e.g. ``RAY_worker_niceness=5 visionnets train ...``); a cluster joined with
``--address`` keeps the setting it was started with, so start its nodes with
``RAY_worker_niceness=0 ray start ...`` for the same effect.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

from visionnets.errors import ConfigError, require

# set for a local Ray unless the user set them: loopback only, no usage statistics, and workers
# at the priority of the process that starts Ray (Ray's default lowers them by 15 nice levels)
_LOCAL_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_worker_niceness": "0"}


def import_ray(local: bool = True):
    """``ray``, imported lazily (a MissingExtraError names the extra when it is not installed)."""
    if local:
        for key, value in _LOCAL_ENV.items():
            os.environ.setdefault(key, value)
    fresh = "ray" not in sys.modules
    ray = require("ray", "distributed")
    if local and not fresh and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == "0":
        # ray was imported before the variable was set: its constant was read at import time
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    return ray


def is_loopback(address: str) -> bool:
    """Whether ``HOST:PORT`` names this machine's loopback (127.x.x.x or localhost): Ray is then
    reached over loopback, not at the machine's network address it would put in its place."""
    host = address.rpartition(":")[0]
    return host == "localhost" or host.startswith("127.")


def check_address(address: str, timeout: float = 5.0) -> None:
    """A ConfigError unless something listens at ``address`` (``HOST:PORT`` of a Ray head node;
    ``auto`` and ``ray://...`` are left to Ray). Ray itself retries an address that does not
    answer for minutes; this answers in at most ``timeout`` seconds."""
    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--address {address!r}: expected HOST:PORT of a Ray head node (e.g. 127.0.0.1:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(f"--address {address}: nothing answers there ({exc.strerror or exc}); start a head node "
                          f"with `ray start --head --node-ip-address {host} --port {port}`") from None


def start_ray(address: str | None = None, num_cpus: int | None = None):
    """Connect to ``address``, or start a local Ray on loopback; returns (ray, started_here).

    If Ray is already initialized in this process it is used as it is (``started_here`` is
    False and the caller must not shut it down).
    """
    if address is not None:
        check_address(address)
    ray = import_ray(local=address is None or is_loopback(address))
    if ray.is_initialized():
        return ray, False
    if address is not None:
        if num_cpus is not None:
            raise ConfigError("--address: the cluster sets its own CPUs; num_cpus applies to a local Ray only")
        ray.init(address=address, logging_level=logging.WARNING)
        return ray, True
    ray.init(address=None, num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
             _node_ip_address="127.0.0.1", logging_level=logging.WARNING)
    return ray, True
