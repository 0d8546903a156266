"""The functional forms of the four norms (``x [..., C]`` and every statistic passed explicitly), the twins of the
modules in :mod:`nerf_norm.norms.layers`."""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import kernels
from .common import CN_VARIANTS, _as_2d, _check_batch, _no_autocast, _restore, _stats_dtype
from .cross_norm_function import CrossNormCall, cross_norm_function, update_running
from .global_norm_function import global_moments_fast, global_norm_function
from .spec import cross_moments, cross_norm_from_moments, cross_norm_spec, global_moments, global_norm_spec

__all__ = ["batch_norm", "layer_norm", "global_norm", "cross_norm", "cross_norm_autograd"]


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
            # torch's native CPU batch norm forms its batch moments from plain sums: at mean/std = 1000 over 2^17
            # samples its output was off by 0.37. It is exactly shift invariant, so it normalizes x minus one of
            # its own samples (cancellation then bounded by O(1)) and keeps its fast fused backward; the
            # shift is added back to the running mean (the variance does not see it).
            shift = xs[:1].detach()
            if running_mean is not None and momentum > 0:
                # the native op updates copies (autograd keeps them for its backward, so they must not change
                # afterwards); the buffers then get the update with the shift added back
                mean_copy, var_copy = running_mean.clone(), running_var.clone()
                y = F.batch_norm(xs - shift, mean_copy, var_copy, weight, bias, True, momentum, eps)
                with torch.no_grad():
                    running_mean.copy_(mean_copy + momentum * shift.reshape(-1).to(running_mean.dtype))
                    running_var.copy_(var_copy)
            else:
                y = F.batch_norm(xs - shift, None, None, weight, bias, True, 0.0, eps)
    return _restore(y, x)


def layer_norm(x: Tensor, weight: Optional[Tensor] = None, bias: Optional[Tensor] = None, eps: float = 1e-5) -> Tensor:
    """Layer normalization, paper Eq. 16: each sample normalized over its C channels. ``x``: ``[..., C]``."""
    C = x.shape[-1]
    with _no_autocast(x):
        y = F.layer_norm(x.to(_stats_dtype(x)), (C,), weight, bias, eps)
    return y.to(x.dtype)


def global_norm(
    x: Tensor,
    running_mean: Optional[Tensor] = None,
    running_var: Optional[Tensor] = None,
    weight: Optional[Tensor] = None,
    bias: Optional[Tensor] = None,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    relu: bool = False,
) -> Tensor:
    """Global normalization, paper Eq. 23, for ``x`` of shape ``[..., C]``.

    All T x C elements share one mean and (biased) variance; the running statistics are one-element
    tensors. The affine transform is per channel. ``relu=True`` returns ``relu(global_norm(x))`` computed in the
    same passes. The spec: :func:`~nerf_norm.norms.spec.global_norm_spec`; its closed-form backward:
    :mod:`nerf_norm.norms.global_norm_function`.
    """
    C = x.shape[-1]
    x2 = _as_2d(x, C, "global_norm")
    use_batch = training or running_mean is None
    if use_batch and x2.numel() < 2:
        raise ValueError(f"global_norm: expected more than 1 element when training, got shape {tuple(x.shape)}")
    compiling = torch.compiler.is_compiling()
    with _no_autocast(x):
        xs = x2.to(_stats_dtype(x)).contiguous()
        w = weight.to(xs.dtype) if weight is not None else None
        b = bias.to(xs.dtype) if bias is not None else None
        if use_batch:
            # traced and differentiable under torch.compile; else without gradient (the Function's backward
            # accounts for the statistics' dependence on x)
            mean, var = global_moments(xs) if compiling else global_moments_fast(xs)
            if running_mean is not None and momentum > 0:
                with torch.no_grad():  # on device: no host sync
                    count = xs.numel()
                    running_mean.lerp_(mean.detach().reshape(running_mean.shape).to(running_mean.dtype), momentum)
                    unbiased = var.detach() * (count / (count - 1))
                    running_var.lerp_(unbiased.reshape(running_var.shape).to(running_var.dtype), momentum)
        else:
            mean, var = running_mean.to(xs.dtype).reshape(()), running_var.to(xs.dtype).reshape(())
        if compiling:
            # torch.compile traces the spec (Inductor fuses it; Triton on a GPU)
            y = global_norm_spec(xs, w, b, (mean, var), eps)
            y = (torch.relu(y) if relu else y).reshape(x.shape)
        else:
            y = global_norm_function(xs, w, b, mean, var, use_batch, eps, relu, x.shape)
    return _restore(y, x)


def _cn_running_columns(
    running_mean: Tensor, running_var: Tensor, running_n: Tensor, variant: str, dtype: torch.dtype, host_n: bool
) -> Tuple[Tensor, Tensor, Union[float, Tensor]]:
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
        columns = running = None
        if not use_batch:
            columns = _cn_running_columns(
                running_mean,
                running_var,
                running_batch_size,
                variant,
                dtype,
                host_n=not compiling and kernels.usable(xs),
            )
        elif training and running_mean is not None and momentum > 0:
            running = (running_mean, running_var, running_batch_size, momentum)
        w = weight.to(dtype) if weight is not None else None
        b = bias.to(dtype) if bias is not None else None
        if compiling:
            # torch.compile traces the spec (Inductor fuses it; Triton on a GPU) instead of the autograd Function,
            # whose native kernel it cannot see through; the moments are computed once, for both uses
            m = cross_moments(xs, variant, columns)
            if running is not None:
                with torch.no_grad():
                    update_running(running, m.col_mean.detach(), m.col_var_unbiased.detach(), m.n)
            y = cross_norm_from_moments(xs, m, w, b, variant, eps)
            y = (torch.relu(y) if relu else y).reshape(x.shape)
        else:
            y = cross_norm_function(xs, w, b, CrossNormCall(variant, eps, x.shape, relu, columns, running))
    return y.to(x.dtype)


def cross_norm_autograd(
    x: Tensor, weight: Optional[Tensor] = None, bias: Optional[Tensor] = None, eps: float = 1e-5, variant: str = "paper"
) -> Tensor:
    """CrossNorm with batch statistics as its spec (:func:`~nerf_norm.norms.spec.cross_norm_spec`) under plain
    autograd, for ``x [..., C]``: the reference the fast paths are tested against; :func:`cross_norm` computes the
    same values with a closed-form backward."""
    C = x.shape[-1]
    x2 = _as_2d(x, C, "cross_norm_autograd")
    with _no_autocast(x):
        y = cross_norm_spec(x2.to(_stats_dtype(x)), weight, bias, None, variant, eps)
    return _restore(y, x)
