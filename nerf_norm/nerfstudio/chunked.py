"""Rendering a large ray batch in bounded memory outside training.

nerfstudio's exporters (``ns-export pointcloud``, ``tsdf``) call ``model(ray_bundle)`` on whole training batches
(32,768 rays by default) under ``torch.no_grad``; a NeuS model then evaluates every sample of every ray at once,
with the SDF gradient's graph, and exhausts a 24 GB machine. :func:`forward_in_chunks` renders such a call in
chunks of the model's ``eval_num_rays_per_chunk`` rays, as nerfstudio's own image rendering does, and joins the
per-ray outputs. Training (and anything with gradients on) is left untouched, and in eval mode the norms use
their running statistics, so a ray's output does not depend on the chunk it falls in.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Dict

import torch
from torch import Tensor

__all__ = ["forward_in_chunks"]


def forward_in_chunks(forward: Callable, ray_bundle, chunk: int, training: bool) -> Dict[str, Tensor]:
    """``forward(ray_bundle)``, or, outside training with gradients off and for a flat bundle of more than
    ``chunk`` rays, the same outputs computed ``chunk`` rays at a time (per-ray tensor outputs, concatenated;
    anything else, e.g. per-sample lists, is dropped, as nerfstudio's ``get_outputs_for_camera_ray_bundle`` does)."""
    if training or torch.is_grad_enabled() or not hasattr(ray_bundle, "origins") or ray_bundle.origins.dim() != 2:
        return forward(ray_bundle)
    rays = len(ray_bundle)
    if rays <= chunk:
        return forward(ray_bundle)
    parts: Dict[str, list] = defaultdict(list)
    starts = range(0, rays, chunk)
    for start in starts:
        size = min(chunk, rays - start)
        for name, value in forward(ray_bundle[start : start + size]).items():
            if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == size:
                parts[name].append(value)
    return {name: torch.cat(values) for name, values in parts.items() if len(values) == len(starts)}
