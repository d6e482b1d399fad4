"""Greedy layer-wise pretraining, and the Coates pipeline end to end on a tiny problem."""

import warnings

import pytest
import torch
from torch import nn

from visionnets.errors import ConfigError
from visionnets.unsupervised import pretrain as pt
from visionnets.unsupervised.pretrain import mlp_layers, pretrain_mlp


def _net(act=nn.Sigmoid):
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 16), act(), nn.Dropout(0.2), nn.Linear(16, 8), act(),
                         nn.Linear(8, 3))


def _images(n=512):
    g = torch.Generator().manual_seed(1)
    # low-dimensional structure: 4 latent factors rendered into 6x6 "images" in [0, 1]
    z = torch.rand(n, 4, generator=g)
    basis = torch.rand(4, 36, generator=g)
    return torch.sigmoid(4 * (z @ basis - basis.sum(0) / 2)).reshape(n, 1, 6, 6)


@pytest.mark.parametrize("method,act", [("autoencoder", nn.Sigmoid), ("denoising", nn.ReLU),
                                        ("sparse", nn.Sigmoid), ("rbm", nn.Sigmoid)])
def test_pretrain_changes_hidden_weights_and_lowers_reconstruction_error(method, act):
    net = _net(act)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    lr = 0.1 if method == "rbm" else 1e-2
    stats = pretrain_mlp(net, _images(), method=method, epochs=4, lr=lr, batch_size=32, random_state=0,
                         device="cpu")
    assert [s["layer"] for s in stats] == ["1", "4"]
    assert [(s["in_features"], s["out_features"]) for s in stats] == [(36, 16), (16, 8)]
    # an RBM maximizes likelihood, not reconstruction: only its first layer (rich input) is held to it
    for s in stats if method != "rbm" else stats[:1]:
        assert s["reconstruction_error_after"] < s["reconstruction_error_before"], s
    assert all(s["method"] == method and len(s["history"]) == 4 for s in stats)
    after = net.state_dict()
    for key in ("1.weight", "1.bias", "4.weight"):
        assert not torch.equal(before[key], after[key]), key
    # the classifier is left alone
    assert torch.equal(before["6.weight"], after["6.weight"]) and torch.equal(before["6.bias"], after["6.bias"])
    assert net.training  # mode restored


def test_second_layer_is_trained_on_the_models_own_codes(monkeypatch):
    net = _net(nn.ReLU)
    x = _images(64)
    seen = []
    real = pt.make_learner

    def spy(method, n_components, activation, codes, *a, **k):
        seen.append((activation, codes.clone()))
        return real(method, n_components, activation, codes, *a, **k)

    monkeypatch.setattr(pt, "make_learner", spy)
    pretrain_mlp(net, x, method="autoencoder", epochs=1, batch_size=16, random_state=0, device="cpu")
    assert [a for a, _ in seen] == ["relu", "relu"]
    torch.testing.assert_close(seen[0][1], x.reshape(64, -1))
    with torch.no_grad():   # layer 1 as copied from its encoder, through the model's ReLU, dropout off
        expect = torch.relu(net[1](x.reshape(64, -1)))
    torch.testing.assert_close(seen[1][1], expect)


def test_mlp_layers_and_errors():
    from visionnets.models.mlp import mlp

    model = mlp((1, 28, 28), 10, hidden=(32, 16), activation="tanh", dropout=0.1)
    layers = mlp_layers(model)
    assert [(l["name"], l["activation"]) for l in layers] == [("fc1", "tanh"), ("fc2", "tanh")]
    with pytest.raises(ConfigError, match="nn.Sequential"):
        pretrain_mlp(nn.Linear(3, 3), torch.rand(4, 3))
    with pytest.raises(ConfigError, match="method"):
        pretrain_mlp(_net(), torch.rand(4, 36), method="pca")
    with pytest.raises(ConfigError, match="BatchNorm1d"):
        pretrain_mlp(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)), torch.rand(8, 3))
    with pytest.raises(ConfigError, match="params"):
        pretrain_mlp(_net(), _images(16), epochs=1, not_a_param=3, device="cpu")


def test_coates_pipeline_end_to_end_tiny():
    """Two easy classes of 12x12 colour images; every learner's features separate them."""
    from visionnets.unsupervised.coates import run_coates

    g = torch.Generator().manual_seed(0)
    n = 120
    y = torch.arange(n) % 2
    base = torch.rand(n, 3, 12, 12, generator=g) * 60 + 100
    stripes = (torch.arange(12) % 4 < 2).float() * 80
    base[y == 0] += stripes[None, None, :, None]          # horizontal stripes
    base[y == 1] += stripes[None, None, None, :]          # vertical stripes
    data = {"x_train": base[:80], "y_train": y[:80], "x_test": base[80:], "y_test": y[80:]}
    for learner in ("kmeans", "sparse_autoencoder", "rbm", "rica"):
        params = {"n_epochs": 5} if learner != "sparse_autoencoder" else {"n_epochs": 5, "learning_rate": 1e-2}
        r = run_coates(learner, 8, data, patch_size=4, n_patches=2000, max_iter=50, device="cpu",
                       learner_params=params)
        assert r["feature_dim"] == 32 and r["n_train"] == 80
        assert r["test_accuracy"] >= 90.0, (learner, r)
    # the fitted pipeline classifies new images exactly as it scored the test set
    r = run_coates("kmeans", 8, data, patch_size=4, n_patches=2000, max_iter=50, device="cpu",
                   learner_params={"n_epochs": 5}, return_model=True)
    pred = r["model"].predict(data["x_test"], device="cpu")
    assert pred.shape == (40,)
    assert float((pred == data["y_test"]).float().mean() * 100) == pytest.approx(r["test_accuracy"])


def test_folded_whitening_equals_explicit_pipeline():
    """f(A p_hat + c) on unfolded patches == learner.transform(ZCA(normalize(patch))), pooled."""
    from visionnets.unsupervised import ZCA, KMeans, SparseAutoEncoder, extract_patches, normalize_patches
    from visionnets.unsupervised.coates import extract_features

    g = torch.Generator().manual_seed(3)
    imgs = torch.rand(6, 3, 9, 9, generator=g) * 255
    p = normalize_patches(extract_patches(imgs, 4, 3000, random_state=0))
    zca = ZCA(eps=0.1).fit(p.numpy())
    white = zca.transform(p)
    for est in (KMeans(n_clusters=5, n_epochs=2, device="cpu", random_state=0),
                SparseAutoEncoder(n_components=5, n_epochs=1, device="cpu", random_state=0)):
        est.fit(white)
        got = extract_features(imgs, est, zca, patch_size=4, device="cpu")
        cols = torch.nn.functional.unfold(imgs, 4).transpose(1, 2).reshape(-1, 48)      # 6 * 36 patches
        codes = est.transform(zca.transform(normalize_patches(cols)).float()).reshape(6, 6, 6, 5)
        ref = torch.stack([codes[:, :3, :3].sum((1, 2)), codes[:, :3, 3:].sum((1, 2)),
                           codes[:, 3:, :3].sum((1, 2)), codes[:, 3:, 3:].sum((1, 2))], 1).reshape(6, 20)
        torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-3)


def test_code_statistics_against_plain_computation():
    """Quiet units, duplicate filters and the code's effective dimension, from a direct loop."""
    import numpy as np

    from visionnets.unsupervised import SparseAutoEncoder
    from visionnets.unsupervised.coates import code_statistics

    g = torch.Generator().manual_seed(0)
    white = torch.randn(500, 6, generator=g)
    est = SparseAutoEncoder(n_components=4, n_epochs=1, activation="sigmoid", device="cpu", random_state=0).fit(white)
    lin = est.encoder_[0]
    with torch.no_grad():
        lin.weight[1] = 3 * lin.weight[0]            # a duplicate of filter 0 (|cos| = 1)
        lin.weight[3] = 0
        lin.bias[3] = 5.0                            # a unit stuck at sigmoid(5)
    got = code_statistics(est, white)
    w = lin.weight.detach().double().numpy()
    f = 1 / (1 + np.exp(-(white.double().numpy() @ w.T + lin.bias.detach().double().numpy())))
    sd = f.std(0, ddof=1)
    lam = np.clip(np.linalg.eigvalsh(np.cov(f.T)), 0, None)
    dup = [max(abs(w[i] @ w[j]) / (np.linalg.norm(w[i]) * np.linalg.norm(w[j]) + 1e-300)
               for j in range(4) if j != i) > 0.9 for i in range(4)]
    assert got["K"] == 4
    assert got["quiet_units"] == pytest.approx(np.mean(sd < 0.01 * np.median(sd))) == 0.25
    assert got["duplicate_filters"] == pytest.approx(np.mean(dup)) == 0.5
    assert got["effective_dim"] == pytest.approx(lam.sum() ** 2 / (lam ** 2).sum(), rel=1e-4)
    assert got["mean_code"] == pytest.approx(f.mean(), rel=1e-5)


def test_fit_classifier_chooses_C_on_held_out_rows():
    """A list of C: each is scored on a held-out split, the best refit on all rows; the test set unused."""
    from visionnets.unsupervised.coates import fit_classifier

    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 20, generator=g)
    w = torch.randn(3, 20, generator=g)
    y = (x @ w.t() + 2.0 * torch.randn(600, 3, generator=g)).argmax(1)   # noisy labels: C matters
    with warnings.catch_warnings():  # the best C may sit at the grid's edge here (tested below)
        warnings.simplefilter("ignore")
        r = fit_classifier(x[:400], y[:400], x[400:], y[400:], C=[1e-4, 1e-2, 1.0, 1e4], max_iter=100, device="cpu")
    assert [v["C"] for v in r["validation"]] == [1e-4, 1e-2, 1.0, 1e4]
    best = max(r["validation"], key=lambda v: v["val_accuracy"])
    assert r["C"] == best["C"] and r["C"] != 1e-4        # the tiniest C underfits
    # a best C at the edge of the grid is flagged and warned about
    with pytest.warns(UserWarning, match="edge of the grid"):
        edge = fit_classifier(x[:400], y[:400], x[400:], y[400:], C=[1e-6, 1.0], max_iter=50, device="cpu")
    assert edge["C"] == 1.0 and edge["C_at_grid_edge"] is True
    assert r["test_accuracy"] > 60.0
    # a single C: no validation split
    assert fit_classifier(x[:400], y[:400], x[400:], y[400:], C=1.0, max_iter=50, device="cpu")["validation"] is None
    with pytest.raises(ConfigError, match="C="):
        fit_classifier(x[:400], y[:400], x[400:], y[400:], C=-1.0, device="cpu")


def test_coates_command_on_cifar10(tmp_path):
    """``visionnets coates`` end to end on a small CIFAR-10 subset: JSON row, filter PNG, one line per learner."""
    import json

    from conftest import need_data
    from visionnets.cli import main

    root = need_data("cifar10")
    out = tmp_path / "coates"
    rc = main(["coates", "--data-dir", str(root), "--n-train", "400", "--n-test", "200", "--n-patches", "4000",
               "--n-features", "16", "--C", "1", "10", "--option", "n_epochs=2", "--out", str(out),
               "--device", "cpu"])
    assert rc == 0
    res = json.loads((out / "coates.json").read_text())
    (row,) = res["rows"]
    assert row["learner"] == "kmeans" and row["n_train"] == 400 and row["feature_dim"] == 64
    assert row["C"] in (1.0, 10.0) and len(row["validation"]) == 2
    assert row["test_accuracy"] > 20.0          # 10 classes: chance is 10 %
    assert (out / "coates_kmeans_filters.png").stat().st_size > 0
    assert main(["coates", "--data-dir", str(root), "--option", "n_epochs", "--out", str(out)]) == 2
