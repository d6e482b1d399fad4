"""The Extensions objectives: multi-task, semi-supervised and multi-modal learning in the one loop."""

import json

import pytest
import torch

from visionnets import api
from visionnets.cli import main
from visionnets.data.base import Dataset, Split
from visionnets.data.batch import Batch
from visionnets.objectives import build_objective
from test_data_idx import make_mnist


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    monkeypatch.delenv("VISIONNETS_DATA", raising=False)
    make_mnist(tmp_path / "data" / "mnist", n_train=80, n_test=40)
    return tmp_path / "data"


def _two_task_dataset():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 4, generator=g)
    y = torch.stack([torch.arange(12) % 3, torch.tensor([0, 1, -1, 1, 0, -1, 1, 1, 0, 0, -1, 1])], 1)
    split = Split(x, y)
    return Dataset("two", split, None, split, (4,), 3, tasks={"a": 3, "b": 2})


# --------------------------------------------------------------------------- multi-task

def test_multi_task_loss_is_the_weighted_sum_of_the_tasks_losses():
    ds = _two_task_dataset()
    obj = build_objective({"name": "multi_task", "options": {"tasks": {"a": {"weight": 0.3},
                                                                        "b": {"weight": 2.0, "loss": "hinge"}}}}, ds)
    net = torch.nn.Linear(4, 5)
    batch = Batch(ds.train.fields())
    out = obj(net, batch)
    scores = net(batch["x"])
    y = batch["y"]
    ce = torch.nn.functional.cross_entropy(scores[:, :3], y[:, 0])
    labeled = y[:, 1] >= 0
    from visionnets.nn.losses import hinge_loss

    hinge = hinge_loss(scores[labeled, 3:], y[labeled, 1])
    assert out.loss.item() == pytest.approx(0.3 * ce.item() + 2.0 * hinge.item(), rel=1e-6)
    wrong_b, n_b = out.metrics["error_b"]
    assert n_b == int(labeled.sum()) == 9                                  # the unlabeled are skipped
    assert int(wrong_b) == int((scores[labeled, 3:].argmax(1) != y[labeled, 1]).sum())
    assert out.metrics["error"][1] == 12 + 9
    # a task left out of the objective is not trained: its head gets no gradient
    only_a = build_objective({"name": "multi_task", "options": {"tasks": {"a": {}}}}, ds)
    net.zero_grad()
    only_a(net, batch).loss.backward()
    assert net.weight.grad[3:].abs().sum() == 0 and net.weight.grad[:3].abs().sum() > 0


@pytest.mark.parametrize("options, message", [
    ({"tasks": {"lefft": {}}}, "objective.options.tasks.lefft: unknown task (did you mean 'left'?); "
                               "dataset 'multimnist' has the tasks: left, right"),
    ({"tasks": {"left": {"weight": -1}}}, "objective.tasks.left.weight: Input should be greater than or equal to 0"),
    ({"tasks": {"left": {"loss": "hinj"}}}, "objective.options.tasks.left.loss: unknown loss 'hinj'"),
])
def test_bad_multi_task_recipes_are_one_line_errors(fake_mnist, tmp_path, capsys, options, message):
    args = ["train", "multimnist_multitask", "--data-dir", str(fake_mnist), "--out", str(tmp_path / "run"),
            "--set", f"objective.options={json.dumps(options)}"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "run").exists()


def test_multi_task_needs_a_multi_task_dataset(capsys):
    assert main(["train", "digits_convnet", "--set", "objective.name=multi_task"]) == 2
    assert "multi_task needs a dataset with several tasks; 'digits' has one label per example" in capsys.readouterr().err


EXECUTORS = [("local", {}), ("ddp", {"workers": 2}), ("downpour", {"replicas": 2})]


def _train_under(executor, options, request, recipe, overrides, data_dir, out):
    """``recipe`` trained by ``executor`` (Downpour in the suite's Ray session)."""
    if executor == "downpour":
        request.getfixturevalue("ray_session")
    return api.train(recipe, overrides, data_dir=data_dir, out=out, executor=executor, progress=False, **options)


TINY_MM = ["model.stages=[{channels: 4, kernel: 5, padding: same}]", "model.hidden=[16]", "model.dropout=0",
           "train.epochs=1", "train.batch_size=16", "data.val_fraction=0.2", "threads=1"]


@pytest.mark.parametrize("executor, options", EXECUTORS)
def test_multi_task_trains_under_every_executor(fake_mnist, tmp_path, executor, options, request, capsys):
    r = _train_under(executor, options, request, "multimnist_multitask", TINY_MM, fake_mnist, tmp_path / "run")
    rec = r.history[-1]
    for split in ("train", "val", "test"):
        for key in ("error_left", "error_right", "loss_left", "loss_right"):
            assert 0 <= rec[f"{split}_{key}"] < 10, (split, key)
    assert (r.run_dir / "figures" / "task_curves.png").is_file()
    assert main(["eval", str(r.run_dir), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["error_left"] == pytest.approx(rec["test_error_left"], abs=1e-6)


# --------------------------------------------------------------------------- semi-supervised

def _toy_semisup(n=12):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 4, 4, generator=g)
    y = torch.full((n,), -1)
    y[:4] = torch.tensor([0, 1, 2, 1])
    return Dataset("toy", Split(x, y), None, Split(x, torch.arange(n) % 3), (1, 4, 4), 3)


def _mlp():
    from visionnets.models import build_model

    torch.manual_seed(0)
    return build_model({"name": "mlp", "hidden": [8, 6]}, (1, 4, 4), 3)


@pytest.mark.parametrize("mode", ["reconstruction", "denoising", "ladder", "consistency", "mean_teacher",
                                  "pseudo_label"])
def test_semi_supervised_loss_is_supervised_plus_weighted_unsupervised(mode):
    ds = _toy_semisup()
    obj = build_objective({"name": "semi_supervised", "options": {"unsupervised": mode, "weight": 0.7,
                                                                 "threshold": 0.0}}, ds)
    net = obj.attach(_mlp(), ds)
    batch = Batch(ds.train.fields())
    torch.manual_seed(3)
    out = obj(net, batch)
    torch.manual_seed(3)
    scores, cost = net(batch["x"], unsupervised=True)
    sup = torch.nn.functional.cross_entropy(scores[:4], batch["y"][:4])
    assert out.loss.item() == pytest.approx(sup.item() + 0.7 * cost.item(), rel=1e-6)
    assert out.metrics["error"][1] == 4 and out.metrics["loss_unsupervised"][1] == 12
    # the classifier alone predicts; the decoders are trained beside it and checkpointed with it
    assert net(batch["x"]).shape == (12, 3)
    decoders = [k for k in net.state_dict() if k.startswith(("decoder", "combinators", "up"))]
    assert bool(decoders) == (mode not in ("consistency", "mean_teacher", "pseudo_label"))
    if mode in ("consistency", "mean_teacher", "pseudo_label"):    # two views of the same images disagree a little
        assert cost.item() > 0
        net.eval()
        assert net(batch["x"], unsupervised=True)[1].item() == 0     # none in evaluation


@pytest.mark.parametrize("jitter", [False, True])
def test_pseudo_labels_are_the_confident_top_classes_of_the_batch_taught_to_a_strong_view(jitter):
    from visionnets.data.augment import color_jitter, cutout, translate

    ds = _toy_semisup()
    x = ds.train.x
    weight = torch.randn(3, 16, generator=torch.Generator().manual_seed(0)) * 3
    strong_augment = [{"name": "color_jitter", "brightness": 0.5, "contrast": 0.3}] if jitter else None

    def cost(threshold):
        obj = build_objective({"name": "semi_supervised", "options": {
            "unsupervised": "pseudo_label", "threshold": threshold, "cutout": 2, "noise": 0.1, "shift": 1,
            "strong_augment": strong_augment}}, ds)
        net = obj.attach(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)), ds)
        with torch.no_grad():
            net.base[1].weight.copy_(weight)
            net.base[1].bias.zero_()
        torch.manual_seed(3)
        return net, net(x, unsupervised=True)[1]

    net, _ = cost(0.0)
    conf, target = net.base(x).softmax(1).max(1)
    threshold = conf.median().item()                         # about half the batch is that confident
    torch.manual_seed(3)
    strong = color_jitter(x, torch.default_generator, 0.5, 0.3, 0.4) if jitter else x
    assert jitter or torch.equal(strong, x)
    strong = translate(strong, torch.default_generator, 1)
    strong = cutout(strong, torch.default_generator, 2)
    strong = strong + 0.1 * torch.randn_like(strong)
    ce = torch.nn.functional.cross_entropy(net.base(strong), target, reduction="none")
    kept = conf >= threshold
    assert 0 < int(kept.sum()) < len(x)
    assert cost(threshold)[1].item() == pytest.approx((ce * kept).sum().item() / len(x), rel=1e-6)
    assert cost(1.0)[1].item() == 0                          # nothing that confident: no cost
    assert cost(0.0)[1].item() == pytest.approx(ce.mean().item(), rel=1e-6)


def test_the_mean_teacher_is_a_moving_average_of_the_student_and_no_parameter():
    ds = _toy_semisup()
    obj = build_objective({"name": "semi_supervised", "options": {"unsupervised": "mean_teacher", "ema_decay": 0.9}}, ds)
    net = obj.attach(_mlp(), ds)
    names = list(net.base.state_dict())
    teacher = {k: v.clone() for k, v in net.teacher_state().items()}
    assert set(teacher) == set(names) and all(torch.equal(teacher[k], net.base.state_dict()[k]) for k in names)
    assert not any(k.startswith("teacher") for k, _ in net.named_parameters())      # never optimized
    assert all(f"teacher__{k.replace('.', '__')}" in net.state_dict() for k in names)  # checkpointed
    with torch.no_grad():
        for p in net.base.parameters():
            p.add_(1.0)
    student = {k: v.clone() for k, v in net.base.state_dict().items()}
    net.train()
    obj(net, Batch(ds.train.fields())).loss.backward()
    for k in names:                                  # teacher <- 0.9 teacher + 0.1 student, at the forward
        assert torch.allclose(net.teacher_state()[k], 0.9 * teacher[k] + 0.1 * student[k], atol=1e-6)
    grads = [p.grad for p in net.base.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    net.eval()
    before = {k: v.clone() for k, v in net.teacher_state().items()}
    net(ds.train.x, unsupervised=True)               # no update outside training
    assert all(torch.equal(before[k], net.teacher_state()[k]) for k in names)


def test_a_step_with_no_labeled_example_trains_on_the_unsupervised_cost_alone():
    ds = _toy_semisup()
    obj = build_objective({"name": "semi_supervised", "options": {"unsupervised": "denoising"}}, ds)
    net = obj.attach(_mlp(), ds)
    batch = Batch(x=ds.train.x[4:], y=ds.train.y[4:])            # every label unknown
    out = obj(net, batch)
    out.loss.backward()
    assert out.metrics["error"] == (0, 0) or out.metrics["error"][1] == 0
    assert out.loss.item() == pytest.approx(out.metrics["loss_unsupervised"][0].item() / 8, rel=1e-6)
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert net.base[-1].weight.grad.abs().sum() == 0                # no label: no gradient to the classifier


def test_the_unsupervised_weight_ramps_up():
    obj = build_objective({"name": "semi_supervised", "options": {"weight": 2.0, "rampup_steps": 100}})
    weights = []
    for step in (0, 50, 99, 100, 500):
        obj.at_step(step)
        weights.append(obj.current_weight())
    assert weights[0] == pytest.approx(2.0 * 2.718281828 ** -5) and weights[0] < weights[1] < weights[2] < 2.0
    assert weights[3:] == [2.0, 2.0]


@pytest.mark.parametrize("override, message", [
    ("objective.options={unsupervised: ladder}", "ladder needs a fully connected model (mlp); this one has Conv2d"),
    ("objective.options={weight: -1}", "objective.weight: Input should be greater than or equal to 0"),
    ("objective.options={unsupervised: pca}", "objective.unsupervised: Input should be 'reconstruction', 'denoising', 'ladder', 'consistency', 'mean_teacher' or 'pseudo_label'"),
    ("objective.options={unsupervised: mean_teacher, ema_decay: 1.5}", "objective.ema_decay: Input should be less than 1"),
    ("objective.options={unsupervised: pseudo_label, threshold: 1.5}", "objective.threshold: Input should be less than or equal to 1"),
    ("objective.options={unsupervised: pseudo_label, cutout: 9}", "objective.options.cutout: 9 needs image inputs (C, H, W) at least that large, got (1, 8, 8)"),
    ("objective.options={unsupervised: consistency, strong_augment: [color_jitter]}",
     "objective.options.strong_augment: only pseudo_label has a strong view, not consistency"),
    ("objective.options={unsupervised: pseudo_label, strong_augment: [{name: color_jitter, contrast: 2}]}",
     "objective.options.strong_augment"),
    ("objective.options={unsupervised: pseudo_label, strong_augment: [sharpen]}", "objective.options.strong_augment"),
])
def test_bad_semi_supervised_recipes_are_one_line_errors(override, message, tmp_path, capsys):
    assert main(["train", "digits_convnet", "--set", "objective.name=semi_supervised", "--set", override,
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "run").exists()


def test_labeled_examples_added_to_every_batch_are_the_same_in_every_executor():
    from visionnets.train.loader import TensorLoader

    ds = _toy_semisup(40)
    one = [b["y"] for b in TensorLoader(ds.train, 8, shuffle=True, seed=1, labeled_per_batch=3)]
    assert [len(y) for y in one] == [11] * 5 and all((y[-3:] >= 0).all() for y in one)
    parts = [TensorLoader(ds.train, 8, shuffle=True, seed=1, labeled_per_batch=3, rank=r, workers=2) for r in range(2)]
    for i, (a, b) in enumerate(zip(*parts)):
        assert torch.equal(torch.cat([a["y"], b["y"]]), one[i])


SEMI = ["model.hidden=[16]", "model.stages=[{channels: 4, kernel: 5, padding: same}]", "train.epochs=1",
        "train.batch_size=16", "train.labeled_per_batch=4", "data.val_fraction=0", "data.labels_per_class=2",
        "threads=1", "objective.options={unsupervised: consistency, rampup_steps: 5}"]


@pytest.mark.parametrize("mode", ["consistency", "mean_teacher", "pseudo_label"])
@pytest.mark.parametrize("executor, options", EXECUTORS)
def test_semi_supervised_trains_under_every_executor(fake_mnist, tmp_path, executor, options, request, mode):
    extra = (", threshold: 0.0, cutout: 4, strong_augment: [{name: color_jitter, brightness: 0.3}]"
             if mode == "pseudo_label" else "")   # a cost from the first step
    over = SEMI[:-1] + [f"objective.options={{unsupervised: {mode}, rampup_steps: 5{extra}}}"]
    r = _train_under(executor, options, request, "mnist_semisup100", over, fake_mnist, tmp_path / "run")
    rec = r.history[-1]
    assert rec["train_loss_unsupervised"] > 0 and 0 <= rec["test_error"] <= 1
    assert sum((r.dataset.train.y >= 0).tolist()) == 20                 # 2 labels per class kept
    assert api.evaluate(api.load_run(r.run_dir), "test")["error"] == pytest.approx(rec["test_error"], abs=1e-9)


# --------------------------------------------------------------------------- multi-modal

def _fake_fsdd(folder, per_digit=4, seed=0):
    """A tiny FSDD: per digit ``per_digit`` recordings (the first one a test recording) of random lengths."""
    import numpy as np

    rng = np.random.default_rng(seed)
    clips, digits, test = [], [], []
    for d in range(10):
        for i in range(per_digit):
            n = int(rng.integers(1500, 7000))
            t = np.arange(n) / 8000.0
            clips.append((8000 * np.sin(2 * np.pi * (300 + 80 * d) * t) + rng.normal(0, 500, n)).astype(np.int16))
            digits.append(d)
            test.append(i == 0)
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in clips])]).astype(np.int64)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "fsdd.npz", audio=np.concatenate(clips), offsets=offsets, digit=np.array(digits),
             test=np.array(test), sample_rate=np.int64(8000))


@pytest.fixture
def fake_av(fake_mnist):
    _fake_fsdd(fake_mnist / "fsdd")
    return fake_mnist


def test_avmnist_pairs_each_image_with_a_recording_of_its_digit(fake_av):
    from visionnets.data import load_dataset
    from visionnets.data.avmnist import AUDIO_SHAPE

    ds = load_dataset("avmnist", fake_av, val_fraction=0.25)
    assert ds.modalities == {"x": (1, 28, 28), "audio": AUDIO_SHAPE}
    for split in (ds.train, ds.val, ds.test):
        assert split.extra["audio"].shape == (len(split), *AUDIO_SHAPE)
    # images of the same digit in the test split share the digit's only test recording
    y, audio = ds.test.y, ds.test.extra["audio"]
    for d in y.unique():
        same = audio[y == d]
        assert torch.equal(same, same[:1].expand_as(same))
    again = load_dataset("avmnist", fake_av, val_fraction=0.25)
    assert torch.equal(again.train.extra["audio"], ds.train.extra["audio"])      # deterministic


def test_missing_modalities_in_training_and_at_test_time():
    from visionnets.models.bimodal import bimodal
    from visionnets.objectives.multimodal import drop_mask

    torch.manual_seed(0)
    mask = drop_mask(1000, 2, 0.5, "cpu")
    assert (mask.sum(1) >= 1).all() and 0.55 < mask.mean().item() < 0.75      # one always kept
    shapes = {"x": (1, 4, 4), "audio": (1, 2, 5)}
    net = bimodal((1, 4, 4), 3, modalities=shapes, hidden=(8,), code=6)
    x, a = torch.rand(3, 1, 4, 4), torch.rand(3, 1, 2, 5)
    # absent (None) and present = 0 are the same thing: the modality adds nothing to the code
    torch.testing.assert_close(net(x=x), net(x=x, audio=a, present=torch.tensor([[1.0, 0.0]] * 3)))
    torch.testing.assert_close(net(audio=a), net(x=x, audio=a, present=torch.tensor([[0.0, 1.0]] * 3)))
    with pytest.raises(Exception, match="no input given"):
        net()


@pytest.mark.parametrize("args, message", [
    (["avmnist_multimodal", "--set", "objective.options.modalities=[x, vidio]"],
     "objective.options.modalities: 'vidio' is not an input of dataset 'avmnist'"),
    (["avmnist_multimodal", "--set", "model={name: convnet, stages: [{channels: 4}]}"],
     "model.name: 'convnet' takes one input, but dataset 'avmnist' has the inputs x, audio"),
    (["digits_convnet", "--set", "objective.name=multi_modal"],
     "multi_modal needs a dataset with several inputs; 'digits' has one"),
])
def test_bad_multi_modal_recipes_are_one_line_errors(fake_av, tmp_path, capsys, args, message):
    assert main(["train", *args, "--data-dir", str(fake_av), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "run").exists()


AV = ["model.hidden=[16]", "model.code=8", "train.epochs=1", "train.batch_size=16", "data.val_fraction=0.2",
      "threads=1"]


@pytest.mark.parametrize("executor, options", EXECUTORS)
def test_multi_modal_trains_under_every_executor(fake_av, tmp_path, executor, options, request):
    r = _train_under(executor, options, request, "avmnist_multimodal", AV, fake_av, tmp_path / "run")
    rec = r.history[-1]
    for key in ("test_error", "test_error_only_x", "test_error_only_audio", "val_error_only_audio"):
        assert 0 <= rec[key] <= 1, key
    assert rec["train_loss_recon"] > 0 and "train_error_only_x" not in rec
    assert (r.run_dir / "figures" / "cross_modal.png").is_file()
    assert api.evaluate(api.load_run(r.run_dir), "test")["error_only_audio"] == pytest.approx(
        rec["test_error_only_audio"], abs=1e-9)
