"""Model parallelism of a scaled le2012 network: step time and bytes for K = 1, 2, 4, against the planner.

For each K, K worker processes (gloo over loopback, ``--threads`` torch threads each) train the
same network split into K blocks (:class:`visionnets.distributed.model_parallel.PartitionedNet`,
SGD with momentum) on random images: ``--warmup`` steps, then ``--steps`` timed steps (forward,
backward, update; the median is reported). Every worker counts the bytes it sends (borders
forward, their gradients backward, the all-reduced sums); the table shows the busiest worker.

The planner (``visionnets plan --machines K --partitions K``, :func:`visionnets.train.plan.capacity`)
predicts the same step from the model's FLOPs and a description of the machine, which is measured
here, not assumed:

- FLOP/s of one worker when K workers share this machine: K processes each run the whole
  network's step at once, with no communication (``--threads`` each); the training FLOPs of a step
  / their median step time. (On a 2-core VM two such processes run about 1.2-1.4x slower than
  one alone; four share two cores. A cluster gives every worker its own machine.)
- bandwidth: a gloo ping-pong of 4 MiB messages between two processes;
- latency of a round: two processes compute a few milliseconds, then exchange a small message as
  model parallelism does; the median time of the exchange. (On a 2-core VM this is about 1.5 ms,
  against 0.1 ms for a ping-pong in a tight loop: a worker that blocks waits for a wake-up.)

Writes benchmarks/results/model_parallel.json (``--out NAME`` for another name).

    python benchmarks/model_parallel.py                     # input 48x48, 2 stages, K = 1, 2, 4
    python benchmarks/model_parallel.py --partitions 1 2 4 8 16 --threads 1   # a bigger machine
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


def _solo_worker(rank: int, k: int, port: int, a: dict, out: str) -> None:
    """The whole network's step, in K processes at once (no messages but a barrier per step)."""
    join(rank, k, port, "gloo", threads=a["threads"])
    try:
        torch.manual_seed(0)
        shape = (1, a["size"], a["size"])
        net = le2012(shape, 10, **a["model"])
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        x, y = torch.randn(a["batch"], *shape), torch.randint(0, 10, (a["batch"],))
        times = []
        for i in range(a["warmup"] + max(a["steps"] // 2, 3)):
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


def _pingpong_worker(rank: int, port: int, sizes: list[int], reps: int, out: str) -> None:
    join(rank, 2, port, "gloo", threads=1)
    try:
        result = {}
        peer = 1 - rank
        for n in sizes:                                     # bandwidth: back-to-back messages
            buf = torch.zeros(n // 4)
            for _ in range(2):                              # warm the connection
                (dist.send if rank == 0 else dist.recv)(buf, peer)
                (dist.recv if rank == 0 else dist.send)(buf, peer)
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(reps):
                (dist.send if rank == 0 else dist.recv)(buf, peer)
                (dist.recv if rank == 0 else dist.send)(buf, peer)
            result[str(n)] = (time.perf_counter() - t0) / (2 * reps)       # one way
        # a round between computing workers: both compute a few ms (as between two layers), then
        # exchange a small message the way model parallelism does (batch_isend_irecv)
        a, t, r = torch.randn(256, 256), torch.zeros(256), torch.zeros(256)
        rounds = []
        for i in range(reps + 3):
            for _ in range(8):
                a @ a
            t0 = time.perf_counter()
            for q in dist.batch_isend_irecv([dist.P2POp(dist.isend, t, peer), dist.P2POp(dist.irecv, r, peer)]):
                q.wait()
            if i >= 3:
                rounds.append(time.perf_counter() - t0)
        result["round"] = statistics.median(rounds)
        if rank == 0:
            Path(out).write_text(json.dumps(result))
    finally:
        leave()


def network(tmp: Path) -> dict:
    """Bandwidth of gloo messages between two processes on this machine, and the latency of a
    round of messages between workers that compute in between."""
    sizes = [2**22]
    out = tmp / "pingpong.json"
    spawn(_pingpong_worker, 2, (free_port(), sizes, 30, str(out)), "ping-pong")
    times = json.loads(out.read_text())
    bandwidth = sizes[0] / times[str(sizes[0])]
    return {"latency": times["round"], "bandwidth": bandwidth, "one_way_seconds": times}


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
    a = p.parse_args()
    cores = os.cpu_count() or 1
    cfg = {"size": a.size, "model": model_args(a), "batch": a.batch, "warmup": a.warmup, "steps": a.steps,
           "threads": a.threads}
    overrides = [f"model={json.dumps({'name': 'le2012', **model_args(a)})}", f"train.batch_size={a.batch}"]
    report = plan("le2012", overrides, input_shape=(1, a.size, a.size), num_outputs=10)
    with tempfile.TemporaryDirectory() as tmp:
        net = network(Path(tmp))
        runs, solo = {}, {}
        for k in a.partitions:
            out = Path(tmp) / f"solo{k}.json"
            spawn(_solo_worker, k, (k, free_port(), cfg, str(out)), f"{k} solo workers")
            solo[k] = json.loads(out.read_text())
            out = Path(tmp) / f"k{k}.json"
            spawn(_train_worker, k, (k, free_port(), cfg, str(out)), f"model parallel K={k}")
            runs[k] = json.loads(out.read_text())
    flops_step = report["training_flops_per_example"] * a.batch
    rates = {k: flops_step / statistics.median(t for times in solo[k] for t in times) for k in a.partitions}
    step1 = statistics.median(runs[a.partitions[0]]["workers"][0]["times"])
    rows = []
    for k in a.partitions:
        w = runs[k]["workers"]
        step = statistics.median(statistics.median(r["times"]) for r in w)
        sent = max(statistics.median(r["sent"]) for r in w)
        cap = capacity(report, machines=k, partitions=k, flops=rates[k], bandwidth=net["bandwidth"],
                       latency=net["latency"], batch=a.batch, memory_gb=1e6)
        rows.append({"K": k, "grid": "x".join(map(str, cap["grid"])), "step_s": step,
                     "predicted_s": cap["seconds_per_step"], "ratio": step / cap["seconds_per_step"],
                     "speedup": step1 / step, "flops_per_worker": rates[k], "bytes_sent": sent, "predicted_bytes": cap["halo_bytes_per_step"],
                     "messages": cap["messages_per_step"], "rounds": cap["rounds_per_step"], "compute_s": cap["compute_seconds_per_step"],
                     "network_s": cap["network_seconds_per_step"], "max_share": max(runs[k]["shares"])})
    print(f"le2012 {a.size}x{a.size}, {a.stages} stages, {a.kernel}x{a.kernel} filters, {a.maps} maps: "
          f"{report['parameters']:,} parameters, {report['training_flops_per_example'] * a.batch / 1e9:.2f} GFLOP "
          f"per step of {a.batch}; one worker alone {rates[a.partitions[0]] / 1e9:.1f} GFLOP/s, a round of "
          f"messages {net['latency'] * 1e6:.0f} us, bandwidth {net['bandwidth'] / 1e9:.2f} GB/s; {cores} cores")
    print(table(rows, ["K", "grid", "step_s", "predicted_s", "ratio", "speedup", "flops_per_worker", "bytes_sent",
                       "predicted_bytes", "rounds", "max_share"]))
    path = write_json(a.out, {"config": vars(a), "parameters": report["parameters"],
                              "training_flops_per_step": report["training_flops_per_example"] * a.batch,
                              "network": net, "rows": rows, "solo_seconds": {str(k): v for k, v in solo.items()},
                              "runs": {str(k): v for k, v in runs.items()}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
