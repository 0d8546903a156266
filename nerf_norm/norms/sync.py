"""Batch statistics over every rank of a process group: the synchronized BatchNorm, GlobalNorm and CrossNorm, and
:func:`convert_sync_norms`, the analogue of ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` for our norms.

Under data parallelism each rank holds ``[T_r, C]`` of the step's samples. A synchronized norm in training uses the
statistics of the union ``[sum_r T_r, C]``: the column (BN, CN) or global (GN) moments are all-reduced, so every
rank normalizes exactly as one process holding the whole batch would; CrossNorm's row statistics belong to one
sample and stay local. The moments are two-pass, as in the single-process layers: one all-reduce of the sums and
row counts gives the mean, a second one the sums of squared deviations from it, so a large offset costs no
accuracy. The all-reduces are ``torch.distributed.nn.functional.all_reduce``, differentiable: the backward
all-reduces the gradients of the same sums (and can be differentiated again, for eikonal losses). Row counts may
differ between ranks. The running statistics are updated from the global moments, so they stay identical on all
ranks. Eval mode (running statistics) and a single process (no initialised group, or world size 1) run the
layers' ordinary paths.

Works with any backend that all-reduces the tensors' device (gloo on the CPU, nccl on CUDA). The synchronized
forward is plain autograd ops, not the fused CrossNorm kernel.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .common import _as_2d, _no_autocast, _restore, _stats_dtype
from .cross_norm_function import update_running
from .layers import BatchNorm, CrossNorm, GlobalNorm
from .spec import cross_norm_spec, standardize

__all__ = ["SyncBatchNorm", "SyncGlobalNorm", "SyncCrossNorm", "convert_sync_norms", "global_moments", "world_size"]


def world_size(group=None) -> int:
    """World size of ``group``, or 1 when torch.distributed is not in use (then nothing is synchronized)."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def _all_reduce_sum(t: Tensor, group) -> Tensor:
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(t, op=dist.ReduceOp.SUM, group=group if group is not None else dist.group.WORLD)


def global_moments(x: Tensor, group=None, per_column: bool = True) -> Tuple[Tensor, Tensor, Tensor]:
    """(mean, biased variance, count) of ``x [T_r, C]`` over all ranks of ``group``: per column (``[C]`` each) or,
    with ``per_column=False``, over all elements (0-d each). ``count`` is the global number of rows (per column)
    or elements; a 0-d tensor, so nothing waits for the device. Differentiable in ``x``."""
    dims = 0 if per_column else (0, 1)
    local_count = x.shape[0] if per_column else x.numel()
    sums = x.sum(dim=dims).reshape(-1)
    total = _all_reduce_sum(torch.cat([sums, sums.new_full((1,), float(local_count))]), group)
    count = total[-1].detach()
    mean = total[:-1] / count
    dev = (x - (mean if per_column else mean.reshape(()))).square().sum(dim=dims).reshape(-1)
    var = _all_reduce_sum(dev, group) / count
    if not per_column:
        mean, var = mean.reshape(()), var.reshape(())
    return mean, var, count


class _SyncMixin:
    """The synchronized training forward shared by the three layers; ``process_group`` is torch's (None: WORLD)."""

    process_group = None

    def _sync_active(self) -> bool:
        return self.training and world_size(self.process_group) > 1

    def _sync_update_running(self, mean: Tensor, var_unbiased: Tensor, count: Tensor, factor: float) -> None:
        if self.track_running_stats and factor > 0:
            with torch.no_grad():
                update_running(
                    (self.running_mean, self.running_var, getattr(self, "running_batch_size", None), factor),
                    mean.detach(),
                    var_unbiased.detach(),
                    count,
                )

    def _standardize_synced(self, x: Tensor, per_column: bool) -> Tensor:
        """BN (``per_column``) or GN in training: ``(x - mean) / sqrt(var + eps)`` with the moments of all ranks,
        then the affine; updates the running statistics."""
        args = self._stat_args()
        x2 = _as_2d(x, self.num_features, type(self).__name__)
        with _no_autocast(x):
            xs = x2.to(_stats_dtype(x))
            mean, var, count = global_moments(xs, self.process_group, per_column=per_column)
            self._sync_update_running(mean, var * (count / (count - 1)), count, args["momentum"])
            y = standardize(xs, mean, var, self.eps, args["weight"], args["bias"])
            if getattr(self, "fuse_relu", False):
                y = torch.relu(y)
        return _restore(y, x)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", process_group={self.process_group}"


class SyncBatchNorm(_SyncMixin, BatchNorm):
    """:class:`~nerf_norm.norms.BatchNorm` (paper Eq. 8) whose training statistics are each channel's over the
    samples of all ranks. Input ``[..., C]``."""

    def forward(self, x: Tensor) -> Tensor:
        return self._standardize_synced(x, per_column=True) if self._sync_active() else super().forward(x)


class SyncGlobalNorm(_SyncMixin, GlobalNorm):
    """:class:`~nerf_norm.norms.GlobalNorm` (paper Eq. 23) with one mean and variance over all elements of all
    ranks. Input ``[..., C]``."""

    def forward(self, x: Tensor) -> Tensor:
        return self._standardize_synced(x, per_column=False) if self._sync_active() else super().forward(x)


class SyncCrossNorm(_SyncMixin, CrossNorm):
    """:class:`~nerf_norm.norms.CrossNorm` (paper Eq. 24) whose column statistics cover the samples of all ranks
    (``n`` = the global row count); each sample's row statistics are its own. Input ``[..., C]``."""

    def forward(self, x: Tensor) -> Tensor:
        if not self._sync_active():
            return super().forward(x)
        args = self._stat_args()
        x2 = _as_2d(x, self.num_features, "SyncCrossNorm")
        with _no_autocast(x):
            xs = x2.to(_stats_dtype(x))
            mean, var, count = global_moments(xs, self.process_group)
            var_unbiased = var * (count / (count - 1))
            self._sync_update_running(mean, var_unbiased, count, args["momentum"])
            # the paper's variant pools biased column variances, the authors' adds unbiased ones
            col_var = var if self.variant == "paper" else var_unbiased
            w = args["weight"].to(xs.dtype) if args["weight"] is not None else None
            b = args["bias"].to(xs.dtype) if args["bias"] is not None else None
            y = cross_norm_spec(xs, w, b, (mean, col_var, count), self.variant, self.eps)
            if self.fuse_relu:
                y = torch.relu(y)
        return _restore(y, x)


_SYNC_OF = {BatchNorm: SyncBatchNorm, GlobalNorm: SyncGlobalNorm, CrossNorm: SyncCrossNorm}


def _synchronized_twin(norm: nn.Module, process_group) -> nn.Module:
    """A new synchronized layer with ``norm``'s options, holding ``norm``'s very parameter and buffer objects (not
    copies), so optimizers and statistic sets that refer to them keep working."""
    options = {
        "eps": norm.eps,
        "momentum": norm.momentum,
        "affine": norm.affine,
        "track_running_stats": norm.track_running_stats,
    }
    for name in ("variant", "fuse_relu"):
        if hasattr(norm, name):
            options[name] = getattr(norm, name)
    twin = _SYNC_OF[type(norm)](norm.num_features, **options, device="meta")
    for name, param in norm.named_parameters(recurse=False):
        setattr(twin, name, param)
    for name, buffer in norm.named_buffers(recurse=False):
        twin.register_buffer(name, buffer)
    twin.process_group = process_group
    return twin.train(norm.training)


def convert_sync_norms(module: nn.Module, process_group=None) -> nn.Module:
    """Returns ``module`` with every :class:`BatchNorm`, :class:`GlobalNorm` and :class:`CrossNorm` of ours
    replaced by its synchronized twin over ``process_group`` (None: the default group), like
    ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``. The new layers hold the very same parameters and buffers
    (shared affine parameters, e.g. of Mip-NeRF's per-pass statistic sets, stay shared) and the same mode.
    Already synchronized layers only get the new group. A norm passed directly is returned converted."""
    kind = type(module)
    if isinstance(module, _SyncMixin):
        module.process_group = process_group
        return module
    if kind in _SYNC_OF:
        return _synchronized_twin(module, process_group)
    for name, child in module.named_children():
        new = convert_sync_norms(child, process_group)
        if new is not child:
            module.add_module(name, new)
    return module
