"""Sample grids and image-quality numbers shared by the grid-based tasks (image, CT, MRI, occupancy)."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["coordinate_grid", "psnr", "ssim"]


def coordinate_grid(shape: Sequence[int]) -> Tensor:
    """Sample coordinates spanning ``[-1, 1]`` on every axis (end points included), ``[prod(shape), len(shape)]``,
    in C order (the last axis varies fastest), so ``values.reshape(shape)`` is the sampled array."""
    axes = [torch.linspace(-1.0, 1.0, int(n)) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(shape))


def psnr(pred: Tensor, target: Tensor, data_range: float = 1.0) -> float:
    """PSNR in dB of ``pred`` clamped to ``[0, data_range]`` against ``target`` (any equal shapes)."""
    mse = torch.mean((pred.clamp(0.0, data_range).float() - target.float()) ** 2).item()
    return float("inf") if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def ssim(pred: Tensor, target: Tensor, data_range: float = 1.0) -> float:
    """SSIM (pytorch_msssim, 11-tap Gaussian window) of a 2D ``[H, W]`` or 3D ``[D, H, W]`` array, ``pred``
    clamped to ``[0, data_range]``; sides shorter than 11 samples use the largest odd window that fits."""
    from pytorch_msssim import ssim as _ssim

    if pred.shape != target.shape or pred.dim() not in (2, 3):
        raise ValueError(f"ssim needs two equal 2D or 3D arrays, got {tuple(pred.shape)} and {tuple(target.shape)}")
    window = min(11, min(pred.shape) - (1 - min(pred.shape) % 2))
    x = pred.clamp(0.0, data_range).float()[None, None]
    y = target.float()[None, None]
    return float(_ssim(x, y, data_range=data_range, win_size=window).item())
