"""The one differentiable specification of each batch-coupled norm, and the moments they are computed from.

Each ``*_spec`` function states its paper equation as plain torch ops on ``x [T, C]``; autograd builds every
derivative. It is what the tests compare against, what ``torch.compile`` traces, what the synchronized layers
run (with moments of all ranks) and what the NTK differentiates. The fast paths (the fused CPU kernels, the
closed-form Functions of :mod:`.cross_norm_function` and :mod:`.global_norm_function`) compute the same values
from the same moments: :func:`cross_moments` is the only Python computation of CrossNorm's row and column
statistics, :func:`global_moments` of GlobalNorm's.

Moments are two-pass (``torch.var_mean``; ``x - m`` is formed before squaring), so a large offset of the
activations against their spread costs no accuracy at any T.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor

__all__ = [
    "CrossMoments",
    "cross_moments",
    "cross_norm_spec",
    "cross_norm_from_moments",
    "global_moments",
    "global_norm_spec",
    "standardize",
]


class CrossMoments(NamedTuple):
    """CrossNorm's statistics of ``x [T, C]``.

    ``row_mean``/``row_var`` ``[T]`` and ``col_mean``/``col_var`` ``[C]`` with the variant's correction (biased
    for ``paper``, unbiased for ``reference``); ``n`` the column count (``T``, or the running batch size: a float
    or a 0-d tensor); ``col_var_unbiased`` the batch's unbiased column variance for a running update (``None``
    when the columns are running estimates)."""

    row_mean: Tensor
    row_var: Tensor
    col_mean: Tensor
    col_var: Tensor
    n: Union[float, Tensor]
    col_var_unbiased: Optional[Tensor]


def cross_moments(
    x: Tensor, variant: str = "paper", columns: Optional[Tuple[Tensor, Tensor, Union[float, Tensor]]] = None
) -> CrossMoments:
    """Row moments of ``x [T, C]`` and column moments from ``x`` or, given ``columns = (mean [C], var [C], n)``
    (running estimates, variance with the variant's correction), from those."""
    T = x.shape[0]
    correction = 0 if variant == "paper" else 1
    row_var, row_mean = torch.var_mean(x, dim=1, correction=correction)
    if columns is not None:
        col_mean, col_var, n = columns
        return CrossMoments(row_mean, row_var, col_mean, col_var, n, None)
    col_var, col_mean = torch.var_mean(x, dim=0, correction=correction)
    unbiased = col_var if correction == 1 else col_var * (T / max(T - 1, 1))
    return CrossMoments(row_mean, row_var, col_mean, col_var, float(T), unbiased)


def _affine(y: Tensor, weight: Optional[Tensor], bias: Optional[Tensor]) -> Tensor:
    if weight is not None:
        y = y * weight
    return y + bias if bias is not None else y


def cross_norm_spec(
    x: Tensor,
    weight: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
    columns: Optional[Tuple[Tensor, Tensor, Union[float, Tensor]]] = None,
    variant: str = "paper",
    eps: float = 1e-5,
) -> Tensor:
    """CrossNorm, paper Eq. 24 (``paper``) or the authors' code (``reference``), of ``x [T, C]``.

    For element (t, i), with row t's mean and variance (mr, vr over C) and column i's (mc, vc over n), N = C + n:

    - paper (the multiset row + column): ``mu = (C mr + n mc) / N``,
      ``var = (C vr + n vc) / N + (C n / N^2) (mr - mc)^2`` (Chan's pooled variance: no cancellation);
    - reference: ``mu = (C mr + n mc - x) / N``, ``var = vr + vc`` (unbiased variances);

    ``y = (x - mu) / sqrt(var + eps) * weight + bias``."""
    return cross_norm_from_moments(x, cross_moments(x, variant, columns), weight, bias, variant, eps)


def cross_norm_from_moments(
    x: Tensor,
    m: CrossMoments,
    weight: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
    variant: str = "paper",
    eps: float = 1e-5,
) -> Tensor:
    """:func:`cross_norm_spec` given the moments ``m`` of ``x`` (:func:`cross_moments`)."""
    C = x.shape[1]
    n = m.n
    mr, vr = m.row_mean.unsqueeze(1), m.row_var.unsqueeze(1)
    N = C + n
    if variant == "paper":
        mu = (C * mr + n * m.col_mean) / N
        var = (C * vr + n * m.col_var) / N + (C * n / N**2) * (mr - m.col_mean) ** 2
    else:
        mu = (C * mr + n * m.col_mean - x) / N
        var = vr + m.col_var
    return _affine((x - mu) * torch.rsqrt(var + eps), weight, bias)


def global_moments(x: Tensor) -> Tuple[Tensor, Tensor]:
    """(mean, biased variance) of all elements of ``x [T, C]``, 0-d tensors, two-pass."""
    mean = x.mean()
    return mean, (x - mean).square().mean()


def standardize(
    x: Tensor, mean: Tensor, var: Tensor, eps: float, weight: Optional[Tensor] = None, bias: Optional[Tensor] = None
) -> Tensor:
    """``(x - mean) / sqrt(var + eps) * weight + bias``: BatchNorm (Eq. 8, ``[C]`` moments) and GlobalNorm
    (Eq. 23, 0-d moments) given their moments."""
    return _affine((x - mean) * torch.rsqrt(var + eps), weight, bias)


def global_norm_spec(
    x: Tensor,
    weight: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
    stats: Optional[Tuple[Tensor, Tensor]] = None,
    eps: float = 1e-5,
) -> Tensor:
    """GlobalNorm, paper Eq. 23: one mean and biased variance over all ``T x C`` elements of ``x [T, C]`` (or the
    running ``stats = (mean, var)``), a per-channel affine."""
    mean, var = global_moments(x) if stats is None else stats
    return standardize(x, mean, var, eps, weight, bias)
