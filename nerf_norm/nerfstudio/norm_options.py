"""The normalization options shared by our nerfstudio configs (Mip-NeRF model, NeuS SDF field).

:class:`NormOptions` is a base class of those configs, not a nested one, so the flags stay where users expect
them (``--pipeline.model.norm cn``, ``--pipeline.model.sdf-field.norm-momentum 0.05``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from ..norms import NormName, convert_sync_norms
from ..norms.sync import world_size


@dataclass
class NormOptions:
    """Which norm, its running statistics and CrossNorm formulation, and multi-device synchronization."""

    norm: NormName = "cn"
    """none, bn (batch), ln (layer), gn (global), cn (cross)"""
    norm_momentum: float = 0.1
    """update factor of the running statistics used in eval"""
    cn_variant: Literal["paper", "reference"] = "paper"
    """CrossNorm formulation: the paper's Eq. 24 or the authors' released code (README: 'Which CrossNorm')"""
    sync_norms: bool = True
    """with several devices (--machine.num-devices > 1): batch statistics over the rays of all devices, as one
    device holding the whole batch would compute them; off: each device normalizes by its own rays"""

    def norm_kwargs(self) -> dict:
        """Options of :func:`nerf_norm.norms.make_norm` for every norm of the field (running statistics on)."""
        kwargs = {"track_running_stats": True, "momentum": self.norm_momentum}
        if self.norm == "cn":
            kwargs["variant"] = self.cn_variant
        return kwargs

    def synchronize(self, module: nn.Module) -> nn.Module:
        """``module`` with its norms synchronized over the default process group when ``sync_norms`` is on and
        training runs on more than one process; otherwise ``module`` unchanged."""
        if self.sync_norms and world_size() > 1:
            return convert_sync_norms(module)
        return module
