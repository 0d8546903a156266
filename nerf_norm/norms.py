"""Normalization layers for coordinate networks (paper sections 4.1-4.3).

Every layer takes activations of shape ``[..., C]``, flattens them to ``[T, C]`` (T samples of the batch,
C channels) for its statistics and restores the shape on output. Statistics are always computed in at
least float32, with autocast disabled inside the layer, and the output is cast back to the input dtype.

=============  =====================================  ===========================  ==============
layer          statistics for element (t, i)          paper                        batch-coupled
=============  =====================================  ===========================  ==============
BatchNorm      column i (the T samples of channel i)  Eq. 8                        yes
LayerNorm      row t (the C channels of sample t)     Eq. 16                       no
GlobalNorm     all T x C elements                     Eq. 23                       yes
CrossNorm      row t together with column i           Eq. 24                       yes
=============  =====================================  ===========================  ==============

Train/eval semantics follow ``torch.nn.BatchNorm1d``: in training the batch statistics are used; with
``track_running_stats=True`` running estimates of the batch-dimension statistics are kept (``momentum``,
``None`` for a cumulative average) and used in eval mode, so a sample's output does not depend on which
other samples share its batch. The per-sample (row) part of CrossNorm and LayerNorm is always computed
from the sample itself. Without running statistics, eval mode uses batch statistics, which is the paper's
full-batch fitting setting.

Each module has a functional twin (:func:`batch_norm`, :func:`layer_norm`, :func:`global_norm`,
:func:`cross_norm`) taking every tensor explicitly.
"""

from __future__ import annotations

import contextlib
import math
from typing import Literal, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import cn_kernel

__all__ = [
    "NORM_NAMES",
    "CN_VARIANTS",
    "BatchNorm",
    "LayerNorm",
    "GlobalNorm",
    "CrossNorm",
    "make_norm",
    "batch_norm",
    "layer_norm",
    "global_norm",
    "cross_norm",
    "cross_norm_autograd",
]

NormName = Literal["none", "bn", "ln", "gn", "cn"]
NORM_NAMES: Tuple[str, ...] = ("none", "bn", "ln", "gn", "cn")
CNVariant = Literal["paper", "reference"]
CN_VARIANTS: Tuple[str, ...] = ("paper", "reference")

# Column statistics of CrossNorm, as (column sum, column sum of squares, number of samples n).
ColumnSums = Tuple[Tensor, Tensor, float]


# ----------------------------------------------------------------------------------------------------------
# shared helpers


def _as_2d(x: Tensor, num_features: int, layer: str) -> Tensor:
    """Flattens ``[..., C]`` to ``[T, C]``, checking C."""
    if x.dim() < 1 or x.shape[-1] != num_features:
        raise ValueError(
            f"{layer}: expected input of shape [..., {num_features}] (channels last), got {tuple(x.shape)}"
        )
    return x.reshape(-1, num_features)


def _restore(y: Tensor, like: Tensor) -> Tensor:
    """Casts ``y`` to ``like``'s dtype and shape without making a view when nothing changes.

    Returning a view of a layer's output would make a following in-place op (``ReLU(inplace=True)``)
    go through autograd's view-rebase machinery, which copies the whole gradient in backward.
    """
    y = y.to(like.dtype)
    return y if y.shape == like.shape else y.reshape(like.shape)


def _stats_dtype(x: Tensor) -> torch.dtype:
    """Statistics are computed in float32 at least (float64 inputs stay float64, e.g. for gradcheck)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


@contextlib.contextmanager
def _no_autocast(x: Tensor):
    """Disables autocast so that reductions and the small matmuls below run in the statistics dtype."""
    device_type = x.device.type if x.device.type in ("cuda", "cpu", "xpu", "mps") else "cpu"
    with torch.autocast(device_type=device_type, enabled=False):
        yield


def _check_batch(num_samples: int, training: bool, layer: str, shape: torch.Size) -> None:
    if training and num_samples < 2:
        raise ValueError(
            f"{layer}: expected more than 1 sample per channel when training, got input of shape {tuple(shape)}; "
            "batch statistics of a single sample are undefined (call .eval() with track_running_stats=True, "
            "or use a larger batch)"
        )


def _ema_factor(module: "_RunningStatsNorm") -> float:
    """Update factor of the running statistics, as torch's BatchNorm computes it."""
    if not (module.training and module.track_running_stats):
        return 0.0
    module.num_batches_tracked.add_(1)
    if module.momentum is None:
        return 1.0 / float(module.num_batches_tracked)
    return module.momentum


class _RunningStatsNorm(nn.Module):
    """Common parts of the batch-coupled norms: affine parameters and running-stat buffers."""

    def __init__(
        self,
        num_features: int,
        stat_size: int,
        eps: float = 1e-5,
        momentum: Optional[float] = 0.1,
        affine: bool = True,
        track_running_stats: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be positive, got {num_features}")
        factory = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.empty(num_features, **factory))
            self.bias = nn.Parameter(torch.empty(num_features, **factory))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(stat_size, **factory))
            self.register_buffer("running_var", torch.ones(stat_size, **factory))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def _use_batch_stats(self) -> bool:
        return self.training or not self.track_running_stats

    def _stat_args(self) -> dict:
        """Keyword arguments of the functional twin: running buffers, affine, mode, momentum, eps.

        Called once per forward: it also advances ``num_batches_tracked`` in training.
        """
        tracked = self.track_running_stats
        return {
            "running_mean": self.running_mean if tracked else None,
            "running_var": self.running_var if tracked else None,
            "weight": self.weight,
            "bias": self.bias,
            "training": self._use_batch_stats(),
            "momentum": _ema_factor(self),
            "eps": self.eps,
        }

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )


def _affine(y: Tensor, weight: Optional[Tensor], bias: Optional[Tensor]) -> Tensor:
    if weight is None:
        return y if bias is None else y + bias
    if bias is None:
        return y * weight
    return torch.addcmul(bias.to(y.dtype), y, weight.to(y.dtype))


# ----------------------------------------------------------------------------------------------------------
# BatchNorm (Eq. 8) and LayerNorm (Eq. 16): torch's native kernels do exactly these.


def batch_norm(
    x: Tensor,
    running_mean: Optional[Tensor] = None,
    running_var: Optional[Tensor] = None,
    weight: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalization, paper Eq. 8, for ``x`` of shape ``[..., C]``.

    Each channel i is normalized by the mean and biased variance of its T samples. With ``training=False``
    and running statistics given, those are used instead (the running variance is unbiased, as in torch).
    """
    C = x.shape[-1]
    x2 = _as_2d(x, C, "batch_norm")
    use_batch = training or running_mean is None
    _check_batch(x2.shape[0], use_batch, "batch_norm", x.shape)
    with _no_autocast(x):
        xs = x2.to(_stats_dtype(x))
        if not use_batch:
            y = F.batch_norm(xs, running_mean, running_var, weight, bias, False, momentum, eps)
        else:
            # torch's CPU batch norm forms its batch moments from plain sums: at mean/std = 1000 over 2^17
            # samples its output was off by 0.37. var_mean (Welford / two-pass) is exact at any offset.
            var, mean = torch.var_mean(xs, dim=0, correction=0)
            if running_mean is not None and momentum > 0:
                T = xs.shape[0]
                with torch.no_grad():
                    running_mean.lerp_(mean.to(running_mean.dtype), momentum)
                    running_var.lerp_((var * (T / max(T - 1, 1))).to(running_var.dtype), momentum)
            y = _affine((xs - mean) * torch.rsqrt(var + eps), weight, bias)
    return _restore(y, x)


def layer_norm(
    x: Tensor, weight: Optional[Tensor] = None, bias: Optional[Tensor] = None, eps: float = 1e-5
) -> Tensor:
    """Layer normalization, paper Eq. 16: each sample normalized over its C channels. ``x``: ``[..., C]``."""
    C = x.shape[-1]
    with _no_autocast(x):
        y = F.layer_norm(x.to(_stats_dtype(x)), (C,), weight, bias, eps)
    return y.to(x.dtype)


class BatchNorm(_RunningStatsNorm):
    """Batch normalization over the T samples of each channel (paper Eq. 8).

    Shapes: input ``[..., C]``, output the same. Arguments as ``torch.nn.BatchNorm1d``, except that
    ``track_running_stats`` defaults to ``False`` (full-batch fitting uses batch statistics in eval too).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1,
                 affine: bool = True, track_running_stats: bool = False, device=None, dtype=None) -> None:
        super().__init__(num_features, num_features, eps, momentum, affine, track_running_stats, device, dtype)

    def forward(self, x: Tensor) -> Tensor:
        return batch_norm(x, **self._stat_args())


class LayerNorm(nn.Module):
    """Layer normalization over the C channels of each sample (paper Eq. 16). Input ``[..., C]``.

    It has no batch statistics, so train and eval behave alike.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.empty(num_features, **factory))
            self.bias = nn.Parameter(torch.empty(num_features, **factory))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        _as_2d(x, self.num_features, "LayerNorm")
        return layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}"


# ----------------------------------------------------------------------------------------------------------
# GlobalNorm (Eq. 23): one mean and variance over all T x C elements, then the per-channel affine.


def global_norm(
    x: Tensor,
    running_mean: Optional[Tensor] = None,
    running_var: Optional[Tensor] = None,
    weight: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Global normalization, paper Eq. 23, for ``x`` of shape ``[..., C]``.

    All T x C elements share one mean and (biased) variance; the running statistics are one-element
    tensors. The affine transform is per channel.
    """
    C = x.shape[-1]
    x2 = _as_2d(x, C, "global_norm")
    use_batch = training or running_mean is None
    if use_batch and x2.numel() < 2:
        raise ValueError(f"global_norm: expected more than 1 element when training, got shape {tuple(x.shape)}")
    with _no_autocast(x):
        # One "channel" holding every element: torch's native batch norm computes exactly Eq. 23's statistics
        # (and keeps the running estimates) in a single fused pass.
        flat = x2.to(_stats_dtype(x)).reshape(1, 1, -1)
        y = F.batch_norm(flat, running_mean, running_var, None, None, use_batch, momentum, eps)
        y = _affine(y.reshape(x2.shape), weight, bias)
    return _restore(y, x)


class GlobalNorm(_RunningStatsNorm):
    """Global normalization: one mean/variance over all T x C elements (paper Eq. 23). Input ``[..., C]``."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1,
                 affine: bool = True, track_running_stats: bool = False, device=None, dtype=None) -> None:
        super().__init__(num_features, 1, eps, momentum, affine, track_running_stats, device, dtype)

    def forward(self, x: Tensor) -> Tensor:
        _as_2d(x, self.num_features, "GlobalNorm")
        return global_norm(x, **self._stat_args())


# ----------------------------------------------------------------------------------------------------------
# CrossNorm (Eq. 24)
#
# For element (t, i) of x [T, C] the statistics cover row t (C elements) and column i (n elements, n = T
# in training or the tracked batch size with running statistics), N = C + n.
#
# variant "paper" (Eq. 24): the multiset row t + column i, x[t, i] counted twice.
#     mu = (r1_t + s1_i) / N,   var = (r2_t + s2_i) / N - mu^2
#   with r1/r2 the row sums of x and x^2 and s1/s2 the column sums. Evaluated that way, in float32, the
#   variance cancels catastrophically when the mean is large against the spread (mean/std = 100 at T = 2^18
#   put the output off by more than 1). So it is computed in Chan's pooled form
#       var = (C vr_t + n vc_i) / N + (C n / N^2) (mr_t - mc_i)^2
#   from row and column means (mr, mc) and biased variances (vr, vc) that are themselves computed stably:
#   torch.var_mean here, shifted sums in the CPU kernel (csrc/cross_norm_cpu.cpp).
# variant "reference" (the authors' released code):
#     mu = (r1_t + s1_i - x) / N,   sigma^2 = var_unbiased(column i) + var_unbiased(row t)
#
# y = (x - mu) / sqrt(var + eps) * weight + bias.
#
# Backward (closed form). With g = dL/dy * weight, u = g * rstd and c = dL/dvar = -u * xhat * rstd / 2:
#   paper:      dx = u + [dr1_t + B ds1_i] + 2 x [dr2_t + B ds2_i]
#               dr1_t = (-sum_i u - 2 sum_i mu c) / N,  dr2_t = sum_i c / N    (and the same over columns)
#   reference:  dx = (1 + 1/N) u - [sum_i u + B sum_t u] / N
#                    + 2 sum_i c (x - mr_t) / (C - 1) + B 2 sum_t c (x - mc_i) / (n - 1)
# where B = 1 when the column statistics come from the batch and 0 when they are running estimates.
# The sums of mu * c need no [T, C] mu: sum_i mu_ti c_ti = (r1_t sum_i c_ti + (c @ s1)_t) / N.


def _cn_moments(x: Tensor, need_columns: bool, correction: int):
    """Row (and column) means and variances of ``x [T, C]`` from ``torch.var_mean`` (Welford / two-pass inside
    torch on CPU and GPU), so a large offset relative to the spread costs no accuracy, at any T.

    Returns (row mean [T], row var [T], col mean [C] | None, col var [C] | None, unbiased col var | None).
    """
    T, C = x.shape
    row_var, row_mean = torch.var_mean(x, dim=1, correction=correction)
    if not need_columns:
        return row_mean, row_var, None, None, None
    col_var, col_mean = torch.var_mean(x, dim=0, correction=correction)
    col_var_unbiased = col_var if correction == 1 else col_var * (T / max(T - 1, 1))
    return row_mean, row_var, col_mean, col_var, col_var_unbiased


def _cn_forward(x: Tensor, col_mean: Optional[Tensor], col_var: Optional[Tensor], n: Optional[float],
                variant: str, eps: float):
    """Returns (xhat [T, C], rstd [T, C], row mean [T], col mean [C], n, unbiased batch col var | None) of
    CrossNorm without affine.

    ``col_mean``/``col_var`` (``[C]``, variance with the variant's correction) and ``n`` are given when
    running statistics replace the batch's columns; otherwise they are computed from ``x``.
    """
    T, C = x.shape
    paper = variant == "paper"
    batch_columns = col_mean is None
    row_mean, row_var, bc_mean, bc_var, bc_var_unbiased = _cn_moments(x, batch_columns, 0 if paper else 1)
    buf = torch.empty_like(x)
    if batch_columns:
        col_mean, col_var, n = bc_mean, bc_var, float(T)
    N = C + n
    if paper:
        # Chan's pooled variance of row t and column i: (C vr + n vc) / N + (C n / N^2) (mr - mc)^2
        k = (C * n) ** 0.5 / N
        var = torch.sub((row_mean * k).unsqueeze(1), (col_mean * k).unsqueeze(0), out=buf)
        var.mul_(var)
        _add_outer(var, row_var * (C / N) + eps, col_var * (n / N))
        # x - mu with mu = (C mr_t + n mc_i) / N
        xhat = torch.sub(x, (row_mean * (C / N)).unsqueeze(1)).sub_((col_mean * (n / N)).unsqueeze(0))
    else:
        var = torch.add((row_var + eps).unsqueeze(1), col_var.unsqueeze(0), out=buf)
        # x - mu with mu = (C mr_t + n mc_i - x) / N
        xhat = torch.mul(x, 1.0 + 1.0 / N).sub_((row_mean * (C / N)).unsqueeze(1))
        xhat.sub_((col_mean * (n / N)).unsqueeze(0))
    rstd = var.rsqrt_()
    xhat.mul_(rstd)
    return xhat, rstd, row_mean, col_mean, n, bc_var_unbiased


def _add_outer(out: Tensor, row: Tensor, col: Tensor) -> Tensor:
    """In place: ``out[t, i] += row[t] + col[i]``."""
    return out.add_(row.unsqueeze(1)).add_(col.unsqueeze(0))


def _cn_backward(x: Tensor, xhat: Tensor, rstd: Tensor, row_mean: Tensor, col_mean: Tensor, n: float,
                 gy: Tensor, weight: Optional[Tensor], batch_columns: bool, variant: str,
                 need_weight_grad: bool) -> Tuple[Tensor, Optional[Tensor]]:
    """(dL/dx, dL/dweight) of CrossNorm given gy = dL/dy, all ``[T, C]``. See the derivation above.

    Allocates two ``[T, C]`` tensors: ``u``, which becomes dL/dx in place, and one scratch buffer.
    """
    T, C = x.shape
    N = C + n
    ones_t = x.new_ones(T)
    buf = torch.mul(gy, xhat)
    dw = torch.mv(buf.t(), ones_t) if need_weight_grad else None
    u = (gy * weight if weight is not None else gy.clone()).mul_(rstd)
    c = torch.mul(u, xhat, out=buf).mul_(rstd)  # -2 dL/dvar; the -1/2 is folded into the vectors below
    c_row = c.sum(dim=1).mul_(-0.5)
    u_row = u.sum(dim=1)
    if batch_columns:
        c_col = torch.mv(c.t(), ones_t).mul_(-0.5)
        u_col = torch.mv(u.t(), ones_t)
    if variant == "paper":
        r1, s1 = row_mean * C, col_mean * n
        # dL/dr1_t and dL/dr2_t (and over columns dL/ds1_i, dL/ds2_i); sum_i mu c = (r1 c_row + c @ s1) / N
        d_r1 = (u_row.neg() - (2.0 / N) * (r1 * c_row - 0.5 * torch.mv(c, s1))) / N
        d_r2 = c_row / N
        if batch_columns:
            d_s1 = (u_col.neg() - (2.0 / N) * (s1 * c_col - 0.5 * torch.mv(c.t(), r1))) / N
            d_s2 = c_col / N
        else:
            d_s1 = d_s2 = torch.zeros_like(col_mean)
        dx = _add_outer(u, d_r1, d_s1)
    else:
        d_r2 = c_row * (1.0 / (C - 1))
        lin_row = u_row / -N - 2.0 * d_r2 * row_mean
        if batch_columns:
            d_s2 = c_col * (1.0 / (n - 1))
            lin_col = u_col / -N - 2.0 * d_s2 * col_mean
        else:
            d_s2 = lin_col = torch.zeros_like(col_mean)
        dx = _add_outer(u.mul_(1.0 + 1.0 / N), lin_row, lin_col)
    coef = torch.add(d_r2.unsqueeze(1), d_s2.unsqueeze(0), out=buf)
    return dx.addcmul_(x, coef, value=2.0), dw


class _CrossNormFunction(torch.autograd.Function):
    """CrossNorm with a closed-form backward: the fused CPU kernel of :mod:`nerf_norm.cn_kernel` when it is
    available, else a few eager passes over ``[T, C]``; never autograd's graph of a dozen ops.

    Second-order gradients (``create_graph=True``, e.g. eikonal losses) re-derive the backward through the
    straightforward differentiable formulation, so they are exact too.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, col_mean, col_var, n, variant, eps, out_shape, running, relu):
        ctx.variant, ctx.eps, ctx.n_given, ctx.relu = variant, eps, n, relu
        ctx.batch_columns = col_mean is None
        ctx.has_bias = bias is not None
        kernel = cn_kernel.load_for(x)
        ctx.kernel = kernel
        if kernel is not None:
            y, extra = _CrossNormFunction._forward_kernel(ctx, kernel, x, weight, bias, col_mean, col_var, n,
                                                          variant, eps, out_shape, running, relu)
        else:
            y, extra = _CrossNormFunction._forward_eager(ctx, x, weight, bias, col_mean, col_var, n, variant, eps,
                                                         out_shape, running, relu)
        ctx.save_for_backward(x, weight, bias, col_mean, col_var, *extra)
        return y

    @staticmethod
    def _forward_kernel(ctx, kernel, x, weight, bias, col_mean, col_var, n, variant, eps, out_shape, running, relu):
        columns = None if col_mean is None else (col_mean, col_var, n)
        y, ctx.state = cn_kernel.forward(kernel, x, weight, bias, out_shape, variant, eps, relu, columns, running)
        return y, ()

    @staticmethod
    def _forward_eager(ctx, x, weight, bias, col_mean, col_var, n, variant, eps, out_shape, running, relu):
        xhat, rstd, row_mean, col_mean_used, n_used, col_var_unbiased = _cn_forward(
            x, col_mean, col_var, n, variant, eps)
        if running is not None:
            _update_running(running, col_mean_used, col_var_unbiased, n_used)
        # the output is allocated in its final shape: returning a reshaped view would forbid in-place ops on it
        y = xhat.new_empty(out_shape)
        flat = y.view(xhat.shape)
        if weight is not None:
            torch.addcmul(bias if bias is not None else xhat.new_zeros(()), xhat, weight, out=flat)
        else:
            flat.copy_(xhat if bias is None else xhat + bias)
        if relu:
            flat.clamp_(min=0.0)
        ctx.n = n_used
        return y, (xhat, rstd, row_mean, col_mean_used)

    @staticmethod
    def backward(ctx, gy):
        if torch.is_grad_enabled():  # double backward: differentiate the plain formulation instead
            return _CrossNormFunction._backward_by_autograd(ctx, gy)
        x, weight, bias, _, _, *extra = ctx.saved_tensors
        gy = gy.to(x.dtype).reshape(x.shape).contiguous()
        need_dw = weight is not None and ctx.needs_input_grad[1]
        need_db = ctx.has_bias and ctx.needs_input_grad[2]
        if ctx.kernel is not None:
            dx, dw, db = cn_kernel.backward(ctx.kernel, x, gy, weight, bias, ctx.state, ctx.batch_columns, ctx.relu)
        else:
            xhat, rstd, row_mean, col_mean = extra
            if ctx.relu:  # the gradient of relu(y): zero where the (recomputed) y is not positive
                gy = gy.masked_fill(_affine(xhat, weight, bias) <= 0, 0.0)
            dx, dw = _cn_backward(x, xhat, rstd, row_mean, col_mean, ctx.n, gy, weight, ctx.batch_columns,
                                  ctx.variant, need_dw)
            db = torch.mv(gy.t(), gy.new_ones(gy.shape[0])) if need_db else None
        return (dx, dw if need_dw else None, db if need_db else None) + (None,) * 8

    @staticmethod
    def _backward_by_autograd(ctx, gy):
        x, weight, bias, col_mean_in, col_var_in = ctx.saved_tensors[:5]
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if bias is not None and not bias.requires_grad:
            bias = bias.detach().requires_grad_(True)
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        y = _cross_norm_plain(x, weight, bias, col_mean_in, col_var_in, ctx.n_given, ctx.variant, ctx.eps)
        if ctx.relu:
            y = torch.relu(y)
        gy = gy.reshape(y.shape)
        wanted = [(0, x, need_x), (1, weight, need_w), (2, bias, need_b)]
        inputs = [t for _, t, need in wanted if need and t is not None and t.requires_grad]
        grads = iter(torch.autograd.grad(y, inputs, gy, create_graph=True, allow_unused=True))
        out = [next(grads) if (need and t is not None and t.requires_grad) else None for _, t, need in wanted]
        return (*out, None, None, None, None, None, None, None, None)


def _update_running(running, col_mean: Tensor, col_var_unbiased: Tensor, n: float) -> None:
    """EMA update of (running_mean, running_var, running_batch_size, factor) from a batch's columns."""
    r_mean, r_var, r_n, factor = running
    r_mean.lerp_(col_mean.to(r_mean.dtype), factor)
    r_var.lerp_(col_var_unbiased.to(r_var.dtype), factor)
    r_n.lerp_(torch.full_like(r_n, n), factor)


def _cross_norm_plain(x, weight, bias, col_mean, col_var, n, variant, eps):
    """Straightforward differentiable CrossNorm on ``[T, C]`` (autograd builds the backward), with the same
    stable moments as the fast paths (``torch.var_mean`` and Chan's pooled variance)."""
    T, C = x.shape
    correction = 0 if variant == "paper" else 1
    if col_mean is None:
        n = float(T)
        col_var, col_mean = torch.var_mean(x, dim=0, correction=correction)
    row_var, row_mean = torch.var_mean(x, dim=1, correction=correction, keepdim=True)
    N = C + n
    if variant == "paper":
        mu = (C * row_mean + n * col_mean) / N
        var = (C * row_var + n * col_var) / N + (C * n / N ** 2) * (row_mean - col_mean) ** 2
    else:
        mu = (C * row_mean + n * col_mean - x) / N
        var = row_var + col_var
    y = (x - mu) / torch.sqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def _cn_running_columns(running_mean: Tensor, running_var: Tensor, running_n: Tensor, variant: str,
                        dtype: torch.dtype, host_n: bool) -> Tuple[Tensor, Tensor, Union[float, Tensor]]:
    """Column statistics (mean, variance with the variant's correction, n) from running estimates. ``n`` is a
    Python float only with ``host_n`` (the CPU kernel takes it as an argument; a CPU tensor costs no sync);
    elsewhere it stays a 0-d tensor, so an eval forward on a GPU never waits for the device."""
    n = float(running_n) if host_n else running_n.to(dtype)
    mean = running_mean.to(dtype)
    var_unbiased = running_var.to(dtype)
    var = var_unbiased if variant == "reference" else var_unbiased * ((n - 1.0) / n)
    return mean, var, n


def cross_norm(
    x: Tensor,
    running_mean: Optional[Tensor] = None,
    running_var: Optional[Tensor] = None,
    running_batch_size: Optional[Tensor] = None,
    weight: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    variant: str = "paper",
    relu: bool = False,
) -> Tensor:
    """Cross normalization, paper Eq. 24 (``variant="paper"``) or the authors' code (``"reference"``).

    ``x``: ``[..., C]``. Running statistics (``[C]`` mean, ``[C]`` unbiased variance, ``[]`` batch size) are
    updated in training with ``momentum`` and, with ``training=False``, replace the batch's column
    statistics; the row statistics always come from the sample itself. ``relu=True`` returns
    ``relu(cross_norm(x))`` computed in the same passes (Linear -> CN -> ReLU without a separate ReLU pass).
    """
    if variant not in CN_VARIANTS:
        raise ValueError(f"cross_norm: unknown variant {variant!r}; expected one of {CN_VARIANTS}")
    C = x.shape[-1]
    x2 = _as_2d(x, C, "cross_norm")
    if C < 2 and variant == "reference":
        raise ValueError("cross_norm: the reference variant needs at least 2 channels (unbiased row variance)")
    use_batch = training or running_mean is None
    _check_batch(x2.shape[0], use_batch, "cross_norm", x.shape)
    dtype = _stats_dtype(x)
    compiling = torch.compiler.is_compiling()
    with _no_autocast(x):
        xs = x2.to(dtype).contiguous()
        col_mean = col_var = n = running = None
        if not use_batch:
            col_mean, col_var, n = _cn_running_columns(running_mean, running_var, running_batch_size, variant, dtype,
                                                       host_n=not compiling and cn_kernel.usable(xs))
        elif training and running_mean is not None and momentum > 0:
            running = (running_mean, running_var, running_batch_size, momentum)
        w = weight.to(dtype) if weight is not None else None
        b = bias.to(dtype) if bias is not None else None
        if compiling:
            # torch.compile traces the plain formulation (Inductor fuses it; Triton on a GPU) instead of the
            # autograd Function, whose native kernel it cannot see through
            y = _cross_norm_plain(xs, w, b, col_mean, col_var, n, variant, eps)
            if running is not None:
                with torch.no_grad():
                    var, mean = torch.var_mean(xs, dim=0, correction=1)
                    _update_running(running, mean, var, float(xs.shape[0]))
            y = (torch.relu(y) if relu else y).reshape(x.shape)
        else:
            y = _CrossNormFunction.apply(xs, w, b, col_mean, col_var, n, variant, eps, x.shape, running, relu)
    return y.to(x.dtype)


def cross_norm_autograd(
    x: Tensor,
    weight: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
    eps: float = 1e-5,
    variant: str = "paper",
) -> Tensor:
    """The straightforward autograd formulation of CrossNorm with batch statistics (for tests and the speed
    benchmark; :func:`cross_norm` computes the same values with a closed-form backward). ``x``: ``[..., C]``."""
    C = x.shape[-1]
    x2 = _as_2d(x, C, "cross_norm_autograd")
    with _no_autocast(x):
        y = _cross_norm_plain(x2.to(_stats_dtype(x)), weight, bias, None, None, None, variant, eps)
    return _restore(y, x)


class CrossNorm(_RunningStatsNorm):
    """Cross normalization (paper Eq. 24): element (t, i) is normalized by the statistics of the cross formed
    by its sample's row and its channel's column. Input ``[..., C]``, output the same.

    Args:
        num_features: C.
        eps: added to the variance.
        affine: learnable per-channel ``weight`` (init 1) and ``bias`` (init 0).
        track_running_stats: keep running column mean/variance and batch size, used in eval mode.
        momentum: update factor of the running statistics (``None``: cumulative average).
        variant: ``"paper"`` (Eq. 24 exactly) or ``"reference"`` (the authors' released formulation).
        fuse_relu: output ``relu(CN(x))``, computed in CN's own passes over ``[T, C]`` (saves the ReLU's
            separate read and write of the tensor in forward and backward).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True,
                 track_running_stats: bool = False, momentum: Optional[float] = 0.1,
                 variant: CNVariant = "paper", fuse_relu: bool = False, device=None, dtype=None) -> None:
        if variant not in CN_VARIANTS:
            raise ValueError(f"CrossNorm: unknown variant {variant!r}; expected one of {CN_VARIANTS}")
        self.variant = variant
        self.fuse_relu = fuse_relu
        super().__init__(num_features, num_features, eps, momentum, affine, track_running_stats, device, dtype)
        if track_running_stats:
            self.register_buffer("running_batch_size", torch.ones((), device=device, dtype=dtype))
        else:
            self.register_buffer("running_batch_size", None)

    def reset_running_stats(self) -> None:
        super().reset_running_stats()
        if getattr(self, "running_batch_size", None) is not None:
            self.running_batch_size.fill_(1)

    def forward(self, x: Tensor) -> Tensor:
        _as_2d(x, self.num_features, "CrossNorm")
        return cross_norm(x, running_batch_size=self.running_batch_size, variant=self.variant, relu=self.fuse_relu,
                          **self._stat_args())

    def extra_repr(self) -> str:
        return super().extra_repr() + f", variant={self.variant!r}" + (", fuse_relu=True" if self.fuse_relu else "")


# ----------------------------------------------------------------------------------------------------------


def make_norm(name: str, num_features: int, **kwargs) -> nn.Module:
    """Builds the norm called ``name`` (``none | bn | ln | gn | cn``) for ``num_features`` channels.

    Keyword arguments go to the layer; ``track_running_stats``/``momentum`` are ignored by ``ln``/``none``
    and ``variant`` by all but ``cn``, so one set of options can configure every norm. ``fuse_relu=True``
    exists only for ``cn`` (elsewhere it is an error, never silently dropped).
    """
    key = name.lower()
    if key != "cn" and kwargs.pop("fuse_relu", False):
        raise ValueError(f"fuse_relu is implemented for cn only, not {name!r}")
    if key == "none":
        return nn.Identity()
    if key == "ln":
        kwargs = {k: v for k, v in kwargs.items() if k in ("eps", "affine", "device", "dtype")}
        return LayerNorm(num_features, **kwargs)
    if key in ("bn", "gn"):
        kwargs = {k: v for k, v in kwargs.items() if k != "variant"}
        return (BatchNorm if key == "bn" else GlobalNorm)(num_features, **kwargs)
    if key == "cn":
        return CrossNorm(num_features, **kwargs)
    raise ValueError(f"unknown norm {name!r}; expected one of {', '.join(NORM_NAMES)}")
