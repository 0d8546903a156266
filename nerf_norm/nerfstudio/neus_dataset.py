"""nerfstudio's ``SDFDataset`` plus the foreground masks of the ``neus-data`` parser as ``fg_mask``.

nerfstudio's surface models add a mask loss (binary cross-entropy between a ray's accumulated weight and its
mask, ``fg_mask_loss_mult``) when the batch holds ``fg_mask``, but ``SDFDataset`` never provides it. With
``--pipeline.datamanager.dataparser.use-masks True`` this dataset reads the masks the parser lists
(``[H, W, 1]`` floats in {0, 1}, resized like the images) so NeuS trains "with mask" as in its paper. The
images are then composited on black outside the mask (the models' background colour): nerfstudio's colour
loss covers every pixel, and NeuS' masked setting does not ask the model to explain the background.
"""

from __future__ import annotations

from typing import Dict

import torch
from nerfstudio.data.datasets.sdf_dataset import SDFDataset
from nerfstudio.data.utils.data_utils import get_image_mask_tensor_from_path

__all__ = ["NeuSMaskDataset"]


class NeuSMaskDataset(SDFDataset):
    """``SDFDataset`` whose items also hold ``fg_mask`` ``[H, W, 1]`` when the parser listed masks, with the
    image blacked out where the mask is 0."""

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
            mask = get_image_mask_tensor_from_path(masks[data["image_idx"]], scale_factor=self.scale_factor)
            metadata["fg_mask"] = mask.to(torch.float32)
        return metadata
