"""The fitting commands, gathered (each is defined beside its task; their shared base is :mod:`.fit`)."""

from .ct import CTCommand, run_ct
from .fit import FitCommand, fit_network, run_fit
from .image import ImageCommand, run_image
from .mri import MRICommand, run_mri
from .occupancy import OccupancyCommand, run_occupancy

__all__ = [
    "FitCommand",
    "ImageCommand",
    "OccupancyCommand",
    "CTCommand",
    "MRICommand",
    "run_fit",
    "run_image",
    "run_occupancy",
    "run_ct",
    "run_mri",
    "fit_network",
]
