"""A real multi-node Ray cluster on one machine, every node on its own loopback address.

For tests and for trying multi-node Downpour without a second machine: a head node on
127.0.0.1 and worker nodes on 127.0.0.2, 127.0.0.3, ... each started with ``ray start`` (its
daemons in a process group of their own, so that a node can be killed, and the whole cluster
cleaned up, without touching any other Ray on the machine); token authentication with a fresh
token. Then ``visionnets train RECIPE --executor downpour --address 127.0.0.1:PORT``.

Two workarounds for Ray 2.60, both confined here:

- the head is started with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` so that it keeps 127.0.0.1
  (with clusters enabled Ray swaps a loopback node address for the machine's network address)
  and its servers listen on 127.0.0.1 only;
- a worker node's ``ray start`` runs with Ray's "localhost means the network address" rule
  switched off (``services.resolve_ip_for_localhost``), else it looks for the head at the
  machine's network address. Ray binds a worker node's own gRPC servers (raylet, object manager)
  to every interface unless the node's address is exactly 127.0.0.1: that is Ray's, and
  :meth:`LoopbackCluster.listening` shows it.

    >>> with LoopbackCluster(cpus=[1, 1]) as cluster:                         # doctest: +SKIP
    ...     api.train(recipe, executor="downpour", address=cluster.address, replicas=2)
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from visionnets.distributed.procs import free_port
from visionnets.errors import TrainingError

_WORKER_NODE = """
import sys
import ray._private.ray_constants as constants
import ray._private.services as services
constants.ENABLE_RAY_CLUSTER = True                    # a worker node may join a cluster ...
services.resolve_ip_for_localhost = lambda host: host  # ... found on loopback, as given
from ray.scripts.scripts import main
sys.argv = ["ray"] + sys.argv[1:]
main()
"""


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
        return True
    except ProcessLookupError:
        return False


def _address(hex_addr: str) -> str:
    """``0100007F:18F7`` (or its IPv6 form) -> ``127.0.0.1:6391``."""
    import ipaddress

    host, port = hex_addr.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = ipaddress.IPv4Address(raw[::-1])
    else:
        ip = ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
        ip = ip.ipv4_mapped or ip
    return f"{ip}:{int(port, 16)}"


class LoopbackCluster:
    """Nodes ``127.0.0.{i+1}`` with ``cpus[i]`` CPUs; a context manager that stops them all."""

    def __init__(self, cpus: list[int], timeout: float = 120.0):
        self.cpus, self.timeout = list(cpus), timeout
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.temp = tempfile.mkdtemp(prefix="vnray")          # short: Ray's socket paths have a length limit
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                    "RAY_USAGE_STATS_ENABLED": "0", "RAY_worker_niceness": "0"}
        self.groups: dict[str, int] = {}                      # node address -> process group
        self.lost: list[int] = []                             # the groups of killed nodes

    def env_for_driver(self) -> dict[str, str]:
        """The environment a driver needs to join (the token)."""
        return {k: self.env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}

    def _start(self, ip: str, args: list[str], env: dict, script: list[str]) -> None:
        proc = subprocess.run(script + ["start", "--node-ip-address", ip, *args], env=env, capture_output=True,
                              text=True, timeout=self.timeout, start_new_session=True)
        if proc.returncode != 0:
            raise TrainingError(f"ray start --node-ip-address {ip} failed: "
                                f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
        self.groups[ip] = self._group_of(ip)

    def _group_of(self, ip: str) -> int:
        """The process group of the raylet of node ``ip`` (its daemons share it)."""
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"raylet") and f"--node_ip_address={ip}".encode() in cmd \
                    and any(self.temp.encode() in c for c in cmd):
                return os.getpgid(int(pid))
        raise TrainingError(f"ray start --node-ip-address {ip}: no raylet of this cluster found")

    def start(self) -> "LoopbackCluster":
        ray = [str(Path(sys.executable).with_name("ray"))]
        head = {**self.env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        self._start("127.0.0.1", ["--head", "--port", str(self.port), "--num-cpus", str(self.cpus[0]),
                                  "--include-dashboard", "false", "--temp-dir", self.temp, "--disable-usage-stats"],
                    head, ray)
        for i, n in enumerate(self.cpus[1:], 2):
            self.add_node(f"127.0.0.{i}", n)
        return self

    def add_node(self, ip: str, cpus: int) -> None:
        """Start a worker node at ``ip`` (a replacement machine, say)."""
        env = {**self.env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        self._start(ip, ["--address", self.address, "--num-cpus", str(cpus)], env,
                    [sys.executable, "-c", _WORKER_NODE])

    def listening(self) -> dict[str, list[str]]:
        """For each node, the addresses its processes listen on (TCP; from /proc, Linux)."""
        inodes: dict[str, str] = {}
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if f[3] == "0A":                                          # LISTEN
                    inodes[f[9]] = _address(f[1])
        out: dict[str, list[str]] = {}
        for ip, group in self.groups.items():
            found = set()
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    if os.getpgid(int(pid)) != group:
                        continue
                    for fd in os.listdir(f"/proc/{pid}/fd"):
                        link = os.readlink(f"/proc/{pid}/fd/{fd}")
                        if link.startswith("socket:[") and link[8:-1] in inodes:
                            found.add(inodes[link[8:-1]].rsplit(":", 1)[0])
                except OSError:
                    continue
            out[ip] = sorted(found)
        return out

    def kill_node(self, ip: str) -> None:
        """Kill every process of node ``ip`` at once (the machine lost)."""
        self.lost.append(self.groups[ip])
        os.killpg(self.groups.pop(ip), signal.SIGKILL)

    def stop(self, wait: float = 60.0) -> None:
        """Kill every node, wait (at most ``wait`` seconds) until their processes are gone."""
        groups = list(self.groups.values()) + self.lost
        for ip in list(self.groups):
            try:
                self.kill_node(ip)
            except ProcessLookupError:
                pass
        gone_by = time.monotonic() + wait
        while groups and time.monotonic() < gone_by:
            groups = [g for g in groups if _alive(g)]
            time.sleep(0.2)
        shutil.rmtree(self.temp, ignore_errors=True)

    def __enter__(self) -> "LoopbackCluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
