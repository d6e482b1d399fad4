"""Downpour SGD (Dean et al., NIPS 2012): asynchronous SGD against a sharded parameter server.

The tutorial's last part: SGD is sequential, so DistBelief runs R model replicas, each on its
own part of the data, against a parameter server split into S shards:

    replica r, forever:  every n_fetch steps  theta <- PS          (fetch)
                         g <- dL/dtheta on the next mini-batch      (FPROP, BPROP)
                         every n_push steps   PS <- sum of the g's  (push)
    shard k, on a push:  theta_k <- theta_k - eta * update(g_k)     (SGD with momentum, Adagrad)

No replica waits for another: a gradient may be computed at parameters that are several
updates old (its *staleness*, measured at every push and logged per epoch: mean, p50, p95,
max). Here the shards (:mod:`~visionnets.distributed.ps`) and the replicas
(:mod:`~visionnets.distributed.replica`) are Ray actors; this module is the driver. It hands
each replica chunks of its own steps, counts the examples applied, and at every epoch
boundary (n_train examples) fetches theta, evaluates it on val and test, asks the shards to
checkpoint, and closes the epoch as every executor does (:class:`~visionnets.train.record.RunRecord`:
the record, ``metrics.jsonl``, ``checkpoints/last|best.safetensors``, early stopping). Its own
statistics (staleness, shard versions, faults) are in the record's ``executor`` entry.

Faults. A replica that dies is replaced by a new actor for the same slot; the steps it had
not pushed are lost (counted in ``steps_lost``) and assigned again. A shard that dies is
restored from its last checkpoint (``RUN_DIR/ps/shard-K.safetensors``, written every
``checkpoint_every`` updates and at every epoch boundary); the steps it applied since are
lost and redone. Each shard keeps a ledger of the steps of each slot it has applied and
drops duplicates, so at the end every step has been applied exactly once by every shard;
``replica_failures``, ``shard_failures`` and ``steps_lost`` are in every record's
``executor`` entry, and each event is appended to ``RUN_DIR/events.jsonl`` (and printed, or logged as a warning).

Model-parallel replicas (``partitions=K``): each replica is K actors forming one
torch.distributed group (:class:`ReplicaGroup`), each partition of the model
(:mod:`~visionnets.distributed.model_parallel`) keeping its own parameters on its own S / K
shards, so that a partition fetches and pushes only those.

    >>> from visionnets import api
    >>> r = api.train("digits_convnet", ["train.epochs=1"], executor="downpour", replicas=2,
    ...               ps_shards=2, out="/tmp/vn-doc-downpour", progress=False)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter
from typing import Any, Callable

import torch
from torch import nn

from visionnets.distributed.cluster import start_ray
from visionnets.distributed.ps import PS_OPTIMIZERS, ParameterShard, staleness_stats
from visionnets.distributed.replica import Replica, batch_sizes, slot_indices, steps_per_epoch
from visionnets.distributed.sharding import ShardLayout
from visionnets.errors import CheckpointError, ConfigError, TrainingError, VisionnetsError
from visionnets.train.checkpoint import read_checkpoint
from visionnets.train.record import EarlyStopping, RunRecord, Tally, epoch_record, evaluation_record
from visionnets.train.setup import EXECUTORS, Setup, objective_for
from visionnets.train.trainer import tally_split

log = logging.getLogger(__name__)
CHUNKS_PER_EPOCH = 8   # work is handed to each replica in about this many chunks per local epoch
ACTOR_ATTEMPTS = 8     # tries to start a replacement actor (one may land on a node that is dying)


def _first(*answers):
    """Worker 0's answer, once every worker of a split replica has answered (a Ray task)."""
    return answers[0]


class _Fanout:
    def __init__(self, actors: list, method: str, combine):
        self.actors, self.method, self.combine = actors, method, combine

    def remote(self, *args):
        return self.combine.remote(*[getattr(a, self.method).remote(*args) for a in self.actors])


class ReplicaGroup:
    """The K actors of one model-parallel replica, driven like one replica: ``run``, ``ping``
    and ``set_shards`` go to all K, and one reference answers (worker 0's report, once all have
    finished; an error if any failed)."""

    def __init__(self, actors: list, combine):
        self.actors = actors
        self.run, self.ping, self.set_shards = (_Fanout(actors, m, combine) for m in ("run", "ping", "set_shards"))


def _actors(handle) -> list:
    return getattr(handle, "actors", [handle])


def check_options(replicas: int, ps_shards: int, n_fetch: int, n_push: int, ps_optimizer: str,
                  checkpoint_every: int) -> None:
    for name, value in (("replicas", replicas), ("ps_shards", ps_shards), ("n_fetch", n_fetch),
                        ("n_push", n_push)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"downpour: {name} must be an integer >= 1, got {value!r}")
    if ps_optimizer not in PS_OPTIMIZERS:
        raise ConfigError(f"downpour: ps_optimizer must be one of {', '.join(PS_OPTIMIZERS)}, got {ps_optimizer!r}")
    if not isinstance(checkpoint_every, int) or checkpoint_every < 0:
        raise ConfigError(f"downpour: checkpoint_every must be an integer >= 0, got {checkpoint_every!r}")


class Downpour:
    """The driver of one Downpour run (see the module docstring)."""

    def __init__(self, setup: Setup, *, replicas: int = 2, ps_shards: int = 1, n_fetch: int = 1, n_push: int = 1,
                 ps_optimizer: str = "recipe", checkpoint_every: int = 200, address: str | None = None,
                 num_cpus: int | None = None, replica_threads: int = 1, progress: bool = True,
                 callbacks: tuple[Callable, ...] = (), partitions: int = 1):
        check_options(replicas, ps_shards, n_fetch, n_push, ps_optimizer, checkpoint_every)
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ConfigError(f"--partitions: expected an integer >= 1, got {partitions!r}")
        if ps_shards % partitions:
            raise ConfigError(f"--ps-shards {ps_shards}: each of the {partitions} partitions of a replica keeps its "
                              f"own shards; give a multiple of --partitions")
        rec, dataset = setup.recipe, setup.dataset
        self.setup, self.rec, self.dataset, self.run_dir = setup, rec, dataset, setup.run_dir
        self.R, self.S, self.n_fetch, self.n_push = replicas, ps_shards, n_fetch, n_push
        self.ps_optimizer, self.checkpoint_every = ps_optimizer, checkpoint_every
        self.address, self.num_cpus, self.threads = address, num_cpus, replica_threads
        self.progress = progress
        self.model = setup.model
        bn = [n for n, m in self.model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if bn:
            raise ConfigError(f"downpour: batch normalization ({bn[0]}) keeps running statistics per "
                              f"replica that a parameter server does not hold; use norm: none or lcn, "
                              f"or --executor ddp")
        self.params = list(self.model.parameters())
        self.K = partitions
        if partitions == 1:
            self.layout = ShardLayout.plan([p.numel() for p in self.params], ps_shards)
            self.layouts, self.shard_ids = [self.layout], [list(range(ps_shards))]
        else:
            self._plan_partitions(setup, ps_shards)
        # the plan: slot r owns steps 0 .. total[r] - 1 of its own data
        n, t = len(dataset.train), rec.train
        self.slot_n = [len(slot_indices(n, r, replicas)) for r in range(replicas)]
        if min(self.slot_n) == 0:
            raise ConfigError(f"downpour: {replicas} replicas for {n} training examples; use fewer replicas")
        self.nb = [steps_per_epoch(m, t.batch_size, replicas, t.max_steps_per_epoch) for m in self.slot_n]
        extra = t.labeled_per_batch or 0         # labeled examples added to every batch
        self.sizes = [[s + extra for s in batch_sizes(m, t.batch_size, nb)] for m, nb in zip(self.slot_n, self.nb)]
        self.total = [t.epochs * nb for nb in self.nb]
        self.epoch_examples = sum(sum(s) for s in self.sizes)   # examples in one (global) epoch
        self.chunk = [n_push * max(1, math.ceil(nb / CHUNKS_PER_EPOCH / n_push)) for nb in self.nb]
        self.objective = objective_for(rec, dataset)
        self.record = RunRecord(self.run_dir, EarlyStopping.from_spec(t.early_stopping, dataset.is_classification),
                                progress=progress, callbacks=callbacks)
        self.epoch = 0
        self.counters = Counter(replica_failures=0, shard_failures=0, steps_lost=0, duplicate_pushes=0)
        self.events: list[dict[str, Any]] = []
        self.wall_before, self.staleness_all = 0.0, Counter()
        self.position = [0] * self.R
        self.generation = 0

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.record.history

    def _plan_partitions(self, setup: Setup, ps_shards: int) -> None:
        """Model-parallel replicas: each of the K partitions keeps its own parameters (its blocks'
        filters and classifier columns; partition 0 the replicated ones too) on its own S / K shards."""
        from visionnets.distributed.model_parallel import Comm, PartitionedNet

        if self.rec.train.grad_clip is not None:
            raise ConfigError("train.grad_clip: a norm over the whole model is not computed across the partitions "
                              "of a replica; unset it, or use --partitions 1")
        k, per = self.K, ps_shards // self.K
        self.nets = [PartitionedNet(self.model, setup.dataset.input_shape, Comm(w, k)) for w in range(k)]
        self.owned = [[(name, tuple(p.shape)) for name, p in net.owned()] for net in self.nets]
        self.layouts = [ShardLayout.plan([math.prod(shape) for _, shape in own], per) for own in self.owned]
        self.shard_ids = [list(range(w * per, (w + 1) * per)) for w in range(k)]
        self.layout = None

    def _shard_parts(self) -> list[torch.Tensor]:
        """The shards' initial vectors, from the model's weights."""
        if self.K == 1:
            return self.layout.split(torch.nn.utils.parameters_to_vector(self.params).detach())
        whole = {n: p.detach() for n, p in self.model.named_parameters()}
        parts = []
        for net, own, layout in zip(self.nets, self.owned, self.layouts):
            vec = torch.cat([net.local_part(name, whole[name]).reshape(-1) for name, _ in own])
            parts += layout.split(vec.contiguous())
        return parts

    def _load_theta(self) -> None:
        """The parameter server's theta into the driver's model (for evaluation and checkpoints)."""
        answers = [t for _, t in self._from_shards("fetch")]
        with torch.no_grad():
            if self.K == 1:
                torch.nn.utils.vector_to_parameters(self.layout.join(answers), self.params)
                return
            parts = {}
            for w, (own, layout, ids) in enumerate(zip(self.owned, self.layouts, self.shard_ids)):
                flat, at, mine = layout.join([answers[i] for i in ids]), 0, {}
                for name, shape in own:
                    n = math.prod(shape)
                    mine[name] = flat[at:at + n].view(shape)
                    at += n
                parts[w] = mine
            whole = self.nets[0].assemble(parts)
            for name, p in self.model.named_parameters():
                p.copy_(whole[name])

    # ---------------------------------------------------------------- accounting
    def examples_done(self, slot: int, steps: int) -> int:
        """Examples in the first ``steps`` steps of ``slot``."""
        epochs, rest = divmod(steps, self.nb[slot])
        sizes = self.sizes[slot]
        return epochs * sum(sizes) + sum(sizes[:rest])

    def options(self) -> dict[str, Any]:
        return {"replicas": self.R, "ps_shards": self.S, "n_fetch": self.n_fetch, "n_push": self.n_push,
                "ps_optimizer": self.ps_optimizer, "checkpoint_every": self.checkpoint_every, "partitions": self.K}

    def _log(self, kind: str, **info) -> None:
        """A fault and what was done about it: to ``RUN_DIR/events.jsonl`` and the log."""
        event = {"event": kind, "epoch": self.epoch + 1, "wall_s": round(time.perf_counter() - self.wall0, 3), **info}
        self.events.append(event)
        self.run_dir.write_events(self.events)
        message = f"downpour: {kind} " + " ".join(f"{k}={v}" for k, v in info.items())
        if self.progress:
            print(message, flush=True)
        else:
            log.warning(message)

    # ---------------------------------------------------------------- actors
    def _shard_size(self, k: int) -> int:
        w = next(w for w, ids in enumerate(self.shard_ids) if k in ids)
        return self.layouts[w].sizes()[self.shard_ids[w].index(k)]

    def _shard_placement(self, k: int):
        """Shard k on live machine k mod M (machines by address), as DistBelief spreads its
        parameter server. (Ray's soft affinity was seen to put both shards of a two-node cluster
        on one node, so the affinity is hard; a shard restored while its lost machine is still
        listed dies at once and is started again, see ``_started_actor``.)"""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = sorted((n["NodeManagerAddress"], n["NodeID"]) for n in self.ray.nodes() if n.get("Alive"))
        if len(nodes) < 2:
            return "DEFAULT"
        return NodeAffinitySchedulingStrategy(nodes[k % len(nodes)][1], soft=False)

    def _new_shard(self, k: int, theta: torch.Tensor | None, restore: bool):
        t = self.rec.train
        return self._Shard.options(scheduling_strategy=self._shard_placement(k)).remote(
            k, theta if theta is not None else torch.zeros(self._shard_size(k)), t.optimizer.model_dump(),
            kind=self.ps_optimizer, schedule=t.schedule.model_dump(), steps_per_epoch=sum(self.nb), epochs=t.epochs,
            checkpoint=str(self.run_dir.ps_dir / f"shard-{k}.safetensors"), checkpoint_every=self.checkpoint_every,
            restore=restore)

    def _new_replica(self, r: int):
        ds = self.dataset
        about = {"input_shape": ds.input_shape, "num_classes": ds.num_classes, "tasks": ds.tasks,
                 "modalities": ds.modalities}
        if self.K == 1:
            return self._Replica.remote(r, self.rec.to_dict(), self._train_ref, about, self.R, self.layout.to_dict(),
                                        self.shards, self.n_fetch, self.n_push, self.threads)
        actors = [self._Replica.remote(r, self.rec.to_dict(), self._train_ref, about, self.R, self.layouts[w].to_dict(),
                                       self.shards, self.n_fetch, self.n_push, self.threads, (w, self.K),
                                       self.shard_ids[w]) for w in range(self.K)]
        try:
            address, port = self.ray.get(actors[0].rendezvous.remote())
            self.ray.get([a.join.remote(address, port) for a in actors])       # the K workers form one group
        except BaseException:
            for actor in actors:
                self.ray.kill(actor)
            raise
        return ReplicaGroup(actors, self._combine)

    def _started_actor(self, make: Callable, what: str):
        """A new actor and its first answer. One placed on a node that is dying (lost, not yet
        declared dead by the cluster) dies before it starts: make another, a few times."""
        errors = (self.ray.exceptions.RayActorError, self.ray.exceptions.GetTimeoutError)
        for attempt in range(1, ACTOR_ATTEMPTS + 1):
            handle = None
            try:
                handle = make()
                return handle, self.ray.get(handle.ping.remote(), timeout=120)
            except errors as exc:
                for actor in _actors(handle) if handle is not None else []:
                    self.ray.kill(actor)
                if attempt == ACTOR_ATTEMPTS:
                    raise TrainingError(f"downpour: {what} could not be started on the cluster "
                                        f"({ACTOR_ATTEMPTS} tries): {str(exc).splitlines()[0]}") from None
                self._log("actor_retried", what=what, attempt=attempt)
                time.sleep(2.0 * attempt)

    def _alive(self, handle) -> bool:
        try:
            self.ray.get(handle.ping.remote(), timeout=60)
            return True
        except (self.ray.exceptions.RayActorError, self.ray.exceptions.GetTimeoutError):
            return False

    def _from_shards(self, method: str) -> list:
        """``method`` of every shard; a dead shard is restored once and asked again."""
        try:
            return self.ray.get([getattr(s, method).remote() for s in self.shards])
        except self.ray.exceptions.RayActorError:
            if not self._restore_dead_shards():
                raise
            return self.ray.get([getattr(s, method).remote() for s in self.shards])

    def _ledgers(self) -> list[dict[int, int]]:
        return self._from_shards("ledger_view")

    # ---------------------------------------------------------------- faults
    def _restore_dead_shards(self) -> list[int]:
        """Restore every dead shard from its checkpoint and tell the replicas; their indices."""
        restored = []
        for k, s in enumerate(self.shards):
            if not self._alive(s):
                if not (self.run_dir.ps_dir / f"shard-{k}.safetensors").is_file():
                    raise TrainingError(f"downpour: shard {k} died before its first checkpoint "
                                        f"(set checkpoint_every lower); cannot restore it") from None
                self.shards[k], version = self._started_actor(lambda: self._new_shard(k, None, restore=True),
                                                              f"shard {k}")
                self.counters["shard_failures"] += 1
                restored.append(k)
                self._log("shard_restored", shard=k, from_version=version)
        if restored:   # chunks started before this are stale: their slots are rewound when they end
            self.generation += 1
            for rep in self.replicas:
                rep.set_shards.remote(self.shards)
        return restored

    def _recover(self, slot: int, exc: Exception, stale: bool) -> None:
        """A chunk of ``slot`` failed: restore dead shards from their checkpoints, replace a dead
        replica. A failure with no dead actor is a real error, raised (unless the chunk was
        started before a shard was restored: it then failed on that shard's rolled-back ledger)."""
        restored = self._restore_dead_shards()
        replaced = not self._alive(self.replicas[slot])
        if replaced:
            for actor in _actors(self.replicas[slot]):       # a split replica is replaced whole
                self.ray.kill(actor)
            self.replicas[slot], _ = self._started_actor(lambda: self._new_replica(slot), f"replica {slot}")
            self.counters["replica_failures"] += 1
            self._log("replica_replaced", slot=slot)
        if not restored and not replaced and not stale:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, VisionnetsError):
                raise cause
            raise TrainingError(f"downpour: replica {slot} failed and no actor died: {exc}") from None

    def _rewind(self, slot: int, end: int) -> None:
        """Continue ``slot`` from the steps every shard has applied; count the rest as lost."""
        applied = min(led.get(slot, 0) for led in self._ledgers())
        lost = max(max(end, self.position[slot]) - applied, 0)
        if lost:
            self.counters["steps_lost"] += lost
            self._log("steps_lost", slot=slot, steps=lost, resume_step=applied)
        self.position[slot] = applied

    # ---------------------------------------------------------------- epochs
    def _split_means(self, split: str) -> dict[str, float | None]:
        t = self.rec.train
        return tally_split(self.model, self.objective, self.dataset.split(split), t.eval_batch_size,
                           precision=t.precision, channels_last=t.channels_last).means()

    def _epoch_end(self, window: Tally, t_window: float) -> bool:
        self.epoch += 1
        saved = self._from_shards("checkpoint")
        stats = self._from_shards("take_stats")
        self._load_theta()
        hist = Counter()
        for st in stats:
            hist.update({int(k): v for k, v in st["staleness"].items()})
        self.staleness_all.update(hist)
        self.counters["duplicate_pushes"] = sum(st["dropped"] for st in stats)
        train_seconds = time.perf_counter() - t_window
        t = self.rec.train
        evaluation = evaluation_record(self._split_means, self.dataset, self.epoch, t.epochs, t.eval_test_each_epoch,
                                       self.record.early)
        wall_s = self.wall_before + time.perf_counter() - self.wall0
        seen = sum(self.examples_done(r, p) for r, p in enumerate(self.position))
        executor = {"name": "downpour", "updates": [st["version"] for st in stats], **staleness_stats(hist),
                    **{f"total_{k}": v for k, v in staleness_stats(self.staleness_all).items()}, **self.counters}
        record = epoch_record(epoch=self.epoch, step=sum(self.position), lr=stats[0]["lr"], train=window,
                              train_seconds=train_seconds, evaluation=evaluation,
                              seconds=time.perf_counter() - t_window, wall_s=wall_s, examples_seen=seen,
                              executor=executor)
        state = {"epoch": self.epoch, "step": record["step"], "seed": self.rec.seed, "executor": "downpour",
                 "positions": [min(s["ledger"].get(r, 0) for s in saved) for r in range(self.R)],
                 "wall_s": wall_s, "examples_seen": seen,
                 "staleness_all": {str(k): v for k, v in self.staleness_all.items()}, "counters": dict(self.counters)}
        return self.record.close_epoch(self, record, self.model, None, state)

    # ---------------------------------------------------------------- the run
    def fit(self) -> dict[str, Any]:
        """Run to the end of the plan (or early stopping); the best epoch's record."""
        local_cpus = self.num_cpus or max(os.cpu_count() or 1, self.R * self.K) if self.address is None else None
        self.ray, self._started = start_ray(self.address, local_cpus)
        ray = self.ray
        cpus = ray.cluster_resources().get("CPU", 0)
        if cpus < self.R * self.K:
            if self._started:
                ray.shutdown()
            what = f"{self.R} replicas" + (f" of {self.K} partitions" if self.K > 1 else "")
            raise ConfigError(f"downpour: {what} need one Ray CPU each; the Ray cluster has {cpus:g} "
                              f"(start it with more, or use fewer --replicas)")
        self.wall0 = time.perf_counter()
        if self.setup.resume:
            self._resume_state()
        self.run_dir.write_executor("downpour", self.options(),
                                    layout_sizes=[self._shard_size(k) for k in range(self.S)])
        self._Shard = ray.remote(num_cpus=0)(ParameterShard)
        self._Replica = ray.remote(num_cpus=1)(Replica)
        self._combine = ray.remote(num_cpus=0)(_first)
        try:
            parts = self._shard_parts()
            self.shards = [self._new_shard(k, None if self.setup.resume else parts[k], restore=self.setup.resume)
                           for k in range(self.S)]
            if self.setup.resume:
                ledgers = self._ledgers()
                self.position = [min(led.get(r, 0) for led in ledgers) for r in range(self.R)]
            self._train_ref = ray.put({k: v.numpy() for k, v in self.dataset.train.fields().items()})
            self.replicas = [self._new_replica(r) for r in range(self.R)]
            self._loop()
        finally:
            for h in [a for r in getattr(self, "replicas", []) for a in _actors(r)] + getattr(self, "shards", []):
                ray.kill(h)
            if self._started:
                ray.shutdown()
        self.record.load_best(self.model)
        return self.record.final()

    def _resume_state(self) -> None:
        last = self.run_dir.checkpoint("last")
        state = read_checkpoint(last)[1]["state"]
        if state.get("executor") != "downpour":
            raise CheckpointError(f"{last}: not written by the downpour executor")
        if len(state["positions"]) != self.R:
            raise ConfigError(f"{self.run_dir.path}: the run has {len(state['positions'])} replicas (each reads "
                              f"its own part of the data); resume it with --replicas {len(state['positions'])}")
        files = sorted(self.run_dir.ps_dir.glob("shard-*.safetensors"))
        if len(files) != self.S:
            raise ConfigError(f"{self.run_dir.ps_dir}: holds {len(files)} shard checkpoints; "
                              f"resume with --ps-shards {len(files)}")
        self.epoch = state["epoch"]
        self.record.restore(state)
        self.wall_before = state["wall_s"]
        self.staleness_all = Counter({int(k): v for k, v in state["staleness_all"].items()})
        self.counters.update({k: v for k, v in state["counters"].items() if k != "duplicate_pushes"})

    def _submit(self, slot: int, inflight: dict) -> None:
        first = self.position[slot]
        if first >= self.total[slot]:
            return
        nb, chunk = self.nb[slot], self.chunk[slot]
        e_start = first // nb * nb      # chunks end at the replica's epoch ends (and every `chunk` steps)
        end = min(e_start + ((first - e_start) // chunk + 1) * chunk, e_start + nb)
        inflight[self.replicas[slot].run.remote(first, end)] = (slot, first, end, self.generation)

    def _rewind_idle(self, restores: int, inflight: dict) -> None:
        """After a shard was restored, slots with no chunk in flight redo what it lost."""
        if self.generation == restores:
            return
        busy = {v[0] for v in inflight.values()}
        for r in range(self.R):
            if r not in busy:
                self._rewind(r, self.position[r])
                self._submit(r, inflight)

    def _loop(self) -> None:
        ray = self.ray
        bar = None
        total_examples = sum(self.examples_done(r, t) for r, t in enumerate(self.total))
        done_examples = lambda: sum(self.examples_done(r, p) for r, p in enumerate(self.position))  # noqa: E731
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total_examples, initial=done_examples(), unit="ex", leave=False, disable=None,
                       dynamic_ncols=True, desc=f"downpour R={self.R} S={self.S}")
        inflight: dict = {}
        for r in range(self.R):
            self._submit(r, inflight)
        window, t_window = Tally(), time.perf_counter()
        stop = False
        try:
            while inflight and not stop:
                ready, _ = ray.wait(list(inflight), num_returns=1)
                slot, first, end, generation = inflight.pop(ready[0])
                before = done_examples()
                stale, restores = generation != self.generation, self.generation
                try:
                    report = ray.get(ready[0])
                except ray.exceptions.RayError as exc:
                    report = None
                    self._recover(slot, exc, stale)
                if report is not None:
                    window.merge(report["totals"])
                if report is None or stale:
                    self._rewind(slot, end)
                else:
                    self.position[slot] = end
                self._submit(slot, inflight)
                self._rewind_idle(restores, inflight)
                if bar is not None:
                    bar.update(done_examples() - before)
                    if report is not None:
                        loss, n = report["totals"]["loss"]
                        bar.set_postfix({"loss": f"{loss / max(n, 1):.4f}", "epoch": self.epoch + 1}, refresh=False)
                while not stop and done_examples() >= (self.epoch + 1) * self.epoch_examples:
                    restores = self.generation
                    stop = self._epoch_end(window, t_window)
                    self._rewind_idle(restores, inflight)
                    window, t_window = Tally(), time.perf_counter()
            if not stop and self.epoch < self.rec.train.epochs:
                raise TrainingError(f"downpour: work ran out at epoch {self.epoch} of {self.rec.train.epochs}")
        finally:
            if bar is not None:
                bar.close()
        if not stop:   # the accounting: every planned step applied exactly once by every shard
            ledgers = self.final_ledgers = self._ledgers()
            for k, led in enumerate(ledgers):
                applied = [led.get(r, 0) for r in range(self.R)]
                if applied != self.total:
                    raise TrainingError(f"downpour: shard {k} applied {applied} steps per replica, "
                                        f"expected {self.total}")


@EXECUTORS.register("downpour")
def fit_downpour(setup: Setup, *, progress: bool = True, callbacks: tuple = (), replicas: int = 2,
                 ps_shards: int | None = None, n_fetch: int = 1, n_push: int = 1, ps_optimizer: str = "recipe",
                 checkpoint_every: int = 200, address: str | None = None, num_cpus: int | None = None,
                 replica_threads: int = 1, partitions: int = 1) -> tuple[dict, list]:
    """The ``downpour`` executor: R ``replicas`` against ``ps_shards`` S parameter-server shards;
    fetch every ``n_fetch`` and push every ``n_push`` steps; the shards' optimizer (``recipe`` or
    ``adagrad``); a shard checkpoint every ``checkpoint_every`` updates; a Ray cluster at
    ``address`` (default: a local Ray on loopback with ``num_cpus``, default max(cores, R x K));
    ``replica_threads`` torch threads per replica (per worker); each replica split into
    ``partitions`` K model-parallel workers (Ray actors forming one torch.distributed group), each
    fetching and pushing only its own parameters on its own S / K shards (``ps_shards``: default K)."""
    if setup.recipe.train.freeze:
        raise ConfigError("train.freeze: the downpour executor's shards update every parameter they hold; train "
                          "frozen modules with --executor local or ddp")
    driver = Downpour(setup, replicas=replicas, ps_shards=ps_shards or partitions, n_fetch=n_fetch, n_push=n_push,
                      ps_optimizer=ps_optimizer, checkpoint_every=checkpoint_every, address=address,
                      num_cpus=num_cpus, replica_threads=replica_threads, progress=progress, callbacks=callbacks,
                      partitions=partitions)
    return driver.fit(), driver.history
