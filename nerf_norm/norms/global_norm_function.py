"""GlobalNorm's mathematics (paper Eq. 23): stable moments, the forward, the closed-form backward and the autograd
Function that runs them on the fused CPU kernel (``csrc/global_norm_cpu.cpp``) or as eager torch passes. The
formula itself is :func:`~nerf_norm.norms.spec.global_norm_spec`.

One mean ``m`` and biased variance ``var`` over all ``T x C`` elements of ``x [T, C]``, ``rstd = (var + eps)^-1/2``,
``s_i = rstd w_i``:

    y_ti = (x_ti - m) s_i + b_i                   (relu(y) when the ReLU is fused)

Backward, with ``g`` the incoming gradient (zero where ``y <= 0`` when the ReLU is fused; the mask is recomputed
from ``x``, nothing but ``x`` is kept), ``G_i = sum_t g_ti``, ``S_i = sum_t g_ti (x_ti - m)``:

    db_i = G_i,   dw_i = rstd S_i
    dx_ti = s_i g_ti + P + (x_ti - m) R,   P = -rstd (w . G) / TC,   R = -rstd^3 (w . S) / TC

(the usual ``rstd (g' - mean(g') - xhat mean(g' xhat))`` with ``g' = g w``, written with column sums only). With
running statistics in place of the batch's, ``m`` and ``var`` do not depend on ``x`` and ``P = R = 0``.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .. import kernels
from .spec import global_moments


def global_moments_fast(x: Tensor) -> Tuple[Tensor, Tensor]:
    """(mean, biased variance) of all elements of ``x [T, C]`` as 0-d tensors of ``x``'s dtype, without gradient:
    one pass of per-row shifted sums merged in float64 on the CPU kernel, else the spec's two-pass
    :func:`~nerf_norm.norms.spec.global_moments`. No host sync either way."""
    with torch.no_grad():
        kernel = kernels.load_for(x)
        if kernel is not None:
            mean, var = kernel.global_norm_moments(x.contiguous())
            return mean.to(x.dtype), var.to(x.dtype)
        return global_moments(x)


def global_norm_function(
    x: Tensor,
    weight: Optional[Tensor],
    bias: Optional[Tensor],
    mean: Tensor,
    var: Tensor,
    batch_stats: bool,
    eps: float,
    relu: bool,
    out_shape,
) -> Tensor:
    """GlobalNorm of ``x [T, C]`` through the closed-form Function, output in ``out_shape``."""
    return _GlobalNormFunction.apply(x, weight, bias, mean, var, batch_stats, eps, relu, out_shape)


class _GlobalNormFunction(torch.autograd.Function):
    """GlobalNorm with a closed-form backward: the fused CPU kernel when it is available, else eager torch passes.

    ``forward(x [T, C], weight [C] | None, bias [C] | None, mean [], var [], batch_stats, eps, relu, out_shape)``:
    ``mean``/``var`` are the batch's moments (``batch_stats=True``; the backward accounts for their dependence on
    ``x``) or running estimates; either way they come in without gradient. A backward that will itself be
    differentiated (``create_graph=True``, e.g. an eikonal loss) is the same closed form as differentiable ops.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, mean, var, batch_stats: bool, eps: float, relu: bool, out_shape):
        ctx.batch_stats, ctx.eps, ctx.relu = batch_stats, eps, relu
        ctx.has_weight, ctx.has_bias = weight is not None, bias is not None
        w = weight if weight is not None else x.new_ones(x.shape[1])
        b = bias if bias is not None else x.new_zeros(x.shape[1])
        rstd = torch.rsqrt(var + eps)
        s = (rstd * w).contiguous()
        ctx.kernel = kernels.load_for(x)
        if ctx.kernel is not None:
            y = ctx.kernel.global_norm_output(x, float(mean), s, b.contiguous(), list(out_shape), relu)
        else:
            # allocated in its final shape: a reshaped view as output would forbid in-place ops on it
            y = x.new_empty(out_shape)
            flat = torch.sub(x, mean, out=y.view(x.shape)).mul_(s).add_(b)
            if relu:
                flat.clamp_(min=0.0)
        ctx.save_for_backward(x, w, b, mean, var, rstd, s)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, w, b, mean, var, rstd, s = ctx.saved_tensors
        if torch.is_grad_enabled():  # the backward will be differentiated again (create_graph=True)
            return _GlobalNormFunction._backward_differentiable(ctx, gy)
        g = gy.to(x.dtype).reshape(x.shape).contiguous()
        TC = x.numel()
        if ctx.kernel is not None:
            m = float(mean)
            sums = ctx.kernel.global_norm_grad_sums(x, g, m, s, b, ctx.relu).to(x.dtype)
            G, S = sums[0], sums[1]
            P = R = 0.0
            if ctx.batch_stats:
                r = float(rstd)
                P = -r * float(torch.dot(w, G)) / TC
                R = -(r**3) * float(torch.dot(w, S)) / TC
            dx = ctx.kernel.global_norm_grad_input(x, g, m, s, b, P, R, ctx.relu)
        else:
            xc = x - mean
            if ctx.relu:  # the gradient of relu(y): zero where the recomputed y is not positive
                g = g.masked_fill(torch.addcmul(b, xc, s) <= 0, 0.0)
            G = g.sum(dim=0)
            gxc = g * xc
            S = gxc.sum(dim=0)
            dx = torch.mul(g, s, out=gxc)
            if ctx.batch_stats:  # tensors throughout: a GPU never waits for the device here
                dx.addcmul_(xc, -rstd.pow(3) * torch.dot(w, S) / TC).sub_(rstd * torch.dot(w, G) / TC)
        dw = rstd * S if ctx.has_weight and ctx.needs_input_grad[1] else None
        db = G if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db, None, None, None, None, None, None

    @staticmethod
    def _backward_differentiable(ctx, gy):
        """The closed-form backward above as out-of-place torch ops on the saved inputs, which keep their autograd
        history: autograd differentiates these few ops (the second derivative) instead of the spec's forward and
        backward graph. With batch statistics the moments are recomputed from ``x`` so that their dependence on
        ``x`` is part of the graph."""
        x, w, b, mean, var, _, _ = ctx.saved_tensors
        if ctx.batch_stats:
            mean, var = global_moments(x)
        rstd = torch.rsqrt(var + ctx.eps)
        xc = x - mean
        g = gy.to(x.dtype).reshape(x.shape)
        if ctx.relu:  # the ReLU's mask is piecewise constant: its derivative is 0
            g = g * ((xc * (rstd * w) + b) > 0).to(g.dtype)
        G = g.sum(dim=0)
        S = (g * xc).sum(dim=0)
        dx = g * (rstd * w)
        if ctx.batch_stats:
            TC = x.numel()
            dx = dx - rstd * torch.dot(w, G) / TC - xc * (rstd.pow(3) * torch.dot(w, S) / TC)
        dw = rstd * S if ctx.has_weight and ctx.needs_input_grad[1] else None
        db = G if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db, None, None, None, None, None, None
