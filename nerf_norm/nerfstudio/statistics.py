"""Running statistics of a nerfstudio model re-estimated at its current weights (see
:mod:`nerf_norm.norms.running_statistics`), over the training batches of the pipeline's datamanager; what
``nerf-norm extract-mesh --refresh-stats`` uses.
"""

from __future__ import annotations

from ..norms.running_statistics import norms_with_running_statistics, refresh_statistics

__all__ = ["norms_with_running_statistics", "refresh_running_statistics"]


def refresh_running_statistics(pipeline, batches: int, start_step: int = 0) -> int:
    """:func:`refresh_statistics` of ``pipeline.model`` over ``batches`` training batches of
    ``pipeline.datamanager`` (steps ``start_step`` on), as nerfstudio feeds them in training."""

    def run_batch(k: int) -> None:
        ray_bundle, _ = pipeline.datamanager.next_train(start_step + k)
        pipeline.model(ray_bundle)

    return refresh_statistics(pipeline.model, run_batch, batches)
