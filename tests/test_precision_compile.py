"""train.precision: bf16 and train.compile: true reach the fp32 eager result; every executor honours them."""

import warnings

import pytest
import torch

from visionnets import api
from visionnets.train import step as step_mod

QUICK = ["model={name: mlp, hidden: [64], activation: relu}", "data.augment=[]", "train.epochs=4",
         "train.batch_size=64", "train.max_steps_per_epoch=20", "train.optimizer={name: adam, lr: 0.003}",
         "threads=1"]


def run(tmp_path, name, *extra):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return api.train("digits_convnet", [*QUICK, *extra], out=tmp_path / name, progress=False, figures=False)


def test_bf16_and_compiled_training_reach_the_fp32_eager_result(tmp_path):
    ref = run(tmp_path, "fp32")
    for name, extra in (("bf16", "train.precision=bf16"), ("compiled", "train.compile=true")):
        got = run(tmp_path, name, extra)
        for a, b in zip(got.history, ref.history):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=0.1, abs=0.02), name
        assert abs(got.final["test_error"] - ref.final["test_error"]) <= 0.03, name
        assert got.final["test_error"] < 0.2, name


def test_bf16_autocasts_the_forward_only_where_it_is_fast(monkeypatch):
    seen = []
    net = torch.nn.Linear(4, 3)

    def objective(module, batch):
        seen.append(module(batch["x"]).dtype)
        return step_mod.Output(loss=module(batch["x"]).float().pow(2).mean(), outputs=None, metrics={})

    from visionnets.data.batch import Batch

    batch = Batch(x=torch.randn(8, 4), y=torch.zeros(8, dtype=torch.long))
    monkeypatch.setattr(step_mod, "fast_bf16", lambda device_type: True)
    step_mod.train_step(net, objective, batch, seed=0, stream=0, step=0, params=list(net.parameters()),
                        precision="bf16")
    assert seen[-1] == torch.bfloat16 and net.weight.grad.dtype == torch.float32    # fp32 master weights
    monkeypatch.setattr(step_mod, "fast_bf16", lambda device_type: False)
    step_mod._warn_once.cache_clear()
    with pytest.warns(RuntimeWarning, match="no fast path"):
        step_mod.train_step(net, objective, batch, seed=0, stream=0, step=0, params=list(net.parameters()),
                            precision="bf16")
    assert seen[-1] == torch.float32


def test_a_model_that_cannot_compile_falls_back_to_eager_with_a_warning():
    def fails(*args, **kwargs):
        raise RuntimeError("backend compiler failed")

    step_mod._warn_once.cache_clear()
    m = step_mod.for_training(torch.nn.Linear(3, 2), compile=True)
    m.compiled = fails                                   # as a compiler error would, at the first call
    with pytest.warns(RuntimeWarning, match="training eagerly"):
        y = m(torch.ones(1, 3))
    assert y.shape == (1, 2) and m.failed and m.weight.shape == (2, 3)   # attributes are the module's
    assert m(torch.ones(4, 3)).shape == (4, 2)                            # eager from then on


@pytest.mark.parametrize("executor", ["ddp", "downpour"])
def test_every_executor_honours_precision_and_compile(tmp_path, executor):
    opts = {"workers": 2} if executor == "ddp" else {"replicas": 2, "ps_shards": 1}
    r = api.train("digits_convnet", [*QUICK, "train.epochs=1", "train.precision=bf16", "train.compile=true"],
                  out=tmp_path / executor, progress=False, figures=False, executor=executor, **opts)
    assert r.final["test_error"] < 0.5


def test_channels_last_trains_the_same_net_in_nhwc_memory(tmp_path):
    """train.channels_last: the conv weights and the batches the model sees are NHWC; the run
    equals the NCHW run up to float32 rounding."""
    conv = ["model={name: convnet, stages: [{layer: conv, channels: 8, kernel: 3, rectify: relu, pool: max, "
            "pool_size: 2, norm: batch}, {layer: conv, channels: 8, kernel: 2, rectify: relu}], hidden: [32]}",
            "train.epochs=2"]
    ref = run(tmp_path, "nchw", *conv)
    seen = []
    got = api.train("digits_convnet", [*QUICK, *conv, "train.channels_last=true"], out=tmp_path / "nhwc",
                    progress=False, figures=False,
                    callbacks=(lambda trainer, record: seen.append(trainer.model),))
    weight = next(p for p in seen[0].parameters() if p.dim() == 4 and p.shape[1] > 1)
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    for a, b in zip(got.history, ref.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)
    assert got.final["test_error"] == pytest.approx(ref.final["test_error"], abs=0.01)


def test_train_step_hands_the_model_nhwc_batches():
    from visionnets.data.batch import Batch
    from visionnets.objectives import Supervised

    shapes = []
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 2, 3), torch.nn.Flatten(), torch.nn.Linear(2 * 6 * 6, 3))
    net[0].register_forward_pre_hook(lambda m, args: shapes.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    batch = Batch(x=torch.randn(4, 2, 8, 8), y=torch.tensor([0, 1, 2, 0]))
    for cl in (False, True):
        step_mod.train_step(net, Supervised(), batch, seed=0, stream=0, step=0, params=list(net.parameters()),
                            channels_last=cl)
    assert shapes == [False, True]
