"""One interface over the scikit-learn baselines of the comparison table.

A :class:`Baseline` wraps a scikit-learn estimator with what the comparison needs: a
``name``, the tutorial's MNIST error for the same method (``tutorial_error``, in percent,
``None`` where the tutorial's table has no such row), ``fit(X, y)`` / ``predict(X)`` on
flattened images, and ``n_parameters()``: how many numbers the fitted model keeps to
predict (weights, thresholds, support vectors, stored examples; see each counter).

Inputs are 2-D float arrays ``X`` of shape (N, D) with values in [0, 1] (flattened
images) and ``y`` of shape (N,) holding class indices::

    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> b = Baseline("toy", LogisticRegression(), count=lambda est: est.coef_.size + est.intercept_.size)
    >>> X = np.array([[0.0, 0.1], [0.1, 0.0], [0.9, 1.0], [1.0, 0.9]]); y = np.array([0, 0, 1, 1])
    >>> b.fit(X, y).predict(X).tolist(), b.n_parameters()
    ([0, 0, 1, 1], 3)
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from visionnets.errors import ConfigError, DataError


def as_features(X: Any, what: str = "X") -> np.ndarray:
    """``X`` as a C-contiguous float32 (N, D) array with values in [0, 1]; DataError otherwise.

    A torch tensor or an image batch (N, C, H, W) is flattened to (N, C*H*W).
    """
    if hasattr(X, "detach"):                      # a torch tensor
        X = X.detach().cpu().numpy()
    X = np.asarray(X)
    if X.ndim < 2:
        raise DataError(f"{what}: expected an (N, D) array of flattened images, got shape {X.shape}")
    X = np.ascontiguousarray(X.reshape(len(X), -1), dtype=np.float32)
    if X.size and not np.isfinite(X).all():
        raise DataError(f"{what}: holds NaN or infinite values; expected pixels in [0, 1]")
    if X.size and (X.min() < -1e-6 or X.max() > 1 + 1e-6):
        raise DataError(f"{what}: values span [{X.min():.3g}, {X.max():.3g}]; expected pixels in [0, 1]")
    return X


def as_labels(y: Any, n: int, what: str = "y") -> np.ndarray:
    """``y`` as an int64 (N,) array of class indices; DataError otherwise."""
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.shape != (n,):
        raise DataError(f"{what}: expected shape ({n},) of class indices, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{what}: expected integer class indices, got dtype {y.dtype}")
    return y.astype(np.int64, copy=False)


class Baseline:
    """A named scikit-learn classifier with the tutorial's error and a parameter count.

    ``estimator`` is any scikit-learn classifier; ``count(estimator) -> int`` counts the
    numbers the fitted estimator keeps; ``params`` are the hyper-parameters the factory
    was called with (written into the comparison's JSON).
    """

    def __init__(self, name: str, estimator: Any, *, count: Callable[[Any], int],
                 label: str | None = None, tutorial_name: str | None = None,
                 tutorial_error: float | None = None, params: dict | None = None,
                 notes: str = ""):
        self.name = name
        self.estimator = estimator
        self.label = label or name
        self.tutorial_name = tutorial_name
        self.tutorial_error = tutorial_error
        self.params = dict(params or {})
        self.notes = notes
        self._count = count
        self.fitted_ = False

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({self.name!r}, {args})"

    def fit(self, X, y) -> "Baseline":
        """Fit on flattened images ``X`` (N, D) in [0, 1] and class indices ``y`` (N,)."""
        X = as_features(X)
        y = as_labels(y, len(X))
        if len(np.unique(y)) < 2:
            raise DataError(f"y: {self.name} needs at least 2 classes to fit, got {np.unique(y).tolist()}")
        self.estimator.fit(X, y)
        self.fitted_ = True
        return self

    def _check_fitted(self, what: str) -> None:
        if not self.fitted_:
            raise ConfigError(f"{self.name}.{what}: the baseline is not fitted; call fit(X, y) first")

    def predict(self, X) -> np.ndarray:
        """Class indices (N,) for flattened images ``X`` (N, D) in [0, 1]."""
        self._check_fitted("predict")
        return np.asarray(self.estimator.predict(as_features(X)))

    @property
    def gives_probabilities(self) -> bool:
        """Whether the method predicts class probabilities (scikit-learn's ``predict_proba``)."""
        return hasattr(self.estimator, "predict_proba")

    def probabilities(self, X) -> np.ndarray | None:
        """Class probabilities (N, n_classes), column ``k`` for class index ``k``, or None for a
        method that gives none (a margin or a vote of weak learners is not a probability).

        Classes absent from the training labels get probability 0.
        """
        self._check_fitted("probabilities")
        est = self.estimator
        if not self.gives_probabilities:           # e.g. SVC without probability=True, LinearSVC, AdaBoost.MH
            return None
        p = np.asarray(est.predict_proba(as_features(X)), dtype=np.float64)
        classes = np.asarray(est.classes_, dtype=np.int64)
        out = np.zeros((len(p), int(classes.max()) + 1))
        out[:, classes] = p
        return out

    def error(self, X, y) -> float:
        """Classification error on (X, y), in percent."""
        X = as_features(X)
        y = as_labels(y, len(X))
        return float(100.0 * np.mean(self.predict(X) != y))

    def n_parameters(self) -> int:
        """How many numbers the fitted model keeps to predict."""
        self._check_fitted("n_parameters")
        return int(self._count(self.estimator))
