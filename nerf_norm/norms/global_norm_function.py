"""Global normalization (paper Eq. 23) with batch statistics as an autograd Function with a closed-form backward.

For x [T, C] with M = T C elements, one mean m and biased variance v, s = (v + eps)^(-1/2), xhat = (x - m) s and
y = xhat w + b (w, b per channel). With g = dL/dy w:

    dL/dx = s (g - mean(g) - xhat mean(g xhat)),   dL/dw = sum_t dL/dy xhat,   dL/db = sum_t dL/dy,

and mean(g) = (w . dL/db) / M, mean(g xhat) = (w . dL/dw) / M, so the backward makes five passes over [T, C]
(the product of dL/dy with x - m, kept from the forward, two column sums, and the output in two fused
multiply-adds) where autograd's graph of the statistics and ``addcmul`` makes about twice as many. The
differences x - m are formed before any product, so a large offset of the activations costs no accuracy. Second derivatives (``create_graph=True``)
differentiate the plain formula with autograd.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def _plain(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], eps: float) -> Tensor:
    var, mean = torch.var_mean(x, correction=0)
    y = (x - mean) * torch.rsqrt(var + eps)
    if weight is not None:
        y = y * weight
    return y + bias if bias is not None else y


class _GlobalNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], eps: float, running) -> Tensor:
        """``x [T, C]``; ``running``: ``(running_mean, running_var, momentum)`` to update from this batch, or
        None. Two-pass statistics: x - m is formed first (and kept for the backward instead of x), so a large
        offset costs no accuracy; torch's pairwise-summed means keep both passes exact."""
        M = x.numel()
        mean = x.mean()
        xc = x - mean
        var = xc.square().mean()
        if running is not None:
            running_mean, running_var, momentum = running  # on device: no host sync
            running_mean.lerp_(mean.reshape(running_mean.shape).to(running_mean.dtype), momentum)
            running_var.lerp_((var * (M / (M - 1))).reshape(running_var.shape).to(running_var.dtype), momentum)
        rstd = torch.rsqrt(var + eps)
        scale = rstd * weight if weight is not None else rstd.expand(x.shape[1])
        y = torch.addcmul(bias, xc, scale) if bias is not None else xc * scale
        ctx.save_for_backward(x, xc, weight, bias, rstd)
        ctx.eps = eps
        return y

    @staticmethod
    def backward(ctx, gy: Tensor):
        x, xc, weight, bias, rstd = ctx.saved_tensors
        if torch.is_grad_enabled():  # the backward is differentiated again: let autograd build it
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True) if not x.requires_grad else x
                y = _plain(xg, weight, bias, ctx.eps)
                wanted = [(xg, ctx.needs_input_grad[0]), (weight, ctx.needs_input_grad[1]),
                          (bias, ctx.needs_input_grad[2])]
                inputs = [t for t, need in wanted if need and t is not None]
                grads = iter(torch.autograd.grad(y, inputs, gy, create_graph=True))
                out = [next(grads) if need and t is not None else None for t, need in wanted]
            return (*out, None, None)
        M = xc.numel()
        db = gy.sum(dim=0)
        dw = (gy * xc).sum(dim=0).mul_(rstd)  # sum_t gy xhat
        if weight is not None:
            mean_g, mean_gx = (weight @ db) / M, (weight @ dw) / M
            gx = torch.addcmul(-rstd * mean_g, gy, rstd * weight)
        else:
            mean_g, mean_gx = db.sum() / M, dw.sum() / M
            gx = torch.addcmul(-rstd * mean_g, gy, rstd)
        gx.addcmul_(xc, -(rstd * rstd) * mean_gx)
        return gx, dw if ctx.needs_input_grad[1] else None, db if ctx.needs_input_grad[2] else None, None, None
