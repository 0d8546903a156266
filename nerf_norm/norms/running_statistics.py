"""Running statistics re-estimated at a model's current weights ("precise" statistics).

In eval mode the batch-coupled norms (BN, GN, CN) use running statistics: an exponential average of the column
statistics of past training batches, i.e. of earlier weights. When the weights move within that average's window,
eval-mode outputs can differ from what training saw (a neus-cn SDF without a surface,
``experiments/neus_eval_gap/neus_eval_gap.md``; occupancy, ``experiments/occupancy_eval_gap/occupancy_eval_gap.md``).
:func:`refresh_statistics` replaces the running statistics by a plain average over a few fresh training batches
at the current weights, as training uses them (every norm call of the forward, in training mode), without
changing a weight.
"""

from __future__ import annotations

from typing import Callable, List

import torch
from torch import nn

__all__ = ["norms_with_running_statistics", "refresh_statistics"]


def norms_with_running_statistics(module: nn.Module) -> List[nn.Module]:
    """The norm layers under ``module`` that track running statistics (ours and torch's BatchNorm alike)."""
    return [
        m for m in module.modules() if getattr(m, "track_running_stats", False) and hasattr(m, "reset_running_stats")
    ]


def refresh_statistics(model: nn.Module, run_batch: Callable[[int], object], batches: int) -> int:
    """Re-estimates the running statistics of every norm of ``model`` at its current weights: the statistics are
    reset, then ``run_batch(k)`` (``k < batches``; it runs ``model`` forward on training batch ``k``) is called in
    training mode without gradient, and each norm averages, with equal weights (``momentum=None``), the batch
    statistics of all its calls. No weight changes, momenta are restored, and ``model`` is left in eval mode.
    Returns the number of norms refreshed (0, changing nothing, when ``batches <= 0`` or ``model`` has none)."""
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
                run_batch(k)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    return len(norms)
