"""The scikit-learn baselines: accuracy on a digits subsample, parameter counts, input checks."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from visionnets.baselines import BASELINES, Baseline
from visionnets.errors import ConfigError, DataError


@pytest.fixture(autouse=True)
def _one_thread():
    # 2 shared cores: OpenMP/BLAS thread pools oversubscribe and run ~10x slower than one thread.
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    X, y = d.data / 16.0, d.target
    order = np.random.default_rng(0).permutation(len(X))
    tr, te = order[:600], order[600:1000]
    return X[tr], y[tr], X[te], y[te]


# cheap settings for a 600-image subsample, and the accuracy each must reach on 400 test images
CASES = {
    "linear": ({}, 0.92),
    "linear_svm": ({}, 0.93),
    "knn": ({}, 0.95),
    "svm_rbf": ({}, 0.95),
    "boosted_trees": ({"max_iter": 20}, 0.90),
    "boosted_stumps": ({"n_rounds": 100}, 0.80),          # AdaBoost.MH: every stump votes for all classes
    # SAMME's stump votes for a single class per side: 100 rounds on 10 classes stay weak
    "boosted_stumps_samme": ({"n_estimators": 100}, 0.70),
    "haar_stumps": ({"n_features": 300, "n_rounds": 100}, 0.80),
    "product_stumps": ({"n_rounds": 60}, 0.80),
    "rbm_logistic": ({"n_components": 64, "n_iter": 20, "batch_size": 10, "C": 1000.0}, 0.85),
}


def test_every_baseline_is_tested():
    assert sorted(CASES) == BASELINES.names()


@pytest.mark.parametrize("name", sorted(CASES))
def test_baseline_learns_digits(name, digits):
    options, min_accuracy = CASES[name]
    X, y, Xt, yt = digits
    model = BASELINES.build(name, options)
    assert isinstance(model, Baseline) and model.name == name
    assert model.fit(X, y) is model
    pred = model.predict(Xt)
    assert pred.shape == yt.shape
    accuracy = float(np.mean(pred == yt))
    assert accuracy > min_accuracy, f"{name}: accuracy {accuracy:.3f}"
    assert model.error(Xt, yt) == pytest.approx(100 * (1 - accuracy))
    assert model.n_parameters() > 0


def test_tutorial_errors_are_the_tutorials_table():
    expected = {"linear": 12.0, "linear_svm": 12.0, "boosted_stumps": 7.7, "boosted_stumps_samme": None, "haar_stumps": 0.9, "product_stumps": 1.3,
                "boosted_trees": 1.5, "knn": 5.0, "svm_rbf": 1.4, "rbm_logistic": None}
    assert {n: BASELINES.build(n).tutorial_error for n in BASELINES.names()} == expected


def test_parameter_counts(digits):
    X, y, _, _ = digits
    n, d, k = X.shape[0], X.shape[1], 10
    assert BASELINES.build("linear").fit(X, y).n_parameters() == k * d + k
    assert BASELINES.build("linear_svm").fit(X, y).n_parameters() == k * d + k
    assert BASELINES.build("knn").fit(X, y).n_parameters() == n * (d + 1)
    rbm = BASELINES.build("rbm_logistic", {"n_components": 16, "n_iter": 1}).fit(X, y)
    assert rbm.n_parameters() == 16 * d + 16 + d + (k * 16 + k)
    svm = BASELINES.build("svm_rbf").fit(X, y)
    s = len(svm.estimator.support_)
    assert svm.n_parameters() == s * d + (k - 1) * s + k * (k - 1) // 2
    stumps = BASELINES.build("boosted_stumps_samme", {"n_estimators": 10}).fit(X, y)
    # a stump: feature and threshold of its one split, a vote per leaf, its weight
    assert stumps.n_parameters() == 5 * len(stumps.estimator.estimators_)
    mh = BASELINES.build("boosted_stumps", {"n_rounds": 10}).fit(X, y)
    assert mh.n_parameters() == 10 * (3 + k)                 # feature, threshold, weight, K votes
    trees = BASELINES.build("boosted_trees", {"max_iter": 3}).fit(X, y)
    per_tree = [2 * (p.nodes.shape[0] - p.get_n_leaf_nodes()) + p.get_n_leaf_nodes()
                for per_class in trees.estimator._predictors for p in per_class]
    assert len(per_tree) == 3 * k
    assert trees.n_parameters() == sum(per_tree) + k


def test_wrapper_predicts_as_the_plain_estimator(digits):
    X, y, Xt, _ = digits
    ref = KNeighborsClassifier(n_neighbors=3).fit(X, y).predict(Xt)
    np.testing.assert_array_equal(BASELINES.build("knn").fit(X, y).predict(Xt), ref)
    ref = SVC(C=5.0, gamma=0.05).fit(X, y).predict(Xt)
    np.testing.assert_array_equal(BASELINES.build("svm_rbf").fit(X, y).predict(Xt), ref)


def test_accepts_image_tensors(digits):
    X, y, Xt, yt = digits
    images = torch.tensor(X, dtype=torch.float32).reshape(-1, 1, 8, 8)
    model = BASELINES.build("knn").fit(images, torch.tensor(y))
    flat = BASELINES.build("knn").fit(X, y)
    np.testing.assert_array_equal(model.predict(torch.tensor(Xt).reshape(-1, 1, 8, 8)), flat.predict(Xt))


def test_unknown_baseline_names_it():
    with pytest.raises(ConfigError, match="unknown baseline 'nope'.*knn"):
        BASELINES.build("nope")


def test_unknown_option_names_it():
    with pytest.raises(ConfigError, match="kk: unknown key for baseline 'knn'"):
        BASELINES.build("knn", {"kk": 3})


def test_input_checks(digits):
    X, y, _, _ = digits
    model = BASELINES.build("linear")
    with pytest.raises(ConfigError, match="linear.predict: the baseline is not fitted"):
        model.predict(X)
    with pytest.raises(DataError, match=r"expected pixels in \[0, 1\]"):
        model.fit(X * 16, y)
    with pytest.raises(DataError, match=r"expected shape \(600,\)"):
        model.fit(X, y[:-1])
    with pytest.raises(DataError, match="integer class indices"):
        model.fit(X, y.astype(float))
    with pytest.raises(DataError, match="NaN"):
        model.fit(np.full_like(X, np.nan), y)
    with pytest.raises(DataError, match="at least 2 classes"):
        model.fit(X, np.zeros_like(y))
