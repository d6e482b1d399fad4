"""scikit-learn baselines for the tutorial's comparison table, behind one interface.

``BASELINES`` is a :class:`visionnets.registry.Registry` of factories; each builds a
:class:`Baseline` with ``fit(X, y)``, ``predict(X)``, ``n_parameters()``, ``name`` and
``tutorial_error`` (the tutorial's MNIST error in percent, or None)::

    >>> import numpy as np
    >>> from visionnets.baselines import BASELINES
    >>> b = BASELINES.build("linear")
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((40, 16)); y = (X[:, 0] > 0.5).astype(int)
    >>> b.fit(X, y).error(X, y) < 20
    True

``visionnets.baselines.compare`` trains them (and reads or trains our nets) to fill the
tutorial's MNIST table with numbers measured here.
"""

from visionnets.baselines.adaboost import AdaBoostMH
from visionnets.baselines.base import Baseline, as_features, as_labels
from visionnets.baselines.haar import HaarFeatures
from visionnets.baselines.methods import BASELINES

__all__ = ["BASELINES", "Baseline", "AdaBoostMH", "HaarFeatures", "as_features", "as_labels"]
