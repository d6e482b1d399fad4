"""The baselines of the tutorial's MNIST table, as scikit-learn estimators, by name.

The tutorial ("Comparison to other methods", MNIST table; numbers from LeCun's MNIST page)
lists: linear classifier 12.0 %, boosted stumps 7.7 %, boosted trees 1.5 %, K-NN 5.0 %,
SVM with a Gaussian kernel 1.4 %. Each factory below builds that method with standard,
documented hyper-parameters for pixels scaled to [0, 1]; ``rbm_logistic`` adds the
probabilistic side (RBM features, then a linear classifier), which has no row in the
tutorial's table (``tutorial_error=None``).

    >>> from visionnets.baselines import BASELINES
    >>> BASELINES.names()
    ['boosted_stumps', 'boosted_stumps_samme', 'boosted_trees', 'haar_stumps', 'knn', 'linear', 'linear_svm', 'product_stumps', 'rbm_logistic', 'svm_rbf']
    >>> knn = BASELINES.build("knn", {"k": 1})
    >>> knn.name, knn.tutorial_error
    ('knn', 5.0)
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import AdaBoostClassifier, HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import BernoulliRBM
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from visionnets.baselines.base import Baseline
from visionnets.registry import Registry

BASELINES = Registry("baseline")


# ---- parameter counters: how many numbers the fitted model keeps to predict ----

def _count_linear(est) -> int:
    """Weights and biases: K*D + K (K classes, D pixels)."""
    return int(est.coef_.size + est.intercept_.size)


def _count_tree(tree) -> int:
    """A fitted sklearn tree: 2 numbers per split (feature, threshold), 1 per leaf (its vote)."""
    t = tree.tree_
    leaves = int((t.children_left == -1).sum())
    return 2 * (t.node_count - leaves) + leaves


def _count_adaboost(est) -> int:
    """Every stump (feature, threshold, 2 leaf votes) plus its weight in the vote."""
    return sum(_count_tree(t) for t in est.estimators_) + len(est.estimators_)


def _count_adaboost_mh(est) -> int:
    """Every base learner: the feature and threshold of each of its m stumps, its weight, and its
    vote for each of the K classes."""
    t, m = est.features_.shape
    return int(t * (2 * m + 1 + est.votes_.shape[1]))


def _count_haar_stumps(est) -> int:
    """The stumps, and 5 numbers (kind, top, left, cell size) for each Haar feature they use."""
    boost = est.named_steps["boost"]
    return _count_adaboost_mh(boost) + 5 * len(np.unique(boost.features_))


def _count_hist_gb(est) -> int:
    """Every tree (2 per split, 1 per leaf) plus the K initial scores.

    scikit-learn keeps the trees in ``_predictors`` (one list of K trees per iteration);
    it has no public accessor for them.
    """
    total = int(est._baseline_prediction.size)
    for per_class in est._predictors:
        for pred in per_class:
            leaves = int(pred.nodes["is_leaf"].sum())
            total += 2 * (len(pred.nodes) - leaves) + leaves
    return total


def _count_knn(est) -> int:
    """k-NN keeps the training set: N*D pixels plus N labels."""
    return int(est.n_samples_fit_ * (est.n_features_in_ + 1))


def _count_svc(est) -> int:
    """Support vectors (S*D), their dual coefficients ((K-1)*S) and K(K-1)/2 intercepts."""
    return int(est.support_vectors_.size + est.dual_coef_.size + est.intercept_.size)


def _count_rbm_logistic(est) -> int:
    """RBM weights and both biases (H*D + H + D), then the classifier on H features."""
    rbm, clf = est.named_steps["rbm"], est.named_steps["classifier"]
    return int(rbm.components_.size + rbm.intercept_hidden_.size + rbm.intercept_visible_.size
               + _count_linear(clf))


# ---- the methods ----

@BASELINES.register("linear")
def linear(C: float = 1.0, max_iter: int = 1000, tol: float = 1e-4) -> Baseline:
    """Linear classifier: multinomial logistic regression on the pixels (L-BFGS).

    The tutorial's "Linear Classifier: Logistic Regression" slide, ``p(y|x) = softmax(W x + b)``
    with an L2 penalty ``|W|^2 / (2C)``; scikit-learn's default ``C=1``. The tutorial's 12.0 %
    (LeCun et al. 1998) is a 1-layer net trained on the same pixels.
    """
    est = LogisticRegression(C=C, max_iter=max_iter, tol=tol)
    return Baseline("linear", est, count=_count_linear, label="Linear classifier (logistic regression)",
                    tutorial_name="Linear Classifier", tutorial_error=12.0,
                    params={"C": C, "max_iter": max_iter, "tol": tol})


@BASELINES.register("linear_svm")
def linear_svm(C: float = 100.0, max_iter: int = 500) -> Baseline:
    """Linear SVM: one-vs-all squared hinge on the pixels, by L-BFGS (:class:`visionnets.svm.LinearSVM`).

    The tutorial's "Linear Classifier: SVM" slide (hinge loss); ``0.5 ||W||^2 + C mean_n loss_n``,
    the same solver Coates et al.'s pipeline uses on its features.
    """
    from visionnets.svm import LinearSVM   # torch: imported when the baseline is built, not for `--help`

    return Baseline("linear_svm", LinearSVM(C=C, max_iter=max_iter), count=_count_linear,
                    label="Linear classifier (L2-SVM)", tutorial_name="Linear Classifier", tutorial_error=12.0,
                    params={"C": C, "max_iter": max_iter})


@BASELINES.register("boosted_stumps")
def boosted_stumps(n_rounds: int = 1000, n_bins: int = 256) -> Baseline:
    """Boosted stumps as in the tutorial's row: AdaBoost.MH with vector-valued discrete stumps
    (Kegl and Busa-Fekete 2009; ``visionnets.baselines.AdaBoostMH``): each round one threshold on
    one pixel, voting for every class at once. The row records the rounds, the seconds per round
    and the test error after every round (``extra.error_by_round``: the curve)."""
    from visionnets.baselines.adaboost import AdaBoostMH

    est = AdaBoostMH(n_rounds=n_rounds, n_bins=n_bins)
    return Baseline("boosted_stumps", est, count=_count_adaboost_mh,
                    label="Boosted stumps (AdaBoost.MH, discrete stumps)",
                    tutorial_name="Boosted stumps", tutorial_error=7.7,
                    params={"n_rounds": n_rounds, "n_bins": n_bins})


@BASELINES.register("product_stumps")
def product_stumps(n_rounds: int = 1000, product_size: int = 3, n_bins: int = 256) -> Baseline:
    """Products of boosted stumps: AdaBoost.MH whose base learner is ``alpha v prod_j phi_j(x)``,
    a product of ``product_size`` stumps (Kegl and Busa-Fekete 2009), the tutorial's "Product of
    boosted stumps" row."""
    from visionnets.baselines.adaboost import AdaBoostMH

    est = AdaBoostMH(n_rounds=n_rounds, n_bins=n_bins, product_size=product_size)
    return Baseline("product_stumps", est, count=_count_adaboost_mh,
                    label=f"Products of {product_size} stumps (AdaBoost.MH)",
                    tutorial_name="Product of boosted stumps", tutorial_error=1.3,
                    params={"n_rounds": n_rounds, "product_size": product_size, "n_bins": n_bins})


@BASELINES.register("haar_stumps")
def haar_stumps(n_features: int = 2000, n_rounds: int = 1000, seed: int = 0) -> Baseline:
    """Stumps on Haar features: AdaBoost.MH on a seeded pool of ``n_features`` Haar-like features
    (``visionnets.baselines.HaarFeatures``: differences of rectangle sums from integral images),
    the tutorial's "Stumps on Haar features" row (Kegl and Busa-Fekete 2009)."""
    from visionnets.baselines.adaboost import AdaBoostMH
    from visionnets.baselines.haar import HaarFeatures

    est = Pipeline([("haar", HaarFeatures(n_features=n_features, random_state=seed)),
                    ("boost", AdaBoostMH(n_rounds=n_rounds))])
    return Baseline("haar_stumps", est, count=_count_haar_stumps,
                    label="Stumps on Haar features (AdaBoost.MH)",
                    tutorial_name="Stumps on Haar features", tutorial_error=0.9,
                    params={"n_features": n_features, "n_rounds": n_rounds, "seed": seed})


@BASELINES.register("boosted_stumps_samme")
def boosted_stumps_samme(n_estimators: int = 200, learning_rate: float = 1.0, seed: int = 0) -> Baseline:
    """scikit-learn's multi-class AdaBoost (SAMME) on depth-1 decision trees, for reference.

    ``F(x) = sum_t alpha_t h_t(x)``, each ``h_t`` a single threshold on one pixel; SAMME's stump
    votes for one class per side, so it needs many more rounds than AdaBoost.MH for the same
    error (no tutorial row: the tutorial's is AdaBoost.MH, ``boosted_stumps``).
    """
    est = AdaBoostClassifier(DecisionTreeClassifier(max_depth=1), n_estimators=n_estimators,
                             learning_rate=learning_rate, random_state=seed)
    return Baseline("boosted_stumps_samme", est, count=_count_adaboost,
                    label="Boosted stumps (AdaBoost SAMME, scikit-learn)",
                    params={"n_estimators": n_estimators, "learning_rate": learning_rate, "seed": seed})


@BASELINES.register("boosted_trees")
def boosted_trees(max_iter: int = 200, max_leaf_nodes: int = 17, learning_rate: float = 0.1,
                  seed: int = 0) -> Baseline:
    """Boosted trees: histogram gradient boosting, K trees of ``max_leaf_nodes`` leaves a round.

    17 leaves as in the tutorial's source (Kegl and Busa-Fekete 2009, boosted trees with 17
    leaves, 1.53 %); no early stopping, so every round is trained.
    """
    est = HistGradientBoostingClassifier(max_iter=max_iter, max_leaf_nodes=max_leaf_nodes,
                                         learning_rate=learning_rate, early_stopping=False,
                                         random_state=seed)
    return Baseline("boosted_trees", est, count=_count_hist_gb,
                    label=f"Boosted trees (gradient boosting, {max_leaf_nodes} leaves)",
                    tutorial_name="Boosted trees", tutorial_error=1.5,
                    params={"max_iter": max_iter, "max_leaf_nodes": max_leaf_nodes,
                            "learning_rate": learning_rate, "seed": seed})


@BASELINES.register("knn")
def knn(k: int = 3) -> Baseline:
    """k nearest neighbours with the Euclidean distance, majority vote of the ``k`` nearest.

    k=3 with the L2 distance on raw pixels, as in the K-NN rows of LeCun's MNIST page
    (LeCun et al. 1998: 5.0 %; K. Wilder, k=3, L2: 3.09 %). Brute-force search (BLAS).
    """
    est = KNeighborsClassifier(n_neighbors=k, algorithm="brute", metric="euclidean")
    return Baseline("knn", est, count=_count_knn, label=f"k-NN (Euclidean, k={k})",
                    tutorial_name="K-NN", tutorial_error=5.0, params={"k": k})


@BASELINES.register("svm_rbf")
def svm_rbf(C: float = 5.0, gamma: float = 0.05, cache_mb: float = 1000.0) -> Baseline:
    """Support vector machine with a Gaussian kernel ``k(x, x') = exp(-gamma |x - x'|^2)``.

    One-vs-one libsvm. C=5, gamma=0.05 is the grid-search optimum widely reported for
    MNIST pixels scaled to [0, 1] (e.g. K. Sopyla's svm_mnist_digit_classification, 98.2-98.5 %).
    """
    est = SVC(C=C, kernel="rbf", gamma=gamma, cache_size=cache_mb)
    return Baseline("svm_rbf", est, count=_count_svc, label="SVM, Gaussian kernel",
                    tutorial_name="SVM Gaussian kernel", tutorial_error=1.4,
                    params={"C": C, "gamma": gamma})


@BASELINES.register("rbm_logistic")
def rbm_logistic(n_components: int = 256, learning_rate: float = 0.05, n_iter: int = 10,
                 batch_size: int = 20, C: float = 10.0, seed: int = 0) -> Baseline:
    """Probabilistic features: a Bernoulli RBM trained without labels, then logistic regression.

    The RBM (persistent contrastive divergence) learns ``E[h|x] = sigmoid(W x + b_h)``, the
    tutorial's "Probabilistic Model" side of the auto-encoder slide; the classifier sees
    only those hidden means. The tutorial's MNIST table has no row for it.
    """
    est = Pipeline([
        ("rbm", BernoulliRBM(n_components=n_components, learning_rate=learning_rate, n_iter=n_iter,
                             batch_size=batch_size, random_state=seed)),
        ("classifier", LogisticRegression(C=C, max_iter=1000)),
    ])
    return Baseline("rbm_logistic", est, count=_count_rbm_logistic,
                    label=f"RBM features ({n_components}) + logistic regression",
                    tutorial_name=None, tutorial_error=None,
                    params={"n_components": n_components, "learning_rate": learning_rate,
                            "n_iter": n_iter, "batch_size": batch_size, "C": C, "seed": seed})
