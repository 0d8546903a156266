"""Instant-NGP's multiresolution hash encoding (Mueller et al. 2022) for the ``hash`` family of coordinate networks:
nerfstudio's ``HashEncoding`` (its PyTorch implementation, or tinycudann's kernel), with a table of any size so that
a parameter budget can be met exactly."""

from __future__ import annotations

import math
from typing import Literal

import torch
from nerfstudio.field_components.encodings import HashEncoding
from torch import Tensor, nn

__all__ = ["HashGridEncoding"]


class SizedHashEncoding(HashEncoding):
    """nerfstudio's ``HashEncoding`` (torch implementation) with ``table_size`` entries per level, any integer: the
    vertex hash is taken modulo ``hash_table_size``, and level ``l`` owns rows ``[l T, (l + 1) T)`` of the table."""

    def __init__(self, table_size: int, **kwargs) -> None:
        super().__init__(log2_hashmap_size=max(0, math.ceil(math.log2(table_size))), implementation="torch", **kwargs)
        self.hash_table_size = table_size
        # the level offsets and resolutions as buffers, so they move with the module (the parent keeps them as plain
        # CPU tensors and copies them to the input's device on every call)
        scalings = self.scalings
        del self.hash_offset, self.scalings
        self.register_buffer("hash_offset", torch.arange(self.num_levels) * table_size, persistent=False)
        self.register_buffer("scalings", scalings, persistent=False)
        del self.hash_table  # the parent's table of 2^ceil(log2 T) rows; build_nn_modules makes the one of T
        self.build_nn_modules()


class HashGridEncoding(nn.Module):
    """``[..., D] -> [..., L F]`` for ``D <= 3`` coordinates in ``[-1, 1]``: Instant-NGP's multiresolution hash
    encoding, nerfstudio's ``HashEncoding``.

    Level ``l`` is a grid of resolution ``floor(min_res b^l)``, ``b = (max_res / min_res)^(1 / (L - 1))``, whose
    vertices are hashed (``x_1 xor (x_2 * 2654435761) xor (x_3 * 805459861)`` modulo ``table_size``) into a table of
    ``table_size`` trainable ``F``-vectors, initialised ``U(-init_scale, init_scale)``; a coordinate's feature at
    level ``l`` is the linear interpolation of its cell's corner vectors, and the output concatenates the levels.
    Coordinates are mapped to ``[0, 1]`` (``(x + 1) / 2``); 1- and 2-D inputs are the ``z = 0`` slice of the 3-D grid
    (the interpolation along z then weighs one corner fully, so this is exactly the 2-D hash encoding).

    ``implementation="torch"`` (default) is nerfstudio's PyTorch implementation with ``table_size`` entries per level,
    any integer (Instant-NGP takes a power of two only for speed), so that a parameter budget can be met exactly.
    ``"tcnn"`` is tinycudann's fused kernel (GPU); it needs a power of two and keeps coarse levels dense, so its
    parameter count differs from ``L * F * table_size``.
    """

    def __init__(
        self,
        in_dim: int,
        table_size: int,
        *,
        levels: int = 16,
        features_per_level: int = 2,
        min_res: int = 16,
        max_res: int = 512,
        init_scale: float = 1e-4,
        implementation: Literal["torch", "tcnn"] = "torch",
    ) -> None:
        super().__init__()
        if not 1 <= in_dim <= 3:
            raise ValueError(f"HashGridEncoding: coordinates of 1 to 3 dimensions, got {in_dim}")
        if table_size < 1 or levels < 1 or features_per_level < 1 or not 1 <= min_res <= max_res:
            raise ValueError(
                f"HashGridEncoding: need table_size, levels, features_per_level >= 1 and 1 <= min_res <= max_res, got "
                f"{table_size}, {levels}, {features_per_level}, {min_res}, {max_res}"
            )
        if implementation == "tcnn" and table_size & (table_size - 1):
            raise ValueError(f"HashGridEncoding: tinycudann needs a power-of-two table_size, got {table_size}")
        self.in_dim = in_dim
        self.table_size = table_size
        self.levels = levels
        self.features_per_level = features_per_level
        self.min_res, self.max_res = min_res, max_res
        options = dict(
            num_levels=levels,
            min_res=min_res,
            max_res=max_res,
            features_per_level=features_per_level,
            hash_init_scale=init_scale,
        )
        if implementation == "tcnn":
            self.grid = HashEncoding(log2_hashmap_size=table_size.bit_length() - 1, implementation="tcnn", **options)
        else:
            self.grid = SizedHashEncoding(table_size, **options)

    @property
    def out_dim(self) -> int:
        return self.levels * self.features_per_level

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            unit = ((x.float() if x.dtype in (torch.float16, torch.bfloat16) else x) + 1.0) / 2.0
            if self.in_dim < 3:
                unit = torch.cat([unit, unit.new_zeros(*unit.shape[:-1], 3 - self.in_dim)], dim=-1)
            return self.grid(unit)

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, table_size={self.table_size}, levels={self.levels}, "
            f"features_per_level={self.features_per_level}, min_res={self.min_res}, max_res={self.max_res}"
        )
