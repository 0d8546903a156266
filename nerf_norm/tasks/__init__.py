"""Fitting tasks on the shared coordinate networks: a task supplies data, forward model, loss and metrics;
:class:`~nerf_norm.tasks.base.Trainer` does the rest. Image (5.1), occupancy (5.2), CT (5.3), MRI (5.4)."""

from .base import FitResult, Task, TrainConfig, Trainer
from .ct import CTTask
from .image import ImageTask
from .mri import MRITask
from .occupancy import OccupancyTask

__all__ = ["Task", "TrainConfig", "Trainer", "FitResult", "ImageTask", "OccupancyTask", "CTTask", "MRITask"]
