"""nerfstudio integration: normalized field components, models and dataparsers.

The method specifications that ``ns-train`` lists live in :mod:`nerf_norm.method_configs`; this package holds
what they are built from. Importing it imports nerfstudio, and lets torch >= 2.6 read the checkpoints nerfstudio
writes (:mod:`nerf_norm.nerfstudio.checkpoints`).
"""

from .checkpoints import allow_numpy_scalars

allow_numpy_scalars()  # nerfstudio's numpy learning rates in checkpoints vs torch.load's weights_only default
