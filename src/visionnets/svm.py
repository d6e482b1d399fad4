"""The linear SVM of the tutorial (hinge loss), by full-batch L-BFGS in torch: one place for it.

One-vs-all L2-SVM (squared hinge) or multinomial logistic regression, minimizing

    0.5 ||W||^2 + C mean_n loss_n        (the bias unregularized)

which is the objective of Coates et al.'s code (``C * mean(margin.^2)``). ``train_linear`` is
the solver (Coates' pipeline calls it on its features, with warm starts along a grid of C);
``LinearSVM`` wraps it as a scikit-learn classifier (the ``linear_svm`` baseline of the MNIST
comparison)::

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 5)); y = np.where(X[:, 0] + X[:, 1] > 0, "a", "b")
    >>> clf = LinearSVM(C=10.0).fit(X, y)
    >>> clf.score(X, y) > 0.95, clf.classes_.tolist(), clf.coef_.shape
    (True, ['a', 'b'], (2, 5))
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from visionnets.device import resolve_device
from visionnets.errors import ConfigError

LOSSES = ("l2svm", "logistic")


def squared_hinge_loss(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One-vs-all L2-SVM loss ``sum_k max(0, 1 - t_k s_k)^2`` with t_k = +1 for the class, -1 otherwise; summed."""
    t = -torch.ones_like(scores)
    t.scatter_(1, y[:, None], 1.0)
    return F.relu(1 - t * scores).pow(2).sum()


def train_linear(x: torch.Tensor, y: torch.Tensor, n_classes: int, loss: str = "l2svm", C: float = 100.0,
                 max_iter: int = 500, device="auto", init: tuple[torch.Tensor, torch.Tensor] | None = None,
                 report: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimize ``0.5 ||W||^2 + C * mean_n loss_n`` (the bias unregularized) by full-batch L-BFGS.

    ``loss``: "l2svm" (squared hinge, one-vs-all) or "logistic" (softmax cross-entropy).
    ``init``: ``(W, b)`` to start from (a warm start, e.g. the solution for a neighbouring C).
    ``report``: a dict that receives ``n_iter``, the L-BFGS iterations run.
    Returns W (n_classes, D) and b (n_classes,).
    """
    if loss not in LOSSES:
        raise ConfigError(f"train_linear: loss={loss!r}; expected one of {', '.join(LOSSES)}")
    if not isinstance(C, numbers.Real) or C <= 0:
        raise ConfigError(f"train_linear: C={C!r}; expected a number > 0")
    dev = resolve_device(device)
    x, y = x.to(dev), y.to(dev)
    n = x.shape[0]
    if init is None:
        W = torch.zeros(n_classes, x.shape[1], device=dev)
        b = torch.zeros(n_classes, device=dev)
    else:
        W, b = (t.detach().to(dev, torch.float32).clone() for t in init)
        if W.shape != (n_classes, x.shape[1]) or b.shape != (n_classes,):
            raise ConfigError(f"train_linear: init shapes {tuple(W.shape)}, {tuple(b.shape)}; "
                              f"expected ({n_classes}, {x.shape[1]}) and ({n_classes},)")
    W.requires_grad_(True)
    b.requires_grad_(True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, history_size=20, tolerance_grad=1e-6,
                            tolerance_change=1e-10, line_search_fn="strong_wolfe")
    scale = 1.0 / C  # the objective divided by C: same minimizer, numbers of order 1

    def closure():
        opt.zero_grad(set_to_none=True)
        s = torch.addmm(b, x, W.t())
        data = squared_hinge_loss(s, y) if loss == "l2svm" else F.cross_entropy(s, y, reduction="sum")
        obj = data / n + 0.5 * scale * W.pow(2).sum()
        obj.backward()
        return obj

    opt.step(closure)
    if report is not None:
        report["n_iter"] = int(opt.state[W].get("n_iter", 0))
    return W.detach(), b.detach()


class LinearSVM(ClassifierMixin, BaseEstimator):
    """A linear classifier trained by :func:`train_linear`: ``predict(X) = argmax_k (W x + b)_k``.

    ``C``: the data term's weight (larger: less regularization); ``loss``: ``l2svm`` (squared
    hinge, one-vs-all) or ``logistic``; ``max_iter``: L-BFGS iterations; ``device``: where to
    fit. Fitted: ``coef_`` (K, D), ``intercept_`` (K,), ``classes_``, ``n_features_in_``, ``n_iter_``. Two
    classes are fitted as two one-vs-all scores (``coef_`` has 2 rows); ``decision_function`` then
    gives their difference, as scikit-learn's binary classifiers do.
    """

    def __init__(self, C: float = 100.0, loss: str = "l2svm", max_iter: int = 500, device: str = "cpu"):
        self.C, self.loss, self.max_iter, self.device = C, loss, max_iter, device

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=(np.float32, np.float64))
        check_classification_targets(y)
        self.classes_, index = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ConfigError(f"LinearSVM: y has {len(self.classes_)} class; expected at least 2")
        report: dict = {}
        W, b = train_linear(torch.tensor(X, dtype=torch.float32), torch.as_tensor(index, dtype=torch.long),
                            len(self.classes_), loss=self.loss, C=self.C, max_iter=self.max_iter,
                            device=self.device, report=report)
        self.coef_, self.intercept_ = W.cpu().numpy(), b.cpu().numpy()
        self.n_iter_ = max(report["n_iter"], 1)
        return self

    def decision_function(self, X) -> np.ndarray:
        """Class scores (N, K); for two classes, as scikit-learn, one score (N,): positive for ``classes_[1]``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=(np.float32, np.float64))
        scores = X @ self.coef_.T + self.intercept_
        return scores[:, 1] - scores[:, 0] if len(self.classes_) == 2 else scores

    def predict(self, X) -> np.ndarray:
        """The class of each row of ``X``: the one with the largest score."""
        d = self.decision_function(X)
        return self.classes_[(d > 0).astype(int) if d.ndim == 1 else d.argmax(1)]
