"""AV-MNIST: each MNIST image paired with a spoken recording of the same digit (two modalities).

The tutorial's multi-modal example fuses audio and video (Ngiam et al., ICML 2011). Here the
image is an MNIST digit (``x``, (1, 28, 28)) and the sound a recording of that digit from the
Free Spoken Digit Dataset (``../shared/data/fsdd/fsdd.npz``, 3,000 recordings of 6 speakers),
as a log-magnitude spectrogram (``audio``, (1, 32, 32)): the first 6,144 samples (0.77 s at
8 kHz, zero-padded), ``torch.stft`` with a 256-sample Hann window and a hop of 192 (the first
32 frames), the first 128 frequency bins averaged in groups of 4, ``log(1 + |S|)``, standardized with the training
recordings' mean and std. MNIST training images get FSDD's official training recordings
(index 5-49) and test images its test recordings (index 0-4), each image a recording of its
own class drawn with the seed: the pairing is deterministic.

Options weaken a modality so that fusion matters: ``image_noise`` and ``audio_noise`` add
Gaussian noise of that std (in the modality's units; images are in [0, 1]) to every split,
drawn with the seed.

    >>> ds = load_dataset("avmnist", "/path/to/data", subsample=2000)   # doctest: +SKIP
    >>> ds.modalities                                                   # doctest: +SKIP
    {'x': (1, 28, 28), 'audio': (1, 32, 32)}
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Annotated

import numpy as np
import pydantic
import torch

from visionnets.data.base import Dataset, Split, carve_validation, subsample_split, to_unit_float
from visionnets.data.catalog import DATASETS
from visionnets.data.files import KnownFile, Layout, Need, declare_files, locate
from visionnets.data.mnist import CLASS_NAMES, read_mnist
from visionnets.errors import DataError

FSDD_FILE = "fsdd.npz"
FSDD_SHA256 = "521ad62ed527ac2d2633e730f5ed348a9a4192942e72e341c525e90276b98adf"
declare_files("fsdd", Layout("npz", (Need((KnownFile(FSDD_FILE, FSDD_SHA256),)),)))
SAMPLES, N_FFT, HOP, BANDS = 6144, 256, 192, 32
FRAMES = 32                      # of the 33 frames of 6,144 samples (the last is mostly padding)
AUDIO_SHAPE = (1, BANDS, FRAMES)


def read_fsdd(path: Path) -> dict[str, np.ndarray]:
    """The FSDD arrays (``audio`` int16, ``offsets``, ``digit``, ``test``), checked."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in ("audio", "offsets", "digit", "test")}
    except KeyError as exc:
        raise DataError(f"{path}: no key {exc}; expected audio, offsets, digit, test") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: cannot read npz ({exc})") from None
    n = len(data["digit"])
    if len(data["offsets"]) != n + 1 or data["offsets"][-1] != len(data["audio"]) or len(data["test"]) != n:
        raise DataError(f"{path}: offsets, digit and test do not describe the same {n} recordings")
    return data


def spectrograms(data: dict[str, np.ndarray]) -> torch.Tensor:
    """Every recording as a (1, 32, 32) log-magnitude spectrogram (see the module docstring)."""
    off = data["offsets"]
    wave = torch.zeros(len(data["digit"]), SAMPLES)
    for i in range(len(wave)):
        clip = torch.from_numpy(data["audio"][off[i]:off[i + 1]][:SAMPLES].astype(np.float32) / 32768.0)
        wave[i, :len(clip)] = clip
    spec = torch.stft(wave, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True).abs()
    bands = spec[:, :BANDS * 4, :FRAMES].reshape(len(wave), BANDS, 4, FRAMES).mean(2)
    return torch.log1p(bands * 10.0).unsqueeze(1)


def pair_audio(labels: torch.Tensor, bank: torch.Tensor, bank_digits: torch.Tensor, seed: int) -> torch.Tensor:
    """For each label a recording of that digit from ``bank``, drawn with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    out = torch.empty((len(labels), *bank.shape[1:]), dtype=bank.dtype)
    for d in range(10):
        where = (labels == d).nonzero()[:, 0]
        pool = (bank_digits == d).nonzero()[:, 0]
        if len(where) and not len(pool):
            raise DataError(f"fsdd: no recording of digit {d} to pair with")
        out[where] = bank[pool[torch.randint(len(pool), (len(where),), generator=g)]]
    return out


@DATASETS.register("avmnist")
def avmnist(roots: list[Path], val_fraction: float, seed: int,
            image_noise: Annotated[float, pydantic.Field(ge=0)] = 0.0,
            audio_noise: Annotated[float, pydantic.Field(ge=0)] = 0.0,
            subsample: Annotated[int, pydantic.Field(ge=1)] | None = None) -> Dataset:
    """AV-MNIST from the MNIST and FSDD files: ``x`` (1, 28, 28) in [0, 1], ``audio`` (1, 32, 32)."""
    train, test, info = read_mnist(roots)
    found = locate("fsdd", roots)
    fsdd = read_fsdd(found.paths[0])
    bank = spectrograms(fsdd)
    digits, is_test = torch.from_numpy(fsdd["digit"]), torch.from_numpy(fsdd["test"])
    mean, std = bank[~is_test].mean(), bank[~is_test].std()
    bank = (bank - mean) / std
    train = subsample_split(train, subsample, seed)
    test = subsample_split(test, subsample, seed + 1)
    g = torch.Generator().manual_seed(seed + 2)

    def both(split: Split, pool: torch.Tensor, pair_seed: int) -> Split:
        audio = pair_audio(split.y, bank[pool], digits[pool], pair_seed)
        split = to_unit_float(split)
        x = split.x
        if image_noise:
            x = x + image_noise * torch.randn(x.shape, generator=g)
        if audio_noise:
            audio = audio + audio_noise * torch.randn(audio.shape, generator=g)
        return Split(x, split.y, {"audio": audio})

    train = both(train, ~is_test, seed)
    test = both(test, is_test, seed + 1)
    train, val = carve_validation(train, val_fraction, seed)
    return Dataset("avmnist", train, val, test, (1, 28, 28), 10, CLASS_NAMES,
                   info={**info, "audio_files": [str(p) for p in found.paths], "image_noise": image_noise,
                         "audio_noise": audio_noise, "subsample": subsample},
                   modalities={"x": (1, 28, 28), "audio": AUDIO_SHAPE})
