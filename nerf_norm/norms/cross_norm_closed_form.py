"""CrossNorm's forward and first backward in closed form (paper Eq. 24 and the authors' variant), on eager torch
ops, and the dispatch of both to the fused CPU kernel where it applies.

The statistics come from :func:`~nerf_norm.norms.spec.cross_moments` (the one Python computation of them); the
formula is :func:`~nerf_norm.norms.spec.cross_norm_spec`'s. What this module adds is the derivative written out,
so a layer keeps two ``[T, C]`` tensors (x and xhat) for its backward instead of autograd's graph of a dozen ops
(``benchmarks/results/cross_norm_paths.md`` measures both).

For element (t, i) of x [T, C] the statistics cover row t (C elements) and column i (n elements, n = T with the
batch's columns or the tracked batch size with running statistics), N = C + n.

- paper: ``mu = (C mr_t + n mc_i) / N``; reference: ``mu = (C mr_t + n mc_i - x) / N``.
- ``xhat = (x - mu) rstd``, ``rstd = (var + eps)^-1/2`` with the variant's variance (see the spec).

Backward, with g = dL/dy * weight, u = g * rstd and c = dL/dvar = -u * xhat * rstd / 2, r1/r2 the row sums of x
and x^2, s1/s2 the column sums, B = 1 with the batch's columns and 0 with running estimates:

    paper:      dx = u + [dr1_t + B ds1_i] + 2 x [dr2_t + B ds2_i]
                dr1_t = (-sum_i u - 2 sum_i mu c) / N,  dr2_t = sum_i c / N    (and the same over columns)
    reference:  dx = (1 + 1/N) u - [sum_i u + B sum_t u] / N
                     + 2 sum_i c (x - mr_t) / (C - 1) + B 2 sum_t c (x - mc_i) / (n - 1)

The sums of mu * c need no [T, C] mu: sum_i mu_ti c_ti = (r1_t sum_i c_ti + (c @ s1)_t) / N.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from .. import kernels
from .common import _affine
from .spec import CrossMoments

__all__ = ["centered", "cross_rstd", "eager_backward", "CrossNormSaved", "first_backward"]


def _add_outer(out: Tensor, row: Tensor, col: Tensor) -> Tensor:
    """In place: ``out[t, i] += row[t] + col[i]``."""
    return out.add_(row.unsqueeze(1)).add_(col.unsqueeze(0))


def centered(x: Tensor, m: CrossMoments, variant: str) -> Tensor:
    """``x - mu`` ``[T, C]`` (a new tensor) from the moments ``m``."""
    C = x.shape[1]
    N = C + m.n
    if variant == "paper":  # mu = (C mr_t + n mc_i) / N
        d = torch.sub(x, (m.row_mean * (C / N)).unsqueeze(1))
    else:  # mu = (C mr_t + n mc_i - x) / N
        d = torch.mul(x, 1.0 + 1.0 / N).sub_((m.row_mean * (C / N)).unsqueeze(1))
    return d.sub_((m.col_mean * (m.n / N)).unsqueeze(0))


def cross_rstd(m: CrossMoments, C: int, variant: str, eps: float, out: Optional[Tensor] = None) -> Tensor:
    """``1 / sqrt(var + eps)`` ``[T, C]`` of the cross variance from the ``[T]`` row and ``[C]`` column moments.
    A function of vectors only, so the backward recomputes it instead of keeping a third ``[T, C]`` tensor alive
    between forward and backward."""
    if variant == "paper":
        # Chan's pooled variance of row t and column i: (C vr + n vc) / N + (C n / N^2) (mr - mc)^2
        n = m.n
        N = C + n
        k = (C * n) ** 0.5 / N
        var = torch.sub((m.row_mean * k).unsqueeze(1), (m.col_mean * k).unsqueeze(0), out=out)
        var.mul_(var)
        _add_outer(var, m.row_var * (C / N) + eps, m.col_var * (n / N))
    else:
        var = torch.add((m.row_var + eps).unsqueeze(1), m.col_var.unsqueeze(0), out=out)
    return var.rsqrt_()


def eager_backward(
    x: Tensor,
    xhat: Tensor,
    rstd: Tensor,
    m: CrossMoments,
    gy: Tensor,
    weight: Optional[Tensor],
    batch_columns: bool,
    variant: str,
    need_weight_grad: bool,
) -> Tuple[Tensor, Optional[Tensor]]:
    """(dL/dx, dL/dweight) of CrossNorm given gy = dL/dy, all ``[T, C]``. See the derivation above.

    Allocates two ``[T, C]`` tensors: ``u``, which becomes dL/dx in place, and one scratch buffer.
    """
    T, C = x.shape
    n = m.n
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
        r1, s1 = m.row_mean * C, m.col_mean * n
        # dL/dr1_t and dL/dr2_t (and over columns dL/ds1_i, dL/ds2_i); sum_i mu c = (r1 c_row + c @ s1) / N
        d_r1 = (u_row.neg() - (2.0 / N) * (r1 * c_row - 0.5 * torch.mv(c, s1))) / N
        d_r2 = c_row / N
        if batch_columns:
            d_s1 = (u_col.neg() - (2.0 / N) * (s1 * c_col - 0.5 * torch.mv(c.t(), r1))) / N
            d_s2 = c_col / N
        else:
            d_s1 = d_s2 = torch.zeros_like(m.col_mean)
        dx = _add_outer(u, d_r1, d_s1)
    else:
        d_r2 = c_row * (1.0 / (C - 1))
        lin_row = u_row / -N - 2.0 * d_r2 * m.row_mean
        if batch_columns:
            d_s2 = c_col * (1.0 / (n - 1))
            lin_col = u_col / -N - 2.0 * d_s2 * m.col_mean
        else:
            d_s2 = lin_col = torch.zeros_like(m.col_mean)
        dx = _add_outer(u.mul_(1.0 + 1.0 / N), lin_row, lin_col)
    coef = torch.add(d_r2.unsqueeze(1), d_s2.unsqueeze(0), out=buf)
    return dx.addcmul_(x, coef, value=2.0), dw


@dataclass(frozen=True)
class CrossNormSaved:
    """What a CrossNorm forward leaves for its backward passes (first and second order).

    ``kernel``: the CPU kernel module and its :class:`~nerf_norm.kernels.CrossNormKernelState`, or ``None`` with
    the eager ``xhat`` ``[T, C]`` and ``moments`` instead. ``columns``: the running ``(mean, var, n)`` that
    replaced the batch's columns, or ``None``."""

    variant: str
    eps: float
    relu: bool
    columns: Optional[Tuple[Tensor, Tensor, Union[float, Tensor]]]
    kernel: Optional[tuple] = None
    xhat: Optional[Tensor] = None
    moments: Optional[CrossMoments] = None

    @property
    def batch_columns(self) -> bool:
        return self.columns is None


def first_backward(
    saved: CrossNormSaved,
    x: Tensor,
    weight: Optional[Tensor],
    bias: Optional[Tensor],
    gy: Tensor,
    need_dw: bool,
    need_db: bool,
) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """(dx, dweight | None, dbias | None) of CrossNorm at ``x [T, C]`` for ``gy = dL/dy`` ``[T, C]`` (of
    ``relu(y)`` with a fused ReLU): the kernel's passes or the eager closed form."""
    if saved.kernel is not None:
        module, state = saved.kernel
        dx, dw, db = kernels.cross_norm_backward(module, x, gy, weight, bias, state, saved.batch_columns, saved.relu)
    else:
        m, xhat = saved.moments, saved.xhat
        rstd = cross_rstd(m, x.shape[1], saved.variant, saved.eps)
        if saved.relu:  # the gradient of relu(y): zero where the (recomputed) y is not positive
            gy = gy.masked_fill(_affine(xhat, weight, bias) <= 0, 0.0)
        dx, dw = eager_backward(x, xhat, rstd, m, gy, weight, saved.batch_columns, saved.variant, need_dw)
        db = torch.mv(gy.t(), gy.new_ones(gy.shape[0])) if need_db else None
    return dx, dw if need_dw else None, db if need_db else None
