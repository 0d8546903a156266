"""CrossNorm's second derivative in closed form (paper Eq. 24): what an eikonal loss, or any gradient penalty,
differentiates when the network's input gradient is itself part of the loss (NeuS' SDF network).

``_CrossNormGradFunction`` is CrossNorm's first backward
(:func:`~nerf_norm.norms.cross_norm_closed_form.first_backward`) as a differentiable operation: its forward is the
fast first backward (kernel or eager passes), its backward the closed form derived below. It replaces differentiating autograd's graph of the plain formula (a recomputed
forward, its backward built as a graph, then that graph's backward: a hundred-odd ``[T, C]`` passes per layer).
Variant ``paper`` only; the authors' variant keeps the generic route.

Derivation. Write the normalized value of element (t, i) as ``h = (x - M) s`` with ``s = (V + eps)^(-1/2)``,

    M_ti = (sum_j x_tj + B sum_k x_ki) / N,    V_ti = (sum_j x_tj^2 + B sum_k x_ki^2 + K_i) / N - M_ti^2,

N = C + n, B = 1 with the batch's columns (n = T) and 0 with running column statistics (whose sums are the
constants K_i and the column part of M). With D = x - M:

    dh/dx = s,  dh/dM = -s,  dh/dV = -D s^3 / 2;  second: d2h/dx dV = -s^3 / 2, d2h/dM dV = s^3 / 2,
    d2h/dV2 = 3 D s^5 / 4, the others 0;
    dM_ti/dx_kl = ([k = t] + B [l = i]) / N,   dV_ti/dx_kl = 2 (x_kl - M_ti) ([k = t] + B [l = i]) / N.

The first backward is the gradient of phi(x) = sum g h (g = dL/dxhat). Its derivative along a direction v
(the upstream gradient of dx) is the Hessian-vector product H v of phi (H is symmetric, so H^T v = H v). With
the directional statistics

    dM_ti = (Vr_t + B Vc_i) / N,    Vr_t = sum_j v_tj,  Vc_i = sum_k v_ki,
    dV_ti = 2 (sum_j (x_tj - M_ti) v_tj + B sum_k (x_ki - M_ti) v_ki) / N,

and the per-element p = g s^3 dV / (2N), q = 2 g dh_V / N with dh_V = -s^3 (v - dM) / 2 + 3 D s^5 dV / 4,
r = -g D s^3 / N, the sum over the cross of (k, l) of each term gives

    (H v)_kl = -N p_kl + cross-sum(p)_kl + sum_cross q_ti (x_kl - M_ti) + sum_cross r_ti (v_kl - dM_ti),

where cross-sum(p)_kl = sum_i p_ki + B sum_t p_tl. The other inputs: the derivative of h along v (Jacobian-
vector product) is J v = s (v - dM) - D s^3 dV / 2, so d<gdx, dx>/dgy = w (J v) and d/dw = sum_t gy (J v);
dw = sum_t gy xhat contributes xhat gdw to gy's gradient and J^T (gy w') (a first backward with weight gdw) to
x's; db = sum_t gy contributes gdb to gy's. A fused ReLU multiplies gy by its mask (whose derivative is 0).

Every sum of the form sum_i a_ti (x_tl - M_ti) is evaluated as (x_tl - mr_t) sum_i a_ti + (n / N) sum_i a_ti
(mr_t - mc_i) (mr, mc: row and column means; M_ti - mr_t = n (mc_i - mr_t) / N), and the means are shifted by
their common mean first, so a large offset of the activations cancels before any product is formed.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .. import kernels
from .common import _affine
from .cross_norm_closed_form import CrossNormSaved, centered, cross_rstd, eager_backward, first_backward
from .spec import cross_moments


def _weight_grad_term(
    x: Tensor, weight, bias, gy: Tensor, gdw: Tensor, m, batch: bool, eps: float, relu: bool
) -> Tensor:
    """d<gdw, dw>/dx with dw = sum_t gy xhat: J^T (gy * gdw), an eager first backward with weight gdw (the
    kernel path has no xhat at hand)."""
    s = cross_rstd(m, x.shape[1], "paper", eps)
    xhat = centered(x, m, "paper").mul_(s)
    ge = gy.masked_fill(_affine(xhat, weight, bias) <= 0, 0.0) if relu else gy
    return eager_backward(x, xhat, s, m, ge, gdw, batch, "paper", False)[0]


def double_backward(
    saved: CrossNormSaved,
    x: Tensor,
    weight: Optional[Tensor],
    bias: Optional[Tensor],
    gy: Tensor,
    gdx: Optional[Tensor],
    gdw: Optional[Tensor],
    gdb: Optional[Tensor],
    need: tuple,
):
    """Gradients (x, weight, gy) of ``<gdx, dx> + <gdw, dw> + <gdb, db>`` where (dx, dw, db) is CrossNorm's
    (paper variant) first backward of ``gy`` at ``x``. All ``[T, C]`` / ``[C]``; see the module docstring. On the
    CPU kernel the forward's row / column vectors are reused."""
    need_x, need_w, need_gy = need
    T, C = x.shape
    batch = saved.batch_columns
    eps, relu = saved.eps, saved.relu
    columns = None if batch else (saved.columns[0].to(x.dtype), saved.columns[1].to(x.dtype), saved.columns[2])
    if saved.kernel is not None:  # the fused kernel, with the forward's row / column vectors
        module, state = saved.kernel
        _, K, N, n = state.scalars.tolist()[:4]  # float64 on the CPU: no device sync
        shift = state.col_mean.mean()
        vectors = (state.row_mean, state.col_mean, state.row_mean - shift, state.col_mean - shift, state.A, state.B)
        v = gdx if gdx is not None else torch.zeros_like(x)
        gx, gw, ggy = kernels.cross_norm_double_backward(
            module, x, gy, v, weight, bias, gdw, gdb, vectors, N, n, K, batch, relu
        )
        if need_x and gdw is not None:
            gx += _weight_grad_term(x, weight, bias, gy, gdw, cross_moments(x, "paper", columns), batch, eps, relu)
        return gx if need_x else None, gw if need_w and weight is not None else None, ggy if need_gy else None
    m = cross_moments(x, "paper", columns)
    n = m.n
    N = C + n
    col_mean = m.col_mean
    shift = col_mean.mean()
    mr, mc = m.row_mean - shift, col_mean - shift  # shifted means: only their differences matter below
    s = cross_rstd(m, C, "paper", eps)
    x_r = x - m.row_mean.unsqueeze(1)  # x - mr, stable
    delta = mr.unsqueeze(1) - mc.unsqueeze(0)  # mr_t - mc_i
    D = centered(x, m, "paper")  # x - M
    xhat = D * s
    off = _affine(xhat, weight, bias) <= 0 if relu else None  # where a fused ReLU passes nothing
    ge = gy.masked_fill(off, 0.0) if relu else gy
    g = ge * weight if weight is not None else ge
    v = gdx if gdx is not None else torch.zeros_like(x)

    Vr = v.sum(dim=1)
    XVr = (x_r * v).sum(dim=1)
    if batch:
        Vc = v.sum(dim=0)
        XVc = ((x - col_mean.unsqueeze(0)) * v).sum(dim=0)
        dM = (Vr.unsqueeze(1) + Vc.unsqueeze(0)) / N
        # sum_j (x_tj - M_ti) v_tj = XVr_t + (mr_t - M_ti) Vr_t, mr_t - M_ti = n delta / N (columns: -C delta / N)
        dV = (XVr.unsqueeze(1) + XVc.unsqueeze(0) + delta * ((n * Vr).unsqueeze(1) - (C * Vc).unsqueeze(0)) / N) * (
            2 / N
        )
    else:
        dM = (Vr / N).unsqueeze(1).expand(T, C)
        dV = (XVr.unsqueeze(1) + delta * (n * Vr).unsqueeze(1) / N) * (2 / N)
    s3 = s * s * s
    vm = v - dM
    Jv = s * vm - 0.5 * D * s3 * dV

    grad_x = grad_w = grad_gy = None
    if need_gy:
        grad_ge = Jv * weight if weight is not None else Jv.clone()
        if gdw is not None:
            grad_ge.addcmul_(xhat, gdw)
        if gdb is not None:
            grad_ge.add_(gdb)
        grad_gy = grad_ge.masked_fill_(off, 0.0) if relu else grad_ge
    if need_w and weight is not None:
        grad_w = (ge * Jv).sum(dim=0)
    if need_x:
        p = g * s3 * dV / (2 * N)
        dhV = -0.5 * s3 * vm + 0.75 * D * s3 * s * s * dV
        q = g * dhV * (2 / N)
        r = -g * D * s3 / N
        Pr, Qr, Rr = p.sum(dim=1), q.sum(dim=1), r.sum(dim=1)
        # sum_i q_ti (x_tl - M_ti) = (x_tl - mr_t) Qr_t + (n / N) (mr_t Qr_t - (q @ mc)_t)
        hv = (-N) * p + Pr.unsqueeze(1) + x_r * Qr.unsqueeze(1) + ((mr * Qr - q @ mc) * (n / N)).unsqueeze(1)
        hv += v * Rr.unsqueeze(1)
        if batch:
            Pc, Qc, Rc = p.sum(dim=0), q.sum(dim=0), r.sum(dim=0)
            hv += Pc.unsqueeze(0) + (x - col_mean.unsqueeze(0)) * Qc.unsqueeze(0)
            hv += ((mc * Qc - q.t() @ mr) * (C / N)).unsqueeze(0)
            hv += v * Rc.unsqueeze(0)
            # sum_i r_ti dM_ti and sum_t r_tl dM_tl with dM = (Vr_t + Vc_i) / N
            hv -= ((Rr * Vr + r @ Vc) / N).unsqueeze(1) + ((r.t() @ Vr + Rc * Vc) / N).unsqueeze(0)
        else:
            hv -= (Rr * Vr / N).unsqueeze(1)
        if gdw is not None:  # d<gdw, dw>/dx = J^T (ge * gdw): a first backward with weight gdw
            hv += eager_backward(x, xhat, s, m, ge, gdw, batch, "paper", False)[0]
        grad_x = hv
    return grad_x, grad_w, grad_gy


class _CrossNormGradFunction(torch.autograd.Function):
    """CrossNorm's first backward (dx, dweight, dbias) as a differentiable function of (x, weight, gy), with the
    closed-form second derivative above. ``saved`` is what the layer's forward left (:class:`CrossNormSaved`)."""

    @staticmethod
    def forward(ctx, x, weight, bias, gy, saved: CrossNormSaved, need_dw: bool, need_db: bool):
        ctx.set_materialize_grads(False)  # an unused dw / db (an input-gradient penalty) costs nothing
        dx, dw, db = first_backward(saved, x, weight, bias, gy.contiguous(), need_dw, need_db)
        ctx.save_for_backward(x, weight, bias, gy)
        ctx.saved = saved
        ctx.has_dw, ctx.has_db = dw is not None, db is not None
        return dx, dw, db

    @staticmethod
    @once_differentiable
    def backward(ctx, gdx, gdw, gdb):
        x, weight, bias, gy = ctx.saved_tensors
        need = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[3])
        if gdx is None and gdw is None and gdb is None:
            return (None,) * 7
        gx, gw, ggy = double_backward(
            ctx.saved, x, weight, bias, gy, gdx, gdw if ctx.has_dw else None, gdb if ctx.has_db else None, need
        )
        return gx, gw, None, ggy, None, None, None
