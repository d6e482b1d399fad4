"""Downpour SGD on a local Ray (2 CPUs): plain-SGD equivalence, replica and shard faults, resume."""

import json
import os

import pytest
import torch

from visionnets import api
from visionnets.train.checkpoint import read_checkpoint


# a tiny convnet on the bundled digits; no dropout or augmentation (exact comparisons)
TINY = ["model.stages=[{channels: 4, kernel: 3, padding: same}]", "model.hidden=[16]", "model.dropout=0",
        "data.augment=[]", "train.batch_size=50", "train.schedule.warmup_epochs=0"]


def _descendants(root: int) -> set[int]:
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parent[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, todo = {root}, [root]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in found]
        found.update(kids)
        todo += kids
    return found


LOOPBACK = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}


@pytest.mark.skipif(not os.path.isdir("/proc/net"), reason="reads Linux's /proc to list listening sockets")
def test_local_ray_listens_on_loopback_only(ray_session):
    assert ray_session.util.get_node_ip_address() == "127.0.0.1"
    inodes = set()
    for pid in _descendants(os.getpid()):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:        # LISTEN, owned by this Ray session
                    listening.append(cols[1])
    assert listening, "found none of the Ray session's listening sockets"
    assert all(addr.split(":")[0] in LOOPBACK for addr in listening), listening


def _weights(run_dir, which="last"):
    tensors, meta = read_checkpoint(run_dir / "checkpoints" / f"{which}.safetensors")
    return {k: v for k, v in tensors.items() if k.startswith("model.")}, meta["state"]


def _capture(store):
    def cb(driver, record):
        store["driver"] = driver
    return cb


def test_one_replica_fetching_and_pushing_every_step_is_plain_sgd(ray_session, tmp_path):
    recipe = TINY + ["train.epochs=2", "train.optimizer.momentum=0.9", "train.optimizer.nesterov=false"]
    plain = api.train("digits_convnet", recipe, out=tmp_path / "plain", progress=False, figures=False)
    down = api.train("digits_convnet", recipe, executor="downpour", out=tmp_path / "down", replicas=1,
                             ps_shards=2, n_fetch=1, n_push=1, progress=False, figures=False)
    a, _ = _weights(plain.run_dir)
    b, state = _weights(down.run_dir)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6, msg=k)
    assert state["executor"] == "downpour"
    for ra, rb in zip(plain.history, down.history):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], abs=1e-6)
        assert rb["executor"]["staleness_max"] == 0          # one replica, fetch before every step
    # mid-run evaluations see whatever the replica has pushed by then; the last one is exact
    assert down.history[-1]["test_error"] == plain.history[-1]["test_error"]
    # the run directory is a normal one
    assert api.evaluate(api.load_run(down.run_dir), "test")["error"] == down.final["test_error"]


@pytest.fixture(scope="module")
def faulty_run(ray_session, tmp_path_factory):
    """One run (2 replicas, 2 shards, 3 epochs) in which replica 1 is killed after epoch 1 and
    shard 0 after epoch 2 (each while the replicas are mid-chunk)."""
    seen = {"events": []}

    def kill(driver, record):
        seen["driver"] = driver
        if record["epoch"] == 1:
            seen["niceness"] = ray_session.get([h.__ray_call__.remote(lambda actor: os.getpriority(os.PRIO_PROCESS, 0))
                                                for h in driver.replicas + driver.shards])
            seen["victim"] = driver.replicas[1]
            ray_session.kill(driver.replicas[1])
        if record["epoch"] == 2:
            seen["version"] = record["executor"]["updates"][0]   # shard 0 checkpointed at this boundary
            ray_session.kill(driver.shards[0])

    out = tmp_path_factory.mktemp("faults") / "run"
    r = api.train("digits_convnet", TINY + ["train.epochs=3"], executor="downpour", out=out, replicas=2,
                          ps_shards=2, n_push=2, checkpoint_every=0, progress=False, figures=False,
                          callbacks=(kill,))
    return r, seen


def test_replica_killed_mid_run_is_replaced_and_every_step_is_applied_once(faulty_run):
    r, seen = faulty_run
    driver, last = seen["driver"], r.history[-1]
    assert [h["executor"]["replica_failures"] for h in r.history] == [0, 1, 1]
    assert driver.replicas[1] is not seen["victim"]
    assert [e["event"] for e in driver.events].count("replica_replaced") == 1
    logged = [json.loads(l) for l in (r.run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in logged] == [e["event"] for e in driver.events]
    # every planned step applied exactly once by each shard, and all the examples seen
    assert driver.final_ledgers == [dict(enumerate(driver.total))] * 2
    assert last["step"] == sum(driver.total)
    assert last["examples_seen"] == 3 * len(r.dataset.train)
    assert last["executor"]["steps_lost"] >= 0 and last["executor"]["duplicate_pushes"] >= 0
    # still learns: chance is 0.9; one process reaches 0.19 in these 3 epochs, this run 0.2-0.5
    # depending on how the replicas interleave around the faults (0.52 seen on a loaded machine)
    assert last["test_error"] < 0.75
    rows = [json.loads(l) for l in (r.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3]


def test_actors_run_at_the_priority_of_the_process_that_started_ray(faulty_run):
    """Ray's default starts workers 15 nice levels down: starved on a shared machine."""
    _, seen = faulty_run
    assert seen["niceness"] == [os.getpriority(os.PRIO_PROCESS, 0)] * 4     # 2 replicas, 2 shards


def test_shard_killed_is_restored_from_its_checkpoint(faulty_run):
    r, seen = faulty_run
    driver = seen["driver"]
    assert [h["executor"]["shard_failures"] for h in r.history] == [0, 0, 1]
    restored = [e for e in driver.events if e["event"] == "shard_restored"]
    assert len(restored) == 1 and restored[0]["shard"] == 0
    assert 0 < restored[0]["from_version"] <= seen["version"]      # the epoch-2 checkpoint
    assert (r.run_dir / "ps" / "shard-0.safetensors").is_file()
    # the steps the restored shard had lost were pushed to it again, and to it alone
    assert driver.final_ledgers == [dict(enumerate(driver.total))] * 2
    # pushes that reached the shard after its checkpoint and were re-sent are dropped by its ledger
    # (how many there are depends on timing: replicas keep running across the epoch boundary)
    assert r.history[-1]["executor"]["duplicate_pushes"] >= 0


def test_resume_continues_a_downpour_run(ray_session, tmp_path):
    def stop(driver, record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        api.train("digits_convnet", TINY + ["train.epochs=2"], executor="downpour", out=tmp_path / "run",
                          replicas=2, progress=False, figures=False, callbacks=(stop,))
    r = api.train(None, resume=tmp_path / "run", progress=False, figures=False)
    assert [h["epoch"] for h in r.history] == [1, 2]
    assert r.history[-1]["examples_seen"] == 2 * len(r.dataset.train)
    assert json.loads((r.run_dir / "executor.json").read_text())["options"]["replicas"] == 2


def test_more_replicas_than_ray_cpus_is_a_config_error(ray_session, tmp_path):
    from visionnets.errors import ConfigError

    with pytest.raises(ConfigError, match="3 replicas need one Ray CPU each; the Ray cluster has 2"):
        api.train("digits_convnet", TINY, executor="downpour", out=tmp_path / "run", replicas=3, progress=False)


@pytest.mark.parametrize("address, message", [
    ("127.0.0.1:{port}", "nothing answers there"),
    ("localhost", "expected HOST:PORT of a Ray head node"),
])
def test_an_address_that_does_not_answer_is_a_quick_one_line_error(address, message, tmp_path, capsys):
    """Ray retries an unanswered --address for minutes; visionnets checks it first (a TCP connect
    of at most 5 s): exit 2, one line, no run directory, no Ray started."""
    from visionnets import cli
    from visionnets.distributed.procs import free_port

    out = tmp_path / "run"
    code = cli.main(["train", "digits_convnet", "--executor", "downpour", "--out", str(out), "--no-progress",
                     "--address", address.format(port=free_port())])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not out.exists()                 # checked before Ray is asked: no run directory, no wait


def test_one_replica_of_two_partitions_is_plain_sgd(ray_session, tmp_path):
    """DistBelief's whole scheme at its smallest: one replica split into 2 model-parallel workers
    (Ray actors in one torch.distributed group), each fetching and pushing only its own
    parameters on its own shard, every step: plain SGD, step for step."""
    from test_model_parallel import LOCAL

    recipe = LOCAL + ["train.optimizer.momentum=0.9", "train.optimizer.nesterov=false"]
    plain = api.train("digits_convnet", recipe, out=tmp_path / "plain", progress=False, figures=False)
    down = api.train("digits_convnet", recipe, executor="downpour", out=tmp_path / "down", replicas=1,
                     partitions=2, n_fetch=1, n_push=1, progress=False, figures=False)
    a, _ = _weights(plain.run_dir)
    b, state = _weights(down.run_dir)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-5, msg=k)
    for ra, rb in zip(plain.history, down.history):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], abs=1e-5)
    assert down.history[-1]["test_error"] == plain.history[-1]["test_error"]
    options = json.loads((down.run_dir / "executor.json").read_text())["options"]
    assert options["partitions"] == 2 and options["ps_shards"] == 2


def test_a_split_replica_losing_a_worker_is_replaced_whole(ray_session, tmp_path):
    """One worker of a 2-partition replica is killed mid-run: its partner fails in the next
    message, the group is replaced (both actors, a new torch.distributed group), and every
    planned step is still applied exactly once by every shard."""
    from test_model_parallel import LOCAL

    seen = {}

    def kill(driver, record):
        seen["driver"] = driver
        if record["epoch"] == 1:
            seen["victims"] = driver.replicas[0].actors
            ray_session.kill(driver.replicas[0].actors[1])

    r = api.train("digits_convnet", LOCAL + ["train.epochs=3"], executor="downpour", out=tmp_path / "run",
                  replicas=1, partitions=2, n_push=2, checkpoint_every=0, progress=False, figures=False,
                  callbacks=(kill,))
    driver = seen["driver"]
    assert [h["executor"]["replica_failures"] for h in r.history] == [0, 1, 1]
    assert not set(driver.replicas[0].actors) & set(seen["victims"])
    assert driver.final_ledgers == [dict(enumerate(driver.total))] * 2
    assert r.history[-1]["step"] == sum(driver.total)
