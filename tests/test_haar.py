"""Haar-like features from integral images, against direct pixel sums."""

import numpy as np
import pytest
from sklearn.utils.estimator_checks import check_estimator

from visionnets.baselines.haar import CELLS, HaarFeatures


def direct(img: np.ndarray, kind: str, top: int, left: int, ch: int, cw: int) -> float:
    across, _, signs = CELLS[kind]
    total = 0.0
    for i, sign in enumerate(signs):
        y0, x0 = top + (i // across) * ch, left + (i % across) * cw
        total += sign * img[y0:y0 + ch, x0:x0 + cw].sum()
    return total


def test_features_equal_direct_sums_on_small_images():
    rng = np.random.default_rng(0)
    X = rng.random((6, 7 * 9))
    haar = HaarFeatures(n_features=200, image_shape=(7, 9), random_state=0).fit(X)
    got = haar.transform(X)
    assert {f[0] for f in haar.features_} == set(CELLS)                 # every kind drawn
    for n in range(6):
        img = X[n].reshape(7, 9)
        want = [direct(img, *f) for f in haar.features_]
        np.testing.assert_allclose(got[n], want, rtol=1e-10, atol=1e-10)
    assert (HaarFeatures(n_features=200, image_shape=(7, 9), random_state=0).fit(X).features_ == haar.features_)
    assert len(haar.get_feature_names_out()) == 200


def test_errors_and_scikit_learn_contract():
    strip = HaarFeatures(n_features=10, random_state=0).fit(np.zeros((2, 10)))     # not square: 1 x 10
    assert {f[0] for f in strip.features_} <= {"h2", "h3"}
    with pytest.raises(ValueError, match="image_shape"):
        HaarFeatures(image_shape=(3, 3)).fit(np.zeros((2, 10)))
    check_estimator(HaarFeatures(n_features=20, random_state=0))


def test_stumps_on_haar_features_learn_digits():
    from sklearn.datasets import load_digits
    from sklearn.pipeline import make_pipeline

    from visionnets.baselines.adaboost import AdaBoostMH

    X, y = load_digits(return_X_y=True)
    clf = make_pipeline(HaarFeatures(n_features=300, random_state=0), AdaBoostMH(n_rounds=80, device="cpu"))
    assert clf.fit(X[:1200], y[:1200]).score(X[1200:], y[1200:]) > 0.75
