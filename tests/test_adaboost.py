"""AdaBoost.MH: against a plain loop implementation, scikit-learn's conventions, MNIST-like data."""

import math

import numpy as np
import pytest
from sklearn.utils.estimator_checks import check_estimator

from visionnets.baselines.adaboost import AdaBoostMH


def loop_adaboost_mh(X, y, rounds):
    """The textbook algorithm, one feature, threshold and class at a time."""
    classes = np.unique(y)
    n, d, k = len(X), X.shape[1], len(classes)
    Y = np.where(y[:, None] == classes[None, :], 1.0, -1.0)
    W = np.where(Y > 0, 1 / (2 * n), 1 / (2 * n * (k - 1)))
    stumps = []
    for _ in range(rounds):
        best = (-1.0, None, None, None)
        for j in range(d):
            values = np.unique(X[:, j])
            for b in (values[:-1] + values[1:]) / 2:
                phi = np.where(X[:, j] >= b, 1.0, -1.0)
                gk = [sum(W[i, c] * Y[i, c] * phi[i] for i in range(n)) for c in range(k)]
                g = sum(abs(v) for v in gk)
                if g > best[0] + 1e-12:
                    best = (g, j, b, np.where(np.array(gk) >= 0, 1.0, -1.0))
        g, j, b, v = best
        alpha = 0.5 * math.log((1 + g) / (1 - g))
        phi = np.where(X[:, j] >= b, 1.0, -1.0)
        W = W * np.exp(-alpha * v[None, :] * phi[:, None] * Y)
        W /= W.sum()
        stumps.append((j, b, alpha, v))
    f = lambda Z: sum(a * v[None, :] * np.where(Z[:, j] >= b, 1.0, -1.0)[:, None] for j, b, a, v in stumps)  # noqa: E731
    return stumps, lambda Z: classes[f(Z).argmax(1)]


def test_matches_a_plain_loop_implementation():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 12, (60, 5)).astype(float)
    y = (X[:, 0] + 2 * X[:, 3] + rng.integers(0, 6, 60)) % 3
    stumps, predict = loop_adaboost_mh(X, y, 8)
    clf = AdaBoostMH(n_rounds=8, device="cpu").fit(X, y)
    assert clf.features_[:, 0].tolist() == [s[0] for s in stumps]
    np.testing.assert_allclose(clf.thresholds_[:, 0], [s[1] for s in stumps])
    np.testing.assert_allclose(clf.alphas_, [s[2] for s in stumps], rtol=1e-10)
    np.testing.assert_array_equal(clf.votes_, np.stack([s[3] for s in stumps]))
    Z = rng.integers(0, 12, (40, 5)).astype(float)
    np.testing.assert_array_equal(clf.predict(Z), predict(Z))
    staged = list(clf.staged_predict(Z))
    assert len(staged) == 8 and (staged[-1] == clf.predict(Z)).all()


def test_boosting_lowers_the_training_error_and_quantile_bins():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    clf = AdaBoostMH(n_rounds=60, n_bins=4, device="cpu").fit(X, y)
    errors = [float((p != y).mean()) for p in clf.staged_predict(X)]
    assert errors[-1] < 0.5 * errors[4] and errors[-1] < 0.35
    assert all(len(np.unique(clf.thresholds_[clf.features_ == j])) <= 3 for j in range(64))
    products = AdaBoostMH(n_rounds=60, product_size=3, device="cpu").fit(X, y)
    assert products.features_.shape == (60, 3)
    p_errors = [float((p != y).mean()) for p in products.staged_predict(X)]
    assert p_errors[-1] < errors[-1]                       # products of stumps fit more per round
    with pytest.raises(ValueError, match="n_rounds"):
        AdaBoostMH(n_rounds=0).fit(X, y)


def test_follows_the_scikit_learn_contract():
    check_estimator(AdaBoostMH(n_rounds=5, device="cpu"))
    check_estimator(AdaBoostMH())
    check_estimator(AdaBoostMH(random_state=0))


def test_predictions_are_evaluated_in_chunks_of_rounds(monkeypatch):
    """predict and staged_predict walk the rounds in chunks (memory n x chunk, not n x rounds):
    any chunk size gives the same scores, and the last stage is the decision function."""
    from visionnets.baselines import adaboost

    rng = np.random.default_rng(3)
    X = rng.normal(size=(80, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    est = AdaBoostMH(n_rounds=11, product_size=2, device="cpu").fit(X, y)
    whole = est.decision_function(X)
    stages = [f.copy() for f in est.staged_decision_function(X)]
    monkeypatch.setattr(adaboost, "ROUNDS_PER_CHUNK", 3)
    np.testing.assert_allclose(est.decision_function(X), whole, rtol=0, atol=1e-12)
    chunked = list(est.staged_decision_function(X))
    assert len(chunked) == len(stages) == len(est.alphas_)
    for a, b in zip(chunked, stages):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    np.testing.assert_allclose(chunked[-1], whole, rtol=0, atol=1e-12)
