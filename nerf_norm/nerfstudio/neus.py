"""NeuS with normalized MLPs: nerfstudio's ``NeuSModel`` and ``SDFField`` with norms in the SDF and/or colour
network, buildable and trainable without tinycudann.

nerfstudio's ``SDFField`` constructs a tinycudann hash grid whenever ``encoding_type == "hash"`` (its default),
even when ``use_grid_feature`` is off and the grid is never evaluated. :class:`NormalizedSDFField` builds the
grid only when it is used, as nerfstudio's ``HashEncoding`` (tinycudann when installed, its torch
implementation otherwise), and otherwise feeds the same zero features the parent does.

Norm placement (``norm_in``): ``sdf`` puts Linear -> Norm -> Softplus in every hidden layer of the SDF network
(8x256, skip at 4, geometric initialisation and weight norm kept on the Linear layers), ``color`` puts
Linear -> Norm -> ReLU in the colour network's hidden layers, ``both`` does both. The statistics of a call are
those of all samples of all rays in it (``[T, C]``); NeuS' up-sampler calls the SDF network on its intermediate
samples too, and those calls are normalized with their own batch statistics like the final pass. In eval mode
the norms use running statistics (chunk invariance).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, Literal, Type

import torch
from nerfstudio.field_components.encodings import HashEncoding
from nerfstudio.fields.sdf_field import SDFField, SDFFieldConfig
from nerfstudio.model_components.scene_colliders import AABBBoxCollider
from nerfstudio.models.neus import NeuSModel, NeuSModelConfig
from nerfstudio.models.neus_facto import NeuSFactoModel, NeuSFactoModelConfig
from torch import Tensor, nn

from ..norms import make_norm
from .checkpoints import prepare_checkpoints
from .chunked import forward_in_chunks
from .colliders import BoundedAABBBoxCollider
from .exports import rgba_with_accumulation, with_exporter_normals
from .metrics import drop_missing, offline_lpips
from .norm_options import NormOptions
from .softplus import BoundedSoftplus
from .spectral_metrics import SpectralMetricsOptions, eval_band_metrics

__all__ = [
    "NormalizedSDFFieldConfig",
    "NormalizedSDFField",
    "NeuSNormModelConfig",
    "NeuSNormModel",
    "NeuSFactoNormModelConfig",
    "NeuSFactoNormModel",
]

NormPlace = Literal["sdf", "color", "both"]


class _GridFeature(nn.Module):
    """The feature grid of the SDF network: nerfstudio's ``HashEncoding`` when used, else only its width."""

    def __init__(self, config: SDFFieldConfig) -> None:
        super().__init__()
        self.n_output_dims = config.num_levels * config.features_per_level
        self.grid = None
        if config.use_grid_feature:
            self.grid = HashEncoding(
                num_levels=config.num_levels,
                min_res=config.base_res,
                max_res=config.max_res,
                log2_hashmap_size=config.log2_hashmap_size,
                features_per_level=config.features_per_level,
                implementation="tcnn",
            )

    def forward(self, positions: Tensor) -> Tensor:
        if self.grid is None:
            raise RuntimeError("the feature grid is disabled (use_grid_feature=False)")
        return self.grid(positions)


@dataclass
class NormalizedSDFFieldConfig(SDFFieldConfig, NormOptions):
    """``SDFFieldConfig`` plus the norm options (:class:`~nerf_norm.nerfstudio.norm_options.NormOptions`) and
    where the norms go."""

    _target: Type = field(default_factory=lambda: NormalizedSDFField)
    norm_in: NormPlace = "sdf"
    """which network gets the norms: sdf, color or both (chosen by benchmarks/neus_bunny.py, see README)"""


class _LinearNorm(nn.Module):
    """One hidden layer of nerfstudio's SDF or colour network with a norm after its Linear. Put in the Linear's
    place (``glin{k}`` / ``clin{k}``), it makes the parent's own loops (``forward_geonetwork``, ``get_colors``)
    compute Linear -> Norm -> activation. Input ``[N, C_in]``, output ``[N, C_out]``."""

    def __init__(self, linear: nn.Module, norm: nn.Module) -> None:
        super().__init__()
        self.linear = linear
        self.norm = norm

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.linear(x))


class NormalizedSDFField(SDFField):
    """nerfstudio's ``SDFField`` with norms before the activations of its MLPs (see the module docstring). The
    parent's forward passes run unchanged: only its hidden Linear layers are replaced by Linear -> Norm."""

    config: NormalizedSDFFieldConfig

    def __init__(
        self,
        config: NormalizedSDFFieldConfig,
        aabb: Tensor,
        num_images: int,
        use_average_appearance_embedding: bool = False,
        spatial_distortion=None,
    ) -> None:
        # nerfstudio's SDFField.__init__ calls tinycudann directly whenever encoding_type is "hash" (its default),
        # even when the grid is never used, and offers no hook to build it otherwise: the parent gets a copy of the
        # config with another type, and initialize_geo_layers builds the grid (when used) as HashEncoding
        super().__init__(
            dataclasses.replace(config, encoding_type="periodic"),
            aabb,
            num_images,
            use_average_appearance_embedding,
            spatial_distortion,
        )
        self.config = config
        if config.norm_in in ("color", "both"):
            self._insert_norms("clin", self.num_layers_color - 2, config)
        if config.norm != "none" and config.norm_in in ("sdf", "both"):
            # unit-scale pre-activations push torch's Softplus(beta=100) into exp's slow paths on the CPU; the
            # same function with a bounded exponent, on a fused kernel (nerf_norm/nerfstudio/softplus.py)
            self.softplus = BoundedSoftplus(beta=self.softplus.beta, threshold=self.softplus.threshold)
        if config.norm != "none" and config.norm_in in ("sdf", "both") and config.geometric_init:
            self._refit_sphere_readout(config)
        config.synchronize(self)  # multi-device: statistics over all devices' samples (in place)

    def initialize_geo_layers(self) -> None:
        # called by the parent's __init__, with self.config the parent's copy (all our options included)
        self.encoding = _GridFeature(self.config)
        super().initialize_geo_layers()
        if self.config.norm_in in ("sdf", "both"):
            self._insert_norms("glin", self.num_layers - 2, self.config)

    def _insert_norms(self, prefix: str, hidden_layers: int, config: NormalizedSDFFieldConfig) -> None:
        """Replaces the Linear layers ``{prefix}0 .. {prefix}{hidden_layers - 1}`` by Linear -> Norm."""
        if config.norm == "none":
            return
        for k in range(hidden_layers):
            linear = getattr(self, f"{prefix}{k}")
            setattr(
                self,
                f"{prefix}{k}",
                _LinearNorm(linear, make_norm(config.norm, linear.out_features, **config.norm_kwargs())),
            )

    def norm_layers(self, network: str = "both") -> list:
        """The norm modules of the ``sdf`` network, the ``color`` network or ``both``, in layer order."""
        prefixes = {"sdf": ("glin",), "color": ("clin",), "both": ("glin", "clin")}[network]
        return [m.norm for name, m in self.named_children() if name.startswith(prefixes) and isinstance(m, _LinearNorm)]

    def _readout_layer(self) -> nn.Module:
        return getattr(self, f"glin{self.num_layers - 2}")

    @torch.no_grad()
    def _refit_sphere_readout(self, config: SDFFieldConfig, samples: int = 8192, ridge: float = 1e-3) -> None:
        """Geometric initialisation for a normalized SDF network.

        NeuS' initialisation makes the untrained SDF approximately ``|x| - bias`` (a sphere of radius ``bias``)
        by choosing the last layer for the scale of un-normalized ReLU features. Behind a norm the features
        have another scale, and the same last layer gives a nearly constant, far-from-zero SDF (measured: about
        -10 everywhere). This re-solves the SDF row of the last layer (weights and bias) by ridge regression
        so that, on points uniform in the scene box ``[-1, 1]^3`` and with the norms' batch statistics, the
        output matches ``|x| - bias`` (sign flipped for ``inside_outside``); the feature rows keep their
        initialisation, and the norms' running statistics start from this probe's batch statistics.
        """
        gen = torch.Generator().manual_seed(0)
        pts = 2.0 * torch.rand(samples, 3, generator=gen) - 1.0  # the scene box [-1, 1]^3 the rays sample
        target = pts.norm(dim=-1) - config.bias
        if config.inside_outside:
            target = -target
        last = self._readout_layer()
        was_training = self.training
        self.train()
        # the probe's batch statistics become the running statistics (a cumulative average over one batch), so
        # that eval mode at step 0 (e.g. extracting the initial mesh) sees the same sphere as training
        tracked = [n for n in self.norm_layers("sdf") if getattr(n, "track_running_stats", False)]
        momenta = [n.momentum for n in tracked]
        for n in tracked:
            n.reset_running_stats()
            n.momentum = None
        x = self._readout_input(pts)
        design = torch.cat([x, x.new_ones(samples, 1)], dim=1).double()
        gram = design.T @ design + ridge * samples * torch.eye(design.shape[1], dtype=torch.float64)
        solution = torch.linalg.solve(gram, design.T @ target.double()).float()
        weight, bias = solution[:-1], solution[-1]
        if hasattr(last, "weight_v"):  # weight norm: weight = g * v / |v| per output row
            last.weight_v[0] = weight
            last.weight_g[0] = weight.norm()
        else:
            last.weight[0] = weight
        last.bias[0] = bias
        for n, momentum in zip(tracked, momenta):
            n.momentum = momentum
        self.train(was_training)

    # version 2: the norms live inside the Linear -> Norm layers (glin{k}.norm.*, glin{k}.linear.*); version 1
    # (nerf_norm before cef38ae) kept them in lists beside plain Linear layers (geo_norms.{k} / color_norms.{k} and
    # glin{k}.* / clin{k}.*). _load_from_state_dict renames a version-1 state to today's layout.
    _version = 2

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs) -> None:
        if (local_metadata.get("version") or 1) < 2:
            self._upgrade_from_version_1(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)

    def _upgrade_from_version_1(self, state_dict, prefix: str) -> None:
        for lists, layer in (("geo_norms", "glin"), ("color_norms", "clin")):
            old_norm = f"{prefix}{lists}."
            for key in [k for k in state_dict if k.startswith(old_norm)]:
                k, rest = key[len(old_norm) :].split(".", 1)
                state_dict[f"{prefix}{layer}{k}.norm.{rest}"] = state_dict.pop(key)
            for name, child in self.named_children():
                if not (name.startswith(layer) and isinstance(child, _LinearNorm)):
                    continue
                flat = f"{prefix}{name}."
                for key in [
                    k for k in state_dict if k.startswith(flat) and not k.startswith((flat + "linear.", flat + "norm."))
                ]:
                    state_dict[f"{flat}linear.{key[len(flat) :]}"] = state_dict.pop(key)

    def _readout_input(self, inputs: Tensor) -> Tensor:
        """``[N, 3]`` points -> ``[N, C]``, the input of the SDF network's last layer, as the parent's
        ``forward_geonetwork`` computes it (captured at that layer)."""
        captured = []
        handle = self._readout_layer().register_forward_pre_hook(lambda module, args: captured.append(args[0]))
        try:
            self.forward_geonetwork(inputs)
        finally:
            handle.remove()
        return captured[0]


@dataclass
class NeuSNormModelConfig(NeuSModelConfig, SpectralMetricsOptions):
    """nerfstudio's NeuS with :class:`NormalizedSDFField` (``--pipeline.model.sdf-field.norm`` etc.)."""

    _target: Type = field(default_factory=lambda: NeuSNormModel)
    sdf_field: NormalizedSDFFieldConfig = field(default_factory=NormalizedSDFFieldConfig)


class NormalizedSurfaceModel:
    """What our NeuS models add to nerfstudio's (a base placed before ``NeuSModel`` or ``NeuSFactoModel``): LPIPS
    only when its weights are local, the spectral band metrics, bounded-memory rendering of large batches, the
    ``normals`` output and RGBA that nerfstudio's exporters read, the SDF at points (``sdf``), and ray bounds
    that keep every sample near the scene box (:mod:`.colliders`)."""

    def populate_modules(self) -> None:
        with offline_lpips():
            super().populate_modules()
        if type(self.collider) is AABBBoxCollider:  # misses far away would set a batch's statistics (.colliders)
            self.collider = BoundedAABBBoxCollider(self.collider.scene_box, near_plane=self.collider.near_plane)
        prepare_checkpoints(self, "field.")

    def get_image_metrics_and_images(self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]):
        metrics, images = super().get_image_metrics_and_images(outputs, batch)
        metrics.update(eval_band_metrics(self, outputs, batch))
        return drop_missing(metrics, self.lpips), images

    def forward(self, ray_bundle):
        """nerfstudio's forward; a large batch outside training (``ns-export``) in chunks, in bounded memory
        (:func:`~nerf_norm.nerfstudio.chunked.forward_in_chunks`)."""
        return forward_in_chunks(super().forward, ray_bundle, self.config.eval_num_rays_per_chunk, self.training)

    def get_outputs(self, ray_bundle):
        """nerfstudio's NeuS outputs and ``normals`` in [0, 1], which nerfstudio's exporters read (:mod:`.exports`)."""
        return with_exporter_normals(super().get_outputs(ray_bundle))

    def get_rgba_image(self, outputs: Dict[str, Tensor], output_name: str = "rgb") -> Tensor:
        """Colour and accumulated opacity (what nerfstudio's exporters mask by; :mod:`.exports`)."""
        return rgba_with_accumulation(outputs, output_name)

    def sdf(self, points: Tensor) -> Tensor:
        """SDF at ``[N, 3]`` points of the normalized scene frame, ``[N]`` (eval-mode statistics when the
        model is in eval mode)."""
        return self.field.forward_geonetwork(points)[:, 0]


class NeuSNormModel(NormalizedSurfaceModel, NeuSModel):
    """``NeuSModel`` whose field is a :class:`NormalizedSDFField`."""

    config: NeuSNormModelConfig


@dataclass
class NeuSFactoNormModelConfig(NeuSFactoModelConfig, SpectralMetricsOptions):
    """nerfstudio's NeuS-facto (proposal sampling, a hash grid feeding a small SDF network) with
    :class:`NormalizedSDFField` (``--pipeline.model.sdf-field.norm`` etc.)."""

    _target: Type = field(default_factory=lambda: NeuSFactoNormModel)
    sdf_field: NormalizedSDFFieldConfig = field(default_factory=NormalizedSDFFieldConfig)


class NeuSFactoNormModel(NormalizedSurfaceModel, NeuSFactoModel):
    """``NeuSFactoModel`` whose field is a :class:`NormalizedSDFField` (its proposal networks are nerfstudio's)."""

    config: NeuSFactoNormModelConfig
