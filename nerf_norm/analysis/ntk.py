"""Empirical neural tangent kernel of a coordinate network (paper Eq. 2) and its eigenvalue statistics (Eq. 6).

For a network ``f`` and T input coordinates ``X``, the NTK is ``K = J J^T`` with ``J = d vec(f(X)) / d theta``
of shape ``[T * C_out, P]`` over all P trainable parameters. ``vec`` is sample-major: row ``t * C_out + c`` is
output channel c of sample t. (The paper writes ``K = (grad H)^T grad H`` with the gradient as ``[P, T C]``;
the matrix is the same.)

The networks are evaluated in training mode, as they are trained: batch-coupled norms (BN, GN, CN) take their
statistics over the whole input set, so an output depends on every sample and the Jacobian is taken of the
whole batch output at once, never per sample.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Dict, Optional

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev

from ..norms import CrossNorm, GlobalNorm
from ..norms.spec import cross_norm_spec, global_norm_spec

__all__ = ["empirical_ntk", "ntk_eigenvalues", "ntk_statistics", "NTKStatistics"]


class _DifferentiableNorm(nn.Module):
    """Stand-in for a :class:`~nerf_norm.norms.CrossNorm` or :class:`~nerf_norm.norms.GlobalNorm` under
    ``torch.func`` transforms.

    Their fast paths are autograd Functions with closed-form (native) backwards, which ``torch.func`` cannot
    vectorise. This module computes the same values (batch statistics) with their spec (plain differentiable ops) and shares
    the original's ``weight`` and ``bias``, so parameter names and values are unchanged.
    """

    def __init__(self, source: nn.Module) -> None:
        super().__init__()
        self.weight, self.bias = source.weight, source.bias
        self.eps, self.relu = source.eps, source.fuse_relu
        self.variant = getattr(source, "variant", None)  # CrossNorm's; None for GlobalNorm

    def forward(self, x: Tensor) -> Tensor:
        x2 = x.reshape(-1, x.shape[-1])
        if self.variant is None:
            y = global_norm_spec(x2, self.weight, self.bias, eps=self.eps)
        else:
            y = cross_norm_spec(x2, self.weight, self.bias, variant=self.variant, eps=self.eps)
        return (torch.relu(y) if self.relu else y).reshape(x.shape)


def _analysis_copy(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A training-mode copy of ``model`` in ``dtype`` whose norms ``torch.func`` can differentiate."""
    if any(p.is_complex() for p in model.parameters()):
        raise ValueError(
            "empirical_ntk: complex parameters (e.g. WIRE) are not supported; the NTK here is over real parameters"
        )
    clone = copy.deepcopy(model).to(dtype)
    for name, module in list(clone.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, (CrossNorm, GlobalNorm)):
                setattr(module, child_name, _DifferentiableNorm(child))
    return clone.train()


def empirical_ntk(
    model: nn.Module, coords: Tensor, *, chunk_size: Optional[int] = None, dtype: torch.dtype = torch.float64
) -> Tensor:
    """The NTK ``K = J J^T`` of ``model`` on ``coords``, ``[T * C_out, T * C_out]``, sample-major.

    Args:
        model: any coordinate network mapping ``[T, D]`` to ``[T, C_out]`` (or ``[T]``, taken as C_out = 1).
            It is not modified: a copy is evaluated in training mode (batch statistics over ``coords``).
        coords: ``[T, D]`` input coordinates.
        chunk_size: how many rows of the Jacobian ``torch.func.jacrev`` computes at once (bounds memory;
            ``None`` = all at once).
        dtype: computation dtype; float64 (default) resolves the many small eigenvalues.

    Returns:
        ``K`` in ``dtype``, symmetric positive semi-definite up to rounding.
    """
    if coords.dim() != 2:
        raise ValueError(f"empirical_ntk: coords must be [T, D], got shape {tuple(coords.shape)}")
    net = _analysis_copy(model, dtype)
    x = coords.detach().to(dtype)
    params = {k: v.detach() for k, v in net.named_parameters() if v.requires_grad}
    if not params:
        raise ValueError("empirical_ntk: the model has no trainable parameters")
    buffers = dict(net.named_buffers())

    def outputs(p: Dict[str, Tensor]) -> Tensor:
        return functional_call(net, (p, buffers), (x,)).reshape(-1)

    jac = jacrev(outputs, chunk_size=chunk_size)(params)
    kernel = None
    for j in jac.values():  # K = sum over parameter tensors of J_p J_p^T
        j2 = j.reshape(j.shape[0], -1)
        kernel = j2 @ j2.T if kernel is None else kernel.addmm_(j2, j2.T)
    return kernel


def ntk_eigenvalues(kernel: Tensor) -> Tensor:
    """Eigenvalues of the symmetric ``kernel`` in ascending order (``torch.linalg.eigvalsh``, its dtype)."""
    return torch.linalg.eigvalsh(0.5 * (kernel + kernel.T))


@dataclass
class NTKStatistics:
    """Eigenvalue statistics of an NTK with n = T * C_out eigenvalues.

    ``trace_mean``, ``trace_second_moment``, ``trace_variance`` and the bounds on the largest eigenvalue are
    the paper's Eq. 6, computed from traces without an eigendecomposition:
    ``m = tr(K) / n``, ``s = tr(K K^T) / n``, ``v = s - m^2`` and ``s / m <= lambda_max <= sqrt(n s)``.
    The rest come from the eigenvalues themselves.
    """

    size: int
    trace_mean: float
    trace_second_moment: float
    trace_variance: float
    max_lower_bound: float
    max_upper_bound: float
    mean: float
    variance: float
    max: float
    min: float
    median: float
    quantile_10: float
    quantile_90: float
    max_over_median: float
    max_over_mean: float
    """``lambda_max / m``: how far the largest eigenvalue stands out, independent of the kernel's scale"""
    relative_variance: float
    """``v / m^2`` (Eq. 6 quantities): the spread of the eigenvalues, independent of the kernel's scale"""
    log10_mean: float
    """mean of log10 eigenvalue over the positive eigenvalues (where the histogram of Fig. 1a sits)"""
    nonpositive: int
    """eigenvalues <= 0 (rounding of an exactly singular kernel); left out of log10 statistics"""

    def as_dict(self) -> Dict[str, float]:
        return asdict(self)


def ntk_statistics(kernel: Tensor, eigenvalues: Optional[Tensor] = None) -> NTKStatistics:
    """Statistics of ``kernel`` (``[n, n]``); pass ``eigenvalues`` when already computed."""
    lam = ntk_eigenvalues(kernel) if eigenvalues is None else eigenvalues
    n = kernel.shape[0]
    m = float(torch.trace(kernel)) / n
    s = float((kernel * kernel).sum()) / n  # tr(K K^T) = squared Frobenius norm
    positive = lam[lam > 0]
    median = float(lam.median())
    return NTKStatistics(
        size=n,
        trace_mean=m,
        trace_second_moment=s,
        trace_variance=s - m * m,
        max_lower_bound=s / m if m > 0 else math.nan,
        max_upper_bound=math.sqrt(n * s),
        mean=float(lam.mean()),
        variance=float(lam.var(correction=0)),
        max=float(lam.max()),
        min=float(lam.min()),
        median=median,
        quantile_10=float(torch.quantile(lam, 0.1)),
        quantile_90=float(torch.quantile(lam, 0.9)),
        max_over_median=float(lam.max()) / median if median > 0 else math.inf,
        max_over_mean=float(lam.max()) / m if m > 0 else math.inf,
        relative_variance=(s - m * m) / (m * m) if m > 0 else math.inf,
        log10_mean=float(torch.log10(positive).mean()) if positive.numel() else math.nan,
        nonpositive=int((lam <= 0).sum()),
    )
