"""Normalization layers for coordinate networks (paper sections 4.1-4.3).

Every layer takes activations of shape ``[..., C]``, flattens them to ``[T, C]`` (T samples of the batch,
C channels) for its statistics and restores the shape on output. Statistics are always computed in at
least float32, with autocast disabled inside the layer, and the output is cast back to the input dtype.

=============  =====================================  ===========================  ==============
layer          statistics for element (t, i)          paper                        batch-coupled
=============  =====================================  ===========================  ==============
BatchNorm      column i (the T samples of channel i)  Eq. 8                        yes
LayerNorm      row t (the C channels of sample t)     Eq. 16                       no
GlobalNorm     all T x C elements                     Eq. 23                       yes
CrossNorm      row t together with column i           Eq. 24                       yes
=============  =====================================  ===========================  ==============

Train/eval semantics follow ``torch.nn.BatchNorm1d``: in training the batch statistics are used; with
``track_running_stats=True`` running estimates of the batch-dimension statistics are kept (``momentum``,
``None`` for a cumulative average) and used in eval mode, so a sample's output does not depend on which
other samples share its batch. The per-sample (row) part of CrossNorm and LayerNorm is always computed
from the sample itself. Without running statistics, eval mode uses batch statistics, which is the paper's
full-batch fitting setting.

Each module has a functional twin (:func:`batch_norm`, :func:`layer_norm`, :func:`global_norm`,
:func:`cross_norm`) taking every tensor explicitly.

Files, one concept each: ``layers`` (the modules and :func:`make_norm`), ``functional`` (their functional
twins), ``spec`` (the one differentiable statement of each batch-coupled norm and the moments helpers every Python
path uses), ``cross_norm_closed_form`` (CrossNorm's forward and first backward written out, with the derivation),
``cross_norm_grad`` (its second derivative in closed form, for eikonal losses), ``cross_norm_function`` (the
autograd Function that runs them or the CPU kernel), ``global_norm_function`` (the same for GlobalNorm), ``sync``
(the norms with statistics over all ranks of a process group, :func:`convert_sync_norms`),
``running_statistics`` (running statistics re-estimated at the current weights), ``common`` (shared plumbing).
The CPU kernels are :mod:`nerf_norm.kernels`.
"""

from .common import CN_VARIANTS, FUSED_RELU_NORMS, NORM_NAMES, NormName
from .functional import batch_norm, cross_norm, cross_norm_autograd, global_norm, layer_norm
from .layers import BatchNorm, CrossNorm, GlobalNorm, LayerNorm, make_norm
from .sync import SyncBatchNorm, SyncCrossNorm, SyncGlobalNorm, convert_sync_norms

__all__ = [
    "NORM_NAMES",
    "NormName",
    "FUSED_RELU_NORMS",
    "CN_VARIANTS",
    "BatchNorm",
    "LayerNorm",
    "GlobalNorm",
    "CrossNorm",
    "make_norm",
    "SyncBatchNorm",
    "SyncGlobalNorm",
    "SyncCrossNorm",
    "convert_sync_norms",
    "batch_norm",
    "layer_norm",
    "global_norm",
    "cross_norm",
    "cross_norm_autograd",
]
