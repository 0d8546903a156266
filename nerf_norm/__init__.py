"""nerf_norm: normalization-based coordinate networks (batch, layer, global and cross normalization)."""

from .norms import BatchNorm, CrossNorm, GlobalNorm, LayerNorm, make_norm

__version__ = "0.1.0"
__all__ = ["BatchNorm", "LayerNorm", "GlobalNorm", "CrossNorm", "make_norm", "__version__"]
