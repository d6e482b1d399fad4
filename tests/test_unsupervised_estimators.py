"""The scikit-learn estimator contract of every unsupervised learner, and what each one learns."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from visionnets.errors import ConfigError, DataError
from visionnets.unsupervised import (RBM, RICA, ZCA, AutoEncoder, DenoisingAutoEncoder, KMeans,
                                     SparseAutoEncoder, extract_patches, normalize_patches, save_filter_grid)

SMALL = dict(n_epochs=2, batch_size=16, device="cpu", random_state=0)


def _learners():
    return [AutoEncoder(n_components=3, **SMALL), SparseAutoEncoder(n_components=6, **SMALL),
            DenoisingAutoEncoder(n_components=3, noise="gaussian", noise_level=0.1, **SMALL),
            RBM(n_components=3, **SMALL), RBM(n_components=3, visible="gaussian", persistent=False, k=2, **SMALL),
            RICA(n_components=6, max_iter=3, **SMALL), KMeans(n_clusters=3, **SMALL)]


@pytest.fixture
def X():
    return np.random.RandomState(0).rand(60, 5).astype(np.float32)


@pytest.mark.parametrize("est", _learners(), ids=lambda e: type(e).__name__)
def test_contract_clone_params_fit_transform_pipeline(est, X):
    params = est.get_params()
    c = clone(est)
    assert c.get_params() == params and not hasattr(c, "n_iter_")
    assert est.fit(X) is est
    assert est.get_params() == params                       # fit does not touch hyper-parameters
    assert est.n_features_in_ == 5 and est.n_iter_ == 2
    Z = est.transform(X)
    assert isinstance(Z, np.ndarray) and Z.dtype == np.float32 and Z.shape[0] == 60
    np.testing.assert_allclose(clone(est).fit_transform(X), Z, rtol=1e-5, atol=1e-6)  # seeded: reproducible
    Zt = est.transform(torch.from_numpy(X))                 # tensors in, tensor out
    assert isinstance(Zt, torch.Tensor)
    np.testing.assert_allclose(Zt.numpy(), Z, rtol=1e-6, atol=1e-6)
    est.set_params(n_epochs=1)
    assert est.get_params()["n_epochs"] == 1
    assert est.partial_fit(X).n_iter_ == 3                  # partial_fit continues
    assert isinstance(est.encoder_, torch.nn.Module)
    with pytest.raises(ValueError):
        est.transform(X[:, :4])                             # wrong number of features
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_allclose(again.transform(X), est.transform(X), rtol=1e-6)
    y = (X[:, 0] > 0.5).astype(int)
    pipe = Pipeline([("learn", clone(est)), ("clf", LogisticRegression())]).fit(X, y)
    assert pipe.score(X, y) > 0.5


def test_partial_fit_from_scratch(X):
    est = AutoEncoder(n_components=3, **SMALL)
    est.partial_fit(X[:30]).partial_fit(X[30:])
    assert est.n_iter_ == 2 and len(est.history_) == 2


@pytest.mark.parametrize("est", [AutoEncoder(n_components=3, n_epochs=2, device="cpu", random_state=0),
                                 SparseAutoEncoder(n_components=3, n_epochs=2, device="cpu", random_state=0),
                                 DenoisingAutoEncoder(n_components=3, n_epochs=2, device="cpu", random_state=0),
                                 RBM(n_components=3, n_epochs=2, device="cpu", random_state=0),
                                 RICA(n_components=3, n_epochs=1, max_iter=2, device="cpu", random_state=0),
                                 KMeans(n_clusters=3, n_epochs=2, device="cpu", random_state=0),
                                 ZCA(eps=0.1)], ids=lambda e: type(e).__name__)
def test_sklearn_check_estimator(est):
    from sklearn.utils.estimator_checks import check_estimator

    check_estimator(est)


def test_bad_hyper_parameters_name_the_key(X):
    with pytest.raises(ConfigError, match="n_components"):
        AutoEncoder(n_components=0, device="cpu").fit(X)
    with pytest.raises(ConfigError, match="visible"):
        RBM(visible="poisson", device="cpu").fit(X)
    with pytest.raises(ConfigError, match="noise"):
        DenoisingAutoEncoder(noise="salt", device="cpu").fit(X)
    with pytest.raises(ConfigError, match="optimizer"):
        RICA(optimizer="sgd", device="cpu").fit(X)
    with pytest.raises(DataError, match="shape"):
        AutoEncoder(device="cpu").fit(torch.zeros(3, 4, 5))


def test_autoencoder_learns_a_bottleneck():
    """Data on a 3-D subspace of R^12: a 3-unit linear auto-encoder reconstructs it almost exactly."""
    rs = np.random.RandomState(1)
    X = (rs.randn(2000, 3) @ rs.randn(3, 12)).astype(np.float32)
    ae = AutoEncoder(n_components=3, activation="linear", learning_rate=1e-2, n_epochs=30, batch_size=100,
                     device="cpu", random_state=0).fit(X)
    rel = -ae.score(X) / (X ** 2).sum(1).mean()
    assert rel < 0.01
    assert ae.history_[-1]["loss"] < ae.history_[0]["loss"]


def test_sparse_autoencoder_code_is_sparser_than_plain():
    rs = np.random.RandomState(2)
    X = rs.laplace(size=(2000, 16)).astype(np.float32)
    kw = dict(n_components=32, activation="relu", n_epochs=8, learning_rate=3e-3, device="cpu", random_state=0)
    dense = AutoEncoder(**kw).fit(X).transform(X)
    sparse = SparseAutoEncoder(sparsity=3.0, **kw).fit(X).transform(X)
    assert np.abs(sparse).sum(1).mean() < 0.5 * np.abs(dense).sum(1).mean()
    assert (sparse == 0).mean() > (dense == 0).mean()


def test_denoising_autoencoder_denoises():
    rs = np.random.RandomState(3)
    X = (rs.randn(3000, 4) @ rs.randn(4, 20)).astype(np.float32)
    dae = DenoisingAutoEncoder(n_components=8, noise="gaussian", noise_level=0.5, activation="linear",
                               learning_rate=1e-2, n_epochs=15, device="cpu", random_state=0).fit(X)
    noisy = X + 0.5 * rs.randn(*X.shape).astype(np.float32)
    err_noisy = ((noisy - X) ** 2).sum(1).mean()
    err_denoised = ((dae.reconstruct(noisy) - X) ** 2).sum(1).mean()
    assert err_denoised < 0.5 * err_noisy


def test_rbm_training_raises_pseudo_likelihood_and_samples():
    rs = np.random.RandomState(4)
    protos = (rs.rand(4, 16) > 0.5).astype(np.float32)
    X = protos[rs.randint(0, 4, 2000)]
    X = np.abs(X - (rs.rand(*X.shape) < 0.05)).astype(np.float32)      # 5% bit flips
    rbm = RBM(n_components=8, learning_rate=0.1, n_epochs=10, batch_size=20, device="cpu", random_state=0,
              monitor=True).fit(X)
    pl = [h["pseudo_likelihood"] for h in rbm.history_]
    assert pl[-1] > pl[0] and pl[-1] > -16 * np.log(2) * 0.5
    assert rbm.score(X) == pytest.approx(np.mean(rbm.score_samples(X)))
    samples = rbm.sample(200, n_steps=200).numpy()
    # fantasies land near the prototypes: each is within 3 bits of one of them
    dist = np.abs(samples.round()[:, None, :] - protos[None]).sum(2).min(1)
    assert (dist <= 3).mean() > 0.8
    assert rbm.gibbs(X[:5], n_steps=3).shape == (5, 16)
    assert rbm.free_energy(X[:7]).shape == (7,)


def test_sample_bernoulli_matches_probabilities():
    from visionnets.unsupervised.rbm import sample_bernoulli

    g = torch.Generator().manual_seed(0)
    p = torch.tensor([0.0, 1e-3, 0.25, 0.5, 0.9, 1.0]).repeat(200_000, 1)
    s = sample_bernoulli(p, g)
    assert s.dtype == p.dtype and set(s.unique().tolist()) <= {0.0, 1.0}
    assert s[:, 0].sum() == 0 and s[:, -1].min() == 1
    # mean within 5 standard errors of p
    se = (p[0] * (1 - p[0]) / p.shape[0]).sqrt()
    assert ((s.mean(0) - p[0]).abs() <= 5 * se + 1e-7).all(), s.mean(0)


@pytest.mark.parametrize("persistent", [True, False])
def test_rbm_bfloat16_matmuls_learn_as_well_as_float32(persistent):
    """matmul_dtype='bfloat16' rounds the step's matmul inputs only: it learns the same model."""
    rs = np.random.RandomState(4)
    protos = (rs.rand(4, 16) > 0.5).astype(np.float32)
    X = np.abs(protos[rs.randint(0, 4, 2000)] - (rs.rand(2000, 16) < 0.05)).astype(np.float32)
    kw = dict(n_components=8, learning_rate=0.1, n_epochs=10, batch_size=20, device="cpu", random_state=0,
              persistent=persistent)
    f32 = RBM(matmul_dtype="float32", **kw).fit(X)
    bf16 = RBM(matmul_dtype="bfloat16", **kw).fit(X)
    assert bf16.components_.dtype == torch.float32
    assert bf16.score(X) > f32.score(X) - 0.5 and bf16.score(X) > -16 * np.log(2) * 0.5
    with pytest.raises(ConfigError, match="matmul_dtype"):
        RBM(matmul_dtype="float16", device="cpu").fit(X)


@pytest.mark.parametrize("fast,rows,features,expected", [
    (True, 1000, 784, "bfloat16"),      # MNIST-sized products on a CPU with fast bf16
    (True, 1000, 64, "float32"),        # the 8x8 digits: too small to gain from bfloat16
    (False, 1000, 784, "float32"),      # no fast bf16: float32
])
def test_rbm_auto_matmul_dtype(monkeypatch, fast, rows, features, expected):
    """matmul_dtype='auto' takes bfloat16 only where the device has it fast and the products are large."""
    from visionnets.unsupervised import rbm as rbm_mod

    monkeypatch.setattr(rbm_mod, "fast_bf16", lambda device_type: fast)
    X = (np.random.RandomState(0).rand(rows, features) > 0.5).astype(np.float32)
    est = RBM(n_components=64, batch_size=64, n_epochs=1, device="cpu", random_state=0).fit(X)
    assert est.matmul_dtype_ == expected
    assert RBM(matmul_dtype="float32", n_components=64, batch_size=64, n_epochs=1, device="cpu").fit(X).matmul_dtype_ \
        == "float32"


def test_rbm_diverging_weights_stop_the_fit_with_a_clear_error():
    from visionnets.errors import TrainingError

    X = (np.random.RandomState(0).rand(200, 16) > 0.5).astype(np.float32)
    with pytest.raises(TrainingError, match="NaN or infinite in epoch 1; lower learning_rate"):
        RBM(n_components=8, learning_rate=1e38, momentum=0.9, n_epochs=3, batch_size=10, device="cpu",
            random_state=0).fit(X)


def test_rbm_defaults_classify_digits_as_well_as_scikit_learns():
    """Out of the box, RBM()'s codes feed a classifier at least as well as BernoulliRBM()'s on small
    data (issue 16; 89.7-90.0 % against 86.9-87.8 % over 3 seeds, benchmarks/rbm_defaults.py; the
    old defaults, batches of 64 for 10 epochs, gave 79-81 %), and MNIST keeps batches of 64 for 10 epochs."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import BernoulliRBM

    from visionnets.unsupervised.rbm import auto_schedule

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=0.2, random_state=0, stratify=y)

    def accuracy(rbm):
        pipe = Pipeline([("rbm", rbm), ("clf", LogisticRegression(max_iter=2000))])
        return pipe.fit(Xtr, ytr).score(Xte, yte)

    ours = RBM(random_state=0, device="cpu")
    acc, ref = accuracy(ours), accuracy(BernoulliRBM(random_state=0))
    assert (ours.batch_size_, ours.n_epochs_) == (10, 21)
    assert acc >= ref - 0.01 and acc >= 0.87, (acc, ref)
    assert auto_schedule(60_000) == (64, 10)
    with pytest.raises(ConfigError, match=r"batch_size='big'.*or 'auto'"):
        RBM(batch_size="big", device="cpu").fit(Xtr)


def test_gaussian_rbm_learns_and_encodes():
    rs = np.random.RandomState(5)
    X = (rs.randn(2000, 6) @ rs.randn(6, 10)).astype(np.float32)
    X = (X - X.mean(0)) / X.std(0)
    rbm = RBM(n_components=16, visible="gaussian", learning_rate=0.01, momentum=0.5, n_epochs=10,
              batch_size=50, persistent=False, device="cpu", random_state=0).fit(X)
    fresh = RBM(n_components=16, visible="gaussian", n_epochs=1, learning_rate=1e-9, device="cpu",
                random_state=0).fit(X)
    assert rbm.reconstruction_error(X).mean() < 0.8 * fresh.reconstruction_error(X).mean()
    np.testing.assert_allclose(rbm.encoder_(torch.from_numpy(X)).detach().numpy(), rbm.transform(X), rtol=1e-5, atol=1e-6)


def test_rica_recovers_sparse_sources():
    """Whitened mixtures of Laplacian sources: RICA's filters align with the unmixing directions."""
    rs = np.random.RandomState(6)
    S = rs.laplace(size=(5000, 4))
    A = rs.randn(4, 4)
    X = S @ A.T
    Xw = ZCA(eps=0.0).fit_transform(X).astype(np.float32)
    rica = RICA(n_components=4, sparsity=0.5, max_iter=50, batch_size=5000, n_epochs=4, device="cpu",
                random_state=0).fit(Xw)
    Z = rica.transform(Xw)
    corr = np.abs(np.corrcoef(Z.T, S.T)[:4, 4:])
    assert corr.max(1).min() > 0.9
    assert np.allclose(np.linalg.norm(rica.components_.numpy(), axis=1), 1, atol=1e-4)


def test_zca_whitened_patches_have_identity_covariance():
    rs = np.random.RandomState(7)
    imgs = torch.from_numpy(rs.rand(50, 3, 16, 16).astype(np.float32)).cumsum(3)   # correlated pixels
    p = normalize_patches(extract_patches(imgs, 5, 10000, random_state=0), eps=0.01)
    assert p.shape == (10000, 75)
    torch.testing.assert_close(p.mean(1), torch.zeros(10000), atol=1e-5, rtol=0)
    x = p.numpy().astype(np.float64)
    s, u = np.linalg.eigh(np.cov(x.T))
    # per-patch mean removal leaves one direction (the constant patch) with ~0 variance; ZCA with
    # eps -> 0 whitens every other direction to unit variance
    zca = ZCA(eps=1e-8).fit(x)
    cov = u.T @ np.cov(zca.transform(x).T) @ u
    np.testing.assert_allclose(cov[1:, 1:], np.eye(74), atol=1e-6)
    assert s[0] < 1e-6 * s[-1]
    # the whitening matrix is symmetric (ZCA, not PCA) and inverse_transform undoes it
    assert np.allclose(zca.whitening_, zca.whitening_.T)
    np.testing.assert_allclose(zca.inverse_transform(zca.transform(x)), x, atol=1e-6)
    # with eps > 0 the covariance is S / (S + eps): the identity on the strong directions
    zca2 = ZCA(eps=0.1).fit(x)
    cov2 = u.T @ np.cov(zca2.transform(x).T) @ u
    np.testing.assert_allclose(cov2, np.diag(s / (s + 0.1)), atol=1e-6)
    assert np.diag(cov2)[-1] > 0.9                      # the strongest direction: ~ unit variance
    # float32 and tensors go through the same matrix
    torch.testing.assert_close(zca2.transform(p), torch.from_numpy(zca2.transform(x)).float(), atol=1e-4, rtol=1e-4)


def test_kmeans_finds_clusters_and_partial_fit():
    rs = np.random.RandomState(8)
    centers = rs.randn(5, 8) * 10
    X = (centers[rs.randint(0, 5, 3000)] + rs.randn(3000, 8)).astype(np.float32)
    km = KMeans(n_clusters=5, n_epochs=10, device="cpu", random_state=0).fit(X)
    d = np.linalg.norm(km.cluster_centers_.numpy()[:, None] - centers[None], axis=2)
    assert d.min(0).max() < 0.5                                      # found every true center
    F = km.transform(X)
    assert (F >= 0).all() and ((F > 0).sum(1) < 5).all()             # triangle: sparse, non-negative
    mb = KMeans(n_clusters=5, device="cpu", random_state=0, batch_size=256)
    for _ in range(5):
        mb.partial_fit(X)
    assert mb.history_[-1]["inertia"] < 3 * 8                         # ~ noise variance * D
    sph = KMeans(n_clusters=5, spherical=True, n_epochs=5, device="cpu", random_state=0).fit(X)
    assert np.allclose(np.linalg.norm(sph.cluster_centers_.numpy(), axis=1), 1, atol=1e-5)
    assert km.predict(X).shape == (3000,)


def test_filter_grid_png(tmp_path):
    path = tmp_path / "f.png"
    img = save_filter_grid(torch.randn(10, 3 * 6 * 6), path, shape=(3, 6, 6), zoom=2)
    assert path.stat().st_size > 100 and img.shape == (2 * (3 * 7 + 1), 2 * (4 * 7 + 1), 3)  # 4 columns x 3 rows of 6x6 + 1 pad
    with pytest.raises(ConfigError, match="shape"):
        save_filter_grid(torch.randn(10, 7), path, shape=(1, 2, 2))
