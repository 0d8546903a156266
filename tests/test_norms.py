"""Norm layers: hand-computed values, invariances, gradients, running statistics, autocast."""

import math

import pytest
import torch

from nerf_norm import kernels
from nerf_norm.norms import BatchNorm, CrossNorm, GlobalNorm, LayerNorm, cross_norm, cross_norm_autograd, make_norm


@pytest.fixture(params=["cpp", "torch"])
def cn_path(request, monkeypatch):
    """Runs a CrossNorm or GlobalNorm test on the fused CPU kernels and on the eager torch path."""
    with kernels.selected(request.param):
        if request.param == "cpp":
            assert kernels.usable(torch.zeros(2, 2)), "the CrossNorm CPU kernel must build on this machine"
        yield request.param


X = torch.tensor([[0.0, 2.0], [2.0, 4.0]])  # T = 2 samples, C = 2 channels
X3 = torch.tensor([[0.0, 2.0], [2.0, 4.0], [4.0, 0.0]])  # T = 3, C = 2


def test_batch_norm_hand_values():
    # column 0 = {0, 2}: mean 1, var 1; column 1 = {2, 4}: mean 3, var 1
    y = BatchNorm(2, eps=1e-12)(X)
    assert torch.allclose(y, torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))


def test_layer_norm_hand_values():
    # row 0 = {0, 2}: mean 1, var 1; row 1 = {2, 4}: mean 3, var 1
    y = LayerNorm(2, eps=1e-12)(X)
    assert torch.allclose(y, torch.tensor([[-1.0, 1.0], [-1.0, 1.0]]))


def test_global_norm_hand_values():
    # all of {0, 2, 2, 4}: mean 2, var 2
    y = GlobalNorm(2, eps=1e-12)(X)
    assert torch.allclose(y, (X - 2.0) / math.sqrt(2.0))


def test_cross_norm_paper_hand_values(cn_path):
    # (0,0): row {0,2} + column {0,2} = {0,2,0,2}: mean 1, var 1 -> -1
    # (0,1): {0,2} + {2,4}: mean 2, E[x^2] = 24/4 = 6, var 2 -> 0;  (1,0) likewise 0
    # (1,1): {2,4} + {2,4}: mean 3, var 1 -> 1
    y = CrossNorm(2, eps=1e-12, variant="paper")(X)
    assert torch.allclose(y, torch.tensor([[-1.0, 0.0], [0.0, 1.0]]), atol=1e-6)
    # non-square: (0,0) of X3 covers row {0,2} and column {0,2,4}: N = 5, mean 8/5, E[x^2] = 24/5
    y3 = CrossNorm(2, eps=1e-12, variant="paper")(X3)
    assert y3[0, 0].item() == pytest.approx((0 - 8 / 5) / math.sqrt(24 / 5 - (8 / 5) ** 2), rel=1e-6)
    # (2,1) of X3: row {4,0}, column {2,4,0}: {4,0,2,4,0}, mean 2, E[x^2] = 36/5
    assert y3[2, 1].item() == pytest.approx((0 - 2) / math.sqrt(36 / 5 - 4), rel=1e-6)


def test_cross_norm_reference_hand_values(cn_path):
    # mean = (row sum + column sum - x) / (T + C); sigma^2 = unbiased var(column) + unbiased var(row)
    # (0,0): (2 + 2 - 0)/4 = 1, sigma^2 = 2 + 2 -> (0 - 1)/2;  (0,1): (2 + 6 - 2)/4 = 1.5 -> (2 - 1.5)/2
    # (1,0): (6 + 2 - 2)/4 = 1.5 -> 0.25;  (1,1): (6 + 6 - 4)/4 = 2 -> (4 - 2)/2
    y = CrossNorm(2, eps=1e-12, variant="reference")(X)
    assert torch.allclose(y, torch.tensor([[-0.5, 0.25], [0.25, 1.0]]), atol=1e-6)
    # non-square (0,0) of X3: mean (2 + 6 - 0)/5, column {0,2,4} var 4, row {0,2} var 2
    y3 = CrossNorm(2, eps=1e-12, variant="reference")(X3)
    assert y3[0, 0].item() == pytest.approx((0 - 8 / 5) / math.sqrt(4 + 2), rel=1e-6)


def _rand(T=64, C=16, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, C, generator=g, dtype=dtype) * 3 + 1.5


def test_batch_norm_per_channel_shift_invariance():
    x = _rand()
    shift = torch.linspace(-5, 5, x.shape[1])
    bn = BatchNorm(x.shape[1])
    assert torch.allclose(bn(x), bn(x + shift), atol=1e-4)
    assert not torch.allclose(LayerNorm(x.shape[1])(x), LayerNorm(x.shape[1])(x + shift), atol=1e-2)


def test_layer_norm_per_sample_shift_invariance():
    x = _rand()
    shift = torch.linspace(-5, 5, x.shape[0]).unsqueeze(1)
    ln = LayerNorm(x.shape[1])
    assert torch.allclose(ln(x), ln(x + shift), atol=1e-4)


@pytest.mark.parametrize("layer", ["gn", "cn"])
def test_global_shift_and_scale_invariance(layer, cn_path):
    x = _rand()
    norm = make_norm(layer, x.shape[1], eps=1e-12)
    y = norm(x)
    assert torch.allclose(y, norm(x + 7.25), atol=1e-4)
    assert torch.allclose(y, norm(x * 3.5), atol=1e-4)


def test_reference_variant_is_scale_but_not_shift_invariant(cn_path):
    # the released formulation subtracts (row + column - x)/(T + C): a shift by a moves the mean by
    # a (T + C - 1)/(T + C), so the output moves by a / ((T + C) sigma) -- measured here, not assumed away
    x = _rand(T=8, C=4)
    cn = CrossNorm(4, eps=1e-12, variant="reference")
    y = cn(x)
    assert torch.allclose(y, cn(x * 2.0), atol=1e-5)
    a = 10.0
    sigma2 = x.var(dim=0, keepdim=True) + x.var(dim=1, keepdim=True)
    expected_shift = a / ((8 + 4) * sigma2.sqrt())
    assert torch.allclose(cn(x + a) - y, expected_shift, atol=1e-4)


@pytest.mark.parametrize("variant", ["paper", "reference"])
def test_fast_cross_norm_matches_autograd_formulation(variant, cn_path):
    x = _rand(T=257, C=19).requires_grad_(True)
    w = torch.randn(19, requires_grad=True)
    b = torch.randn(19, requires_grad=True)
    gy = torch.randn(257, 19)
    y_fast = cross_norm(x, weight=w, bias=b, variant=variant)
    grads_fast = torch.autograd.grad(y_fast, (x, w, b), gy)
    y_ref = cross_norm_autograd(x, w, b, variant=variant)
    grads_ref = torch.autograd.grad(y_ref, (x, w, b), gy)
    assert torch.allclose(y_fast, y_ref, atol=1e-5)
    for gf, gr in zip(grads_fast, grads_ref):
        assert torch.allclose(gf, gr, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("variant", ["paper", "reference"])
def test_fast_cross_norm_gradcheck(variant, cn_path):
    x = _rand(T=7, C=5, dtype=torch.float64).requires_grad_(True)
    w = torch.randn(5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    f = lambda x, w, b: cross_norm(x, weight=w, bias=b, variant=variant)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))


@pytest.mark.parametrize("variant", ["paper", "reference"])
def test_fast_cross_norm_gradcheck_with_running_columns(variant, cn_path):
    cn = CrossNorm(5, track_running_stats=True, variant=variant).double()
    for seed in range(3):
        cn(_rand(T=11, C=5, seed=seed, dtype=torch.float64))
    cn.eval()
    x = _rand(T=6, C=5, seed=9, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(cn, (x,))
    assert torch.autograd.gradgradcheck(cn, (x,))


@pytest.mark.parametrize("name", ["bn", "gn", "cn"])
def test_eval_with_running_stats_is_chunk_invariant(name, cn_path):
    norm = make_norm(name, 8, track_running_stats=True)
    for seed in range(5):
        norm(_rand(T=128, C=8, seed=seed))
    norm.eval()
    x = _rand(T=96, C=8, seed=42)
    full = norm(x)
    chunks = torch.cat([norm(c) for c in x.split(17)])
    single = torch.cat([norm(x[i : i + 1]) for i in range(3)])
    assert torch.allclose(full, chunks, atol=1e-5)
    assert torch.allclose(full[:3], single, atol=1e-5)


def test_cross_norm_running_stats_track_the_batch(cn_path):
    cn = CrossNorm(4, track_running_stats=True, momentum=None)  # cumulative average
    batches = [_rand(T=50 + 10 * k, C=4, seed=k) for k in range(3)]
    for xb in batches:
        cn(xb)
    assert torch.allclose(cn.running_mean, torch.stack([xb.mean(0) for xb in batches]).mean(0), atol=1e-5)
    assert torch.allclose(cn.running_var, torch.stack([xb.var(0) for xb in batches]).mean(0), atol=1e-4)
    assert cn.running_batch_size.item() == pytest.approx(60.0)
    assert int(cn.num_batches_tracked) == 3


@pytest.mark.parametrize("name", ["bn", "gn", "cn"])
def test_eval_without_running_stats_uses_the_batch_statistics(name, cn_path):
    """Without running statistics (the paper's full-batch fitting), eval mode normalizes with the batch's own
    statistics: both modes equal the float64 statement of the equation for this batch."""
    norm = make_norm(name, 8)
    x = _rand(T=40, C=8) * 3 + 5
    ref = _reference(name, x)
    for training in (True, False):
        norm.train(training)
        assert (norm(x).double() - ref).abs().max().item() <= 1e-5, training


def test_cross_norm_eval_row_part_comes_from_the_sample(cn_path):
    # with running stats, changing one sample's other channels changes its output; other samples don't
    cn = CrossNorm(4, track_running_stats=True)
    cn(_rand(T=32, C=4))
    cn.eval()
    x = _rand(T=5, C=4, seed=3)
    y = cn(x)
    x2 = x.clone()
    x2[0, 1:] += 5.0
    y2 = cn(x2)
    assert not torch.allclose(y[0, 0], y2[0, 0])
    assert torch.allclose(y[1:], y2[1:])


@pytest.mark.parametrize("name", ["bn", "cn"])
def test_single_sample_training_is_a_clear_error(name):
    with pytest.raises(ValueError, match="more than 1 sample"):
        make_norm(name, 4)(torch.randn(1, 4))


@pytest.mark.parametrize("name", ["bn", "ln", "gn", "cn"])
def test_statistics_in_float32_under_autocast(name, cn_path):
    """A bf16 activation under autocast comes out bf16, normalized with statistics as exact as float64's: within
    bf16's rounding of the float64 statement of the same input. The activation is offset (mean 30 x its spread),
    where statistics formed in bf16 (8-bit mantissa, a step of 0.125 at 30) would be off by more than 0.1."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 16)
    with torch.no_grad():
        lin.bias.fill_(30.0)
    norm = make_norm(name, 16)
    x = torch.randn(300, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = lin(x)
        assert h.dtype == torch.bfloat16
        y = norm(h)
    assert y.dtype == torch.bfloat16
    ref = _reference(name, h.double())
    # one bf16 step at each value (8 significant bits): its rounding, plus float32's error (measured below 1e-5)
    # flipping it at most once
    step = 2.0 ** (torch.floor(torch.log2(ref.abs().clamp_min(1e-30))) - 7) + 1e-4
    assert ((y.double() - ref).abs() <= step).all(), ((y.double() - ref).abs() / step).max()
    # the control: the same normalization with bf16 statistics misses that bound by far
    naive = ((h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + 1e-5)).double()
    assert ((naive - _reference("bn", h.double())).abs() > step).any()


@pytest.mark.parametrize("name", ["bn", "ln", "gn", "cn"])
def test_leading_dims_are_flattened_and_restored(name, cn_path):
    norm = make_norm(name, 6)
    x = _rand(T=4 * 5 * 3, C=6).reshape(4, 5, 3, 6)
    assert torch.allclose(norm(x), norm(x.reshape(-1, 6)).reshape(4, 5, 3, 6))


def test_wrong_channel_count_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\[\.\.\., 8\]"):
        CrossNorm(8)(torch.randn(10, 7))


def test_make_norm_names_and_repr():
    assert isinstance(make_norm("none", 4), torch.nn.Identity)
    assert isinstance(make_norm("bn", 4), BatchNorm)
    assert isinstance(make_norm("ln", 4, track_running_stats=True), LayerNorm)
    assert isinstance(make_norm("gn", 4), GlobalNorm)
    cn = make_norm("cn", 4, variant="reference", track_running_stats=True)
    assert isinstance(cn, CrossNorm) and "variant='reference'" in repr(cn)
    assert set(dict(cn.named_buffers())) == {"running_mean", "running_var", "num_batches_tracked", "running_batch_size"}
    with pytest.raises(ValueError, match="unknown norm 'xn'"):
        make_norm("xn", 4)
    with pytest.raises(ValueError, match="unknown variant"):
        CrossNorm(4, variant="other")


def test_affine_parameters_init_and_state_dict_round_trip():
    cn = CrossNorm(3, track_running_stats=True)
    assert torch.equal(cn.weight, torch.ones(3)) and torch.equal(cn.bias, torch.zeros(3))
    cn(_rand(T=20, C=3))
    other = CrossNorm(3, track_running_stats=True)
    other.load_state_dict(cn.state_dict())
    cn.eval(), other.eval()
    x = _rand(T=7, C=3, seed=5)
    assert torch.equal(cn(x), other(x))


def test_cross_norm_output_allows_in_place_relu_with_leading_dims(cn_path):
    # the output must not be a view of the Function's result, or an in-place ReLU would be refused
    x = _rand(T=24, C=6).reshape(4, 6, 6).requires_grad_(True)
    y = torch.relu_(CrossNorm(6)(x))
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


def test_kernel_and_eager_paths_agree():
    x = _rand(T=1000, C=13).requires_grad_(True)
    w, b = torch.randn(13, requires_grad=True), torch.randn(13, requires_grad=True)
    gy = torch.randn(1000, 13)
    results = {}
    for path in ("cpp", "torch"):
        with kernels.selected(path):
            for variant in ("paper", "reference"):
                y = cross_norm(x, weight=w, bias=b, variant=variant)
                results[path, variant] = (y, *torch.autograd.grad(y, (x, w, b), gy))
    for variant in ("paper", "reference"):
        for a, b_ in zip(results["cpp", variant], results["torch", variant]):
            assert torch.allclose(a, b_, atol=1e-4, rtol=1e-4)


def test_kernel_build_failure_falls_back_or_fails_clearly(monkeypatch):
    monkeypatch.setattr(kernels, "_module", None)
    monkeypatch.setattr(kernels, "_failed", "simulated compiler failure")
    x = _rand(T=30, C=4)
    with kernels.selected("auto"):
        assert not kernels.usable(x)
        assert torch.allclose(cross_norm(x), cross_norm_autograd(x), atol=1e-5)  # eager path
    with kernels.selected("cpp"), pytest.raises(RuntimeError, match="simulated compiler failure"):
        cross_norm(x)


def test_kernel_mode_is_read_once_from_the_environment(monkeypatch):
    """NERF_NORM_KERNEL decides at selection time, not at every forward; the old name still works, with a
    deprecation warning; a bad value is refused with the variable's name."""
    before = kernels.mode()
    try:
        monkeypatch.setenv("NERF_NORM_KERNEL", "torch")
        assert kernels.select() == "torch"
        monkeypatch.setenv("NERF_NORM_KERNEL", "cpp")
        assert kernels.mode() == "torch" and not kernels.usable(torch.zeros(2, 2))  # decided once
        monkeypatch.delenv("NERF_NORM_KERNEL")
        monkeypatch.setenv("NERF_NORM_CN_KERNEL", "torch")
        with pytest.warns(FutureWarning, match="NERF_NORM_CN_KERNEL is deprecated"):
            assert kernels.select() == "torch"
        monkeypatch.setenv("NERF_NORM_KERNEL", "fast")
        with pytest.raises(ValueError, match="NERF_NORM_KERNEL must be auto, cpp or torch"):
            kernels.select()
    finally:
        kernels.select(before)


@pytest.mark.parametrize("variant", ["paper", "reference"])
@pytest.mark.parametrize("running", [False, True])
def test_fused_relu_equals_relu_of_cross_norm(variant, running, cn_path):
    """CrossNorm(fuse_relu=True) is relu(CrossNorm(x)) in value, gradient and second derivative."""
    torch.manual_seed(3)
    x = torch.randn(12, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    kw = {"variant": variant}
    if running:
        kw.update(
            running_mean=torch.randn(5, dtype=torch.float64),
            running_var=torch.rand(5, dtype=torch.float64) + 0.5,
            running_batch_size=torch.tensor(7.0, dtype=torch.float64),
            training=False,
        )
    fused = cross_norm(x, weight=w, bias=b, relu=True, **kw)
    plain = torch.relu(cross_norm(x, weight=w, bias=b, **kw))
    assert (fused > 0).any() and (fused == 0).any()
    torch.testing.assert_close(fused, plain, rtol=0, atol=1e-12)
    g = torch.randn_like(fused)
    for a, c in zip(torch.autograd.grad(fused, (x, w, b), g), torch.autograd.grad(plain, (x, w, b), g)):
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-12)
    f = lambda x, w, b: cross_norm(x, weight=w, bias=b, relu=True, **kw)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))


def test_fuse_relu_only_for_cross_and_global_norm():
    for name in ("cn", "gn"):
        assert make_norm(name, 4, fuse_relu=True).fuse_relu
        assert "fuse_relu=True" in repr(make_norm(name, 4, fuse_relu=True))
    for name in ("none", "bn", "ln"):
        with pytest.raises(ValueError, match="fuse_relu is implemented for gn and cn only"):
            make_norm(name, 4, fuse_relu=True)
        make_norm(name, 4, fuse_relu=False)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("running", [False, True])
def test_global_norm_closed_form_gradients(relu, running, cn_path):
    """GlobalNorm's Function (kernel or eager passes, closed-form backward) equals the plain autograd statement of
    Eq. 23 in value and gradients, passes gradcheck and gradgradcheck (the second derivative goes through
    autograd), with the ReLU fused or not and with batch or running statistics."""
    from nerf_norm.norms import global_norm
    from nerf_norm.norms.spec import global_norm_spec

    torch.manual_seed(4)
    x = torch.randn(12, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    kw, stats = {"relu": relu}, None
    if running:
        rm, rv = torch.randn(1, dtype=torch.float64), torch.rand(1, dtype=torch.float64) + 0.5
        kw.update(running_mean=rm, running_var=rv, training=False)
        stats = (rm.reshape(()), rv.reshape(()))
    y = global_norm(x, weight=w, bias=b, **kw)
    ref = global_norm_spec(x, w, b, stats, 1e-5)
    ref = torch.relu(ref) if relu else ref
    if relu:
        assert (y > 0).any() and (y == 0).any()
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-12)
    g = torch.randn_like(y)
    for a, c in zip(torch.autograd.grad(y, (x, w, b), g), torch.autograd.grad(ref, (x, w, b), g)):
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-12)
    f = lambda x, w, b: global_norm(x, weight=w, bias=b, **kw)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))


def test_global_norm_backward_exact_at_large_T_and_offsets(cn_path):
    """In float32 at T = 2^17 with the whole batch offset by 1000 std: output and input gradient against the
    float64 statement, and the running statistics against the batch's float64 moments."""
    from nerf_norm.norms.spec import global_norm_spec

    x = _offset_batch(2**17, 24, 1000.0, same_sign=True, seed=2)
    torch.manual_seed(0)
    norm = GlobalNorm(24, track_running_stats=True, momentum=1.0, fuse_relu=True)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    gy = torch.randn(2**17, 24)
    x32 = x.clone().requires_grad_(True)
    y = norm(x32)
    (dx,) = torch.autograd.grad(y, x32, gy)
    x64 = x.double().requires_grad_(True)
    ref = torch.relu(global_norm_spec(x64, norm.weight.double(), norm.bias.double(), None, 1e-5))
    (dx_ref,) = torch.autograd.grad(ref, x64, gy.double())
    assert (y.double() - ref).abs().max().item() <= 1e-3
    err = ((dx.double() - dx_ref).abs().max() / dx_ref.abs().max()).item()
    assert err <= 1e-4, f"{cn_path}: relative gradient error {err:.2e}"
    m, v = x.double().mean(), x.double().var()
    assert abs(norm.running_mean.item() - m.item()) <= 1e-6 * abs(m.item())
    assert abs(norm.running_var.item() - v.item()) <= 1e-4 * v.item()


def test_global_norm_keeps_one_full_tensor_for_backward(cn_path):
    """Activation memory: GlobalNorm with the ReLU fused keeps only its input x between forward and backward
    (the mask and xhat are recomputed from x and the 0-d moments); the separate ReLU's output is not needed."""
    T, C = 512, 16
    saved = []
    x = torch.randn(T, C, requires_grad=True)
    norm = GlobalNorm(C, track_running_stats=True, fuse_relu=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = norm(x)
    assert len([t for t in saved if t.numel() == T * C]) == 1, [tuple(t.shape) for t in saved]
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


# ----------------------------------------------------------------------------------------------------------
# accuracy at large T and large offsets: against a float64 two-pass statement of each equation


def _two_pass(x64: torch.Tensor, dim: int, correction: int):
    mean = x64.mean(dim=dim, keepdim=True)
    var = ((x64 - mean) ** 2).sum(dim=dim, keepdim=True) / (x64.shape[dim] - correction)
    return mean, var


def _reference(name: str, x: torch.Tensor, variant: str = "paper", eps: float = 1e-5) -> torch.Tensor:
    x64 = x.double()
    T, C = x64.shape
    if name == "bn":
        m, v = _two_pass(x64, 0, 0)
        return (x64 - m) / torch.sqrt(v + eps)
    if name == "ln":
        m, v = _two_pass(x64, 1, 0)
        return (x64 - m) / torch.sqrt(v + eps)
    if name == "gn":
        m, v = _two_pass(x64.reshape(-1, 1), 0, 0)
        return (x64 - m) / torch.sqrt(v + eps)
    corr = 0 if variant == "paper" else 1
    mr, vr = _two_pass(x64, 1, corr)
    mc, vc = _two_pass(x64, 0, corr)
    N = T + C
    if variant == "paper":  # the multiset row t + column i: two-pass moments pooled exactly
        mu = (C * mr + T * mc) / N
        var = (C * (vr + (mr - mu) ** 2) + T * (vc + (mc - mu) ** 2)) / N
    else:
        mu = (C * mr + T * mc - x64) / N
        var = vr + vc
    return (x64 - mu) / torch.sqrt(var + eps)


def _offset_batch(T: int, C: int, ratio: float, seed: int = 0, same_sign: bool = False) -> torch.Tensor:
    """``[T, C]`` float32 with column means ``ratio`` x their standard deviations (which differ per column), of
    random signs, or all positive (then every row and the whole batch are offset too)."""
    g = torch.Generator().manual_seed(seed)
    std = torch.rand(C, generator=g) * 1.5 + 0.5
    sign = torch.where(torch.rand(C, generator=g) < 0.5, -1.0, 1.0)
    mean = ratio * std * (torch.ones(C) if same_sign else sign)
    return (torch.randn(T, C, generator=g) * std + mean).float()


# The failure these guard against (one-pass sums cancelling catastrophically) grows with the offset ratio; T = 2^14
# with column means 10^3 and 10^4 times their spread tests it as hard as T = 2^17 (measured: every path within 1e-5
# of the float64 statement at both sizes) at an eighth of the cost.
LARGE_T = 2**14


@pytest.mark.parametrize("ratio", [1000.0, 10000.0])
@pytest.mark.parametrize("variant", ["paper", "reference"])
def test_cross_norm_exact_at_large_T_and_offsets(variant, ratio, cn_path):
    x = _offset_batch(LARGE_T, 24, ratio)
    ref = _reference("cn", x, variant)
    y = CrossNorm(24, variant=variant)(x)
    assert y.dtype == torch.float32
    err = (y.double() - ref).abs().max().item()
    assert err <= 1e-3, f"{cn_path} path, mean/std {ratio}: max abs error {err:.2e}"
    plain = cross_norm_autograd(x, variant=variant)  # the double-backward formulation too
    assert (plain.double() - ref).abs().max().item() <= 1e-3


@pytest.mark.parametrize("same_sign", [False, True])
@pytest.mark.parametrize("name", ["bn", "ln", "gn", "cn"])
def test_other_norms_exact_at_large_T_and_offsets(name, same_sign):
    x = _offset_batch(LARGE_T, 24, 10000.0, same_sign=same_sign)
    err = (make_norm(name, 24)(x).double() - _reference(name, x)).abs().max().item()
    assert err <= 1e-3, f"{name}: max abs error {err:.2e}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["bn", "ln", "gn", "cn"])
def test_exact_at_large_offsets_under_autocast(name, dtype, cn_path):
    """Under autocast the statistics stay float32: a float32 activation is normalized as accurately as
    without it (the layer does not round its input to half precision)."""
    x = _offset_batch(LARGE_T, 24, 1000.0, seed=1)
    norm = make_norm(name, 24)
    with torch.autocast("cpu", dtype=dtype):
        y = norm(x)
    assert y.dtype == torch.float32
    err = (y.double() - _reference(name, x)).abs().max().item()
    assert err <= 1e-3, f"{name} under {dtype}: max abs error {err:.2e}"


def test_cross_norm_keeps_at_most_two_full_tensors_for_backward(cn_path):
    """Activation memory: a CrossNorm layer keeps x and xhat (eager path) or x alone plus [T] / [C] coefficient
    vectors (kernel path) between forward and backward; the eager path recomputes rstd from [T] / [C] moments."""
    T, C = 512, 16
    saved = []
    x = torch.randn(T, C, requires_grad=True)
    norm = CrossNorm(C, track_running_stats=True, fuse_relu=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = norm(x)
    full = [t for t in saved if t.numel() == T * C]
    assert len(full) <= (2 if cn_path == "torch" else 1), [tuple(t.shape) for t in saved]
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm_running_statistics_and_backward_at_large_offsets(momentum):
    """Training with running statistics (the layer in an MLP, backward included) keeps torch's semantics: the
    running mean/variance follow the batch's (here offset by 1000 std), and the gradient is finite."""
    x = _offset_batch(4096, 8, 1000.0, same_sign=True).requires_grad_(True)
    ours = BatchNorm(8, momentum=momentum, track_running_stats=True)
    ref = torch.nn.BatchNorm1d(8, momentum=momentum, dtype=torch.float64)
    for _ in range(3):
        ours(x).pow(2).sum().backward()
        ref(x.double()).sum()
    assert torch.isfinite(x.grad).all()
    assert torch.allclose(ours.running_mean.double(), ref.running_mean, rtol=1e-6)
    assert torch.allclose(ours.running_var.double(), ref.running_var, rtol=1e-4)


# ----------------------------------------------------------------------------------------------------------
# second derivative in closed form (cross_norm_grad.py): what an eikonal loss differentiates


def _input_gradient_penalty(x, w, b, relu, kw, v, norm=cross_norm):
    """An eikonal-style loss: the input gradient of sum(y * v) is itself differentiated (create_graph)."""
    y = norm(x, weight=w, bias=b, relu=relu, **kw)
    (gx,) = torch.autograd.grad((y * v).sum(), x, create_graph=True)
    return (gx**2).sum() + (gx * y.detach()).sum()


@pytest.mark.parametrize("running", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_second_derivative_is_closed_form_and_matches_autograd(relu, running, cn_path, monkeypatch):
    """The paper variant's backward, differentiated again, runs the closed form (never autograd's graph of the
    plain formula) and equals the gradients of the spec differentiated twice by autograd, on both paths."""
    from nerf_norm.norms import cross_norm_function
    from nerf_norm.norms.spec import cross_norm_spec

    torch.manual_seed(5)
    x = (torch.randn(33, 7, dtype=torch.float64) * 3 + 2).requires_grad_(True)
    w = (torch.rand(7, dtype=torch.float64) + 0.5).requires_grad_(True)
    b = torch.randn(7, dtype=torch.float64, requires_grad=True)
    v = torch.randn(33, 7, dtype=torch.float64)
    kw = {}
    if running:
        kw = dict(
            running_mean=torch.randn(7, dtype=torch.float64),
            running_var=torch.rand(7, dtype=torch.float64) + 0.5,
            running_batch_size=torch.tensor(20.0, dtype=torch.float64),
            training=False,
        )
    generic = cross_norm_function._backward_by_autograd
    calls = []
    monkeypatch.setattr(cross_norm_function, "_backward_by_autograd", lambda *a: calls.append(1) or generic(*a))
    closed = torch.autograd.grad(_input_gradient_penalty(x, w, b, relu, kw, v), (x, w, b), allow_unused=True)
    assert not calls, "the paper variant's second derivative must not go through autograd's generic graph"

    def spec(x, weight, bias, relu, running_mean=None, running_var=None, running_batch_size=None, training=True):
        n = running_batch_size
        columns = None if running_mean is None else (running_mean, running_var * (n - 1) / n, n)
        y = cross_norm_spec(x, weight, bias, columns, "paper", 1e-5)
        return torch.relu(y) if relu else y

    reference = torch.autograd.grad(_input_gradient_penalty(x, w, b, relu, kw, v, spec), (x, w, b), allow_unused=True)
    for got, want in zip(closed, reference):  # None: no dependence (the bias), autograd's graph may give zeros
        got = torch.zeros_like(b) if got is None else got
        want = torch.zeros_like(b) if want is None else want
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


def test_second_derivative_exact_at_large_T_and_offsets(cn_path):
    """float32 second derivative at T = 2^17 and column means 100 x their spread: against the same computation
    in float64 (gradients of an input-gradient penalty, relative to their scale). Without a fused ReLU: with
    one, the elements whose output rounds to the other side of 0 in float32 flip the mask, a property of ReLU
    (measured: 2.5e-3 on every path, the generic autograd one included), not of the normalization."""
    x32 = _offset_batch(2**17, 24, 100.0, seed=3)
    g = torch.Generator().manual_seed(4)
    v32 = torch.randn(x32.shape, generator=g)
    w32 = torch.rand(24, generator=g) + 0.5
    results = {}
    for dtype in (torch.float32, torch.float64):
        x = x32.to(dtype).requires_grad_(True)
        w = w32.to(dtype).requires_grad_(True)
        y = cross_norm(x, weight=w)
        (gx,) = torch.autograd.grad((y * v32.to(dtype)).sum(), x, create_graph=True)
        results[dtype] = torch.autograd.grad((gx * v32.to(dtype)).sum(), (x, w))
    for got, want in zip(results[torch.float32], results[torch.float64]):
        err = ((got.double() - want).abs().max() / want.abs().max()).item()
        assert err <= 1e-3, f"{cn_path} path: relative error {err:.2e}"


# ----------------------------------------------------------------------------------------------------------
# torch's conventions


def test_norms_share_one_keyword_only_signature():
    """After num_features every option is keyword-only, and the options all four norms have come in one order."""
    import inspect

    shared = ["eps", "momentum", "affine", "track_running_stats"]
    for layer in (BatchNorm, LayerNorm, GlobalNorm, CrossNorm):
        params = list(inspect.signature(layer).parameters.values())
        assert params[0].name == "num_features" and params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:]), layer
        assert [p.name for p in params[1:5]] == shared, layer
        assert [p.name for p in params[-2:]] == ["device", "dtype"], layer
        with pytest.raises(TypeError):
            layer(4, 1e-3)


@pytest.mark.parametrize("layer", [BatchNorm, LayerNorm, GlobalNorm, CrossNorm])
def test_wrong_channel_count_is_refused_before_any_counter_moves(layer):
    kw = {} if layer is LayerNorm else {"track_running_stats": True}
    norm = layer(16, **kw)
    with pytest.raises(ValueError, match=r"16.*15|15.*16") as info:
        norm(torch.randn(8, 15))
    assert "16" in str(info.value) and "15" in str(info.value)
    if layer is not LayerNorm:
        assert int(norm.num_batches_tracked) == 0
        assert torch.equal(norm.running_mean, torch.zeros_like(norm.running_mean))


def test_make_norm_knows_global_by_its_unambiguous_name():
    assert isinstance(make_norm("global", 4), GlobalNorm) and isinstance(make_norm("gn", 4), GlobalNorm)
    assert "GroupNorm" in GlobalNorm.__doc__
