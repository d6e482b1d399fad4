"""Driver for tests/test_distributed_cluster.py (run in a fresh process: no Ray initialized).

A two-node loopback cluster (127.0.0.1, 127.0.0.2; one CPU each), Downpour with two replicas
(one CPU each: one per node) and two shards (spread: one per node) joined with --address; after
epoch 1 node 2 is killed whole, losing a replica and a shard, and a replacement node 127.0.0.3
joins. Writes what the test checks to argv[1] (JSON); the process groups of the nodes go to
argv[1] + ".groups" as soon as they exist, so that the test can clean up whatever happens.
"""

import json
import sys

from visionnets import api
from visionnets.distributed.loopback_cluster import LoopbackCluster

TINY = ["model.stages=[{channels: 4, kernel: 3, padding: same}]", "model.hidden=[16]", "model.dropout=0",
        "data.augment=[]", "train.batch_size=50", "train.schedule.warmup_epochs=0", "train.epochs=3"]


def wait_until_dead(ip: str, timeout: float = 120.0) -> None:
    """Block until Ray has declared node ``ip`` dead. Its worker processes may outlive the
    raylet for a few seconds and still answer calls; waiting makes the loss certain before the
    run goes on, whatever the speed of the training steps (a fast run could otherwise finish
    before Ray noticed, and see no failure)."""
    import time

    import ray

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(n["Alive"] for n in ray.nodes() if n["NodeManagerAddress"] == ip):
            return
        time.sleep(0.2)
    raise TimeoutError(f"Ray did not declare node {ip} dead within {timeout:g} s")


def main(out: str, run_dir: str) -> None:
    import os

    seen = {}
    with LoopbackCluster(cpus=[1, 1]) as cluster:
        def save_groups():
            with open(out + ".groups", "w") as fh:
                json.dump(list(cluster.groups.values()) + cluster.lost, fh)

        save_groups()
        os.environ.update(cluster.env_for_driver())
        seen["listening"] = cluster.listening()

        def lose_node(driver, record):
            seen["driver"] = driver
            if record["epoch"] == 1:
                import ray

                where = lambda handles: sorted(ray.get([h.__ray_call__.remote(  # noqa: E731
                    lambda actor: __import__("ray").util.get_node_ip_address()) for h in handles]))
                seen["replica_nodes"], seen["shard_nodes"] = where(driver.replicas), where(driver.shards)
                cluster.kill_node("127.0.0.2")
                wait_until_dead("127.0.0.2")
                cluster.add_node("127.0.0.3", 1)
                save_groups()

        result = api.train("digits_convnet", TINY, executor="downpour", address=cluster.address, replicas=2,
                           ps_shards=2, checkpoint_every=5, out=run_dir, progress=False, figures=False,
                           callbacks=(lose_node,))
        driver = seen["driver"]
        report = {"replica_nodes": seen["replica_nodes"], "shard_nodes": seen["shard_nodes"],
                  "listening": seen["listening"], "events": [e["event"] for e in driver.events],
                  "failures": [h["executor"]["replica_failures"] for h in result.history],
                  "shard_failures": [h["executor"]["shard_failures"] for h in result.history],
                  "ledgers_exact": driver.final_ledgers == [dict(enumerate(driver.total))] * 2,
                  "epochs": [h["epoch"] for h in result.history], "test_error": result.final["test_error"]}
    with open(out, "w") as fh:
        json.dump(report, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
