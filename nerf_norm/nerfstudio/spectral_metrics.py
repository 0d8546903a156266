"""Spectral bias watched during ``ns-train``: the relative error of an evaluation image per radial frequency band.

With ``--pipeline.model.spectral-metrics True`` (our Mip-NeRF and NeuS models), every evaluation image adds
``spectral_band_{b}`` for ``b < spectral_bands`` to nerfstudio's image metrics: ``|F(pred - gt)|_b / |F(gt)|_b``
over the image's 2D spectrum, split into equally wide radial bands (the bands and the function of
``nerf-norm spectral-dynamics``, :func:`nerf_norm.analysis.spectral.band_errors`). nerfstudio logs them with its
other eval metrics (tensorboard, wandb, the viewer's scalars), so one sees which frequencies a method has learned,
step by step: a method that learns high frequencies early has its upper bands fall early.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict

from torch import Tensor

from ..analysis.spectral import band_edges, band_errors

__all__ = ["SpectralMetricsOptions", "spectral_band_metrics", "eval_band_metrics"]


@dataclass
class SpectralMetricsOptions:
    """The options of our model configs (a base class, so the flags read ``--pipeline.model.spectral-metrics``)."""

    spectral_metrics: bool = False
    """add the eval image's relative error per radial frequency band to the eval metrics (spectral_band_0, ...)"""
    spectral_bands: int = 8
    """number of radial frequency bands of --pipeline.model.spectral-metrics"""


def spectral_band_metrics(pred: Tensor, target: Tensor, bands: int) -> Dict[str, float]:
    """``{"spectral_band_b": relative error}`` of ``pred`` against ``target`` (``[H, W, C]`` images), per band
    (bands without energy in the target are left out)."""
    pred, target = pred.detach().float().cpu(), target.detach().float().cpu()[..., : pred.shape[-1]]
    errors = band_errors(pred, target, band_edges(tuple(target.shape[:2]), bands))
    return {f"spectral_band_{b}": float(e) for b, e in enumerate(errors.tolist()) if math.isfinite(e)}


def eval_band_metrics(model, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]) -> Dict[str, float]:
    """The band metrics of one eval image of ``model`` (a model whose config is a :class:`SpectralMetricsOptions`),
    against the ground truth composited on its background as its other image metrics; ``{}`` when the option is off."""
    if not model.config.spectral_metrics:
        return {}
    target = model.renderer_rgb.blend_background(batch["image"].to(outputs["rgb"].device))
    return spectral_band_metrics(outputs["rgb"], target, model.config.spectral_bands)
