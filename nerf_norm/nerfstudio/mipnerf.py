"""Mip-NeRF with normalized MLPs (paper section 5.4, Table 6).

Everything is nerfstudio's ``MipNerfModel`` and ``NeRFField`` (IPE encodings, samplers, renderers, losses);
only the field's MLPs are replaced, in place, by :class:`~nerf_norm.nerfstudio.mlp.NormalizedMLP` s of the same
layout (:func:`~nerf_norm.nerfstudio.normalize.normalize_mlps`).

Statistics of the coarse and fine passes: Mip-NeRF queries one field twice per step, with uniform (coarse) and
importance (fine) samples whose feature distributions differ. In training each pass is normalized with its own
batch statistics (as two calls of one network naturally are), and the running statistics used in eval are kept
per pass as well: set 0 for the coarse samples, set 1 for the fine ones. The model names the set of each pass when
it calls the field (:meth:`MipNerfNormModel.field_for`: the field itself for the coarse pass, a view of it whose
MLPs use set 1 for the fine pass); nothing is stored on the samples or remembered between calls. Weights and the
norms' affine parameters are shared, as in Mip-NeRF's single MLP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Literal, Tuple, Type

from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.model_components.losses import scale_gradients_by_distance_squared
from nerfstudio.models.mipnerf import MipNerfModel
from nerfstudio.models.vanilla_nerf import VanillaModelConfig
from torch import Tensor, nn

from .checkpoints import prepare_checkpoints
from .exports import rgba_with_accumulation
from .metrics import drop_missing, offline_lpips
from .norm_options import NormOptions
from .normalize import normalize_mlps, stat_set_view
from .spectral_metrics import SpectralMetricsOptions, eval_band_metrics

PASSES: Tuple[str, ...] = ("coarse", "fine")
"""The statistics sets of the Mip-NeRF field, in set order."""


@dataclass
class MipNerfNormModelConfig(VanillaModelConfig, NormOptions, SpectralMetricsOptions):
    """Mip-NeRF (nerfstudio's ``mipnerf``) with normalized field MLPs: ``norm`` before every ReLU of the base MLP
    (options shared with NeuS: :class:`~nerf_norm.nerfstudio.norm_options.NormOptions`)."""

    _target: Type = field(default_factory=lambda: MipNerfNormModel)
    norm_head: bool = False
    """also normalize the view-dependent head MLP (2x128)"""
    eval_near_plane: Literal["zero", "training"] = "zero"
    """where rays start outside training: ``zero`` is nerfstudio's default (its ``NearFarCollider`` resets the near
    plane to 0 in eval, so ``ns-eval`` and the viewer also query the space in front of the training near plane,
    which no training sample constrains); ``training`` keeps ``collider_params["near_plane"]``, as the original
    Mip-NeRF evaluates. mipnerf-bn puts density there (docs/reproduction.md, the mipnerf-bn anomaly)."""


class MipNerfNormModel(MipNerfModel):
    """nerfstudio's ``MipNerfModel`` whose ``NeRFField`` has normalized MLPs (one statistics set per pass), and
    LPIPS only when available offline."""

    config: MipNerfNormModelConfig

    def populate_modules(self) -> None:
        with offline_lpips():
            super().populate_modules()
        mlps = ("mlp_base", "mlp_head") if self.config.norm_head else ("mlp_base",)
        if self.config.norm != "none":  # none: nerfstudio's field and MLPs as they are (the mipnerf-lite baseline)
            normalize_mlps(
                self.field,
                self.config.norm,
                names=mlps,
                num_stat_sets=len(PASSES),
                norm_kwargs=self.config.norm_kwargs(),
            )
        self.field = self.config.synchronize(self.field)
        if self.collider is not None:
            self.collider.reset_near_plane = self.config.eval_near_plane == "zero"
        prepare_checkpoints(self, "field.")

    def field_for(self, stat_set: str) -> nn.Module:
        """The field as the pass ``stat_set`` (one of :data:`PASSES`) queries it: the same weights, its own
        running statistics."""
        index = PASSES.index(stat_set)
        return self.field if index == 0 else stat_set_view(self.field, index)

    def _render_pass(self, samples: RaySamples, stat_set: str) -> Tuple[Dict[str, Tensor], Tensor]:
        """One pass: the field on ``samples`` with the pass's statistics, then nerfstudio's renderers."""
        outputs = self.field_for(stat_set)(samples)
        if self.config.use_gradient_scaling:
            outputs = scale_gradients_by_distance_squared(outputs, samples)
        weights = samples.get_weights(outputs[FieldHeadNames.DENSITY])
        rendered = {
            "rgb": self.renderer_rgb(rgb=outputs[FieldHeadNames.RGB], weights=weights),
            "accumulation": self.renderer_accumulation(weights),
            "depth": self.renderer_depth(weights, samples),
        }
        return rendered, weights

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        coarse_samples = self.sampler_uniform(ray_bundle)
        coarse, coarse_weights = self._render_pass(coarse_samples, "coarse")
        fine, _ = self._render_pass(self.sampler_pdf(ray_bundle, coarse_samples, coarse_weights), "fine")
        # nerfstudio's viewer renders "rgb" by default and, with "Composite depth" on (its default), reads
        # outputs["depth"]; ns-render dataset reads "accumulation". MipNerfModel names its passes *_coarse / *_fine
        # only (the viewer's render thread died with KeyError 'depth'). The fine pass is the model's answer, and
        # "rgb" comes first: the viewer shows the first output until the user picks another
        return {**fine, **{f"{k}_coarse": v for k, v in coarse.items()}, **{f"{k}_fine": v for k, v in fine.items()}}

    def get_rgba_image(self, outputs: Dict[str, Tensor], output_name: str = "rgb") -> Tensor:
        """Colour and accumulated opacity (what nerfstudio's exporters mask by; :mod:`.exports`)."""
        return rgba_with_accumulation(outputs, output_name)

    def get_image_metrics_and_images(self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]):
        metrics, images = super().get_image_metrics_and_images(outputs, batch)
        metrics.update(eval_band_metrics(self, outputs, batch))
        return drop_missing(metrics, self.lpips), images
