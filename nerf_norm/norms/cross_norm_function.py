"""CrossNorm's autograd Function: the fused CPU kernel where it applies, else the eager closed forms of
:mod:`.cross_norm_closed_form`; never autograd's graph of a dozen ops. Second derivatives (``create_graph=True``,
eikonal losses) go through :mod:`.cross_norm_grad` (paper variant, closed form) or differentiate the spec
(:func:`~nerf_norm.norms.spec.cross_norm_spec`, the authors' variant)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from .. import kernels
from .cross_norm_closed_form import CrossNormSaved, centered, cross_rstd, first_backward
from .cross_norm_grad import _CrossNormGradFunction
from .spec import CrossMoments, cross_moments, cross_norm_spec

__all__ = ["CrossNormCall", "update_running", "cross_norm_function"]

Columns = Tuple[Tensor, Tensor, Union[float, Tensor]]
Running = Tuple[Tensor, Tensor, Optional[Tensor], float]


@dataclass(frozen=True)
class CrossNormCall:
    """What one CrossNorm call fixes besides its differentiable tensors.

    ``columns``: ``(mean [C], var [C], n)`` running column statistics replacing the batch's (``n`` a float, or a
    0-d tensor so that a GPU never syncs), ``None`` with batch columns; ``running``: ``(running_mean, running_var,
    running_batch_size, factor)`` to update from this batch, or ``None``; ``out_shape``: the caller's ``[..., C]``
    shape of the output; ``relu``: return ``relu(y)``.
    """

    variant: str
    eps: float
    out_shape: torch.Size
    relu: bool = False
    columns: Optional[Columns] = None
    running: Optional[Running] = None


def update_running(running: Running, col_mean: Tensor, col_var_unbiased: Tensor, n: Union[float, Tensor]) -> None:
    """EMA update of ``(running_mean, running_var, running_batch_size, factor)`` from a batch's columns of ``n``
    rows (a number, or a 0-d tensor such as a count all-reduced over ranks); ``running_batch_size`` may be None
    (BN, GN track no batch size)."""
    r_mean, r_var, r_n, factor = running
    r_mean.lerp_(col_mean.to(r_mean.dtype), factor)
    r_var.lerp_(col_var_unbiased.to(r_var.dtype), factor)
    if r_n is not None:
        r_n.lerp_(n.to(r_n.dtype) if isinstance(n, Tensor) else torch.full_like(r_n, n), factor)


class _CrossNormFunction(torch.autograd.Function):
    """``forward(x [T, C], weight [C] | None, bias [C] | None, call)``: CrossNorm with a closed-form backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, call: CrossNormCall):
        ctx.call = call
        ctx.kernel = kernels.load_for(x)
        # the output is allocated in its final shape: returning a reshaped view would forbid in-place ops on it
        if ctx.kernel is not None:
            y, ctx.state = kernels.cross_norm_forward(
                ctx.kernel,
                x,
                weight,
                bias,
                call.out_shape,
                call.variant,
                call.eps,
                call.relu,
                call.columns,
                call.running,
            )
            ctx.save_for_backward(x, weight, bias)
            return y
        m = cross_moments(x, call.variant, call.columns)
        if call.running is not None:
            update_running(call.running, m.col_mean, m.col_var_unbiased, m.n)
        xhat = centered(x, m, call.variant).mul_(cross_rstd(m, x.shape[1], call.variant, call.eps))
        y = xhat.new_empty(call.out_shape)
        flat = y.view(xhat.shape)
        if weight is not None:
            torch.addcmul(bias if bias is not None else xhat.new_zeros(()), xhat, weight, out=flat)
        else:
            flat.copy_(xhat if bias is None else xhat + bias)
        if call.relu:
            flat.clamp_(min=0.0)
        ctx.n = m.n
        # saved [T, C] tensors: x and xhat only; rstd is recomputed from the [T] / [C] moments in backward
        ctx.save_for_backward(x, weight, bias, xhat, m.row_mean, m.row_var, m.col_mean, m.col_var)
        return y

    @staticmethod
    def _saved(ctx) -> Tuple[CrossNormSaved, Tensor, Optional[Tensor], Optional[Tensor]]:
        call = ctx.call
        x, weight, bias, *extra = ctx.saved_tensors
        if ctx.kernel is not None:
            saved = CrossNormSaved(call.variant, call.eps, call.relu, call.columns, kernel=(ctx.kernel, ctx.state))
        else:
            xhat, row_mean, row_var, col_mean, col_var = extra
            moments = CrossMoments(row_mean, row_var, col_mean, col_var, ctx.n, None)
            saved = CrossNormSaved(call.variant, call.eps, call.relu, call.columns, xhat=xhat, moments=moments)
        return saved, x, weight, bias

    @staticmethod
    def backward(ctx, gy):
        saved, x, weight, bias = _CrossNormFunction._saved(ctx)
        gy = gy.to(x.dtype).reshape(x.shape)
        need_dw = weight is not None and ctx.needs_input_grad[1]
        need_db = bias is not None and ctx.needs_input_grad[2]
        if not torch.is_grad_enabled():
            return (*first_backward(saved, x, weight, bias, gy.contiguous(), need_dw, need_db), None)
        # the backward will be differentiated again (create_graph=True)
        if saved.variant == "paper":  # closed-form second derivative (cross_norm_grad.py)
            return (*_CrossNormGradFunction.apply(x, weight, bias, gy, saved, need_dw, need_db), None)
        return (*_backward_by_autograd(ctx, x, weight, bias, gy), None)


def _backward_by_autograd(ctx, x, weight, bias, gy):
    """The first backward as a graph autograd can differentiate: the spec's (the authors' variant)."""
    call = ctx.call
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    if bias is not None and not bias.requires_grad:
        bias = bias.detach().requires_grad_(True)
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    y = cross_norm_spec(x, weight, bias, call.columns, call.variant, call.eps)
    if call.relu:
        y = torch.relu(y)
    wanted = [(x, need_x), (weight, need_w), (bias, need_b)]
    inputs = [t for t, need in wanted if need and t is not None and t.requires_grad]
    grads = iter(torch.autograd.grad(y, inputs, gy, create_graph=True, allow_unused=True))
    return [next(grads) if (need and t is not None and t.requires_grad) else None for t, need in wanted]


def cross_norm_function(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], call: CrossNormCall) -> Tensor:
    """CrossNorm of ``x [T, C]`` (statistics dtype, contiguous) through the Function, output in ``call.out_shape``."""
    return _CrossNormFunction.apply(x, weight, bias, call)
