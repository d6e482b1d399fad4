"""The custom layers with PyTorch's tools: torch.compile(fullgraph=True), torch.export with a
dynamic batch, torch.vmap, torch.func.grad, double backward, jit.trace, channels_last and
unbatched inputs; each against eager (outputs and gradients to 1e-5)."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch.func import functional_call, grad, vmap

from visionnets.models.convnet import Stage, convnet
from visionnets.nn import L2Pool2d, LocalContrastNorm2d, LocallyConnected2d, TiledConv2d
from visionnets.nn import functional as VF

# name: (module factory, input shape (B, C, H, W))
LAYERS = {
    "local": (lambda: LocallyConnected2d(2, 3, 3, padding=1, input_size=(8, 8)), (3, 2, 8, 8)),
    "local_stride2": (lambda: LocallyConnected2d(2, 3, 3, stride=2, input_size=(9, 9)), (3, 2, 9, 9)),
    "tiled": (lambda: TiledConv2d(2, 3, 3, 2), (3, 2, 8, 8)),
    "tiled_large_tile": (lambda: TiledConv2d(2, 3, 3, 6), (3, 2, 8, 8)),   # the locally connected path
    "lcn": (lambda: LocalContrastNorm2d(2, 5), (3, 2, 8, 8)),
    "l2pool": (lambda: L2Pool2d(2), (3, 2, 8, 8)),
    "convnet": (lambda: convnet((1, 12, 12), 4, stages=[
        Stage(layer="local", channels=3, kernel=3, padding=1, pool="l2", norm="lcn", norm_kernel=5),
        Stage(layer="tiled", channels=4, kernel=3, tile=2, pool="max")], hidden=[8]), (3, 1, 12, 12)),
}
TOL = {"atol": 1e-5, "rtol": 1e-5}


def make(name: str, dtype=torch.float32, batch: int | None = None):
    factory, shape = LAYERS[name]
    torch.manual_seed(0)
    module = factory().to(dtype).eval()
    x = torch.randn(batch or shape[0], *shape[1:], dtype=dtype)
    return module, x


def grads(module, x):
    """Output, input gradient and parameter gradients of sum(y * fixed weights)."""
    x = x.detach().clone().requires_grad_()
    module.zero_grad()
    y = module(x)
    w = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
    (y * w).sum().backward()
    return [y.detach(), x.grad] + [p.grad.clone() for p in module.parameters()]


@pytest.mark.parametrize("name", list(LAYERS))
def test_compile_fullgraph_matches_eager(name):
    module, x = make(name)
    torch._dynamo.reset()
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    for got, want in zip(grads(compiled, x), grads(module, x)):
        torch.testing.assert_close(got, want, **TOL)


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")), reason="inductor needs a C++ compiler on PATH")
def test_compile_inductor_of_a_convnet_with_every_custom_stage():
    module, x = make("convnet")
    torch._dynamo.reset()
    compiled = torch.compile(module, fullgraph=True)
    for got, want in zip(grads(compiled, x), grads(module, x)):
        torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("name", list(LAYERS))
def test_export_with_a_dynamic_batch_runs_at_other_batch_sizes(name):
    module, x = make(name)
    program = torch.export.export(module, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    for b in (1, 7):
        xb = make(name, batch=b)[1]
        torch.testing.assert_close(program.module()(xb), module(xb), **TOL)


@pytest.mark.parametrize("name", list(LAYERS))
def test_vmap_over_inputs_matches_a_loop(name):
    module, x = make(name)
    xs = torch.stack([x, x.flip(0), 2 * x])              # (V, B, C, H, W)
    torch.testing.assert_close(vmap(module)(xs), torch.stack([module(v) for v in xs]), **TOL)


@pytest.mark.parametrize("name", ["local", "tiled_large_tile", "convnet"])
def test_vmap_over_weights_matches_a_loop(name):
    module, x = make(name)
    params = dict(module.named_parameters())
    stacked = {k: torch.stack([p, 0.5 * p]) for k, p in params.items()}
    got = vmap(lambda ps: functional_call(module, ps, (x,)))(stacked)
    want = torch.stack([functional_call(module, {k: v[i] for k, v in stacked.items()}, (x,)) for i in range(2)])
    torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("name", list(LAYERS))
def test_func_grad_and_per_example_gradients_match_autograd(name):
    module, x = make(name)
    params = {k: p.detach() for k, p in module.named_parameters()}

    def loss(ps, xb):
        return functional_call(module, ps, (xb,)).square().sum()

    want = grads(module, x)
    g_x = grad(lambda xb: loss(params, xb))(x)
    x_ref = x.clone().requires_grad_()
    torch.testing.assert_close(g_x, torch.autograd.grad(loss(params, x_ref), x_ref)[0], **TOL)
    assert want  # the layer has a backward at all
    if not params:
        return
    per_example = vmap(grad(loss), in_dims=(None, 0))(params, x[:, None])   # one gradient per example
    for i in range(len(x)):
        ps = {k: p.clone().requires_grad_() for k, p in params.items()}
        ref = torch.autograd.grad(loss(ps, x[i:i + 1]), list(ps.values()))
        for k, r in zip(ps, ref):
            torch.testing.assert_close(per_example[k][i], r, **TOL)


@pytest.mark.parametrize("name", [n for n in LAYERS if n != "convnet"])
def test_double_backward_gradgradcheck(name):
    module, x = make(name, torch.float64, batch=2)
    params = tuple(module.parameters())
    names = [k for k, _ in module.named_parameters()]

    def f(xb, *ps):
        return functional_call(module, dict(zip(names, ps)), (xb,))

    inputs = (x.requires_grad_(), *[p.detach().requires_grad_() for p in params])
    assert torch.autograd.gradgradcheck(f, inputs, fast_mode=True)


def test_double_backward_of_a_convnet_gradient_penalty():
    """A gradient penalty (WGAN-GP style) trains through the second derivative of every stage."""
    module, x = make("convnet", torch.float64, batch=2)
    x = x.requires_grad_()
    (gx,) = torch.autograd.grad(module(x).sum(), x, create_graph=True)
    penalty = gx.square().sum()
    penalty.backward()
    eps, p = 1e-6, next(module.parameters())            # one parameter, by central differences
    idx = (0,) * p.dim()
    with torch.no_grad():
        p[idx] += eps
    up = torch.autograd.grad(module(x).sum(), x)[0].square().sum()
    with torch.no_grad():
        p[idx] -= 2 * eps
    down = torch.autograd.grad(module(x).sum(), x)[0].square().sum()
    torch.testing.assert_close(p.grad[idx], (up - down) / (2 * eps), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("name", list(LAYERS))
def test_jit_trace_at_one_batch_size_runs_at_another(name):
    module, x = make(name)
    traced = torch.jit.trace(module, x, check_trace=False)
    x5 = make(name, batch=5)[1]
    torch.testing.assert_close(traced(x5), module(x5), **TOL)


@pytest.mark.parametrize("name", list(LAYERS))
def test_portable_graphs_hold_only_standard_operators(name, tmp_path):
    module, x = make(name)
    with VF.portable():
        traced = torch.jit.trace(module, x, check_trace=False)
    graph = str(traced.inlined_graph)
    assert "visionnets::" not in graph and "PythonOp" not in graph, graph
    traced.save(tmp_path / "m.pt")
    torch.testing.assert_close(torch.jit.load(tmp_path / "m.pt")(x), module(x), **TOL)


@pytest.mark.parametrize("name", [n for n in LAYERS if n != "convnet"])
def test_channels_last_in_channels_last_out_and_unbatched_inputs(name):
    module, x = make(name)
    y = module(x)
    y_cl = module(x.contiguous(memory_format=torch.channels_last))
    assert y_cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y_cl, y, **TOL)
    torch.testing.assert_close(module(x[0]), y[0], **TOL)


def test_custom_ops_pass_torch_library_opcheck():
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 3, 7, 7), torch.randn(5, 5, 4, 3, 3, 3), torch.randn(4, 5, 5)
    torch.library.opcheck(VF._lc_op, (x, w, b, [1, 1], [0, 0]))
    torch.library.opcheck(VF._lc_op, (x, torch.randn(4, 4, 4, 3, 3, 3), None, [2, 2], [1, 1]))
    g = torch.randn(2, 4, 5, 5)
    for need in ((True, True), (True, False), (False, True)):
        torch.library.opcheck(VF._lc_backward_op, (g, x, w, [1, 1], [0, 0], *need))
