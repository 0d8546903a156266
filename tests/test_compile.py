"""torch.compile(fullgraph=True) of CrossNorm, of CN and GN coordinate MLPs and of a Gauss network (what becomes Triton on a
GPU), equal to eager; no host synchronisation in the eager CrossNorm and GlobalNorm paths' hot loops."""

import pytest
import torch

from nerf_norm import kernels
from nerf_norm.networks import build_network
from nerf_norm.norms import CrossNorm, GlobalNorm


def _grads(module, x):
    module.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_(True)
    y = module(x)
    (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)).sum().backward()
    return y.detach(), x.grad, [p.grad.clone() for p in module.parameters()]


def _eager_and_compiled(method: str, out_dim: int, dtype: torch.dtype):
    """A 3x32 network of ``method`` on 2D coordinates (seed 0) and a twin with the same weights compiled with
    fullgraph=True."""
    torch.manual_seed(0)
    net = build_network(method, 2, out_dim, "3x32", seed=0).to(dtype)
    twin = build_network(method, 2, out_dim, "3x32", seed=0).to(dtype)
    twin.load_state_dict(net.state_dict())
    return net, torch.compile(twin, fullgraph=True)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["paper", "reference"])
def test_compiled_cross_norm_equals_eager(variant):
    """In float64, so that the comparison sees the formulas, not float32 summation order (the weight gradient
    sums 300 terms; in float32 the two differ by up to 4e-6 relative)."""
    torch.manual_seed(0)
    eager = CrossNorm(16, variant=variant, track_running_stats=True, fuse_relu=True, dtype=torch.float64)
    with torch.no_grad():
        eager.weight.uniform_(0.5, 1.5)
        eager.bias.uniform_(-0.5, 0.5)
    compiled_module = CrossNorm(16, variant=variant, track_running_stats=True, fuse_relu=True, dtype=torch.float64)
    compiled_module.load_state_dict(eager.state_dict())
    compiled = torch.compile(compiled_module, fullgraph=True)
    x = torch.randn(300, 16, dtype=torch.float64) * 2 + 3
    for a, b in zip(_grads(eager, x), _grads(compiled, x)):
        for u, v in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
            assert torch.allclose(u, v, atol=1e-9, rtol=0), (u - v).abs().max()
    for name in ("running_mean", "running_var", "running_batch_size"):
        assert torch.allclose(getattr(eager, name), getattr(compiled_module, name), atol=1e-9), name
    eager.eval(), compiled_module.eval()
    x = torch.randn(50, 16, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(eager(x), compiled(x), atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize(
    "method, dtype, tol",
    [("pe+cn", torch.float64, 1e-9), ("pe+cn", torch.float32, 1e-4), ("pe+gn", torch.float64, 1e-9)],
)
def test_compiled_normalized_coordinate_mlp_equals_eager(method, dtype, tol):
    """A pe+cn or pe+gn network (the paper's PE, the norm with its ReLU fused) compiled with fullgraph=True (the
    plain formulation, which Inductor fuses) against eager (the autograd Functions): outputs,
    input and parameter gradients within ``tol`` of each tensor's largest magnitude (input gradients through
    2^9 pi reach ~600). float64 checks the formulas; in float32 the two sum in different orders and differ by
    up to 3e-5 relative in a parameter gradient."""
    net, compiled = _eager_and_compiled(method, 3, dtype)
    x = (torch.rand(400, 2) * 2 - 1).to(dtype)
    (ye, gxe, gpe), (yc, gxc, gpc) = _grads(net, x), _grads(compiled, x)
    for a, b in [(ye, yc), (gxe, gxc), *zip(gpe, gpc)]:
        assert (a - b).abs().max() <= tol * a.abs().max(), ((a - b).abs().max(), a.abs().max())


@pytest.mark.slow
def test_compiled_gauss_network_equals_eager():
    """The Gauss activation is an autograd Function with a closed-form backward: a gauss+cn network compiled with
    fullgraph=True equals eager in float64, outputs, input and parameter gradients."""
    net, compiled = _eager_and_compiled("gauss+cn", 1, torch.float64)
    x = (torch.rand(400, 2) * 2 - 1).double()
    (ye, gxe, gpe), (yc, gxc, gpc) = _grads(net, x), _grads(compiled, x)
    for a, b in [(ye, yc), (gxe, gxc), *zip(gpe, gpc)]:
        # atol: the output bias's gradient is the sum of _grads' weights, zero but for rounding (1.8e-15)
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("layer", [CrossNorm, GlobalNorm])
def test_eager_eval_forward_does_not_read_the_device(monkeypatch, layer):
    """The eager path (what a GPU runs) never converts a tensor to a Python number in forward or backward: here
    every Tensor.__float__/item/tolist raises while a CrossNorm or GlobalNorm trains and evaluates on the eager
    path."""
    monkeypatch.setattr(kernels, "_mode", "torch")
    norm = layer(8, track_running_stats=True, fuse_relu=True)
    x = torch.randn(64, 8, requires_grad=True)
    norm(x).sum().backward()  # one step to fill the running statistics
    norm.eval()

    def forbidden(*args, **kwargs):
        raise AssertionError("host synchronisation in the CrossNorm hot path")

    for name in ("__float__", "item", "tolist", "__int__", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    y = norm(x)
    y.sum().backward()
    norm.train()
    norm(x).sum().backward()
