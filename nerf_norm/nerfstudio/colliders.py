"""Ray bounds that keep every sample near the scene box, for fields whose statistics span a batch.

nerfstudio's ``AABBBoxCollider`` gives a ray that misses the box the near and far of its slab intersections
clamped together; for a direction nearly parallel to an axis those lie ~1e6 units away (it divides by the direction
plus 1e-6), and the ray's samples with them. A plain field evaluates such a sample and forgets it; a field with a
batch-statistics norm (BN, GN, CN) lets that one sample set the statistics of the whole batch (measured on
neus-facto-cn-lite: a training batch at step 367 whose first SDF layer's input variance was 3.4e14 against ~0.06,
after which the running statistics made the eval-mode SDF constant). :class:`BoundedAABBBoxCollider` caps both
bounds at ``|o - c| + r`` (``c``, ``r``: the box's centre and half-diagonal), the farthest a ray from ``o`` can be
inside the box: rays through the box keep their bounds exactly, a missed ray's samples stay within ``2 |o - c| + r``
of the centre.
"""

from __future__ import annotations

import torch
from nerfstudio.model_components.scene_colliders import AABBBoxCollider
from torch import Tensor

__all__ = ["BoundedAABBBoxCollider"]


class BoundedAABBBoxCollider(AABBBoxCollider):
    """nerfstudio's ``AABBBoxCollider`` with near and far capped at the box's far side (see the module docstring)."""

    def _intersect_with_aabb(self, rays_o: Tensor, rays_d: Tensor, aabb: Tensor) -> tuple[Tensor, Tensor]:
        nears, fars = super()._intersect_with_aabb(rays_o, rays_d, aabb)
        centre, half_diagonal = aabb.mean(0), 0.5 * torch.linalg.norm(aabb[1] - aabb[0])
        limit = torch.linalg.norm(rays_o - centre, dim=-1) + half_diagonal
        nears = torch.minimum(nears, limit)
        return nears, torch.maximum(torch.minimum(fars, limit), nears + 1e-6)
