"""Dataparser specifications of nerf_norm. Imports dataparser classes only (nerfstudio loads this module while
building its own dataparser registry; importing datamanagers or models here would be a circular import)."""

from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from nerf_norm.nerfstudio.blender_dataparser import CheckedBlenderDataParserConfig
from nerf_norm.nerfstudio.neus_dataparser import NeuSDataParserConfig

blender_checked = DataParserSpecification(
    config=CheckedBlenderDataParserConfig(),
    description="Blender-format scenes (transforms_*.json) with missing files and malformed entries reported clearly",
)

neus_data = DataParserSpecification(
    config=NeuSDataParserConfig(),
    description="NeuS / IDR layout (image/, mask/, cameras_sphere.npz), e.g. DTU scans; --downscale-factor",
)
