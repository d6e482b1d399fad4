"""Dataset-level transforms (fitted on train only) and per-batch augmentations (seeded)."""

import pytest
import torch
import torch.nn.functional as F

from visionnets.data import build_augment, build_transforms, load_dataset
from visionnets.data.augment import color_jitter, crop_batch, cutout, hflip, random_crop, translate
from visionnets.data.transforms import Standardize, contrast_normalize, moments
from visionnets.errors import ConfigError, DataError


def test_moments_match_torch_reference():
    x = torch.randn(1000, 3, 5, 4, dtype=torch.float32) * 3 + 7
    for dims in ((0,), (0, 2, 3)):
        mean, var = moments(x, dims, chunk=128)
        ref = x.double()
        assert torch.allclose(mean, ref.mean(dim=dims, keepdim=True), atol=1e-10)
        assert torch.allclose(var, ref.var(dim=dims, unbiased=False, keepdim=True), atol=1e-9)


@pytest.mark.parametrize("per", ["channel", "pixel"])
def test_standardize_fitted_on_train_only(per):
    raw = load_dataset("digits")
    ds = load_dataset("digits", transforms=[{"name": "standardize", "per": per}])
    t = ds.transform.transforms[0]
    dims = (0, 2, 3) if per == "channel" else (0,)
    x = raw.train.x.double()
    assert torch.allclose(t.mean_.double(), x.mean(dim=dims, keepdim=True), atol=1e-6)
    std = x.std(dim=dims, unbiased=False, keepdim=True)
    std = torch.where(std < 1e-6, torch.ones_like(std), std)
    assert torch.allclose(t.std_.double(), std, atol=1e-6)
    # every split uses the train statistics: train is exactly standardized, test is not
    for split in ("train", "val", "test"):
        want = (getattr(raw, split).x - t.mean_) / t.std_
        assert torch.allclose(getattr(ds, split).x, want)
    assert ds.train.x.mean(dim=dims).abs().max() < 1e-5
    assert ds.test.x.mean(dim=dims).abs().max() > 1e-3
    assert bool(torch.isfinite(ds.test.x).all())              # constant border pixels: std 1


def test_standardize_vectors_and_shape_check():
    x = torch.randn(500, 6) * torch.arange(1, 7) + 2
    t = Standardize("channel").fit(x)
    y = t(x)
    assert torch.allclose(y.mean(0), torch.zeros(6), atol=1e-5)
    assert torch.allclose(y.std(0, unbiased=False), torch.ones(6), atol=1e-4)
    with pytest.raises(DataError, match=r"fitted on inputs of shape \(6,\), got \(5,\)"):
        t(torch.zeros(3, 5))
    with pytest.raises(DataError, match="call fit"):
        Standardize()(x)


def test_contrast_normalize_per_image():
    x = torch.rand(10, 3, 8, 8) * 0.5 + torch.arange(10).view(10, 1, 1, 1)
    y = contrast_normalize(x)
    assert torch.allclose(y.mean(dim=(1, 2, 3)), torch.zeros(10), atol=1e-5)
    assert torch.allclose(y.std(dim=(1, 2, 3), unbiased=False), torch.ones(10), atol=1e-4)
    flat = contrast_normalize(torch.full((2, 1, 4, 4), 0.3))
    assert torch.allclose(flat, torch.zeros(2, 1, 4, 4), atol=1e-5)       # no 0/0, no blow-up
    low = torch.zeros(1, 1, 2, 2)
    low[0, 0, 0, 0] = 4e-3                                                   # std 1.7e-3 < floor
    assert torch.allclose(contrast_normalize(low, min_std=1e-2), (low - 1e-3) / 1e-2)


def test_pipeline_order_and_flatten_updates_input_shape():
    ds = load_dataset("digits", transforms=["contrast_normalize", "standardize", "flatten"])
    assert ds.input_shape == (64,) and ds.train.x.shape[1:] == (64,) and ds.test.x.shape[1:] == (64,)
    raw = load_dataset("digits")
    manual = build_transforms(["contrast_normalize", "standardize", "flatten"]).fit(raw.train.x)
    assert torch.allclose(manual(raw.test.x), ds.test.x)
    assert torch.allclose(ds.transform(raw.val.x), ds.val.x)
    assert "Standardize" in ds.info["transforms"]


def test_spec_errors_name_the_key_path():
    with pytest.raises(ConfigError, match=r"data.transforms\[1\].name: unknown transform 'whiten'"):
        build_transforms(["standardize", "whiten"])
    with pytest.raises(ConfigError, match=r"data.transforms\[0\].per: .*'channel' or 'pixel'"):
        build_transforms([{"name": "standardize", "per": "row"}])
    with pytest.raises(ConfigError, match=r"data.transforms\[0\].scale: unknown key"):
        build_transforms([{"name": "flatten", "scale": 2}])
    with pytest.raises(ConfigError, match=r"data.transforms\[0\].name: missing"):
        build_transforms([{"per": "pixel"}])
    with pytest.raises(ConfigError, match=r"data.transforms\[0\].name: unknown transform 'translate' "
                                          r"\('translate' is an augmentation: put it under data.augment\)"):
        build_transforms(["translate"])
    with pytest.raises(ConfigError, match=r"data.augment\[1\].max_shft: unknown key for augmentation"):
        build_augment(["hflip", {"name": "translate", "max_shft": 2}])
    with pytest.raises(ConfigError, match=r"data.augment\[0\].max_shift: .*greater than or equal to 0"):
        build_augment([{"name": "translate", "max_shift": -1}])
    with pytest.raises(ConfigError, match=r"data.augment\[0\].p"):
        build_augment([{"name": "hflip", "p": 2}])
    with pytest.raises(ConfigError, match=r"data.augment: expected a list"):
        build_augment(3)
    # the bad spec fails before any file is read
    with pytest.raises(ConfigError, match=r"data.transforms\[0\]"):
        load_dataset("mnist", "/nonexistent", transforms=["nope"])
    assert build_transforms([]) is None and build_augment(None) is None and build_augment([]) is None


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_translate_matches_per_sample_reference():
    x = torch.rand(16, 3, 9, 7)
    out = translate(x, _gen(4), max_shift=2)
    g = _gen(4)
    top = torch.randint(0, 5, (16,), generator=g)
    left = torch.randint(0, 5, (16,), generator=g)
    for b in range(16):
        dy, dx = 2 - int(top[b]), 2 - int(left[b])         # content moves by (dy, dx)
        ref = torch.zeros(3, 9, 7)
        src = x[b, :, max(0, -dy):9 - max(0, dy), max(0, -dx):7 - max(0, dx)]
        ref[:, max(0, dy):max(0, dy) + src.shape[1], max(0, dx):max(0, dx) + src.shape[2]] = src
        assert torch.equal(out[b], ref)
    assert torch.equal(translate(x, _gen(0), max_shift=0), x)


def test_random_crop_matches_reference_and_refuses_other_sizes():
    x = torch.rand(8, 3, 6, 6)
    out = random_crop(x, _gen(1), padding=2)
    g = _gen(1)
    top, left = torch.randint(0, 5, (8,), generator=g), torch.randint(0, 5, (8,), generator=g)
    padded = F.pad(x, (2, 2, 2, 2))
    for b in range(8):
        assert torch.equal(out[b], padded[b, :, top[b]:top[b] + 6, left[b]:left[b] + 6])
    with pytest.raises(DataError, match="random_crop size 4 differs from the image size 6x6"):
        random_crop(x, _gen(1), size=4)
    assert torch.equal(crop_batch(x, torch.zeros(8, dtype=torch.long), torch.zeros(8, dtype=torch.long), 6, 6), x)
    view = torch.rand(9, 8, 7, 3).permute(0, 3, 1, 2)[1:, :, 1:, :]     # strided, offset view
    top, left = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]), torch.tensor([2, 0, 1, 2, 0, 1, 0, 0])
    got = crop_batch(view, top, left, 4, 5)
    for b in range(8):
        assert torch.equal(got[b], view[b, :, top[b]:top[b] + 4, left[b]:left[b] + 5])


def test_cutout_zeroes_a_clipped_square_around_a_random_pixel_per_image():
    x = torch.rand(32, 2, 9, 7) + 1.0                        # nothing is 0 before
    out = cutout(x, _gen(5), size=4)
    g = _gen(5)
    cy, cx = torch.randint(0, 9, (32, 1), generator=g), torch.randint(0, 7, (32, 1), generator=g)
    for b in range(32):
        ref = x[b].clone()
        y0, x0 = int(cy[b]) - 2, int(cx[b]) - 2               # the square's corner, before clipping
        ref[:, max(0, y0):y0 + 4, max(0, x0):x0 + 4] = 0
        assert torch.equal(out[b], ref)
    inner = (out[:, 0] == 0).flatten(1).sum(1)
    assert int(inner.max()) == 16 and int(inner.min()) >= 4    # whole inside; clipped at a corner
    assert torch.equal(cutout(x, _gen(5), size=4), out)
    assert "cutout(size=3)" in repr(build_augment([{"name": "cutout", "size": 3}]))


def test_color_jitter_matches_a_per_image_reference():
    x = torch.randn(16, 3, 5, 6, dtype=torch.float64)
    out = color_jitter(x, _gen(2), brightness=0.5, contrast=0.3, saturation=0.8)
    g = _gen(2)
    s, c, b = (torch.rand(16, 1, 1, 1, generator=g).double() for _ in range(3))
    for i in range(16):
        img = x[i]
        gray = img.mean(0, keepdim=True)
        img = gray + (0.2 + 1.6 * s[i]) * (img - gray)                  # saturation in [0.2, 1.8]
        img = img.mean() + (0.7 + 0.6 * c[i]) * (img - img.mean())     # contrast in [0.7, 1.3]
        img = img + (-0.5 + 1.0 * b[i])                                 # brightness in [-0.5, 0.5]
        assert torch.allclose(out[i], img, atol=1e-12)
    assert torch.equal(color_jitter(x, _gen(2), 0.0, 0.0, 0.0), x)
    gray = torch.randn(4, 1, 5, 5)                                      # one channel: no saturation
    assert torch.equal(color_jitter(gray, _gen(1), 0.0, 0.0, 1.0), gray)
    assert "color_jitter(brightness=0.1, contrast=0.2, saturation=0.3)" in repr(
        build_augment([{"name": "color_jitter", "brightness": 0.1, "contrast": 0.2, "saturation": 0.3}]))


def test_hflip_flips_about_p_of_the_images():
    x = torch.rand(2000, 1, 3, 4)
    out = hflip(x, _gen(0), p=0.3)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    same = (out == x).flatten(1).all(1)
    assert bool((flipped | same).all())
    assert 0.25 < flipped.float().mean() < 0.35
    assert torch.equal(hflip(x, _gen(0), p=0.0), x)


def test_augment_deterministic_given_a_seed_and_shape_checks():
    aug = build_augment([{"name": "random_crop", "padding": 3}, {"name": "translate", "max_shift": 1},
                         {"name": "hflip", "p": 0.5}])
    x = torch.rand(32, 3, 16, 16)
    a, b = aug(x, _gen(7)), aug(x, _gen(7))
    assert torch.equal(a, b) and a.shape == x.shape
    assert not torch.equal(a, aug(x, _gen(8)))
    g = _gen(7)
    assert not torch.equal(aug(x, g), aug(x, g))           # the generator advances
    assert "translate(max_shift=1)" in repr(aug)
    with pytest.raises(DataError, match=r"translate needs image batches \(B, C, H, W\), got shape \(4, 64\)"):
        translate(torch.zeros(4, 64), _gen(0), max_shift=1)
