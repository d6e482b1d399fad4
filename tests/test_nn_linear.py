"""visionnets.nn.dense: F.linear through oneDNN's kernels, checked against F.linear and in float64."""

import pytest
import torch
import torch.nn.functional as F

from visionnets.errors import ConfigError
from visionnets.nn import Linear, functional, linear, linear_backend, set_linear_backend
from visionnets.nn import dense as linear_mod

needs_onednn = pytest.mark.skipif(not linear_mod._onednn_available(),
                                  reason="this torch build has no oneDNN (mkldnn) inner product")


@pytest.fixture
def backend():
    """Force a backend for one test, then restore the machine's choice."""
    before = linear_mod._backend
    yield set_linear_backend
    linear_mod._backend = before


@pytest.fixture
def calls(monkeypatch):
    """How many times the oneDNN Function ran."""
    n = [0]
    apply = linear_mod._OneDNNLinear.apply

    def counted(*args):
        n[0] += 1
        return apply(*args)
    monkeypatch.setattr(linear_mod._OneDNNLinear, "apply", counted)
    return n


def _grads(fn, x, w, b, g):
    for t in (x, w, b):
        if t is not None and t.requires_grad:
            t.grad = None
    fn(x, w, b).backward(g)
    return [None if t is None or t.grad is None else t.grad.clone() for t in (x, w, b)]


@needs_onednn
@pytest.mark.parametrize("shape,bias,x_grad", [((32, 20), True, True), ((32, 20), False, False),
                                               ((3, 5, 20), True, True), ((1, 20), True, True)])
def test_onednn_matches_f_linear(backend, calls, shape, bias, x_grad):
    backend("onednn")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=gen).requires_grad_(x_grad)
    w = torch.randn(7, 20, generator=gen, requires_grad=True)
    b = torch.randn(7, generator=gen, requires_grad=True) if bias else None
    g = torch.randn(*shape[:-1], 7, generator=gen)
    y = linear(x, w, b)
    assert calls[0] == 1
    torch.testing.assert_close(y, F.linear(x, w, b), rtol=1e-5, atol=1e-5)
    for ours, ref in zip(_grads(linear, x, w, b, g), _grads(F.linear, x, w, b, g)):
        assert (ours is None) == (ref is None)
        if ref is not None:
            torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_onednn_takes_non_contiguous_operands(backend):
    backend("onednn")
    x = torch.randn(20, 8).t()                      # (8, 20), strided
    w = torch.randn(20, 6).t().requires_grad_()     # (6, 20), strided
    torch.testing.assert_close(linear(x, w), F.linear(x, w), rtol=1e-5, atol=1e-5)
    a, b = torch.randn(4, 9), torch.randn(9, 5)
    torch.testing.assert_close(linear_mod.mm(a, b), a @ b, rtol=1e-5, atol=1e-5)


def test_backward_formulas_gradcheck_float64(monkeypatch):
    """The Function's backward (which gradients, which transposes) in float64, with the kernel
    swapped for its definition ``a @ b.T + bias``: gradcheck and gradgradcheck."""
    monkeypatch.setattr(linear_mod, "_ip", lambda a, b, bias=None: a @ b.t() + (0 if bias is None else bias))
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(3, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, generator=gen, requires_grad=True)
    fn = linear_mod._OneDNNLinear.apply
    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradgradcheck(fn, (x, w, b))
    assert torch.autograd.gradcheck(lambda x_, w_: fn(x_, w_, None), (x, w))


def test_float64_and_aten_backend_use_f_linear(backend, calls):
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(linear, (x, w))
    backend("aten")
    assert linear_backend() == "aten"
    linear(torch.randn(4, 6), torch.randn(3, 6))
    assert calls[0] == 0


@needs_onednn
def test_falls_back_where_graphs_or_transforms_are_built(backend, calls):
    backend("onednn")
    layer = Linear(6, 3)
    x = torch.randn(4, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x)
    with functional.portable():
        layer(x)
    traced = torch.jit.trace(layer, x, check_trace=False)
    assert "mkldnn" not in str(traced.graph)
    torch.func.vmap(layer)(torch.randn(2, 4, 6))
    with torch.autograd.set_grad_enabled(True):
        torch.autograd.grad(layer(x.requires_grad_()).sum(), x, create_graph=True)   # aten formulas in backward
    assert calls[0] == 1              # only the last call: the double-backward graph goes through the Function
    calls[0] = 0
    layer(x)
    assert calls[0] == 1


@needs_onednn
def test_vmap_and_func_grad_equal_f_linear(backend):
    backend("onednn")
    w, b = torch.randn(3, 6), torch.randn(3)
    xs = torch.randn(2, 4, 6)
    torch.testing.assert_close(torch.func.vmap(lambda v: linear(v, w, b))(xs), F.linear(xs, w, b))
    gw = torch.func.grad(lambda w_: linear(xs[0], w_, b).sum())(w)
    torch.testing.assert_close(gw, xs[0].sum(0).expand(3, 6))


def test_linear_module_is_an_nn_linear():
    layer = Linear(5, 2)
    assert isinstance(layer, torch.nn.Linear)
    assert set(layer.state_dict()) == {"weight", "bias"}
    ref = torch.nn.Linear(5, 2)
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(3, 5)
    torch.testing.assert_close(layer(x), ref(x), rtol=1e-5, atol=1e-5)


def test_bad_backend_and_shapes_are_one_line_errors(backend):
    with pytest.raises(ConfigError, match="set_linear_backend"):
        set_linear_backend("mkl")
    with pytest.raises(ConfigError, match="2-D"):
        linear_mod.mm(torch.randn(2, 3, 4), torch.randn(4, 2))
    with pytest.raises(RuntimeError):                # torch's own shape error, not a silent result
        linear(torch.randn(2, 5), torch.randn(3, 4))


# --------------------------------------------------------------------------- dropout

def test_dropout_zeroes_p_of_the_elements_and_scales_the_rest_to_keep_the_mean():
    from visionnets.nn import Dropout

    x = torch.full((400, 500), 3.0)
    for p, k in ((0.5, 32768), (0.3, round(0.3 * 65536))):
        y = functional.dropout(x, p, generator=torch.Generator().manual_seed(0))
        kept = y != 0
        assert y.unique().tolist() == pytest.approx([0.0, 3.0 * 65536 / (65536 - k)], rel=1e-6)
        assert abs(1 - kept.float().mean().item() - p) < 0.005          # 200,000 draws: 3 sigma ~ 0.003
        rows = kept.float().mean(1)                                     # no structure across the mask
        assert rows.std().item() < 0.05 and abs(rows[:200].mean() - rows[200:].mean()) < 0.01
    assert torch.equal(functional.dropout(x, 0.5, training=False), x) and functional.dropout(x, 0.0) is x
    assert not functional.dropout(x, 1.0).any()
    a = functional.dropout(x, 0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, functional.dropout(x, 0.5, generator=torch.Generator().manual_seed(1)))
    with pytest.raises(ConfigError, match=r"dropout: p must be in \[0, 1\], got 1.5"):
        functional.dropout(x, 1.5)
    layer = Dropout(0.25)
    assert isinstance(layer, torch.nn.Dropout) and torch.equal(layer.eval()(x), x)
    assert (layer.train()(x) == 0).float().mean().item() == pytest.approx(0.25, abs=0.005)
    bf = functional.dropout(x.bfloat16(), 0.5)
    assert bf.dtype == torch.bfloat16 and set(bf.unique().tolist()) == {0.0, 6.0}


def test_dropout_gradient_is_the_mask_and_gradcheck_passes_in_float64():
    x = torch.randn(6, 7, dtype=torch.float64, requires_grad=True)
    y = functional.dropout(x, 0.5, generator=torch.Generator().manual_seed(2))
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, (y != 0).double() * 2.0)
    assert torch.autograd.gradcheck(
        lambda t: functional.dropout(t, 0.4, generator=torch.Generator().manual_seed(3)), (x,))


def test_dropout_under_compile_and_trace_is_torch_dropout():
    from visionnets.nn import Dropout

    net = torch.nn.Sequential(torch.nn.Linear(8, 8), Dropout(0.5))
    out = torch.compile(net, backend="eager", fullgraph=True)(torch.randn(16, 8))
    assert out.shape == (16, 8) and (out == 0).any()
    traced = torch.jit.trace(net.eval(), torch.randn(2, 8))
    assert torch.equal(traced(torch.ones(2, 8)), net(torch.ones(2, 8)))
    x = torch.randn(64, 32)
    with functional.portable():                              # graphs of standard operators only
        torch.manual_seed(0)
        ours = functional.dropout(x, 0.5)
    torch.manual_seed(0)
    assert torch.equal(ours, F.dropout(x, 0.5))
