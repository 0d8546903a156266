"""nerfacto with normalized MLPs: does a norm help a hash-grid field?

Everything is nerfstudio's ``NerfactoModel`` and ``NerfactoField`` (hash grid, proposal sampling, appearance
embedding, losses); only the MLPs are replaced, in place, by :class:`~nerf_norm.nerfstudio.mlp.NormalizedMLP` s of
the same layout (:func:`~nerf_norm.nerfstudio.normalize.normalize_mlps`): the field's base MLP behind the hash grid
(one hidden layer of 64) and its colour head (two hidden layers of 64; the sigmoid output is not normalized), and,
with ``norm_proposal_networks``, the proposal networks' MLPs (one hidden layer of 16 each).

Statistics: each normalized MLP is called once per step, on one kind of samples (the field on the final samples,
each proposal network on its own round of proposal samples), so one set of running statistics each is enough; in
eval those replace the batch statistics, so a render does not depend on how rays are chunked.

The whole model uses nerfstudio's torch implementation (``implementation="torch"``): tinycudann fuses the hash
grid with its MLP and leaves no place for a norm (normalize_mlps refuses it with that message).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Literal, Type

from nerfstudio.models.nerfacto import NerfactoModel, NerfactoModelConfig
from torch import Tensor

from .checkpoints import prepare_checkpoints
from .metrics import drop_missing, offline_lpips
from .norm_options import NormOptions
from .normalize import normalize_mlps
from .spectral_metrics import SpectralMetricsOptions, eval_band_metrics


@dataclass
class NerfactoNormModelConfig(NerfactoModelConfig, NormOptions, SpectralMetricsOptions):
    """nerfstudio's ``nerfacto`` with ``norm`` before every hidden ReLU of the field's MLPs (options shared with
    Mip-NeRF and NeuS: :class:`~nerf_norm.nerfstudio.norm_options.NormOptions`)."""

    _target: Type = field(default_factory=lambda: NerfactoNormModel)
    implementation: Literal["tcnn", "torch"] = "torch"
    """torch: the only implementation a norm fits in (tinycudann fuses the hash grid and its MLP)"""
    norm_proposal_networks: bool = False
    """also normalize the proposal networks' MLPs (default: only the field's, proposal sampling as nerfacto's)"""


class NerfactoNormModel(NerfactoModel):
    """nerfstudio's ``NerfactoModel`` whose field MLPs (and optionally proposal MLPs) are normalized, and LPIPS only
    when available offline."""

    config: NerfactoNormModelConfig

    def populate_modules(self) -> None:
        with offline_lpips():
            super().populate_modules()
        if self.config.norm != "none":  # none: nerfstudio's nerfacto as it is (the nerfacto-lite baseline)
            kwargs = self.config.norm_kwargs()
            normalize_mlps(self.field, self.config.norm, norm_kwargs=kwargs)
            if self.config.norm_proposal_networks:
                normalize_mlps(self.proposal_networks, self.config.norm, norm_kwargs=kwargs)
        self.field = self.config.synchronize(self.field)
        self.proposal_networks = self.config.synchronize(self.proposal_networks)
        prepare_checkpoints(self, "field.")

    def get_image_metrics_and_images(self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]):
        metrics, images = super().get_image_metrics_and_images(outputs, batch)
        metrics.update(eval_band_metrics(self, outputs, batch))
        return drop_missing(metrics, self.lpips), images
