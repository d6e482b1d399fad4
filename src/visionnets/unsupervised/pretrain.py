"""Greedy layer-wise pretraining of an MLP (the tutorial's "layer-wise training of a feature hierarchy").

1) learn features on the data with an unsupervised learner; 2) encode the data and train
the next layer on the codes; ...; then the supervised net starts from the encoders and is
fine-tuned jointly ("given enough data, this usually yields the best results").

``pretrain_mlp`` walks an ``nn.Sequential`` of the form

    Flatten, Linear, act, [Dropout], Linear, act, [Dropout], ..., Linear(out)

(``visionnets.models.mlp`` builds exactly this). Layer k's learner is trained on the codes of
layers < k, computed through the model's own Linear and activation modules (dropout off), and
its encoder weight and bias are copied into Linear k. The last Linear (the classifier) is left
alone.

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(20, 8), nn.Sigmoid(), nn.Linear(8, 3))
    >>> stats = pretrain_mlp(net, torch.rand(64, 20), method="autoencoder", epochs=1, batch_size=16,
    ...                      random_state=0, device="cpu")
    >>> [s["layer"] for s in stats]
    ['1']
"""

from __future__ import annotations

import time

import torch
from torch import nn

from visionnets.errors import ConfigError, DataError
from visionnets.nn.activations import activation_name

METHODS = ("autoencoder", "denoising", "sparse", "rbm")
PRETRAINABLE = ("relu", "sigmoid", "tanh")   # the code non-linearities a learner can reproduce
_SKIPPABLE = (nn.Dropout, nn.Identity, nn.Flatten)


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules of an nn.Sequential (nested Sequentials flattened), in forward order."""
    if not isinstance(model, nn.Sequential):
        raise ConfigError(f"pretrain_mlp: model is a {type(model).__name__}; expected an nn.Sequential "
                          f"(Flatten, Linear, act, ..., Linear)")
    out = []
    for name, m in model.named_children():
        if isinstance(m, nn.Sequential):
            out += [(f"{name}.{n}", c) for n, c in _leaves(m)]
        else:
            out.append((name, m))
    return out


def mlp_layers(model: nn.Module) -> list[dict]:
    """For each Linear but the last: its name, module, index in the flattened model, activation."""
    leaves = _leaves(model)
    lin = [i for i, (_, m) in enumerate(leaves) if isinstance(m, nn.Linear)]
    if len(lin) < 2:
        raise ConfigError(f"pretrain_mlp: the model has {len(lin)} nn.Linear layer(s); expected at least 2 "
                          f"(hidden layers and a classifier)")
    layers = []
    for j, i in enumerate(lin[:-1]):
        act_idx, act = None, None
        for t in range(i + 1, lin[j + 1]):
            m = leaves[t][1]
            name = activation_name(m)
            if name in PRETRAINABLE:
                act_idx, act = t, name
                break
            if not isinstance(m, _SKIPPABLE):
                raise ConfigError(f"pretrain_mlp: module {leaves[t][0]!r} ({type(m).__name__}) follows Linear "
                                  f"{leaves[i][0]!r}; expected ReLU, Sigmoid, Tanh or Dropout")
        layers.append({"name": leaves[i][0], "linear": leaves[i][1], "index": i,
                       "act_index": act_idx if act_idx is not None else i,
                       "activation": act or "linear"})
    return layers


@torch.no_grad()
def _codes(leaves, upto: int, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """Run ``x`` through leaves[0..upto] (inclusive), in batches, with dropout off."""
    outs = []
    mods = [m for _, m in leaves[:upto + 1]]
    for lo in range(0, x.shape[0], batch_size):
        h = x[lo:lo + batch_size]
        for m in mods:
            if isinstance(m, nn.Dropout):
                continue
            h = m(h)
        outs.append(h)
    return torch.cat(outs)


def make_learner(method: str, n_components: int, activation: str, x: torch.Tensor, epochs: int,
                 lr: float, batch_size: int, **params):
    """The unsupervised learner for one layer. Unknown ``params`` raise ConfigError."""
    from visionnets.unsupervised.autoencoders import AutoEncoder, DenoisingAutoEncoder, SparseAutoEncoder
    from visionnets.unsupervised.rbm import RBM

    common = dict(n_components=n_components, batch_size=batch_size, n_epochs=epochs, learning_rate=lr)
    if method == "rbm":
        in01 = bool((x.min() >= 0) & (x.max() <= 1))
        kw = dict(visible="bernoulli" if in01 else "gaussian", **common)
        cls = RBM
    else:
        if activation == "linear":
            raise ConfigError(f"pretrain_mlp: layer without activation cannot be pretrained with {method!r}")
        kw = dict(activation=activation, tied=True, **common)
        cls = {"autoencoder": AutoEncoder, "denoising": DenoisingAutoEncoder, "sparse": SparseAutoEncoder}[method]
    kw.update(params)
    try:
        return cls(**kw)
    except TypeError as exc:
        raise ConfigError(f"pretrain_mlp: params {sorted(params)} do not fit {cls.__name__}: {exc}") from exc


def _reconstruction_error(learner, x: torch.Tensor) -> float:
    from visionnets.unsupervised.rbm import RBM

    if isinstance(learner, RBM):
        return float(learner.reconstruction_error(x).mean())
    return -learner.score(x)


def pretrain_mlp(model: nn.Module, x: torch.Tensor, method: str = "autoencoder", epochs: int = 5,
                 lr: float = 1e-3, batch_size: int = 128, **params) -> list[dict]:
    """Greedy layer-wise pretraining of ``model``'s hidden Linear layers, in place.

    ``x``: training inputs as the model takes them, e.g. (N, 1, 28, 28). ``method``: one of
    autoencoder, denoising, sparse, rbm. ``params`` go to the learner (``noise_level``,
    ``sparsity``, ``k``, ``device``, ``random_state``, ...; ``monitor_rows`` (default 2048) sets
    how many rows measure the reconstruction error). Auto-encoders use the layer's own
    activation for their code and tied weights; an RBM's visible units are Bernoulli when the
    layer's input lies in [0, 1], Gaussian otherwise.

    Returns one dict per pretrained layer: layer, in_features, out_features, method,
    activation, reconstruction_error_before / _after (on ``monitor_rows`` rows, before and after
    training the layer's learner), seconds, history.
    """
    if method not in METHODS:
        raise ConfigError(f"pretrain_mlp: method={method!r}; expected one of {METHODS}")
    if not isinstance(x, torch.Tensor) or x.shape[0] < 1:
        raise DataError("pretrain_mlp: x must be a non-empty tensor of training inputs")
    monitor_rows = int(params.pop("monitor_rows", 2048))
    leaves = _leaves(model)
    device = next(model.parameters()).device
    params.setdefault("device", device)
    was_training = model.training
    model.eval()
    stats = []
    try:
        inputs = x.to(device)
        for layer in mlp_layers(model):
            t0 = time.perf_counter()
            lin: nn.Linear = layer["linear"]
            codes = _codes(leaves, layer["index"] - 1, inputs) if layer["index"] > 0 else inputs
            codes = codes.reshape(codes.shape[0], -1)
            if codes.shape[1] != lin.in_features:
                raise ConfigError(f"pretrain_mlp: layer {layer['name']!r} expects {lin.in_features} inputs "
                                  f"but the codes below it have {codes.shape[1]}")
            learner = make_learner(method, lin.out_features, layer["activation"], codes, epochs, lr,
                                   batch_size, **params)
            mon = codes[:monitor_rows]
            before = _reconstruction_error(learner.initialize(codes), mon)
            for _ in range(epochs):
                learner.partial_fit(codes)
            after = _reconstruction_error(learner, mon)
            enc = learner.encoder_[0]
            with torch.no_grad():
                lin.weight.copy_(enc.weight.to(lin.weight.device))
                lin.bias.copy_(enc.bias.to(lin.bias.device))
            stats.append({"layer": layer["name"], "in_features": lin.in_features,
                          "out_features": lin.out_features, "method": method,
                          "activation": layer["activation"], "reconstruction_error_before": before,
                          "reconstruction_error_after": after, "seconds": time.perf_counter() - t0,
                          "history": learner.history_})
    finally:
        model.train(was_training)
    return stats
