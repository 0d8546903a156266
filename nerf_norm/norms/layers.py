"""The norm modules, shaped like ``torch.nn.BatchNorm1d`` / ``LayerNorm`` (``reset_parameters``, ``extra_repr``,
running-statistics buffers), and :func:`make_norm`. Each forward calls its functional twin."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .common import CN_VARIANTS, FUSED_RELU_NORMS, NORM_NAMES, CNVariant, _ema_factor
from .functional import batch_norm, cross_norm, global_norm, layer_norm

__all__ = ["BatchNorm", "LayerNorm", "GlobalNorm", "CrossNorm", "make_norm", "NORM_ALIASES"]


def _check_input_dim(module: nn.Module, x: Tensor) -> None:
    """Refuses an input that is not ``[..., num_features]`` (channels last) with a message naming both sizes."""
    if x.dim() < 1 or x.shape[-1] != module.num_features:
        got = tuple(x.shape)
        raise ValueError(
            f"{type(module).__name__}: expected input of shape [..., {module.num_features}] (channels "
            f"last, num_features={module.num_features}), got {got} with {got[-1] if got else 0} "
            "channels"
        )


class _NormBase(nn.Module):
    """What all four norms share: ``num_features`` then keyword-only ``eps, momentum, affine,
    track_running_stats`` (in that order, for every norm), the per-channel affine and, for the batch-coupled norms,
    running-statistics buffers of ``stat_size`` elements."""

    _stat_size: Optional[int] = None  # None: no batch statistics (LayerNorm)

    def __init__(
        self,
        num_features: int,
        *,
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
        self.track_running_stats = track_running_stats and self._stat_size is not None
        if affine:
            self.weight = nn.Parameter(torch.empty(num_features, **factory))
            self.bias = nn.Parameter(torch.empty(num_features, **factory))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            size = num_features if self._stat_size == 0 else self._stat_size
            self.register_buffer("running_mean", torch.zeros(size, **factory))
            self.register_buffer("running_var", torch.ones(size, **factory))
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

    def _check_input_dim(self, x: Tensor) -> None:
        _check_input_dim(self, x)

    def _stat_args(self) -> dict:
        """Keyword arguments of the functional twin: running buffers, affine, mode, momentum, eps.

        Called once per forward, after the input check: it also advances ``num_batches_tracked`` in training.
        """
        tracked = self.track_running_stats
        return {
            "running_mean": self.running_mean if tracked else None,
            "running_var": self.running_var if tracked else None,
            "weight": self.weight,
            "bias": self.bias,
            "training": self.training or not tracked,
            "momentum": _ema_factor(self),
            "eps": self.eps,
        }

    def extra_repr(self) -> str:
        text = f"{self.num_features}, eps={self.eps}"
        if self._stat_size is not None:
            text += f", momentum={self.momentum}"
        text += f", affine={self.affine}"
        if self._stat_size is not None:
            text += f", track_running_stats={self.track_running_stats}"
        return text


class BatchNorm(_NormBase):
    """Batch normalization over the T samples of each channel (the paper's equation 8).

    Shapes: input ``[..., C]``, output the same. Arguments as ``torch.nn.BatchNorm1d``'s (keyword-only after
    ``num_features``), except that ``track_running_stats`` defaults to ``False`` (full-batch fitting uses batch
    statistics in eval too).
    """

    _stat_size = 0  # one per channel

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        return batch_norm(x, **self._stat_args())


class LayerNorm(_NormBase):
    """Layer normalization over the C channels of each sample (the paper's equation 16). Input ``[..., C]``.

    It has no batch statistics, so train and eval behave alike; ``momentum`` and ``track_running_stats`` are
    accepted (and have no effect) so that one set of options configures every norm.
    """

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        return layer_norm(x, self.weight, self.bias, self.eps)


class GlobalNorm(_NormBase):
    """Global normalization: one mean/variance over all T x C elements (the paper's equation 23). Input ``[..., C]``.

    Not ``torch.nn.GroupNorm``: there is a single group spanning the channels *and* the batch. Arguments as
    :class:`BatchNorm`'s, plus ``fuse_relu``: output ``relu(GN(x))``, computed in the norm's own passes over
    ``[T, C]`` (as :class:`CrossNorm`'s).
    """

    _stat_size = 1  # one mean and variance

    def __init__(
        self,
        num_features: int,
        *,
        eps: float = 1e-5,
        momentum: Optional[float] = 0.1,
        affine: bool = True,
        track_running_stats: bool = False,
        fuse_relu: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(
            num_features,
            eps=eps,
            momentum=momentum,
            affine=affine,
            track_running_stats=track_running_stats,
            device=device,
            dtype=dtype,
        )
        self.fuse_relu = fuse_relu

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        return global_norm(x, relu=self.fuse_relu, **self._stat_args())

    def extra_repr(self) -> str:
        return super().extra_repr() + (", fuse_relu=True" if self.fuse_relu else "")


class CrossNorm(_NormBase):
    """Cross normalization (the paper's equation 24): element (t, i) is normalized by the statistics of the cross formed
    by its sample's row and its channel's column. Input ``[..., C]``, output the same. The arguments after
    ``num_features`` are keyword-only, in the order all four norms share.

    Args:
        num_features: C.
        eps: added to the variance.
        momentum: update factor of the running statistics (``None``: cumulative average).
        affine: learnable per-channel ``weight`` (init 1) and ``bias`` (init 0).
        track_running_stats: keep running column mean/variance and batch size, used in eval mode.
        variant: ``"paper"`` (Eq. 24 exactly) or ``"reference"`` (the authors' released formulation).
        fuse_relu: output ``relu(CN(x))``, computed in CN's own passes over ``[T, C]`` (saves the ReLU's
            separate read and write of the tensor in forward and backward).
    """

    _stat_size = 0  # one per channel

    def __init__(
        self,
        num_features: int,
        *,
        eps: float = 1e-5,
        momentum: Optional[float] = 0.1,
        affine: bool = True,
        track_running_stats: bool = False,
        variant: CNVariant = "paper",
        fuse_relu: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        if variant not in CN_VARIANTS:
            raise ValueError(f"CrossNorm: unknown variant {variant!r}; expected one of {CN_VARIANTS}")
        super().__init__(
            num_features,
            eps=eps,
            momentum=momentum,
            affine=affine,
            track_running_stats=track_running_stats,
            device=device,
            dtype=dtype,
        )
        self.variant = variant
        self.fuse_relu = fuse_relu
        # the running column count starts at 1, its reset value
        if self.track_running_stats:
            self.register_buffer("running_batch_size", torch.ones((), device=device, dtype=dtype))
        else:
            self.register_buffer("running_batch_size", None)

    def reset_running_stats(self) -> None:
        super().reset_running_stats()
        if getattr(self, "running_batch_size", None) is not None:
            self.running_batch_size.fill_(1)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        return cross_norm(
            x,
            running_batch_size=self.running_batch_size,
            variant=self.variant,
            relu=self.fuse_relu,
            **self._stat_args(),
        )

    def extra_repr(self) -> str:
        return super().extra_repr() + f", variant={self.variant!r}" + (", fuse_relu=True" if self.fuse_relu else "")


NORM_ALIASES = {"batch": "bn", "layer": "ln", "global": "gn", "cross": "cn"}
"""Long names of the norms, accepted by :func:`make_norm` (``global`` is GlobalNorm; ``gn`` is the paper's
abbreviation, never GroupNorm)."""


def make_norm(name: str, num_features: int, **kwargs) -> nn.Module:
    """Builds the norm called ``name`` (``none | bn | ln | gn | cn``, or ``batch | layer | global | cross``) for
    ``num_features`` channels.

    Keyword arguments go to the layer; ``variant`` is ignored by all but ``cn`` and every option by ``none``, so
    one set of options can configure every norm. ``fuse_relu=True`` exists only for ``cn`` and ``gn`` (elsewhere
    it is an error, never silently dropped).
    """
    key = NORM_ALIASES.get(name.lower(), name.lower())
    if key not in FUSED_RELU_NORMS and kwargs.pop("fuse_relu", False):
        raise ValueError(f"fuse_relu is implemented for {' and '.join(FUSED_RELU_NORMS)} only, not {name!r}")
    if key == "none":
        return nn.Identity()
    layer = {"bn": BatchNorm, "ln": LayerNorm, "gn": GlobalNorm, "cn": CrossNorm}.get(key)
    if layer is None:
        raise ValueError(f"unknown norm {name!r}; expected one of {', '.join(NORM_NAMES)}")
    if key != "cn":
        kwargs.pop("variant", None)
    return layer(num_features, **kwargs)
