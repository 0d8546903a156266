"""Mip-NeRF with normalized MLPs (paper section 5.4, Table 6).

Everything is nerfstudio's ``MipNerfModel`` and ``NeRFField`` (IPE encodings, samplers, renderers, losses);
only the field's two MLPs are replaced by :class:`~nerf_norm.nerfstudio.mlp.NormalizedMLP` of the same layout.

Statistics of the coarse and fine passes: Mip-NeRF queries one field twice per step, with uniform (coarse) and
importance (fine) samples whose feature distributions differ. In training each pass is normalized with its own
batch statistics (as two calls of one network naturally are), and the running statistics used in eval are kept
per pass as well: set 0 for the coarse samples, set 1 for the fine ones. Which set a call uses is a property of
its samples, not of the call order: the model's two samplers are wrapped by :class:`StatSetSampler`, which labels
the samples it draws with its pass, and the field reads that label (samples without one, e.g. from a caller of
the field outside the model, use the coarse set). Weights and the norms' affine parameters are shared, as in
Mip-NeRF's single MLP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Literal, Optional, Sequence, Tuple, Type

from torch import Tensor, nn
from nerfstudio.cameras.rays import RaySamples
from nerfstudio.fields.vanilla_nerf_field import NeRFField
from nerfstudio.models.mipnerf import MipNerfModel
from nerfstudio.models.vanilla_nerf import VanillaModelConfig

from .checkpoints import refuse_partial_loads
from .metrics import drop_missing, offline_lpips
from ..norms import NormName
from .mlp import NormalizedMLP
from .norm_options import NormOptions

PASSES: Tuple[str, ...] = ("coarse", "fine")
STAT_SET_LABEL = "nerf_norm_stat_set"  # attribute of RaySamples naming the statistics set they are evaluated with


class NormalizedNeRFField(NeRFField):
    """``NeRFField`` whose base MLP (and optionally head MLP) is normalized.

    Args:
        norm: norm of the base MLP (``none | bn | ln | gn | cn``).
        norm_head: also normalize the view-dependent head MLP.
        stat_sets: names of the kinds of calls that keep their own running statistics (see module docstring).
        norm_kwargs: options of the norm layers (momentum, CrossNorm variant, ...).
        **nerf_field_kwargs: everything ``NeRFField`` takes.
    """

    def __init__(self, norm: NormName = "cn", norm_head: bool = False, stat_sets: Sequence[str] = PASSES,
                 norm_kwargs: Optional[dict] = None, **nerf_field_kwargs) -> None:
        super().__init__(**nerf_field_kwargs)
        self.stat_sets = tuple(stat_sets)
        common = {"num_stat_sets": len(self.stat_sets), "norm_kwargs": norm_kwargs}
        self.mlp_base = NormalizedMLP.like(self.mlp_base, norm=norm, **common)
        if hasattr(self, "mlp_head"):
            self.mlp_head = NormalizedMLP.like(self.mlp_head, norm=norm if norm_head else "none", **common)

    def select_stat_set(self, name: str) -> None:
        index = self.stat_sets.index(name)
        for mlp in (self.mlp_base, getattr(self, "mlp_head", None)):
            if isinstance(mlp, NormalizedMLP):
                mlp.select_stat_set(index)

    def forward(self, ray_samples: RaySamples, compute_normals: bool = False):
        name = getattr(ray_samples, STAT_SET_LABEL, self.stat_sets[0])
        if name not in self.stat_sets:
            raise ValueError(f"samples labelled for statistics set {name!r}; this field has {self.stat_sets}")
        self.select_stat_set(name)
        return super().forward(ray_samples, compute_normals=compute_normals)


class StatSetSampler(nn.Module):
    """One of the model's ray samplers, unchanged, whose samples are labelled with the statistics set (pass) of
    the field calls that will evaluate them. Holds only the sampler and the label."""

    def __init__(self, sampler: nn.Module, stat_set: str) -> None:
        super().__init__()
        self.sampler = sampler
        self.stat_set = stat_set

    def forward(self, *args, **kwargs) -> RaySamples:
        samples = self.sampler(*args, **kwargs)
        setattr(samples, STAT_SET_LABEL, self.stat_set)
        return samples

    def extra_repr(self) -> str:
        return f"stat_set={self.stat_set!r}"


@dataclass
class MipNerfNormModelConfig(VanillaModelConfig, NormOptions):
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
    """nerfstudio's ``MipNerfModel`` with :class:`NormalizedNeRFField` and LPIPS only when available offline."""

    config: MipNerfNormModelConfig
    field: NormalizedNeRFField

    def populate_modules(self) -> None:
        with offline_lpips():
            super().populate_modules()
        nerf = self.field
        self.field = NormalizedNeRFField(
            norm=self.config.norm,
            norm_head=self.config.norm_head,
            norm_kwargs=self.config.norm_kwargs(),
            position_encoding=nerf.position_encoding,
            direction_encoding=nerf.direction_encoding,
            use_integrated_encoding=nerf.use_integrated_encoding,
            spatial_distortion=nerf.spatial_distortion,
        )
        self.field = self.config.synchronize(self.field)
        if self.collider is not None:
            self.collider.reset_near_plane = self.config.eval_near_plane == "zero"
        self.sampler_uniform = StatSetSampler(self.sampler_uniform, PASSES[0])
        self.sampler_pdf = StatSetSampler(self.sampler_pdf, PASSES[1])
        refuse_partial_loads(self, "field.")

    def get_outputs(self, ray_bundle) -> Dict[str, Tensor]:
        outputs = super().get_outputs(ray_bundle)
        # nerfstudio's viewer renders "rgb" by default and, with "Composite depth" on (its default), reads
        # outputs["depth"]; MipNerfModel names its passes *_coarse / *_fine only, so the viewer's render thread
        # died with KeyError 'depth' (seen in headless Chromium). The fine pass is the model's answer.
        # "rgb" first: the viewer shows the first output until the user picks another
        return {"rgb": outputs["rgb_fine"], "depth": outputs["depth_fine"], **outputs}

    def get_image_metrics_and_images(self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]):
        metrics, images = super().get_image_metrics_and_images(outputs, batch)
        return drop_missing(metrics, self.lpips), images
