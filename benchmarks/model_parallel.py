"""Model parallelism of a scaled le2012 network: step time and bytes for K = 1, 2, 4, against the planner.

For each K, K worker processes (gloo over loopback, ``--threads`` torch threads each) train the
same network split into K blocks (:class:`visionnets.distributed.model_parallel.PartitionedNet`,
SGD with momentum) on random images: ``--warmup`` steps, then ``--steps`` timed steps (forward,
backward, update; the median is reported). Every worker counts the bytes it sends (borders
forward, their gradients backward, the all-reduced sums); the table shows the busiest worker.

The planner (``visionnets plan --machines K --partitions K``, :func:`visionnets.train.plan.capacity`)
predicts the same step from the model's FLOPs and a description of the machine, which is measured
here, not assumed:

- FLOP/s of a worker: the K workers compute their blocks of the step at once, sending nothing
  (their neighbours' borders read as zeros; ``SilentComm``); 1/K of the step's training FLOPs
  / the slowest worker's median time. This is the rate a worker achieves on its block with K
  workers sharing this machine (smaller blocks run less efficiently; four workers share a
  2-core VM's two cores), so the prediction tests the planner's model of the messages;
- bandwidth: a gloo ping-pong of 4 MiB messages between two processes;
- latency of a round among K workers: K processes compute a few milliseconds, then exchange a
  small message with their neighbours as model parallelism does; the slowest worker's median
  time of the exchange. (On a 2-core VM two workers see 0.3-1.5 ms, against 0.1 ms for a
  ping-pong in a tight loop: a worker that blocks waits for a wake-up; four workers on two
  cores wait for a core.)

Writes benchmarks/results/model_parallel.json (``--out NAME`` for another name).

    python benchmarks/model_parallel.py                     # input 48x48, 2 stages, K = 1, 2, 4
    python benchmarks/model_parallel.py --partitions 1 2 4 8 16 --threads 1   # a bigger machine
    python benchmarks/model_parallel.py --plot benchmarks/results/model_parallel*.json   # the figure
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

from _common import table, write_json
from visionnets.distributed.model_parallel import Comm, PartitionedNet
from visionnets.distributed.procs import free_port, join, leave, spawn
from visionnets.models.le2012 import le2012
from visionnets.train.plan import capacity, plan


def model_args(a) -> dict:
    return dict(stages=a.stages, kernel=a.kernel, maps=a.maps, pool=a.pool, lcn=a.lcn)


def _train_worker(rank: int, k: int, port: int, a: dict, out: str) -> None:
    join(rank, k, port, "gloo", threads=a["threads"])
    try:
        torch.manual_seed(0)
        shape = (1, a["size"], a["size"])
        net = PartitionedNet(le2012(shape, 10, **a["model"]), shape, Comm(rank, k))
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        g = torch.Generator().manual_seed(1)
        x = torch.randn(a["batch"], *shape, generator=g)
        y = torch.randint(0, 10, (a["batch"],), generator=g)
        times, sent = [], []
        for i in range(a["warmup"] + a["steps"]):
            before = net.comm.bytes_sent
            dist.barrier()
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
            t = time.perf_counter() - t0
            if i >= a["warmup"]:
                times.append(t)
                sent.append(net.comm.bytes_sent - before)
        every = [None] * k
        dist.all_gather_object(every, {"times": times, "sent": sent, "shares": None})
        shares = net.shares()
        if rank == 0:
            Path(out).write_text(json.dumps({"workers": every, "shares": shares}))
    finally:
        leave()


class SilentComm(Comm):
    """A worker that computes its block and sends nothing (its neighbours' borders read as
    zeros, sums as its own part): the compute of a step alone."""

    def exchange(self, sends, recvs):
        for _, t in recvs:
            t.zero_()

    def all_reduce(self, t):
        return t.clone()


def _block_worker(rank: int, k: int, port: int, a: dict, out: str) -> None:
    """Worker ``rank``'s block of the step without its messages, in K processes at once."""
    join(rank, k, port, "gloo", threads=a["threads"])
    try:
        torch.manual_seed(0)
        shape = (1, a["size"], a["size"])
        net = PartitionedNet(le2012(shape, 10, **a["model"]), shape, SilentComm(rank, k))
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        x, y = torch.randn(a["batch"], *shape), torch.randint(0, 10, (a["batch"],))
        times = []
        for i in range(a["warmup"] + a["steps"]):
            dist.barrier()
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
            if i >= a["warmup"]:
                times.append(time.perf_counter() - t0)
        every = [None] * k
        dist.all_gather_object(every, times)
        if rank == 0:
            Path(out).write_text(json.dumps(every))
    finally:
        leave()


def _pingpong_worker(rank: int, port: int, size: int, reps: int, out: str) -> None:
    """Bandwidth: 4 MiB messages back and forth between two processes."""
    join(rank, 2, port, "gloo", threads=1)
    try:
        peer, buf = 1 - rank, torch.zeros(size // 4)
        for i in range(reps + 2):                           # two to warm the connection
            if i == 2:
                dist.barrier()
                t0 = time.perf_counter()
            (dist.send if rank == 0 else dist.recv)(buf, peer)
            (dist.recv if rank == 0 else dist.send)(buf, peer)
        if rank == 0:
            Path(out).write_text(json.dumps((time.perf_counter() - t0) / (2 * reps)))
    finally:
        leave()


def _round_worker(rank: int, k: int, port: int, reps: int, out: str) -> None:
    """A round between computing workers: each computes a few milliseconds (as between two
    layers), then exchanges a small message with its two ring neighbours as model parallelism
    does (batch_isend_irecv); the median time of the exchange."""
    join(rank, k, port, "gloo", threads=1)
    try:
        a = torch.randn(256, 256)
        peers = sorted({(rank - 1) % k, (rank + 1) % k} - {rank})
        send, got = torch.zeros(256), {w: torch.zeros(256) for w in peers}
        rounds = []
        for i in range(reps + 3):
            for _ in range(8):
                a @ a
            t0 = time.perf_counter()
            ops = [dist.P2POp(dist.isend, send, w) for w in peers] + [dist.P2POp(dist.irecv, got[w], w) for w in peers]
            for q in dist.batch_isend_irecv(ops):
                q.wait()
            if i >= 3:
                rounds.append(time.perf_counter() - t0)
        every = [None] * k
        dist.all_gather_object(every, statistics.median(rounds))
        if rank == 0:
            Path(out).write_text(json.dumps(every))
    finally:
        leave()


def network(tmp: Path, partitions: list[int]) -> dict:
    """Bandwidth of gloo messages between two processes on this machine, and for each K the
    latency of a round of messages among K workers that compute in between (the slowest)."""
    size, out = 2**22, tmp / "pingpong.json"
    spawn(_pingpong_worker, 2, (free_port(), size, 20, str(out)), "ping-pong")
    bandwidth = size / json.loads(out.read_text())
    latency = {}
    for k in partitions:
        if k > 1:
            out = tmp / f"round{k}.json"
            spawn(_round_worker, k, (k, free_port(), 30, str(out)), f"rounds among {k}")
            latency[k] = max(json.loads(out.read_text()))
    return {"bandwidth": bandwidth, "latency": latency}


def plot(paths: list[str], png: Path) -> None:
    """Step time and the planner's prediction against K, one panel per result file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from visionnets.io import atomic_write

    fig, axes = plt.subplots(1, len(paths), figsize=(4.5 * len(paths), 3.6), squeeze=False)
    for ax, path in zip(axes[0], paths):
        d = json.loads(Path(path).read_text())
        k = [r["K"] for r in d["rows"]]
        ax.plot(k, [1000 * r["step_s"] for r in d["rows"]], "o-", label="measured")
        ax.plot(k, [1000 * r["predicted_s"] for r in d["rows"]], "s--", label="planner")
        for r in d["rows"]:
            ax.annotate(f"x{r['speedup']:.2f}", (r["K"], 1000 * r["step_s"]), textcoords="offset points",
                        xytext=(4, 6), fontsize=7)
        ax.set_xscale("log", base=2)
        ax.set_xticks(k, [str(v) for v in k])
        ax.set_xlabel("partitions K")
        ax.set_ylabel("ms per training step")
        ax.set_title(f"{d['machine']['cpu_count']} cores", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(png, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    print(f"wrote {png}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--partitions", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--size", type=int, default=48, help="input height and width (published: 200)")
    p.add_argument("--stages", type=int, default=2)
    p.add_argument("--kernel", type=int, default=8, help="filter size (published: 18)")
    p.add_argument("--maps", type=int, default=8)
    p.add_argument("--pool", type=int, default=5)
    p.add_argument("--lcn", type=int, default=5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--out", default="model_parallel")
    p.add_argument("--plot", nargs="+", metavar="JSON", help="only draw these results' step times against K")
    p.add_argument("--png", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "images"
                   / "model_parallel_steps.png")
    a = p.parse_args()
    if a.plot:
        return plot(a.plot, a.png)
    cores = os.cpu_count() or 1
    cfg = {"size": a.size, "model": model_args(a), "batch": a.batch, "warmup": a.warmup, "steps": a.steps,
           "threads": a.threads}
    overrides = [f"model={json.dumps({'name': 'le2012', **model_args(a)})}", f"train.batch_size={a.batch}"]
    report = plan("le2012", overrides, input_shape=(1, a.size, a.size), num_outputs=10)
    with tempfile.TemporaryDirectory() as tmp:
        net = network(Path(tmp), a.partitions)
        runs, solo = {}, {}
        for k in a.partitions:
            out = Path(tmp) / f"block{k}.json"
            spawn(_block_worker, k, (k, free_port(), cfg, str(out)), f"{k} silent workers")
            solo[k] = json.loads(out.read_text())
            out = Path(tmp) / f"k{k}.json"
            spawn(_train_worker, k, (k, free_port(), cfg, str(out)), f"model parallel K={k}")
            runs[k] = json.loads(out.read_text())
    flops_step = report["training_flops_per_example"] * a.batch
    rates = {k: flops_step / k / max(statistics.median(times) for times in solo[k]) for k in a.partitions}
    step1 = statistics.median(runs[a.partitions[0]]["workers"][0]["times"])
    rows = []
    for k in a.partitions:
        w = runs[k]["workers"]
        step = statistics.median(statistics.median(r["times"]) for r in w)
        sent = max(statistics.median(r["sent"]) for r in w)
        cap = capacity(report, machines=k, partitions=k, flops=rates[k], bandwidth=net["bandwidth"],
                       latency=net["latency"].get(k, 0.0), batch=a.batch, memory_gb=1e6)
        rows.append({"K": k, "grid": "x".join(map(str, cap["grid"])), "step_s": step,
                     "predicted_s": cap["seconds_per_step"], "ratio": step / cap["seconds_per_step"],
                     "speedup": step1 / step, "flops_per_worker": rates[k],
                     "round_latency_s": net["latency"].get(k, 0.0), "bytes_sent": sent, "predicted_bytes": cap["halo_bytes_per_step"],
                     "messages": cap["messages_per_step"], "rounds": cap["rounds_per_step"], "compute_s": cap["compute_seconds_per_step"],
                     "network_s": cap["network_seconds_per_step"], "max_share": max(runs[k]["shares"])})
    print(f"le2012 {a.size}x{a.size}, {a.stages} stages, {a.kernel}x{a.kernel} filters, {a.maps} maps: "
          f"{report['parameters']:,} parameters, {report['training_flops_per_example'] * a.batch / 1e9:.2f} GFLOP "
          f"per step of {a.batch}; one worker alone {rates[a.partitions[0]] / 1e9:.1f} GFLOP/s, a round of "
          f"messages {', '.join(f'{v * 1e6:.0f} us (K={k})' for k, v in net['latency'].items())}, bandwidth {net['bandwidth'] / 1e9:.2f} GB/s; {cores} cores")
    print(table(rows, ["K", "grid", "step_s", "predicted_s", "ratio", "speedup", "flops_per_worker", "bytes_sent",
                       "predicted_bytes", "rounds", "max_share"]))
    path = write_json(a.out, {"config": vars(a), "parameters": report["parameters"],
                              "training_flops_per_step": report["training_flops_per_example"] * a.batch,
                              "network": {"bandwidth": net["bandwidth"],
                                          "latency": {str(k): v for k, v in net["latency"].items()}}, "rows": rows, "block_seconds": {str(k): v for k, v in solo.items()},
                              "runs": {str(k): v for k, v in runs.items()}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
