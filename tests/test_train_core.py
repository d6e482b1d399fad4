"""The one training core: the step, the seeds, the records, and every executor writing the same run."""

import pytest
import torch

from visionnets import api
from visionnets.data.batch import Batch
from visionnets.errors import DataError, TrainingError
from visionnets.objectives import OBJECTIVES, Output, Supervised
from visionnets.train.record import EarlyStopping, Tally, final_record
from visionnets.train.seeds import shuffle_seed, step_seeds
from visionnets.train.step import train_step

TINY = ["model.stages=[{channels: 4, kernel: 3, padding: same}]", "model.hidden=[16]", "model.dropout=0",
        "data.augment=[]", "train.batch_size=50", "train.schedule.warmup_epochs=0", "train.epochs=1"]


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(8, 3))


def _batch():
    g = torch.Generator().manual_seed(1)
    return Batch(x=torch.randn(5, 6, generator=g), y=torch.tensor([0, 1, 2, 1, 0]))


def _shift(x, generator):
    return x + torch.rand(x.shape, generator=generator)


def test_step_equals_a_plain_fprop_bprop_with_the_step_seeds():
    net, batch = _net(), _batch()
    params = list(net.parameters())
    out = train_step(net, Supervised(), batch, seed=3, stream=1, step=7, params=params, augment=_shift)
    grads = [p.grad.clone() for p in params]

    ref = _net()
    aug_seed, fwd_seed = step_seeds(3, 1, 7)
    x = batch["x"] + torch.rand(batch["x"].shape, generator=torch.Generator().manual_seed(aug_seed))
    torch.default_generator.manual_seed(fwd_seed)
    loss = torch.nn.functional.cross_entropy(ref(x), batch["y"])
    loss.backward()
    assert out.loss.item() == pytest.approx(loss.item(), abs=0)
    for g, p in zip(grads, ref.parameters()):
        assert torch.equal(g, p.grad)
    # the same step again draws the same numbers; another step other ones
    again = train_step(net, Supervised(), batch, seed=3, stream=1, step=7, params=params, augment=_shift)
    other = train_step(net, Supervised(), batch, seed=3, stream=1, step=8, params=params, augment=_shift)
    assert again.loss.item() == out.loss.item() != other.loss.item()


def test_step_clips_and_stops_on_a_non_finite_loss():
    net, batch = _net(), _batch()
    params = list(net.parameters())
    train_step(net, Supervised(), batch, seed=0, stream=0, step=0, params=params, grad_clip=1e-3)
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
    assert norm.item() == pytest.approx(1e-3, rel=1e-4)

    def nan(model, b):
        out = Supervised()(model, b)
        return out._replace(loss=out.loss * float("nan"))

    with pytest.raises(TrainingError, match="loss became nan at replica 2, its step 5"):
        train_step(net, nan, batch, seed=0, stream=0, step=5, params=params, where="replica 2, its step 5")


def test_seeds_are_distinct_across_streams_steps_and_uses():
    seen = {s for stream in range(4) for step in range(100) for s in step_seeds(0, stream, step)}
    assert len(seen) == 800
    assert len({shuffle_seed(s, e) for s in range(5) for e in range(5)}) == 25


def test_batch_contract():
    b = _batch()
    assert b.size == 5 and len(b) == 2 and b.select(slice(0, 2)).size == 2
    with pytest.raises(DataError, match="batch field 'y' has 3 rows but 'x' has 5"):
        Batch(x=torch.zeros(5, 2), y=torch.zeros(3))
    with pytest.raises(DataError, match="batch has no field 'u'; it holds: x, y"):
        b["u"]


def test_tally_merges_and_averages_by_count():
    a, b = Tally(), Tally()
    a.add(Output(torch.tensor(2.0), {}, {"error": (torch.tensor(1), 4)}), 4)
    b.merge({"loss": (2.0, 2.0), "error": (1.0, 2.0)})
    a.merge(b.totals())
    assert a.means() == {"error": pytest.approx(2 / 6), "loss": pytest.approx(10 / 6)}
    assert a.examples == 6


def test_early_stopping_state_round_trips_and_final_record():
    early = EarlyStopping(patience=3, metric="val_loss")
    for e, v in enumerate([1.0, 0.5, 0.7], 1):
        early.update({"epoch": e, "val_loss": v})
    again = EarlyStopping(patience=3, metric="val_loss")
    again.load_state(early.state())
    assert again.update({"epoch": 4, "val_loss": 0.6}) == (False, False)
    assert again.update({"epoch": 5, "val_loss": 0.9}) == (False, True)
    history = [{"epoch": e, "train_seconds": 1.0} for e in (1, 2, 3)]
    assert final_record(history, 2) == {"epoch": 2, "train_seconds": 1.0, "epochs_run": 3, "train_seconds_total": 3.0}


def test_test_split_measured_only_where_a_result_needs_it(tmp_path):
    """eval_test_each_epoch=false: the test split after epochs that improve validation and after
    the last; the kept (best-validation) epoch has its test error, equal to evaluating its weights."""
    from types import SimpleNamespace

    from visionnets.train.record import evaluation_record

    calls = []

    def evaluate(split):
        calls.append(split)
        return {"loss": 1.0, "error": {"val": vals[len([c for c in calls if c == "val"]) - 1], "test": 0.3}[split]}

    data, early, vals = SimpleNamespace(val=object(), test=object()), EarlyStopping(metric="val_error"), [0.5, 0.6, 0.4, 0.45]
    measured = []
    for epoch in range(1, 5):
        rec = {"epoch": epoch, **evaluation_record(evaluate, data, epoch, 4, test_each_epoch=False, early=early)}
        measured.append(rec["test_error"] is not None)
        early.update(rec)
    assert measured == [True, False, True, True]                 # improved, worse, improved, the last
    no_val = SimpleNamespace(val=None, test=object())
    assert evaluation_record(evaluate, no_val, 1, 2, False, EarlyStopping())["test_error"] is None
    assert evaluation_record(evaluate, no_val, 2, 2, False, EarlyStopping())["test_error"] == 0.3
    r = api.train("digits_convnet", TINY + ["train.epochs=4", "train.eval_test_each_epoch=false"],
                  out=tmp_path / "run", progress=False, figures=False)
    for h in r.history:
        assert (h["test_error"] is not None) == (h["best_epoch"] == h["epoch"] or h["epoch"] == 4)
    assert r.final["test_error"] == pytest.approx(api.evaluate(api.load_run(r.run_dir), "test")["error"])


@OBJECTIVES.register("supervised_with_margin_test")
class _WithMargin(Supervised):
    """The supervised objective and one more metric: the mean top score."""

    def __call__(self, model, batch):
        out = super().__call__(model, batch)
        top = out.outputs["scores"].detach().max(1).values
        return out._replace(metrics={**out.metrics, "top_score": (top.sum(), len(top))})


def test_metrics_an_objective_names_are_recorded_for_every_split(tmp_path):
    r = api.train("digits_convnet", TINY + ["objective.name=supervised_with_margin_test"], out=tmp_path / "run",
                  progress=False)
    rec = r.history[0]
    assert {"train_top_score", "val_top_score", "test_top_score"} <= set(rec)
    assert rec["train_top_score"] > 0
    assert "test_top_score" in (r.run_dir / "report.html").read_text()


def test_local_ddp_and_downpour_write_the_same_records(ray_session, tmp_path):
    runs = {
        "local": api.train("digits_convnet", TINY, out=tmp_path / "local", progress=False, figures=False),
        "ddp": api.train("digits_convnet", TINY, executor="ddp", workers=1, out=tmp_path / "ddp",
                         progress=False, figures=False),
        "downpour": api.train("digits_convnet", TINY, executor="downpour", replicas=1, n_fetch=1, n_push=1,
                              out=tmp_path / "downpour", progress=False, figures=False),
    }
    rows = {name: r.run_dir.joinpath("metrics.jsonl").read_text() for name, r in runs.items()}
    records = {name: api.load_run(r.run_dir).history for name, r in runs.items()}
    assert all(rows.values())
    keys = {name: set(h[0]) for name, h in records.items()}
    assert keys["ddp"] == keys["local"] == keys["downpour"]
    assert {h[0]["executor"]["name"] for h in records.values()} == {"local", "ddp", "downpour"}
    loss = records["local"][0]["train_loss"]
    assert records["ddp"][0]["train_loss"] == pytest.approx(loss, abs=1e-5)
    assert records["downpour"][0]["train_loss"] == pytest.approx(loss, abs=1e-6)
