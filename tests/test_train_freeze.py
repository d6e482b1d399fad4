"""``train.freeze``: modules left out of the supervised training (a linear classifier on frozen,
pretrained features), in every executor that can honour it, and a clear error in those that cannot."""

import pytest
import torch

from visionnets import api
from visionnets.errors import ConfigError
from visionnets.recipes import load_recipe
from visionnets.train.checkpoint import load_checkpoint
from visionnets.train.setup import build_data, build_model_for

TINY = ["train.epochs=1", "data.options.subsample=300", "model.hidden=[16]"]


def _initial(overrides):
    rec = load_recipe("digits_convnet", overrides)
    return build_model_for(rec, build_data(rec, None)).state_dict()


def _trained(run_dir):
    rec = load_recipe(run_dir / "recipe.yaml")
    model = build_model_for(rec, build_data(rec, None))
    load_checkpoint(run_dir / "checkpoints" / "last.safetensors", model)
    return model.state_dict()


@pytest.mark.parametrize("executor", ["local", "ddp"])
def test_frozen_modules_keep_their_initial_weights_and_the_rest_trains(tmp_path, executor):
    overrides = [*TINY, "train.epochs=3", "train.freeze=[stage1, stage2]"]
    options = {"workers": 2} if executor == "ddp" else {}
    r = api.train("digits_convnet", overrides, out=tmp_path / "run", progress=False, figures=False,
                  executor=executor, **options)
    before, after = _initial(overrides), _trained(r.run_dir)
    for name, w in before.items():
        same = torch.equal(w, after[name])
        assert same == name.startswith(("stage1.", "stage2.")), name
    losses = [h["train_loss"] for h in r.history]            # the classifier learns on the frozen features
    assert losses[-1] < losses[0] - 0.05, losses


def test_the_optimizer_holds_only_what_trains():
    from visionnets.train.trainer import Trainer

    rec = load_recipe("digits_convnet", [*TINY, "train.freeze=[stage1]"])
    ds = build_data(rec, None)
    model = build_model_for(rec, ds)
    t = Trainer(model, lambda m, b: None, ds)
    held = {id(p) for g in t.optimizer.param_groups for p in g["params"]}
    assert held == {id(p) for n, p in model.named_parameters() if not n.startswith("stage1.")}


def test_pretraining_still_trains_frozen_stages(tmp_path):
    overrides = [*TINY, "train.freeze=[stage1, stage2]", "pretrain={method: stages, epochs: 1, lr: 0.01}"]
    r = api.train("digits_convnet", overrides, out=tmp_path / "run", progress=False, figures=False)
    before, after = _initial(overrides), _trained(r.run_dir)
    assert not torch.equal(before["stage1.filter.weight"], after["stage1.filter.weight"])   # pretrained
    rec = load_recipe(r.run_dir / "recipe.yaml")
    model = build_model_for(rec, build_data(rec, None))
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["classifier.fc1.weight", "classifier.fc1.bias",
                                                                           "classifier.out.weight", "classifier.out.bias"]


def test_bad_freeze_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"train.freeze: the model has no module 'stage9'; its top-level modules "
                                          r"are stage1, stage2, classifier"):
        api.train("digits_convnet", [*TINY, "train.freeze=[stage9]"], out=tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="train.freeze: stage1, stage2, classifier leave no parameter to train"):
        api.train("digits_convnet", [*TINY, "train.freeze=[stage1, stage2, classifier]"], out=tmp_path / "b",
                  progress=False)


@pytest.mark.parametrize("executor", ["downpour", "model_parallel"])
def test_executors_that_update_every_parameter_refuse_it(tmp_path, executor):
    with pytest.raises(ConfigError, match=f"train.freeze: the {executor.replace('_', '-')}"):
        api.train("digits_convnet", [*TINY, "train.freeze=[stage1]"], out=tmp_path / "a", progress=False,
                  executor=executor)


def test_le2012_cifar_freezes_to_a_linear_classifier_on_its_stages():
    from visionnets.data.base import Dataset, Split

    rec = load_recipe("le2012_cifar", ["train.freeze=[stage1, stage2, stage3]"])
    x, y = torch.rand(4, 3, 32, 32), torch.arange(4)
    ds = Dataset("cifar10", Split(x, y), None, Split(x, y), (3, 32, 32), 10)
    model = build_model_for(rec, ds)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["out.weight", "out.bias"]
    assert model(x).shape == (4, 10)
