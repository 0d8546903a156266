"""Input encodings for coordinate networks.

* :class:`PositionalEncoding`: NeRF's (Mildenhall et al. 2020, Eq. 4), ``[x, sin(2^0 pi x), cos(2^0 pi x), ...,
  sin(2^(L-1) pi x), cos(2^(L-1) pi x)]``. With ``L = 10`` this is the paper's "PE" ("encoding scale 10 [37]",
  [37] = NeRF) and the authors' released ``positionalencoding(coord, 10)``: 42 inputs in 2D, 63 in 3D.
* :class:`GaussianFourierFeatures`: Tancik et al. 2020, ``[sin(2 pi B x), cos(2 pi B x)]`` with a fixed random
  ``B ~ N(0, scale^2)``. A different method, available as an explicit option, never what ``pe`` means.

The ``hash`` family's multiresolution hash encoding is :class:`nerf_norm.hash_grid.HashGridEncoding`.

Both compute in float32 even under autocast: ``sin(2^9 pi x)`` in bfloat16 has no correct digit.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

__all__ = ["PositionalEncoding", "GaussianFourierFeatures", "ENCODINGS"]

#: encoding choices of the ``pe`` family: ``positional`` (the paper's, default) and ``gaussian``
ENCODINGS = ("positional", "gaussian")


def _float32(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class PositionalEncoding(nn.Module):
    """``[..., D] -> [..., D (1 + 2L)]`` (``[..., 2 D L]`` without the input), frequencies ``2^k pi``, ``k < L``.

    Layout, frequency-major as in NeRF: ``[x_1..x_D, sin(pi x_1)..sin(pi x_D), cos(pi x_1)..cos(pi x_D),
    sin(2 pi x_1)..., cos(2 pi x_1)..., ...]``. Coordinates are expected in ``[-1, 1]``.
    """

    def __init__(self, in_dim: int, num_frequencies: int = 10, include_input: bool = True) -> None:
        super().__init__()
        if in_dim < 1 or num_frequencies < 0:
            raise ValueError(
                f"PositionalEncoding: need in_dim >= 1 and num_frequencies >= 0, got {in_dim}, {num_frequencies}"
            )
        self.in_dim = in_dim
        self.num_frequencies = num_frequencies
        self.include_input = include_input
        # float64, rounded once to the input's dtype in forward (exact 2^k pi in a float64 analysis)
        self.register_buffer(
            "freqs", math.pi * 2.0 ** torch.arange(num_frequencies, dtype=torch.float64), persistent=False
        )

    @property
    def out_dim(self) -> int:
        return self.in_dim * (2 * self.num_frequencies + int(self.include_input))

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            x = _float32(x)
            scaled = x.unsqueeze(-2) * self.freqs.to(x.dtype).unsqueeze(-1)  # [..., L, D]
            waves = torch.stack([torch.sin(scaled), torch.cos(scaled)], dim=-2).flatten(-3)  # [..., L * 2 * D]
            return torch.cat([x, waves], dim=-1) if self.include_input else waves

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, num_frequencies={self.num_frequencies}, include_input={self.include_input}"


class GaussianFourierFeatures(nn.Module):
    """``[..., D] -> [..., 2 m]``: ``[sin(2 pi x B^T), cos(2 pi x B^T)]``, ``B [m, D] ~ N(0, (scale / span)^2)``.

    ``scale`` is Tancik et al.'s, defined for coordinates on a unit interval; ``coord_span`` is the length of
    the interval the coordinates actually cover (2 for ``[-1, 1]``), so that a given scale means the same
    number of oscillations across the signal either way. ``B`` is a fixed buffer (saved with the model, not
    trained, so not counted as a parameter); ``seed`` makes it reproducible independently of the global RNG.
    """

    def __init__(
        self,
        in_dim: int,
        num_features: int = 256,
        scale: float = 10.0,
        seed: Optional[int] = None,
        coord_span: float = 1.0,
    ):
        super().__init__()
        if in_dim < 1 or num_features < 1:
            raise ValueError(f"GaussianFourierFeatures: need in_dim, num_features >= 1, got {in_dim}, {num_features}")
        if coord_span <= 0:
            raise ValueError(f"GaussianFourierFeatures: coord_span must be positive, got {coord_span}")
        self.in_dim = in_dim
        self.num_features = num_features
        self.scale = scale
        self.coord_span = coord_span
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        self.register_buffer("B", torch.randn(num_features, in_dim, generator=gen) * (scale / coord_span))

    @property
    def out_dim(self) -> int:
        return 2 * self.num_features

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            x = _float32(x)
            proj = (2.0 * math.pi) * (x @ self.B.to(x.dtype).t())
            return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, num_features={self.num_features}, scale={self.scale}, coord_span={self.coord_span}"
        )
