"""What every norm layer shares: ``[..., C] <-> [T, C]`` reshaping, the statistics dtype (float32 at least,
autocast off inside the layer), the single-sample check, the running-average factor and the affine step."""

from __future__ import annotations

import contextlib
from typing import Literal, Optional, Tuple

import torch
from torch import Tensor

NormName = Literal["none", "bn", "ln", "gn", "cn"]
NORM_NAMES: Tuple[str, ...] = ("none", "bn", "ln", "gn", "cn")
FUSED_RELU_NORMS: Tuple[str, ...] = ("gn", "cn")
"""The norms that can apply a following ReLU in their own passes over ``[T, C]`` (``fuse_relu=True``)."""
CNVariant = Literal["paper", "reference"]
CN_VARIANTS: Tuple[str, ...] = ("paper", "reference")


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


def _ema_factor(module) -> float:
    """Update factor of the running statistics, as torch's BatchNorm computes it."""
    if not (module.training and module.track_running_stats):
        return 0.0
    module.num_batches_tracked.add_(1)
    if module.momentum is None:
        return 1.0 / float(module.num_batches_tracked)
    return module.momentum


def _affine(y: Tensor, weight: Optional[Tensor], bias: Optional[Tensor]) -> Tensor:
    if weight is None:
        return y if bias is None else y + bias
    if bias is None:
        return y * weight
    return torch.addcmul(bias.to(y.dtype), y, weight.to(y.dtype))
