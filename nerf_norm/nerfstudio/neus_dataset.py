"""nerfstudio's ``SDFDataset`` plus the foreground masks of the ``neus-data`` parser as ``fg_mask``.

nerfstudio's surface models add a mask loss (binary cross-entropy between a ray's accumulated weight and its
mask, ``fg_mask_loss_mult``) when the batch holds ``fg_mask``, but ``SDFDataset`` never provides it. With
``--pipeline.datamanager.dataparser.use-masks True`` this dataset reads the masks the parser lists
(``[H, W, 1]`` floats in {0, 1} from grayscale or RGB PNGs, resized like the images) so NeuS trains "with mask" as in its paper. The
images are then composited on black outside the mask (the models' background colour): nerfstudio's colour
loss covers every pixel, and NeuS' masked setting does not ask the model to explain the background.
"""

from __future__ import annotations

import dataclasses
from typing import Dict

import numpy as np
import torch
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.datasets.sdf_dataset import SDFDataset
from PIL import Image

__all__ = ["NeuSMaskDataset"]


class NeuSMaskDataset(SDFDataset):
    """``SDFDataset`` whose items also hold ``fg_mask`` ``[H, W, 1]`` when the parser listed masks, with the
    image blacked out where the mask is 0. A parser that knows nothing of SDF priors (``nerfstudio-data``: a
    capture as ``ns-process-data`` leaves it) is read as one without them (no monocular depth or normals), where
    nerfstudio's ``SDFDataset`` stops with ``KeyError: 'normal_filenames'``."""

    def __init__(self, dataparser_outputs: DataparserOutputs, scale_factor: float = 1.0) -> None:
        if "include_mono_prior" not in dataparser_outputs.metadata:
            without_priors = {
                "include_mono_prior": False,
                "depth_filenames": None,
                "normal_filenames": None,
                "camera_to_worlds": dataparser_outputs.cameras.camera_to_worlds,
                "transform": None,
            }
            metadata = {**dataparser_outputs.metadata, **without_priors}
            dataparser_outputs = dataclasses.replace(dataparser_outputs, metadata=metadata)
        super().__init__(dataparser_outputs, scale_factor)

    def get_data(self, image_idx: int, image_type="float32") -> Dict:
        data = super().get_data(image_idx, image_type)
        mask = data.get("fg_mask")
        if mask is not None:
            data["image"] = torch.where(mask > 0.5, data["image"], torch.zeros_like(data["image"]))
        return data

    def get_metadata(self, data: Dict) -> Dict:
        metadata = super().get_metadata(data)
        masks = self.metadata.get("fg_masks")
        if masks:
            metadata["fg_mask"] = self._read_mask(masks[data["image_idx"]])
        return metadata

    def _read_mask(self, path) -> torch.Tensor:
        """``[H, W, 1]`` float mask in {0, 1} from a grayscale or RGB(A) PNG (DTU's IDR masks are RGB)."""
        with Image.open(path) as img:
            gray = img.convert("L")
            if self.scale_factor != 1.0:
                w, h = gray.size
                gray = gray.resize((int(w * self.scale_factor), int(h * self.scale_factor)), Image.Resampling.NEAREST)
            return torch.from_numpy(np.asarray(gray) > 127).to(torch.float32).unsqueeze(-1)
