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

import numpy as np
import torch
from nerfstudio.field_components.encodings import HashEncoding
from nerfstudio.fields.sdf_field import SDFField, SDFFieldConfig
from nerfstudio.models.neus import NeuSModel, NeuSModelConfig
from torch import Tensor, nn

from ..norms import make_norm
from .metrics import drop_missing, offline_lpips
from .mlp import NormName
from .norm_options import NormOptions

__all__ = ["NormalizedSDFFieldConfig", "NormalizedSDFField", "NeuSNormModelConfig", "NeuSNormModel"]

NormPlace = Literal["sdf", "color", "both"]


class _GridFeature(nn.Module):
    """The feature grid of the SDF network: nerfstudio's ``HashEncoding`` when used, else only its width."""

    def __init__(self, config: SDFFieldConfig) -> None:
        super().__init__()
        self.n_output_dims = config.num_levels * config.features_per_level
        self.grid = None
        if config.use_grid_feature:
            self.grid = HashEncoding(num_levels=config.num_levels, min_res=config.base_res, max_res=config.max_res,
                                     log2_hashmap_size=config.log2_hashmap_size,
                                     features_per_level=config.features_per_level, implementation="tcnn")

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


class NormalizedSDFField(SDFField):
    """nerfstudio's ``SDFField`` with norms before the activations of its MLPs (see the module docstring)."""

    config: NormalizedSDFFieldConfig

    def __init__(self, config: NormalizedSDFFieldConfig, aabb: Tensor, num_images: int,
                 use_average_appearance_embedding: bool = False, spatial_distortion=None) -> None:
        self._pending_config = config  # read by initialize_geo_layers, which the parent calls
        # the parent builds its tinycudann grid only for encoding_type "hash": hand it another type and build
        # the grid ourselves in initialize_geo_layers
        super().__init__(dataclasses.replace(config, encoding_type="periodic"), aabb, num_images,
                         use_average_appearance_embedding, spatial_distortion)
        self.config = config
        color_norm = config.norm if config.norm_in in ("color", "both") else "none"
        self.color_norms = nn.ModuleList(make_norm(color_norm, config.hidden_dim_color, **config.norm_kwargs())
                                         for _ in range(self.num_layers_color - 2))
        if config.norm != "none" and config.norm_in in ("sdf", "both") and config.geometric_init:
            self._refit_sphere_readout(config)
        config.synchronize(self)  # multi-device: statistics over all devices' samples (in place)

    def initialize_geo_layers(self) -> None:
        config = self._pending_config
        self.encoding = _GridFeature(config)
        super().initialize_geo_layers()
        geo_norm = config.norm if config.norm_in in ("sdf", "both") else "none"
        widths = [getattr(self, f"glin{i}").out_features for i in range(self.num_layers - 2)]
        self.geo_norms = nn.ModuleList(make_norm(geo_norm, w, **config.norm_kwargs()) for w in widths)

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
        last = getattr(self, f"glin{self.num_layers - 2}")
        was_training = self.training
        self.train()
        # the probe's batch statistics become the running statistics (a cumulative average over one batch), so
        # that eval mode at step 0 (e.g. extracting the initial mesh) sees the same sphere as training
        tracked = [n for n in self.geo_norms if getattr(n, "track_running_stats", False)]
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

    def _readout_input(self, inputs: Tensor) -> Tensor:
        """``[N, 3]`` points -> the input of the SDF network's last layer (Linear -> Norm -> Softplus layers)."""
        if self.use_grid_feature:
            positions = (self.spatial_distortion(inputs) + 2.0) / 4.0  # [-2, 2] -> [0, 1], as the parent
            feature = self.encoding(positions)
        else:
            feature = inputs.new_zeros(inputs.shape[0], self.encoding.n_output_dims)
        x0 = torch.cat((inputs, self.position_encoding(inputs), feature), dim=-1)
        x = x0
        for layer in range(self.num_layers - 1):
            if layer in self.skip_in:
                x = torch.cat([x, x0], dim=1) / np.sqrt(2)
            if layer == self.num_layers - 2:
                break
            x = self.softplus(self.geo_norms[layer](getattr(self, f"glin{layer}")(x)))
        return x

    def forward_geonetwork(self, inputs: Tensor) -> Tensor:
        """``[N, 3]`` points -> ``[N, 1 + geo_feat_dim]`` (SDF, features)."""
        return getattr(self, f"glin{self.num_layers - 2}")(self._readout_input(inputs))

    def get_colors(self, points: Tensor, directions: Tensor, normals: Tensor, geo_features: Tensor,
                   camera_indices: Tensor) -> Tensor:
        """As the parent, with Linear -> Norm -> ReLU in the hidden layers of the colour network."""
        d = self.direction_encoding(directions)
        dim = self.config.appearance_embedding_dim
        if self.training:
            appearance = self.embedding_appearance(camera_indices)
            if not self.config.use_appearance_embedding:
                appearance = torch.zeros_like(appearance)
        elif self.use_average_appearance_embedding:
            appearance = directions.new_ones(*directions.shape[:-1], dim) * self.embedding_appearance.mean(dim=0)
        else:
            appearance = directions.new_zeros(*directions.shape[:-1], dim)
        x = torch.cat([points, d, normals, geo_features.view(-1, self.config.geo_feat_dim),
                       appearance.view(-1, dim)], dim=-1)
        for layer in range(self.num_layers_color - 1):
            x = getattr(self, f"clin{layer}")(x)
            if layer < self.num_layers_color - 2:
                x = self.relu(self.color_norms[layer](x))
        return self.sigmoid(x)


@dataclass
class NeuSNormModelConfig(NeuSModelConfig):
    """nerfstudio's NeuS with :class:`NormalizedSDFField` (``--pipeline.model.sdf-field.norm`` etc.)."""

    _target: Type = field(default_factory=lambda: NeuSNormModel)
    sdf_field: NormalizedSDFFieldConfig = field(default_factory=NormalizedSDFFieldConfig)


class NeuSNormModel(NeuSModel):
    """``NeuSModel`` whose field is a :class:`NormalizedSDFField`; LPIPS only when its weights are local."""

    config: NeuSNormModelConfig

    def populate_modules(self) -> None:
        with offline_lpips():
            super().populate_modules()

    def get_image_metrics_and_images(self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]):
        metrics, images = super().get_image_metrics_and_images(outputs, batch)
        return drop_missing(metrics, self.lpips), images

    def sdf(self, points: Tensor) -> Tensor:
        """SDF at ``[N, 3]`` points of the normalized scene frame, ``[N]`` (eval-mode statistics when the
        model is in eval mode)."""
        return self.field.forward_geonetwork(points)[:, 0]
