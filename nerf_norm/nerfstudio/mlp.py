"""nerfstudio's ``MLP`` with a normalization before every hidden activation (Linear -> Norm -> ReLU).

A field that is queried for several kinds of samples per step (Mip-NeRF's coarse and fine passes) can keep one
set of running statistics per kind: the norms of each layer share their affine parameters but own separate
running buffers, and each call names its set (``mlp(x, stat_set=k)``; nothing is remembered between calls). In
training each call normalizes with the statistics of its own batch either way; the sets only matter in eval, where
the running statistics replace batch statistics so that rendering does not depend on how rays are chunked.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from nerfstudio.field_components.mlp import MLP
from torch import Tensor, nn

from ..norms import FUSED_RELU_NORMS, NORM_NAMES, NormName, make_norm


class StatSetNorm(nn.Module):
    """One normalization layer with ``num_sets`` sets of running statistics and one shared affine transform.

    Input ``[..., C]``. Set ``k`` is a full norm module whose ``weight``/``bias`` are the very parameters of set 0,
    so the optimizer sees them once and every set applies the same learned affine.
    """

    def __init__(self, norm: str, num_features: int, num_sets: int = 1, **norm_kwargs) -> None:
        super().__init__()
        if num_sets < 1:
            raise ValueError(f"StatSetNorm: num_sets must be >= 1, got {num_sets}")
        self.sets = nn.ModuleList([make_norm(norm, num_features, **norm_kwargs) for _ in range(num_sets)])
        first = self.sets[0]
        for other in list(self.sets)[1:]:
            for name in ("weight", "bias"):
                if isinstance(getattr(first, name, None), nn.Parameter):
                    setattr(other, name, getattr(first, name))

    def forward(self, x: Tensor, stat_set: int = 0) -> Tensor:
        """``x [..., C]`` normalized with running-statistics set ``stat_set``."""
        return self.sets[stat_set](x)

    def extra_repr(self) -> str:
        return f"num_sets={len(self.sets)}, shared affine"


class NormalizedMLP(MLP):
    """nerfstudio ``MLP`` (same layers, skips and initialisation) with ``norm`` applied to the pre-activation of
    every hidden layer, and of the last layer too when its ``out_activation`` is of the hidden activation's kind (a
    feature layer, as NeRF's base MLP, whose ReLU output feeds the density and colour heads). An output squashed by
    another function (nerfacto's colour head: three channels into a sigmoid) is left as it is: normalizing three
    colour channels together would tie them to each other.

    Shapes: input ``[..., in_dim]``, output ``[..., out_dim]``; the norms see ``[T, C]`` with T the product of the
    leading dimensions (all samples of all rays in the call). Always the torch implementation: tinycudann's fused
    MLPs have no place for a norm. Its arguments are ``MLP``'s and these:

    Args:
        norm: ``none | bn | ln | gn | cn``.
        num_stat_sets: running-statistics sets per norm (see the module docstring).
        norm_kwargs: passed to :func:`nerf_norm.norms.make_norm` (e.g. ``momentum``, ``variant``); running
            statistics are on by default here.
    """

    def __init__(
        self,
        in_dim: int,
        num_layers: int,
        layer_width: int,
        out_dim: Optional[int] = None,
        skip_connections: Optional[Tuple[int]] = None,
        activation: Optional[nn.Module] = nn.ReLU(),
        out_activation: Optional[nn.Module] = None,
        norm: NormName = "cn",
        num_stat_sets: int = 1,
        norm_kwargs: Optional[dict] = None,
    ) -> None:
        if norm not in NORM_NAMES:
            raise ValueError(f"NormalizedMLP: unknown norm {norm!r}; expected one of {', '.join(NORM_NAMES)}")
        self.norm = norm
        self.num_stat_sets = num_stat_sets
        self.norm_kwargs = {"track_running_stats": True, **(norm_kwargs or {})}
        super().__init__(
            in_dim,
            num_layers,
            layer_width,
            out_dim,
            skip_connections,
            activation,
            out_activation,
            implementation="torch",
        )

    @classmethod
    def like(cls, mlp: MLP, **kwargs) -> "NormalizedMLP":
        """A normalized MLP with the layout of an existing nerfstudio ``MLP`` (fresh weights)."""
        return cls(
            mlp.in_dim,
            mlp.num_layers,
            mlp.layer_width,
            mlp.out_dim,
            mlp.skip_connections,
            mlp.activation,
            mlp.out_activation,
            **kwargs,
        )

    def build_nn_modules(self) -> None:
        super().build_nn_modules()
        widths = [layer.out_features for layer in self.layers]
        feature_output = self.out_activation is not None and type(self.out_activation) is type(self.activation)
        normed = len(widths) - 1 + feature_output
        # CrossNorm and GlobalNorm apply a following ReLU in their own passes (one read/write of [T, C] less each
        # way)
        self._fused = [
            self.norm in FUSED_RELU_NORMS and isinstance(self._activation_after(i), nn.ReLU) for i in range(normed)
        ]
        self.norms = nn.ModuleList(
            [
                StatSetNorm(self.norm, w, self.num_stat_sets, **self.norm_kwargs, **({"fuse_relu": True} if f else {}))
                for w, f in zip(widths[:normed], self._fused)
            ]
        )

    def _activation_after(self, index: int) -> Optional[nn.Module]:
        return self.activation if index < len(self.layers) - 1 else self.out_activation

    def forward(self, in_tensor: Tensor, stat_set: int = 0) -> Tensor:
        """``[..., in_dim] -> [..., out_dim]``, the norms using running-statistics set ``stat_set``."""
        if not 0 <= stat_set < self.num_stat_sets:
            raise IndexError(f"statistics set {stat_set} out of range for {self.num_stat_sets} sets")
        return self.pytorch_fwd(in_tensor, stat_set)

    def pytorch_fwd(self, in_tensor: Tensor, stat_set: int = 0) -> Tensor:
        x = in_tensor
        for i, layer in enumerate(self.layers):
            if i in self._skip_connections:
                x = torch.cat([in_tensor, x], -1)
            x = layer(x)
            fused = False
            if i < len(self.norms):
                x = self.norms[i](x, stat_set)
                fused = self._fused[i]
            activation = self._activation_after(i)
            if activation is not None and not fused:
                x = activation(x)
        return x
