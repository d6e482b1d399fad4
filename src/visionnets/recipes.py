"""Recipes: one YAML file describes one experiment; a schema checks it before anything runs.

A recipe has the sections ``data``, ``model``, ``objective``, ``train`` and optionally
``pretrain``. Any key can be overridden from the command line with ``--set a.b=value``
(``value`` is read as YAML, so ``--set train.epochs=3``, ``--set model.hidden=[64,64]`` and
``--set model.stages.0.channels=16`` work). An unknown key, a wrong type or a missing key
fails with the key path and what was expected::

    >>> load_recipe("digits_convnet", ["train.epochs=2"]).train.epochs
    2
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from visionnets.errors import ConfigError, did_you_mean, per_stage

BUNDLED = Path(__file__).parent / "recipes"
PosInt = Annotated[int, Field(ge=1)]
PosFloat = Annotated[float, Field(gt=0)]
NonNeg = Annotated[float, Field(ge=0)]
Spec = str | dict[str, Any]  # a transform / augmentation: a name or {name: ..., **kwargs}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSection(_Section):
    name: str = "digits"
    val_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.1
    seed: int = 0
    labels_per_class: PosInt | None = None   # keep that many training labels per class, the rest unlabeled
    input_shape: list[PosInt] | None = None  # one input's shape, known in advance: `plan` needs no data
    transforms: list[Spec] = []
    augment: list[Spec] = []
    options: dict[str, Any] = {}


class ObjectiveSection(_Section):
    name: str = "supervised"
    loss: str = "cross_entropy"
    options: dict[str, Any] = {}


class OptimizerSection(_Section):
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: PosFloat = 0.01
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    nesterov: bool = False
    weight_decay: NonNeg = 0.0
    betas: tuple[float, float] = (0.9, 0.999)


class ScheduleSection(_Section):
    name: Literal["none", "step", "multistep", "cosine"] = "none"
    step_size: PosInt = 10
    milestones: list[PosInt] = []
    gamma: PosFloat = 0.1
    warmup_epochs: NonNeg = 0.0
    min_lr: NonNeg = 0.0
    restarts: list[PosInt] = []   # cosine: a new cycle starts at each of these epochs (what --extend adds)


class EarlyStoppingSection(_Section):
    patience: PosInt | None = None
    metric: Literal["val_error", "val_loss"] | None = None  # default: val_error, or val_loss for regression
    min_delta: NonNeg = 0.0


class TrainSection(_Section):
    epochs: PosInt = 10
    batch_size: PosInt = 64
    eval_batch_size: PosInt = 1000
    optimizer: OptimizerSection = OptimizerSection()
    schedule: ScheduleSection = ScheduleSection()
    early_stopping: EarlyStoppingSection = EarlyStoppingSection()
    grad_clip: PosFloat | None = None
    precision: Literal["fp32", "bf16"] = "fp32"   # bf16: the forward under bfloat16 autocast (fast bf16 only)
    compile: bool = False                          # the training step's forward under torch.compile
    channels_last: bool = False                    # images and conv weights in NHWC memory (oneDNN's own layout)
    max_steps_per_epoch: PosInt | None = None
    eval_test_each_epoch: bool = True              # false: test only after epochs that improve validation, and the last
    checkpoint_every_steps: PosInt | None = None   # also checkpoint inside an epoch, every this many steps
    labeled_per_batch: PosInt | None = None        # add this many labeled examples to every batch
    freeze: list[str] = []                         # modules (model.named_modules() names) left untrained


class PretrainSection(_Section):
    # autoencoder .. rbm: the fully connected layers of an MLP, greedily (unsupervised.pretrain);
    # stages: every convolutional / locally connected stage reconstructs its input (unsupervised.stages)
    method: Literal["autoencoder", "denoising", "sparse", "rbm", "stages"] = "autoencoder"
    epochs: PosInt = 10
    lr: PosFloat = 0.01
    batch_size: PosInt = 128
    params: dict[str, Any] = {}

    @model_validator(mode="after")
    def _stage_params(self):
        if self.method == "stages":
            known = {"schedule": ("greedy", "joint"), "sparsity": None, "eps": None, "winners": int, "tied": bool,
                     "center": bool}          # the last three: one value or one per stage (checked when run)
            for key, value in self.params.items():
                if key not in known:
                    raise ValueError(f"params.{key}: unknown for method 'stages'{did_you_mean(key, list(known))}")
                if isinstance(known[key], type):
                    per_stage(value, None, f"params.{key}", known[key])
                elif known[key] and value not in known[key]:
                    raise ValueError(f"params.{key}: {value!r}; expected one of {', '.join(known[key])}")
                if known[key] is None and not (isinstance(value, (int, float)) and value >= 0):
                    raise ValueError(f"params.{key}: expected a number >= 0, got {value!r}")
        return self


class Recipe(_Section):
    name: str
    description: str = ""
    seed: int = 0
    device: str = "auto"
    threads: PosInt | None = None  # CPU threads for torch (None: torch's default, one per core)
    data: DataSection = DataSection()
    model: dict[str, Any]
    objective: ObjectiveSection = ObjectiveSection()
    train: TrainSection = TrainSection()
    pretrain: PretrainSection | None = None
    logging: Literal["none", "tensorboard"] = "none"

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def bundled_recipes() -> dict[str, Path]:
    """Name -> path of the recipes shipped with visionnets."""
    return {p.stem: p for p in sorted(BUNDLED.glob("*.yaml"))}


def find_recipe(ref: str | Path) -> Path:
    """A recipe path, or the bundled recipe named ``ref`` (with or without ``.yaml``)."""
    p = Path(ref)
    if p.is_file():
        return p
    bundled = bundled_recipes()
    name = p.name[:-5] if p.name.endswith(".yaml") else p.name
    if name in bundled and (p.parent == Path(".") or not p.exists()):
        return bundled[name]
    raise ConfigError(f"{ref}: no such recipe file or bundled recipe{did_you_mean(name, bundled)}; "
                      f"bundled: {', '.join(bundled)}")


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=3")
    key, raw = item.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: empty key segment in {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: cannot read value {raw!r} as YAML ({exc.problem})") from None
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides to a raw recipe dict (in place) and return it."""
    for item in overrides:
        path, value = _parse_override(item)
        node: Any = raw
        for depth, part in enumerate(path[:-1]):
            where = ".".join(path[: depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"--set {'.'.join(path)}: {where}: no list item {part!r} "
                                      f"(the list has {len(node)} items)")
                node = node[int(part)]
            elif isinstance(node, dict):
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
            else:
                raise ConfigError(f"--set {'.'.join(path)}: {where} is a {type(node).__name__}, not a section")
        last = path[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ConfigError(f"--set {'.'.join(path)}: no list item {last!r} (the list has {len(node)} items)")
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"--set {'.'.join(path)}: {'.'.join(path[:-1])} is not a section")
    return raw


def _section_keys(loc: tuple) -> list[str]:
    """The keys a recipe section at ``loc`` (a pydantic error location) accepts."""
    model: Any = Recipe
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            break
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


def validate(raw: Any, source: str = "recipe", overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Validate a raw dict; errors name the key path and where it came from: the ``--set`` flag
    that wrote it (one of ``overrides``), else ``source``. An unknown key suggests the nearest."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = [str(p) for p in err["loc"]]
        loc = ".".join(path)
        kind = err["type"]
        if kind == "missing":
            msg = "missing required key"
        elif kind == "extra_forbidden":
            msg = "unknown key" + did_you_mean(path[-1], _section_keys(err["loc"][:-1]))
        elif kind == "value_error":                               # our validators name key and value
            msg = err["msg"].removeprefix("Value error, ")
        else:
            msg = f"{err['msg']} (got {err.get('input')!r})"
        more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        flag = next((item for item in reversed(overrides)      # the flag that wrote the key, or one below it
                     if path[:len(key := item.split("=", 1)[0].split("."))] == key or key[:len(path)] == path), None)
        raise ConfigError(f"{f'--set {flag}' if flag else source}: {loc}: {msg}{more}") from None


def load_recipe(ref: str | Path | dict, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Load a recipe (path, bundled name or dict), apply ``--set`` overrides, validate."""
    if isinstance(ref, dict):
        raw, source = dict(ref), "recipe"
    elif isinstance(ref, Recipe):
        raw, source = ref.to_dict(), "recipe"
    else:
        path = find_recipe(ref)
        source = str(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}:{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    if raw is None:
        raise ConfigError(f"{source}: the recipe is empty")
    if isinstance(raw, dict):
        apply_overrides(raw, list(overrides))
    return validate(raw, source, overrides)
