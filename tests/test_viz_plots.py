"""visionnets.viz curves, confusion, worst and fit: the numbers behind the figures."""


import pytest
import torch
from torch import nn

from visionnets.data.base import Dataset, Split
from visionnets.errors import ConfigError, DataError
from visionnets.viz.confusion import class_probabilities, confusion_matrix, plot_confusion, predict
from visionnets.viz.curves import plot_curves, series
from visionnets.viz.fit import is_1d_regression, plot_fit
from visionnets.viz.worst import plot_worst, worst_examples

PNG = b"\x89PNG\r\n\x1a\n"


def test_series_skips_missing_none_and_nan():
    hist = [{"epoch": 1, "val_error": None}, {"epoch": 2, "val_error": 0.5},
            {"epoch": 3, "val_error": float("nan")}, {"epoch": 4}, {"epoch": 5, "val_error": 0.25}]
    assert series(hist, "val_error") == ([2, 5], [0.5, 0.25])


def test_plot_curves(tmp_path):
    hist = [{"epoch": e, "train_loss": 10.0 / e ** 2, "val_loss": 11.0 / e ** 2, "train_error": None}
            for e in range(1, 8)]
    assert plot_curves(hist, tmp_path / "c.png").read_bytes()[:8] == PNG
    with pytest.raises(DataError, match="no loss values"):
        plot_curves([{"epoch": 1}], tmp_path / "d.png")
    assert not (tmp_path / "d.png").exists()


def test_confusion_matrix_against_a_loop():
    g = torch.Generator().manual_seed(0)
    y, p = torch.randint(0, 6, (500,), generator=g), torch.randint(0, 6, (500,), generator=g)
    cm = confusion_matrix(y, p, 6)
    ref = torch.zeros(6, 6, dtype=torch.long)
    for t, q in zip(y.tolist(), p.tolist()):
        ref[t, q] += 1
    assert torch.equal(cm, ref)
    assert cm.sum() == 500
    assert torch.equal(cm.sum(1), torch.bincount(y, minlength=6))     # rows: true class counts
    assert torch.equal(cm.sum(0), torch.bincount(p, minlength=6))     # columns: predicted counts
    assert cm.trace() == (y == p).sum()
    with pytest.raises(ConfigError, match="outside"):
        confusion_matrix(torch.tensor([0, 7]), torch.tensor([0, 1]), 6)
    with pytest.raises(ConfigError, match="3 labels but 2"):
        confusion_matrix(torch.tensor([0, 1, 2]), torch.tensor([0, 1]), 6)


def test_class_probabilities_and_predict():
    scores = torch.randn(7, 4)
    assert torch.allclose(class_probabilities(scores, 4), scores.softmax(1))
    logit = torch.randn(7, 1)
    binary = class_probabilities(logit, 2)
    assert torch.allclose(binary[:, 1], logit[:, 0].sigmoid()) and torch.allclose(binary.sum(1), torch.ones(7))
    with pytest.raises(ConfigError, match=r"\(N, 3\)"):
        class_probabilities(scores, 3)
    net = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.9))
    net.train()
    x = torch.randn(2500, 3)
    out = predict(net, x, batch_size=1000)
    assert torch.allclose(out, net[0](x).detach(), atol=1e-6) and net.training   # eval mode, restored


def test_predict_runs_as_the_run_evaluates():
    """precision and channels_last: the outputs of the evaluation's forward (autocast, NHWC), in float32."""
    from visionnets.train.step import autocast_dtype, forward_autocast

    conv = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten())
    x = torch.randn(10, 1, 6, 6)
    seen = []
    conv[0].register_forward_pre_hook(lambda m, a: seen.append(a[0].is_contiguous(memory_format=torch.channels_last)))
    out = predict(conv, x, batch_size=4, precision="bf16", channels_last=True)
    assert out.dtype == torch.float32 and seen == [True, True, True]
    with torch.no_grad(), forward_autocast("bf16", torch.device("cpu")):
        ref = conv(x.contiguous(memory_format=torch.channels_last)).float()
    assert torch.allclose(out, ref, rtol=1e-2, atol=1e-2)                 # per batch of 4 vs all at once
    if autocast_dtype("bf16", torch.device("cpu")) is not None:     # fast bf16 here: not the fp32 result
        assert not torch.equal(out, predict(conv, x))


def test_worst_examples_rank_by_true_class_probability():
    scores = torch.randn(100, 5)
    y = torch.randint(0, 5, (100,))
    w = worst_examples(scores, y, k=10)
    p = scores.softmax(1)
    p_true = p[torch.arange(100), y]
    assert torch.equal(w.indices, p_true.argsort()[:10])
    assert torch.all(w.p_true[:-1] <= w.p_true[1:])
    assert torch.equal(w.y_pred, scores[w.indices].argmax(1)) and torch.equal(w.y_true, y[w.indices])
    assert torch.allclose(w.p_pred, p[w.indices].max(1).values)


def test_plot_confusion_and_worst(tmp_path):
    cm = confusion_matrix(torch.randint(0, 30, (400,)), torch.randint(0, 30, (400,)), 30)
    assert plot_confusion(cm, tmp_path / "cm.png").read_bytes()[:8] == PNG       # > 20 classes: no counts
    x = torch.rand(50, 3, 8, 8)
    w = worst_examples(torch.randn(50, 3), torch.arange(50) % 3, k=12)
    assert plot_worst(x, w, tmp_path / "w.png", ["cat", "dog", "car"]).read_bytes()[:8] == PNG
    flat = plot_worst(torch.rand(50, 64), w, tmp_path / "flat.png")            # (N, 64) -> 8x8
    assert flat.read_bytes()[:8] == PNG


def test_plot_fit(tmp_path):
    x = torch.linspace(-3, 3, 60)[:, None]
    ds = Dataset("cosine", Split(x, x.cos()), None, Split(x, x.cos()), (1,))
    assert is_1d_regression(ds)
    assert plot_fit(nn.Linear(1, 1), ds, tmp_path / "fit.png").read_bytes()[:8] == PNG
    images = Dataset("d", Split(torch.rand(4, 1, 2, 2), torch.zeros(4, dtype=torch.long)), None,
                     Split(torch.rand(4, 1, 2, 2), torch.zeros(4, dtype=torch.long)), (1, 2, 2), 2)
    assert not is_1d_regression(images)
    with pytest.raises(ConfigError, match="1-D regression"):
        plot_fit(nn.Linear(4, 2), images, tmp_path / "no.png")
