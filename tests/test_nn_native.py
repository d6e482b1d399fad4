"""The native float32 kernels of the locally connected layer (``visionnets.nn._native``): the
forward pass and both gradients against a float64 reference on awkward shapes and thread counts,
the switch, and the fallback when the library cannot be built."""

import shutil

import pytest
import torch

from visionnets.nn import LocallyConnected2d, _native
from visionnets.nn import functional as VF

native_here = _native.available(torch.zeros(1))
needs_native = pytest.mark.skipif(not native_here, reason="no native kernels on this machine "
                                  "(they need an AVX-512 CPU and a C compiler)")

# (batch, in_ch, out_ch, H, W, kernel, stride, padding): batches and output channels that are not
# multiples of the 16-lane vectors or the 6- and 16-row tiles, batch 1, one output channel,
# strides, padding, non-square kernels, and K = C*kh*kw above NATIVE_MIN_K.
CASES = [
    (5, 3, 7, 9, 11, 3, 1, 0),
    (3, 2, 17, 8, 8, 3, 2, 1),
    (70, 4, 5, 7, 6, 2, 1, 0),
    (1, 1, 1, 4, 4, 4, 1, 0),
    (33, 6, 13, 10, 10, 5, 1, 2),
    (16, 2, 6, 7, 9, (2, 3), (2, 1), (1, 0)),
    (64, 9, 64, 8, 8, 5, 1, 0),
]


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.fixture
def calls(monkeypatch):
    """The native kernels called, by name."""
    seen = []
    run = _native.run
    monkeypatch.setattr(_native, "run", lambda name, *args: (seen.append(name), run(name, *args)))
    return seen


@needs_native
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("case", CASES)
def test_native_matches_float64_reference(case, n_threads, threads, calls, monkeypatch):
    monkeypatch.setattr(VF, "NATIVE_MIN_K", 0)
    threads(n_threads)
    b, c, o, h, w, k, s, p = case
    gen = torch.Generator().manual_seed(0)
    oh, ow = VF.conv_output_size((h, w), k, s, p)
    kh, kw = VF.pair(k, "k")
    x = torch.randn(b, c, h, w, generator=gen, requires_grad=True)
    weight = torch.randn(oh, ow, o, c, kh, kw, generator=gen, requires_grad=True)
    bias = torch.randn(o, oh, ow, generator=gen, requires_grad=True)
    g = torch.randn(b, o, oh, ow, generator=gen)
    y = VF.locally_connected2d(x, weight, bias, s, p)
    got = (y, *torch.autograd.grad(y, (x, weight, bias), g))
    assert calls == ["vn_lc_fwd", "vn_lc_bwd_w", "vn_lc_bwd_x"]
    x64, w64, b64 = (t.detach().double().requires_grad_() for t in (x, weight, bias))
    y64 = VF._lc_reference(x64, w64, b64, s, p)
    ref = (y64, *torch.autograd.grad(y64, (x64, w64, b64), g.double()))
    for name, a, r in zip(("y", "dx", "dW", "db"), got, ref):
        scale = r.abs().max().item()
        torch.testing.assert_close(a.double(), r, rtol=0, atol=1e-5 * max(scale, 1.0), msg=name)


@needs_native
def test_only_one_gradient_asked_for(calls, monkeypatch):
    monkeypatch.setattr(VF, "NATIVE_MIN_K", 0)
    x = torch.randn(4, 3, 6, 6)
    weight = torch.randn(4, 4, 5, 3, 3, 3, requires_grad=True)
    (dw,) = torch.autograd.grad(VF.locally_connected2d(x, weight).sum(), weight)
    assert calls == ["vn_lc_fwd", "vn_lc_bwd_w"]
    w64 = weight.detach().double().requires_grad_()
    (ref,) = torch.autograd.grad(VF._lc_reference(x.double(), w64, None, 1, 0).sum(), w64)
    torch.testing.assert_close(dw.double(), ref, rtol=1e-5, atol=1e-4)


@needs_native
def test_use_native_switch_and_threshold(calls, monkeypatch):
    layer = LocallyConnected2d(16, 8, 3, input_size=(6, 6))   # K = 144 >= NATIVE_MIN_K
    x = torch.randn(2, 16, 6, 6)
    y = layer(x)
    assert calls == ["vn_lc_fwd"]
    with _native.use_native(False):
        torch.testing.assert_close(layer(x), y, rtol=1e-5, atol=1e-5)
    assert calls == ["vn_lc_fwd"]
    LocallyConnected2d(3, 8, 3, input_size=(6, 6))(torch.randn(2, 3, 6, 6))   # K = 27: torch kernels
    layer.double()(x.double())                                                 # float64: torch kernels
    assert calls == ["vn_lc_fwd"]


@pytest.mark.skipif(not native_here or shutil.which("cc") is None, reason="needs the native kernels and cc")
def test_build_writes_one_library_and_no_temporaries(monkeypatch, tmp_path):
    monkeypatch.setattr(_native, "_lib", None)
    monkeypatch.setattr(_native, "_tried", False)
    monkeypatch.setenv("VISIONNETS_CACHE_DIR", str(tmp_path))
    assert _native.available(torch.zeros(1))
    files = [f.name for f in (tmp_path / "native").iterdir()]
    assert len(files) == 1 and files[0].startswith("lc_native-") and files[0].endswith(".so"), files


def test_build_failure_warns_once_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.setattr(_native, "_lib", None)
    monkeypatch.setattr(_native, "_tried", False)
    monkeypatch.setattr(_native, "_cpu_ok", lambda: True)
    monkeypatch.setattr(VF, "NATIVE_MIN_K", 0)
    monkeypatch.setenv("VISIONNETS_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "false")   # a "compiler" that always fails
    x, weight = torch.randn(2, 3, 6, 6), torch.randn(4, 4, 5, 3, 3, 3)
    with pytest.warns(RuntimeWarning, match="native LocallyConnected2d kernels are not available"):
        y = VF.locally_connected2d(x, weight)
    torch.testing.assert_close(y, VF._lc_reference(x, weight, None, 1, 0), rtol=1e-5, atol=1e-5)
    assert not _native.available(x)   # no second try, no second warning
    assert list((tmp_path / "native").iterdir()) == []   # nothing half-written left behind
