"""Unsupervised feature learning: auto-encoders, RBMs, RICA, k-means, ZCA, layer-wise pretraining
(of fully connected layers, and of convolutional and locally connected stages).

Every learner is a scikit-learn style estimator (``fit`` / ``partial_fit`` / ``transform``,
fitted attributes ending in ``_``) trained by mini-batch with torch on CPU or GPU, and exposes
its torch ``encoder_`` (and ``decoder_``) to stack into nets. See docs/unsupervised.md.
"""

from visionnets.unsupervised.autoencoders import (AutoEncoder, DenoisingAutoEncoder, SparseAutoEncoder,
                                                  autoencoder_forward, autoencoder_loss, gaussian_noise,
                                                  mask_noise, reconstruction_error, sparsity_penalty)
from visionnets.unsupervised.filters import filter_tiles, save_filter_grid
from visionnets.unsupervised.patches import (ZCA, KMeans, extract_patches, normalize_patches,
                                             squared_distances, triangle_activation)
from visionnets.unsupervised.pretrain import pretrain_mlp
from visionnets.unsupervised.rbm import RBM, free_energy, pseudo_likelihood
from visionnets.unsupervised.rica import RICA, rica_loss, smooth_l1
from visionnets.unsupervised.stages import pretrain_stages, stage_loss

__all__ = [
    "AutoEncoder", "SparseAutoEncoder", "DenoisingAutoEncoder", "RBM", "RICA", "ZCA", "KMeans",
    "autoencoder_forward", "autoencoder_loss", "reconstruction_error", "sparsity_penalty",
    "mask_noise", "gaussian_noise", "free_energy", "pseudo_likelihood", "rica_loss", "smooth_l1",
    "extract_patches", "normalize_patches", "squared_distances", "triangle_activation",
    "pretrain_mlp", "pretrain_stages", "stage_loss", "filter_tiles", "save_filter_grid",
]
