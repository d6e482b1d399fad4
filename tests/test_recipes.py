"""Recipe validation: unknown keys, wrong types, missing keys and overrides fail with the key path."""

import pytest
import yaml

from visionnets.errors import ConfigError
from visionnets.recipes import apply_overrides, bundled_recipes, load_recipe

REQUIRED = {"le2012_faces", "le2012_cifar", "mnist_convnet_pretrained", "le2012", "mnist_semisup100", "cifar10_semisup4000", "multimnist_multitask", "faces_multitask", "avmnist_multimodal", "digits_convnet", "cosine", "mnist_linear", "mnist_logistic", "mnist_mlp800", "mnist_convnet"}


def test_bundled_recipes_are_present_and_valid():
    names = set(bundled_recipes())
    assert REQUIRED <= names
    for name in names:
        assert load_recipe(name).name == name


def test_override_types_are_parsed_as_yaml():
    r = load_recipe("digits_convnet", ["train.epochs=3", "model.hidden=[16, 8]", "train.optimizer.lr=0.5",
                                       "model.stages.0.channels=4"])
    assert r.train.epochs == 3 and r.model["hidden"] == [16, 8] and r.train.optimizer.lr == 0.5
    assert r.model["stages"][0]["channels"] == 4


@pytest.mark.parametrize("override, message", [
    ("train.epoch=3", r"train\.epoch: unknown key"),
    ("train.epochs=many", r"train\.epochs: .*integer"),
    ("train.epochs=0", r"train\.epochs: .*greater than or equal to 1"),
    ("train.optimizer.name=lbfgs", r"train\.optimizer\.name: .*'sgd'"),
    ("model.stages.7.channels=3", r"no list item '7'"),
    ("epochs", r"expected KEY=VALUE"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe("digits_convnet", [override])


def test_missing_key_and_bad_yaml_name_the_file(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump({"name": "x"}))
    with pytest.raises(ConfigError, match=rf"{p}: model: missing required key"):
        load_recipe(p)
    p.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=rf"{p}: line \d+: not valid YAML"):
        load_recipe(p)
    p.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_recipe(p)


def test_unknown_recipe_lists_bundled():
    with pytest.raises(ConfigError, match="digits_convnet"):
        load_recipe("no_such_recipe")


def test_apply_overrides_creates_sections():
    raw = {"name": "x"}
    apply_overrides(raw, ["pretrain.epochs=2"])
    assert raw["pretrain"] == {"epochs": 2}
