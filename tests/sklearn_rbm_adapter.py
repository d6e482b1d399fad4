"""A pytest plugin: scikit-learn's own BernoulliRBM tests, run on visionnets' RBM.

``python -m pytest <sklearn>/neural_network/tests/test_rbm.py -p sklearn_rbm_adapter`` replaces
``sklearn.neural_network.BernoulliRBM`` before the test module is imported. The adapter maps
names only: scikit-learn's parameters onto the RBM's (``n_iter`` is ``n_epochs``; the algorithm
scikit-learn implements: PCD-1, no momentum or weight decay, visible biases from 0) and its
private helper and attribute (``_mean_hiddens`` is ``transform``, ``h_samples_`` the persistent
chain). Used by tests/test_sklearn_conventions.py.
"""

import sklearn.neural_network

from visionnets.unsupervised import RBM


class BernoulliRBM(RBM):
    """visionnets' RBM under scikit-learn's BernoulliRBM names."""

    def __init__(self, n_components=256, *, learning_rate=0.1, batch_size=10, n_iter=10, verbose=0,
                 random_state=None):
        super().__init__(n_components=n_components, learning_rate=learning_rate, batch_size=batch_size,
                         n_epochs=n_iter, verbose=verbose, random_state=random_state, k=1, persistent=True,
                         momentum=0.0, weight_decay=0.0, visible_bias_init="zero", device="cpu")
        self.n_iter = n_iter

    def get_params(self, deep=True):
        return {k: getattr(self, k) for k in ("n_components", "learning_rate", "batch_size", "n_iter",
                                              "verbose", "random_state")}

    def set_params(self, **params):
        for k, v in params.items():
            setattr(self, k, v)
        self.n_epochs = self.n_iter
        return self

    def _mean_hiddens(self, X):
        return self.transform(X)

    @property
    def h_samples_(self):
        return self.persistent_chain_


def pytest_configure(config):
    sklearn.neural_network.BernoulliRBM = BernoulliRBM
