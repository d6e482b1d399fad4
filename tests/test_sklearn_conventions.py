"""The unsupervised estimators follow scikit-learn's conventions, checked by scikit-learn's own tools."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import check_estimator

import sklearn
from visionnets.svm import LinearSVM
from visionnets.unsupervised import RBM, RICA, ZCA, AutoEncoder, DenoisingAutoEncoder, KMeans, SparseAutoEncoder

SMALL = {RBM: dict(n_components=4, n_epochs=2), RICA: dict(n_components=4, n_epochs=2),
         AutoEncoder: dict(n_components=3, n_epochs=2), SparseAutoEncoder: dict(n_components=3, n_epochs=2),
         DenoisingAutoEncoder: dict(n_components=3, n_epochs=2), KMeans: dict(n_clusters=3, n_epochs=2)}
X = np.random.default_rng(0).random((40, 6))


@pytest.mark.parametrize("cls", list(SMALL), ids=lambda c: c.__name__)
def test_check_estimator_with_random_state_0(cls):
    check_estimator(cls(random_state=0, device="cpu"))


@pytest.mark.parametrize("cls", [*SMALL, ZCA, LinearSVM], ids=lambda c: c.__name__)
def test_check_estimator_with_default_settings(cls):
    check_estimator(cls())


@pytest.mark.parametrize("cls", list(SMALL), ids=lambda c: c.__name__)
def test_names_dtypes_sparse_and_pickle(cls):
    est = cls(random_state=0, device="cpu", **SMALL[cls])
    out = est.fit(X).transform(X)
    k = SMALL[cls].get("n_components") or SMALL[cls]["n_clusters"]
    assert list(est.get_feature_names_out()) == [f"{cls.__name__.lower()}{i}" for i in range(k)]
    assert out.dtype == np.float64 and est.transform(X.astype(np.float32)).dtype == np.float32
    assert est.transform((X * 10).astype(int)).dtype == np.float64
    np.testing.assert_allclose(est.transform(sparse.csr_matrix(X)), out)
    pipe = make_pipeline(cls(random_state=0, device="cpu", **SMALL[cls])).set_output(transform="default")
    assert pipe.fit_transform(X).shape == (40, k)
    # a pickled estimator goes on learning exactly as the original
    copy = pickle.loads(pickle.dumps(est))
    np.testing.assert_allclose(copy.partial_fit(X).transform(X), est.partial_fit(X).transform(X), atol=1e-6)


@pytest.mark.parametrize("cls", [*SMALL, ZCA], ids=lambda c: c.__name__)
def test_set_output_pandas_names_the_columns(cls):
    import pandas as pd

    est = cls(**({} if cls is ZCA else dict(random_state=0, device="cpu", **SMALL[cls])))
    df = pd.DataFrame(X, columns=list("abcdef"))
    out = est.set_output(transform="pandas").fit(df).transform(df)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list(est.get_feature_names_out())
    if cls is ZCA:
        assert list(out.columns) == list("abcdef")


def test_no_public_method_always_raises():
    gaussian = RBM(visible="gaussian", n_components=3, n_epochs=1, device="cpu").fit(X)
    assert not hasattr(gaussian, "score_samples")                # pseudo-likelihood: Bernoulli only
    assert hasattr(RBM(n_components=3, n_epochs=1).fit(X), "score_samples")


SKLEARN_RBM_TESTS = Path(sklearn.__file__).parent / "neural_network" / "tests" / "test_rbm.py"
# scikit-learn's tests that cannot hold for another implementation, each with its reason
DESELECTED = {
    "test_fit_gibbs": "expects components_ to 4 decimals from scikit-learn's own random stream",
    "test_sample_hiddens": "calls the private helper _sample_hiddens with a NumPy RandomState on one 1-D "
                           "sample; visionnets samples with torch generators (public: gibbs, sample)",
}


def test_scikit_learns_own_bernoulli_rbm_tests_pass():
    """scikit-learn's test module for BernoulliRBM, as installed, on our RBM (tests/sklearn_rbm_adapter.py)."""
    assert SKLEARN_RBM_TESTS.is_file(), SKLEARN_RBM_TESTS
    here = Path(__file__).parent
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "sklearn_rbm_adapter",
            str(SKLEARN_RBM_TESTS), "-k", " and ".join(f"not {name}" for name in DESELECTED)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(here), os.environ.get("PYTHONPATH", "")]))
    p = subprocess.run(args, cwd=here, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:]
    summary = p.stdout.strip().splitlines()[-1]
    assert "failed" not in summary and " passed" in summary and "deselected" in summary, summary
    assert int(summary.split(" passed")[0].split()[-1]) >= 19
