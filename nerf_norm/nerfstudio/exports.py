"""What nerfstudio's exporters and renderers read from our models, beyond the training outputs.

- ``get_rgba_image``: nerfstudio's base model returns an opaque alpha unless the background is random, so
  ``ns-export pointcloud`` / ``tsdf`` keep every ray, the background's included. Ours use the accumulated opacity
  as alpha (``[..., 4]``: colour, accumulation): the exporters keep the rays that hit the object.
- ``normals``: nerfstudio's exporters read a ``normals`` output in [0, 1] (``ns-export pointcloud``'s default
  normal method); NeuS computes its normal ``n`` in [-1, 1] as ``normal`` and this adds ``(n + 1) / 2``.
"""

from __future__ import annotations

from typing import Dict

import torch
from torch import Tensor

__all__ = ["rgba_with_accumulation", "with_exporter_normals"]


def rgba_with_accumulation(outputs: Dict[str, Tensor], output_name: str = "rgb") -> Tensor:
    """``[..., 4]``: ``outputs[output_name]`` and the matching accumulation (``rgb_fine`` -> ``accumulation_fine``)
    as alpha."""
    rgb = outputs[output_name]
    accumulation = outputs[output_name.replace("rgb", "accumulation")]
    if accumulation.dim() < rgb.dim():
        accumulation = accumulation.unsqueeze(-1)
    return torch.cat((rgb, accumulation.clamp(0.0, 1.0)), dim=-1)


def with_exporter_normals(outputs: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """``outputs`` with ``normals`` = ``(normal + 1) / 2`` in [0, 1] when the model renders a ``normal``."""
    if "normal" in outputs and "normals" not in outputs:
        outputs["normals"] = (outputs["normal"] + 1.0) / 2.0
    return outputs
