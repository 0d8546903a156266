"""Fitting tasks on the shared coordinate networks: a task supplies data, forward model, loss and metrics;
:class:`~nerf_norm.tasks.base.Trainer` does the rest."""

from .base import FitResult, Task, TrainConfig, Trainer
from .image import ImageTask

__all__ = ["Task", "TrainConfig", "Trainer", "FitResult", "ImageTask"]
