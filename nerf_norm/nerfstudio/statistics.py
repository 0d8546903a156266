"""Running statistics re-estimated at a model's current weights ("precise" statistics).

In eval mode the norms of a field use running statistics: an exponential average of the column statistics of
every norm call of past training steps, i.e. of earlier weights. For NeuS behind CrossNorm that average can put
the whole SDF above zero while the weights, evaluated with the statistics of a current batch, hold the surface
(``benchmarks/results/neus_eval_gap.md``). :func:`refresh_running_statistics` replaces the running statistics by a
plain average over a few fresh training batches at the current weights, as they are used in training (every norm
call of the model's forward, in training mode), without changing a weight.
"""

from __future__ import annotations

from typing import List

import torch
from torch import nn


def norms_with_running_statistics(module: nn.Module) -> List[nn.Module]:
    """The norm layers under ``module`` that track running statistics (ours and torch's BatchNorm alike)."""
    return [m for m in module.modules()
            if getattr(m, "track_running_stats", False) and hasattr(m, "reset_running_stats")]


def refresh_running_statistics(pipeline, batches: int, start_step: int = 0) -> int:
    """Re-estimates the running statistics of every norm of ``pipeline.model`` over ``batches`` training batches
    of ``pipeline.datamanager`` at the current weights: the statistics are reset, and each norm averages (with
    equal weights: ``momentum=None``) the batch statistics of all its calls while the model runs forward in
    training mode; no gradient is taken and no weight changes. Returns the number of norms refreshed; the model is
    left in eval mode. ``batches = 0`` changes nothing."""
    model = pipeline.model
    norms = norms_with_running_statistics(model)
    if batches <= 0 or not norms:
        model.eval()
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        with torch.no_grad():  # fields that differentiate their own output (NeuS' normals) re-enable it inside
            for k in range(batches):
                ray_bundle, _ = pipeline.datamanager.next_train(start_step + k)
                model(ray_bundle)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    return len(norms)
