"""Differentiable parallel-beam projection (the Radon transform) of 2D images in torch.

Geometry (the one of scikit-image's ``radon(image, theta, circle=False)``, so the two agree sample by sample):
an ``N x N`` image is zero-padded to ``D = ceil(sqrt(2) N)`` pixels, which holds it under every rotation; for
angle ``a`` the padded image is rotated about pixel ``c = D // 2`` by bilinear interpolation and summed over its
rows, giving ``D`` detector bins. Bin ``x`` and row ``y`` read the image at

    x_in = c + cos(a) (x - c) + sin(a) (y - c),    y_in = c - sin(a) (x - c) + cos(a) (y - c).

The projector is linear in the image, so autograd gives its adjoint (back projection) for free. Sums are
multiplied by ``pixel_size`` (default ``1 / N``: line integrals over an image of unit width).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ParallelBeamProjector", "detector_bins", "uniform_angles"]


def detector_bins(size: int) -> int:
    """Detector bins ``D`` of an ``size x size`` image: the padded width ``ceil(sqrt(2) size)``."""
    return int(math.ceil(math.sqrt(2) * size))


def uniform_angles(count: int) -> Tensor:
    """``count`` projection angles in degrees, evenly spaced over ``[0, 180)``."""
    if count < 1:
        raise ValueError(f"need at least one projection angle, got {count}")
    return torch.arange(count, dtype=torch.float64) * (180.0 / count)


class ParallelBeamProjector(nn.Module):
    """Parallel-beam projection of ``[N, N]`` or ``[B, N, N]`` images to sinograms ``[(B,) A, D]``.

    Args:
        size: image side ``N`` in pixels.
        angles: projection angles in degrees ``[A]``.
        pixel_size: factor on the sums (default ``1 / size``).
    """

    grid: Tensor

    def __init__(self, size: int, angles: Sequence[float] | Tensor, pixel_size: Optional[float] = None) -> None:
        super().__init__()
        if size < 2:
            raise ValueError(f"image size must be at least 2 pixels, got {size}")
        angles = torch.as_tensor(angles, dtype=torch.float64).reshape(-1)
        if angles.numel() < 1:
            raise ValueError("need at least one projection angle")
        self.size = int(size)
        self.bins = detector_bins(size)
        self.pixel_size = float(pixel_size) if pixel_size is not None else 1.0 / size
        self.register_buffer("angles", angles.float(), persistent=False)
        self.register_buffer("grid", self._sampling_grid(angles), persistent=False)

    def _sampling_grid(self, angles: Tensor) -> Tensor:
        """Where every (angle, row, bin) reads the unpadded image, in grid_sample's ``[-1, 1]`` units:
        ``[1, A * D, D, 2]`` (rows of all angles stacked, so one grid_sample call covers them)."""
        d, n = self.bins, self.size
        c = d // 2
        offset = c - n // 2  # zero padding before the image on each axis
        idx = torch.arange(d, dtype=torch.float64) - c
        y, x = torch.meshgrid(idx, idx, indexing="ij")  # [D rows, D bins]
        rad = torch.deg2rad(angles)[:, None, None]
        cos, sin = torch.cos(rad), torch.sin(rad)
        x_in = c + cos * x + sin * y - offset
        y_in = c - sin * x + cos * y - offset
        to_unit = 2.0 / (n - 1)
        grid = torch.stack((x_in * to_unit - 1.0, y_in * to_unit - 1.0), dim=-1)  # grid_sample: (x, y)
        return grid.reshape(1, len(angles) * d, d, 2).float()

    @property
    def num_angles(self) -> int:
        return int(self.angles.numel())

    def forward(self, image: Tensor) -> Tensor:
        squeeze = image.dim() == 2
        if squeeze:
            image = image[None]
        if image.dim() != 3 or image.shape[-2:] != (self.size, self.size):
            raise ValueError(f"expected images [B, {self.size}, {self.size}], got {tuple(image.shape)}")
        b = image.shape[0]
        grid = self.grid.to(image.dtype).expand(b, -1, -1, -1)
        samples = F.grid_sample(image[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        sino = samples.reshape(b, self.num_angles, self.bins, self.bins).sum(dim=2) * self.pixel_size
        return sino[0] if squeeze else sino

    def extra_repr(self) -> str:
        return f"size={self.size}, angles={self.num_angles}, bins={self.bins}, pixel_size={self.pixel_size:g}"
