"""LPIPS that never downloads: nerfstudio's models build torchmetrics' LPIPS, whose AlexNet backbone fetches its
ImageNet weights from the internet on first use. Here LPIPS is built only when those weights are already in the
torch hub cache; otherwise the metric is left out (one warning per process), never computed with random weights.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Dict, Iterator
from unittest import mock

import torch
from torch import Tensor, nn

_warned = False


def alexnet_weights_path() -> Path:
    """Where torchvision caches the AlexNet weights LPIPS needs (``$TORCH_HOME/hub/checkpoints/...``)."""
    from torchvision.models import AlexNet_Weights

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(AlexNet_Weights.DEFAULT.url)


def lpips_available() -> bool:
    return alexnet_weights_path().is_file()


class MissingLPIPS(nn.Module):
    """Stands in for LPIPS when its weights are not available: returns NaN, and models drop the key."""

    available = False

    def forward(self, *_: Tensor) -> Tensor:
        return torch.tensor(float("nan"))


def build_lpips(**kwargs) -> nn.Module:
    """torchmetrics' LPIPS if its weights are cached locally, else :class:`MissingLPIPS` (warning once)."""
    global _warned
    if lpips_available():
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        return LearnedPerceptualImagePatchSimilarity(**kwargs)
    if not _warned:
        _warned = True
        warnings.warn(
            f"LPIPS is left out of the metrics: its AlexNet weights are not at {alexnet_weights_path()} and "
            "nerf_norm does not download them. Put the file there (or set TORCH_HOME) to get LPIPS.",
            stacklevel=2,
        )
    return MissingLPIPS()


@contextlib.contextmanager
def offline_lpips() -> Iterator[None]:
    """While active, nerfstudio code that builds torchmetrics' LPIPS gets :func:`build_lpips` instead."""
    with mock.patch("torchmetrics.image.lpip.LearnedPerceptualImagePatchSimilarity", build_lpips):
        yield


def drop_missing(metrics: Dict[str, float], lpips: nn.Module) -> Dict[str, float]:
    """Removes LPIPS entries from ``metrics`` when ``lpips`` is the stand-in."""
    if isinstance(lpips, MissingLPIPS):
        return {k: v for k, v in metrics.items() if "lpips" not in k}
    return metrics
