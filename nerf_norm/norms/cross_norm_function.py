"""CrossNorm's mathematics (paper Eq. 24 and the authors' variant): stable moments, the forward, the closed-form
backward and the autograd Function that runs them on the fused CPU kernel or as eager torch passes; plus the
plain differentiable statement of the same formula (torch.compile, the authors' variant's double backward).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from . import kernel as cn_kernel
from .common import _affine

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


def _cn_rstd(row_mean: Tensor, row_var: Tensor, col_mean: Tensor, col_var: Tensor, n, C: int, variant: str,
             eps: float, out: Optional[Tensor] = None) -> Tensor:
    """``1 / sqrt(var + eps)`` ``[T, C]`` of the cross variance from the ``[T]`` row and ``[C]`` column moments
    (variances with the variant's correction). A function of vectors only, so the backward recomputes it
    instead of keeping a third ``[T, C]`` tensor alive between forward and backward."""
    if variant == "paper":
        # Chan's pooled variance of row t and column i: (C vr + n vc) / N + (C n / N^2) (mr - mc)^2
        N = C + n
        k = (C * n) ** 0.5 / N
        var = torch.sub((row_mean * k).unsqueeze(1), (col_mean * k).unsqueeze(0), out=out)
        var.mul_(var)
        _add_outer(var, row_var * (C / N) + eps, col_var * (n / N))
    else:
        var = torch.add((row_var + eps).unsqueeze(1), col_var.unsqueeze(0), out=out)
    return var.rsqrt_()


def _cn_forward(x: Tensor, col_mean: Optional[Tensor], col_var: Optional[Tensor], n: Optional[float],
                variant: str, eps: float):
    """Returns (xhat [T, C], row mean [T], row var [T], col mean [C], col var [C], n, unbiased batch col var |
    None) of CrossNorm without affine; ``xhat`` is the only ``[T, C]`` result (see :func:`_cn_rstd`).

    ``col_mean``/``col_var`` (``[C]``, variance with the variant's correction) and ``n`` are given when
    running statistics replace the batch's columns; otherwise they are computed from ``x``.
    """
    T, C = x.shape
    paper = variant == "paper"
    batch_columns = col_mean is None
    row_mean, row_var, bc_mean, bc_var, bc_var_unbiased = _cn_moments(x, batch_columns, 0 if paper else 1)
    if batch_columns:
        col_mean, col_var, n = bc_mean, bc_var, float(T)
    N = C + n
    if paper:  # x - mu with mu = (C mr_t + n mc_i) / N
        xhat = torch.sub(x, (row_mean * (C / N)).unsqueeze(1)).sub_((col_mean * (n / N)).unsqueeze(0))
    else:  # x - mu with mu = (C mr_t + n mc_i - x) / N
        xhat = torch.mul(x, 1.0 + 1.0 / N).sub_((row_mean * (C / N)).unsqueeze(1))
        xhat.sub_((col_mean * (n / N)).unsqueeze(0))
    xhat.mul_(_cn_rstd(row_mean, row_var, col_mean, col_var, n, C, variant, eps))
    return xhat, row_mean, row_var, col_mean, col_var, n, bc_var_unbiased


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


@dataclass(frozen=True)
class CrossNormCall:
    """What one CrossNorm call fixes besides its differentiable tensors.

    ``n``: the column count behind ``col_mean``/``col_var`` when running statistics replace the batch's columns
    (a float, or a 0-d tensor so that a GPU never syncs), ``None`` with batch columns; ``running``:
    ``(running_mean, running_var, running_batch_size, factor)`` to update from this batch, or ``None``;
    ``out_shape``: the caller's ``[..., C]`` shape of the output; ``relu``: return ``relu(y)``.
    """

    variant: str
    eps: float
    out_shape: torch.Size
    relu: bool = False
    n: Union[None, float, Tensor] = None
    running: Optional[tuple] = None


class _CrossNormFunction(torch.autograd.Function):
    """CrossNorm with a closed-form backward: the fused CPU kernel of :mod:`nerf_norm.norms.kernel` when it is
    available, else a few eager passes over ``[T, C]``; never autograd's graph of a dozen ops.

    Second-order gradients (``create_graph=True``, e.g. eikonal losses): for the paper variant the backward is
    itself a differentiable Function with a closed-form derivative (``cross_norm_grad.py``, fused on the CPU
    kernel); the authors' variant differentiates the straightforward formulation with autograd.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, col_mean, col_var, call: CrossNormCall):
        """``x [T, C]``; ``weight``/``bias`` ``[C]`` or None; ``col_mean``/``col_var`` ``[C]`` running column
        statistics or None (batch columns)."""
        n, variant, eps, running, relu = call.n, call.variant, call.eps, call.running, call.relu
        out_shape = call.out_shape
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
        xhat, row_mean, row_var, col_mean_used, col_var_used, n_used, col_var_unbiased = _cn_forward(
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
        # saved [T, C] tensors: x and xhat only; rstd is recomputed from these [T] / [C] moments in backward
        return y, (xhat, row_mean, row_var, col_mean_used, col_var_used)

    @staticmethod
    def backward(ctx, gy):
        if torch.is_grad_enabled():  # the backward will be differentiated again (create_graph=True)
            if ctx.variant == "paper":  # closed-form second derivative (cross_norm_grad.py)
                return _CrossNormFunction._backward_differentiable(ctx, gy)
            return _CrossNormFunction._backward_by_autograd(ctx, gy)
        x = ctx.saved_tensors[0]
        return (*_CrossNormFunction._first_backward(ctx, gy.to(x.dtype).reshape(x.shape).contiguous()),
                None, None, None)

    @staticmethod
    def _first_backward(ctx, gy):
        """(dx, dweight | None, dbias | None) for ``gy`` ``[T, C]``: the kernel's or the eager closed form."""
        x, weight, bias, _, _, *extra = ctx.saved_tensors
        need_dw = weight is not None and ctx.needs_input_grad[1]
        need_db = ctx.has_bias and ctx.needs_input_grad[2]
        if ctx.kernel is not None:
            dx, dw, db = cn_kernel.backward(ctx.kernel, x, gy, weight, bias, ctx.state, ctx.batch_columns, ctx.relu)
        else:
            xhat, row_mean, row_var, col_mean, col_var = extra
            rstd = _cn_rstd(row_mean, row_var, col_mean, col_var, ctx.n, x.shape[1], ctx.variant, ctx.eps)
            if ctx.relu:  # the gradient of relu(y): zero where the (recomputed) y is not positive
                gy = gy.masked_fill(_affine(xhat, weight, bias) <= 0, 0.0)
            dx, dw = _cn_backward(x, xhat, rstd, row_mean, col_mean, ctx.n, gy, weight, ctx.batch_columns,
                                  ctx.variant, need_dw)
            db = torch.mv(gy.t(), gy.new_ones(gy.shape[0])) if need_db else None
        return dx, dw if need_dw else None, db if need_db else None

    @staticmethod
    def _backward_differentiable(ctx, gy):
        from .cross_norm_grad import _CrossNormGradFunction

        x, weight, bias, col_mean, col_var = ctx.saved_tensors[:5]
        gy = gy.to(x.dtype).reshape(x.shape)
        first = lambda g: _CrossNormFunction._first_backward(ctx, g.contiguous())  # noqa: E731
        dx, dw, db = _CrossNormGradFunction.apply(x, weight, bias, gy, col_mean, col_var, first,
                                                  (ctx.n_given, ctx.eps, ctx.relu,
                                                   ctx.state if ctx.kernel is not None else None))
        return dx, dw, db, None, None, None

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
        return (*out, None, None, None)


def _update_running(running, col_mean: Tensor, col_var_unbiased: Tensor, n: Union[float, Tensor]) -> None:
    """EMA update of (running_mean, running_var, running_batch_size, factor) from a batch's columns of ``n`` rows
    (a number, or a 0-d tensor such as a count all-reduced over ranks); ``running_batch_size`` may be None (BN,
    GN track no batch size)."""
    r_mean, r_var, r_n, factor = running
    r_mean.lerp_(col_mean.to(r_mean.dtype), factor)
    r_var.lerp_(col_var_unbiased.to(r_var.dtype), factor)
    if r_n is not None:
        r_n.lerp_(n.to(r_n.dtype) if isinstance(n, Tensor) else torch.full_like(r_n, n), factor)


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
