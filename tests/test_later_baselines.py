"""The later baselines FINER, Gauss and the hash grid, and their normalized variants: activations against
hand-computed values, layers against their papers' formulas, initialisation, the hash encoding against a
hand-computed lookup, the parameter budgets, and the methods in the registry and the tasks."""

from __future__ import annotations

import math

import pytest
import torch

from nerf_norm.analysis.ntk import empirical_ntk
from nerf_norm.hash_grid import HashGridEncoding
from nerf_norm.networks import (
    METHODS,
    PAPER_METHODS,
    Finer,
    Gauss,
    build_network,
    count_parameters,
    finer_activation,
    gauss_activation,
    get_method,
    hash_mlp_width,
    hash_table_size,
)
from nerf_norm.norms import CrossNorm

NEW_METHODS = ["finer", "finer+cn", "gauss", "gauss+cn", "hash", "hash+bn", "hash+ln", "hash+gn", "hash+cn"]


def test_finer_activation_and_its_gradient_by_hand():
    z = torch.tensor([0.5, -0.2], dtype=torch.float64, requires_grad=True)
    y = finer_activation(z, 30.0)
    # sin(30 * 1.5 * 0.5) = sin(22.5); sin(30 * 1.2 * -0.2) = sin(-7.2)
    torch.testing.assert_close(
        y.detach(), torch.tensor([-0.4871745124605095, -0.7936678638491531], dtype=torch.float64)
    )
    y.sum().backward()
    # the release holds |z| + 1 constant: d/dz = 30 (|z| + 1) cos(30 (|z| + 1) z) = 45 cos(22.5), 36 cos(-7.2)
    torch.testing.assert_close(z.grad, torch.tensor([-39.298708804208204, 21.900647323161163], dtype=torch.float64))


def test_gauss_activation_and_its_gradient_by_hand_and_as_the_released_baselines_write_it():
    s = 10 * math.sqrt(2)
    z = torch.tensor([0.1, 0.05, 0.0], dtype=torch.float64, requires_grad=True)
    # exp(-(s z)^2 / 2): s z = sqrt(2) -> exp(-1); s z = sqrt(2) / 2 -> exp(-1/4); 0 -> 1
    expected = torch.tensor([0.36787944117144233, 0.7788007830714049, 1.0], dtype=torch.float64)
    y = gauss_activation(z, s)
    torch.testing.assert_close(y.detach(), expected)
    torch.testing.assert_close(y.detach(), torch.exp(-((10 * z.detach()) ** 2)))  # WIRE's / FINER's exp(-(10 z)^2)
    y.sum().backward()
    # d/dz = -s^2 z exp(-(s z)^2 / 2) = -200 z y: -20 exp(-1), -10 exp(-1/4), 0
    torch.testing.assert_close(z.grad, torch.tensor([-7.357588823428847, -7.788007830714049, 0.0], dtype=torch.float64))


def test_gauss_activation_makes_no_subnormal_floats_forward_or_backward():
    """Far from zero the formula and its derivative underflow through float32's subnormal range (exp(-87.3) is its
    smallest normal number; exp(-95) = 5.6e-42 is subnormal), which slows CPU arithmetic several-fold: those
    values are exact zeros, the others the formula's, in the value and in the gradient."""
    s = 10 * math.sqrt(2)
    z = torch.linspace(-1.5, 1.5, 3001, requires_grad=True)  # s z up to 21: exponents up to 225
    y = gauss_activation(z, s)
    upstream = torch.full_like(z, 1e-3)  # a small incoming gradient: the product -s^2 z y g reaches subnormals
    y.backward(upstream)
    tiny = torch.finfo(torch.float32).tiny
    for t in (y.detach(), z.grad):
        assert not ((t != 0) & (t.abs() < tiny)).any() and (t == 0).any()
    z64 = z.detach().double().requires_grad_()
    reference = torch.exp(-0.5 * (s * z64) ** 2)
    reference.backward(upstream.double())
    # float32's exponent a carries a relative error of a few eps (1.2e-7), so exp(-a) one of about a * 2.4e-7:
    # 2e-5 at a = 87
    torch.testing.assert_close(y.detach().double(), reference.detach(), rtol=1e-4, atol=tiny)
    torch.testing.assert_close(z.grad.double(), z64.grad, rtol=1e-4, atol=tiny)
    z = torch.tensor([95.0**0.5 * 2**0.5 / s])  # exponent 95: subnormal by the formula, zero here
    assert torch.exp(-0.5 * (s * z) ** 2).item() > 0 and gauss_activation(z, s).item() == 0.0


def test_gauss_network_ntk_through_torch_func_is_j_j_transposed():
    """The activation's closed-form backward under ``torch.func`` (the NTK analysis): the kernel of a small Gauss
    network equals ``J J^T`` with ``J`` taken row by row with plain autograd on the paper's formula."""
    torch.manual_seed(0)
    net = Gauss(2, 1, 2, 8, s=2.0).double()
    x = torch.rand(6, 2, dtype=torch.float64) * 2 - 1
    params = list(net.parameters())

    def formula(p: torch.Tensor) -> torch.Tensor:
        (w0, b0, w1, b1, wo, bo) = params
        h = torch.exp(-((2.0 * (p @ w0.T + b0)) ** 2) / 2)
        h = torch.exp(-((2.0 * (h @ w1.T + b1)) ** 2) / 2)
        return (h @ wo.T + bo).squeeze()

    rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(formula(xi), params)]) for xi in x]
    jacobian = torch.stack(rows)
    torch.testing.assert_close(empirical_ntk(net, x), jacobian @ jacobian.T)


def test_finer_network_is_its_paper_s_formula_with_the_released_initialisation():
    torch.manual_seed(0)
    net = Finer(2, 1, 3, 64, first_bias_scale=20.0)
    first, second = net.hidden[0].linear, net.hidden[1].linear
    assert first.weight.abs().max() <= 1 / 2 and second.weight.abs().max() <= math.sqrt(6 / 64) / 30
    assert net.output.weight.abs().max() <= math.sqrt(6 / 64) / 30
    assert 15 < first.bias.abs().max() <= 20  # U(-20, 20) over 64 draws
    x = torch.rand(10, 2) * 2 - 1
    h = x
    for layer in net.hidden:
        z = h @ layer.linear.weight.T + layer.linear.bias
        h = torch.sin(30 * (z.abs() + 1) * z)
    torch.testing.assert_close(net(x), h @ net.output.weight.T + net.output.bias)
    assert Finer(2, 1, 3, 64).hidden[0].linear.bias.abs().max() <= 1 / math.sqrt(2)  # unset k: torch's default


def test_gauss_network_is_its_paper_s_formula():
    torch.manual_seed(0)
    net = Gauss(3, 2, 2, 16)
    x = torch.rand(10, 3) * 2 - 1
    h = x
    for layer in net.hidden:
        z = h @ layer.linear.weight.T + layer.linear.bias
        h = torch.exp(-((10 * math.sqrt(2) * z) ** 2) / 2)
    torch.testing.assert_close(net(x), h @ net.output.weight.T + net.output.bias)


@pytest.mark.parametrize("family, activation", [("finer", "sin((|u| + 1) u 30)"), ("gauss", "exp(-(s u)^2 / 2)")])
def test_normalized_variants_put_the_norm_before_every_activation_after_the_first(family, activation):
    torch.manual_seed(0)
    net = build_network(f"{family}+cn", 2, 1, "3x32")
    assert not isinstance(net.hidden[0].norm, CrossNorm)
    assert all(isinstance(layer.norm, CrossNorm) for layer in net.hidden[1:])
    x = torch.rand(40, 2) * 2 - 1
    h = net.hidden[0](x)
    for layer in net.hidden[1:]:
        z_hat = layer.norm(h @ layer.linear.weight.T + layer.linear.bias)
        # the normalized value stands for scale * z: FINER sin((|z_hat| / 30 + 1) z_hat), Gauss exp(-z_hat^2 / 2)
        h = torch.sin((z_hat.abs() / 30 + 1) * z_hat) if family == "finer" else torch.exp(-(z_hat**2) / 2)
    torch.testing.assert_close(net(x), h @ net.output.weight.T + net.output.bias)


def _hash(ix: int, iy: int, table: int) -> int:
    """Instant-NGP's spatial hash of a 2-D vertex (z = 0), modulo the table size, in plain integers."""
    return (ix ^ (iy * 2654435761)) % table


def test_hash_encoding_is_the_hand_computed_interpolated_lookup():
    table_size = 7  # not a power of two
    grid = HashGridEncoding(2, table_size, levels=2, features_per_level=1, min_res=2, max_res=4)
    values = torch.arange(2 * table_size, dtype=torch.float32)[:, None] / 10
    with torch.no_grad():
        grid.grid.hash_table.copy_(values)
    x = torch.tensor([[-0.5, 0.25]])  # -> (0.25, 0.625) in [0, 1]
    expected = []
    for level, resolution in enumerate((2, 4)):  # resolutions 2 * 2^l
        ux, uy = 0.25 * resolution, 0.625 * resolution
        x0, y0 = math.floor(ux), math.floor(uy)
        fx, fy = ux - x0, uy - y0
        total = 0.0
        for cx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
            for cy, wy in ((y0, 1 - fy), (y0 + 1, fy)):
                total += wx * wy * values[level * table_size + _hash(cx, cy, table_size), 0].item()
        expected.append(total)
    torch.testing.assert_close(grid(x), torch.tensor([expected]))


def test_hash_budget_matches_relu_at_the_architecture():
    # relu 10x28, 2 -> 3: (2*28 + 28) + 9 (28*28 + 28) + (28*3 + 3) = 7479; the grid's 2x28 MLP on 32 features:
    # (32*28 + 28) + (28*28 + 28) + (28*3 + 3) = 1823; (7479 - 1823) // 32 = 176 entries per level
    assert hash_table_size(2, 3, "10x28") == 176
    assert count_parameters(build_network("hash", 2, 3, "10x28")) == 1823 + 176 * 32 == 7455
    assert count_parameters(build_network("relu", 2, 3, "10x28")) == 7479
    # hash+cn's MLP carries the norms' affine parameters (2 x 28 per layer): the table shrinks to keep the budget
    assert count_parameters(build_network("hash+cn", 2, 3, "10x28")) <= 7479
    with pytest.raises(ValueError, match="does not fit the budget of 2x8"):
        hash_table_size(2, 3, "2x8")


def test_hash_mlp_is_instant_ngp_s_64_wide_where_the_architecture_is_wider():
    # occupancy's 2x256 in 3D: relu (3*256 + 256) + (256*256 + 256) + (256 + 1) = 67073; a 2x256 MLP on the grid's
    # 32 features alone would take (32*256 + 256) + 67073 - 1024 = 74497, so the grid gets Instant-NGP's 2x64:
    # (32*64 + 64) + (64*64 + 64) + (64 + 1) = 6337, and (67073 - 6337) // 32 = 1898 entries per level
    assert hash_mlp_width("2x256") == 64 and hash_mlp_width("10x28") == 28
    assert hash_table_size(3, 1, "2x256") == 1898
    assert count_parameters(build_network("hash", 3, 1, "2x256")) == 6337 + 1898 * 32 == 67073


def test_registry_keeps_the_paper_s_13_first_and_adds_the_later_baselines():
    assert list(METHODS) == [*PAPER_METHODS, *NEW_METHODS]
    assert get_method("finer").default_lr == 5e-4 and get_method("gauss").default_lr == 5e-3
    assert get_method("hash").default_lr == 1e-2 and get_method("finer+cn").default_lr == 1e-2


@pytest.mark.parametrize("method", NEW_METHODS)
@pytest.mark.parametrize("in_dim", [2, 3])
def test_every_new_method_trains_in_2d_and_3d(method, in_dim):
    torch.manual_seed(0)
    net = build_network(method, in_dim, 1, "4x32")
    x = torch.rand(64, in_dim) * 2 - 1
    loss = net(x).square().mean()
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


@pytest.mark.slow
def test_each_later_baseline_beats_plain_relu_on_an_image(astronaut_psnr):
    """The image task's learning-test setting (bundled astronaut at 64x64, 5x30, 150 iterations, seed 0, each
    method at its own learning rate). Measured at seeds 0, 1, 2 (experiments/learning_test_seeds/results.txt):
    relu 6.9-8.2 dB; the smallest gain of any new method at any seed 6.8 dB (hash, seed 0); asserted 4 dB."""
    psnr = {m: astronaut_psnr(m) for m in ("relu", "finer", "gauss", "hash", "finer+cn", "gauss+cn", "hash+cn")}
    print("PSNR at 150 iterations:", psnr)
    for method, value in psnr.items():
        if method != "relu":
            assert value > psnr["relu"] + 4.0, method


def test_a_hash_grid_too_big_for_the_budget_is_one_clear_error(tmp_path, capsys):
    from nerf_norm.cli import main

    argv = ["image", "--method", "hash", "--arch", "2x8", "--iters", "1", "--downscale", "8", "--out", str(tmp_path)]
    assert main(argv) == 2
    out = capsys.readouterr().out.replace("\n", "")
    assert "error: --method hash --arch 2x8: the hash grid does not fit the budget of 2x8" in out
    assert "Traceback" not in out
