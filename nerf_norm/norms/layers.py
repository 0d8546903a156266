"""The norm modules, shaped like ``torch.nn.BatchNorm1d`` / ``LayerNorm`` (``reset_parameters``, ``extra_repr``,
running-statistics buffers), and :func:`make_norm`. Each forward calls its functional twin."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .common import CN_VARIANTS, FUSED_RELU_NORMS, NORM_NAMES, CNVariant, _as_2d, _ema_factor
from .functional import batch_norm, cross_norm, global_norm, layer_norm

__all__ = ["BatchNorm", "LayerNorm", "GlobalNorm", "CrossNorm", "make_norm"]


def _affine_parameters(module: nn.Module, num_features: int, affine: bool, factory: dict) -> None:
    """The per-channel ``weight`` and ``bias`` (``[C]``; initialised by ``reset_parameters``), or ``None`` each."""
    if affine:
        module.weight = nn.Parameter(torch.empty(num_features, **factory))
        module.bias = nn.Parameter(torch.empty(num_features, **factory))
    else:
        module.register_parameter("weight", None)
        module.register_parameter("bias", None)


class _RunningStatsNorm(nn.Module):
    """Common parts of the batch-coupled norms: affine parameters and running-stat buffers."""

    def __init__(
        self,
        num_features: int,
        stat_size: int,
        eps: float = 1e-5,
        momentum: Optional[float] = 0.1,
        affine: bool = True,
        track_running_stats: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be positive, got {num_features}")
        factory = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        _affine_parameters(self, num_features, affine, factory)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(stat_size, **factory))
            self.register_buffer("running_var", torch.ones(stat_size, **factory))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def _use_batch_stats(self) -> bool:
        return self.training or not self.track_running_stats

    def _stat_args(self) -> dict:
        """Keyword arguments of the functional twin: running buffers, affine, mode, momentum, eps.

        Called once per forward: it also advances ``num_batches_tracked`` in training.
        """
        tracked = self.track_running_stats
        return {
            "running_mean": self.running_mean if tracked else None,
            "running_var": self.running_var if tracked else None,
            "weight": self.weight,
            "bias": self.bias,
            "training": self._use_batch_stats(),
            "momentum": _ema_factor(self),
            "eps": self.eps,
        }

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )


class BatchNorm(_RunningStatsNorm):
    """Batch normalization over the T samples of each channel (paper Eq. 8).

    Shapes: input ``[..., C]``, output the same. Arguments as ``torch.nn.BatchNorm1d``, except that
    ``track_running_stats`` defaults to ``False`` (full-batch fitting uses batch statistics in eval too).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1,
                 affine: bool = True, track_running_stats: bool = False, device=None, dtype=None) -> None:
        super().__init__(num_features, num_features, eps, momentum, affine, track_running_stats, device, dtype)

    def forward(self, x: Tensor) -> Tensor:
        return batch_norm(x, **self._stat_args())


class LayerNorm(nn.Module):
    """Layer normalization over the C channels of each sample (paper Eq. 16). Input ``[..., C]``.

    It has no batch statistics, so train and eval behave alike.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = eps
        self.affine = affine
        _affine_parameters(self, num_features, affine, factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        _as_2d(x, self.num_features, "LayerNorm")
        return layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}"


class GlobalNorm(_RunningStatsNorm):
    """Global normalization: one mean/variance over all T x C elements (paper Eq. 23). Input ``[..., C]``.

    Arguments as :class:`BatchNorm`'s, plus ``fuse_relu``: output ``relu(GN(x))``, computed in the norm's own
    passes over ``[T, C]`` (as :class:`CrossNorm`'s).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1,
                 affine: bool = True, track_running_stats: bool = False, fuse_relu: bool = False, device=None,
                 dtype=None) -> None:
        self.fuse_relu = fuse_relu
        super().__init__(num_features, 1, eps, momentum, affine, track_running_stats, device, dtype)

    def forward(self, x: Tensor) -> Tensor:
        _as_2d(x, self.num_features, "GlobalNorm")
        return global_norm(x, relu=self.fuse_relu, **self._stat_args())

    def extra_repr(self) -> str:
        return super().extra_repr() + (", fuse_relu=True" if self.fuse_relu else "")


class CrossNorm(_RunningStatsNorm):
    """Cross normalization (paper Eq. 24): element (t, i) is normalized by the statistics of the cross formed
    by its sample's row and its channel's column. Input ``[..., C]``, output the same.

    Args:
        num_features: C.
        eps: added to the variance.
        affine: learnable per-channel ``weight`` (init 1) and ``bias`` (init 0).
        track_running_stats: keep running column mean/variance and batch size, used in eval mode.
        momentum: update factor of the running statistics (``None``: cumulative average).
        variant: ``"paper"`` (Eq. 24 exactly) or ``"reference"`` (the authors' released formulation).
        fuse_relu: output ``relu(CN(x))``, computed in CN's own passes over ``[T, C]`` (saves the ReLU's
            separate read and write of the tensor in forward and backward).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True,
                 track_running_stats: bool = False, momentum: Optional[float] = 0.1,
                 variant: CNVariant = "paper", fuse_relu: bool = False, device=None, dtype=None) -> None:
        if variant not in CN_VARIANTS:
            raise ValueError(f"CrossNorm: unknown variant {variant!r}; expected one of {CN_VARIANTS}")
        self.variant = variant
        self.fuse_relu = fuse_relu
        super().__init__(num_features, num_features, eps, momentum, affine, track_running_stats, device, dtype)
        if track_running_stats:
            self.register_buffer("running_batch_size", torch.ones((), device=device, dtype=dtype))
        else:
            self.register_buffer("running_batch_size", None)

    def reset_running_stats(self) -> None:
        super().reset_running_stats()
        if getattr(self, "running_batch_size", None) is not None:
            self.running_batch_size.fill_(1)

    def forward(self, x: Tensor) -> Tensor:
        _as_2d(x, self.num_features, "CrossNorm")
        return cross_norm(x, running_batch_size=self.running_batch_size, variant=self.variant, relu=self.fuse_relu,
                          **self._stat_args())

    def extra_repr(self) -> str:
        return super().extra_repr() + f", variant={self.variant!r}" + (", fuse_relu=True" if self.fuse_relu else "")


#


def make_norm(name: str, num_features: int, **kwargs) -> nn.Module:
    """Builds the norm called ``name`` (``none | bn | ln | gn | cn``) for ``num_features`` channels.

    Keyword arguments go to the layer; ``track_running_stats``/``momentum`` are ignored by ``ln``/``none``
    and ``variant`` by all but ``cn``, so one set of options can configure every norm. ``fuse_relu=True``
    exists only for ``cn`` and ``gn`` (elsewhere it is an error, never silently dropped).
    """
    key = name.lower()
    if key not in FUSED_RELU_NORMS and kwargs.pop("fuse_relu", False):
        raise ValueError(f"fuse_relu is implemented for {' and '.join(FUSED_RELU_NORMS)} only, not {name!r}")
    if key == "none":
        return nn.Identity()
    if key == "ln":
        kwargs = {k: v for k, v in kwargs.items() if k in ("eps", "affine", "device", "dtype")}
        return LayerNorm(num_features, **kwargs)
    if key in ("bn", "gn"):
        kwargs = {k: v for k, v in kwargs.items() if k != "variant"}
        return (BatchNorm if key == "bn" else GlobalNorm)(num_features, **kwargs)
    if key == "cn":
        return CrossNorm(num_features, **kwargs)
    raise ValueError(f"unknown norm {name!r}; expected one of {', '.join(NORM_NAMES)}")
