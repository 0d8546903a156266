"""nerfstudio's Blender dataparser with its input checked first.

nerfstudio's ``Blender`` parser reads ``transforms_{split}.json`` and trusts it: a missing file, a frame whose
PNG is absent or a malformed matrix surfaces later as a bare ``KeyError``/``FileNotFoundError`` (sometimes in a
data-loading worker). This parser validates the split file up front and names the file and the field at fault,
then hands over to nerfstudio's parser unchanged.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Type

import numpy as np
from nerfstudio.data.dataparsers.blender_dataparser import Blender, BlenderDataParserConfig

from ..errors import UserError
from ..image_files import readable_image_size


def frame_image_path(data: Path, file_path: str) -> Path:
    """The PNG a Blender frame's ``file_path`` names (written without extension, as Blender exports it)."""
    return data / Path(file_path.replace("./", "") + ".png")


def check_blender_split(data: Path, split: str) -> None:
    """Raises :class:`UserError` naming the file and field if ``data/transforms_{split}.json`` is unusable."""
    path = data / f"transforms_{split}.json"
    if not data.is_dir():
        raise UserError(f"Blender scene directory {data} does not exist")
    if not path.is_file():
        present = sorted(p.name for p in data.glob("transforms_*.json"))
        raise UserError(
            f"{path}: missing; a Blender-format scene has transforms_train.json, transforms_val.json "
            f"and transforms_test.json (found: {', '.join(present) or 'none'})"
        )
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise UserError(f"{path}: expected a JSON object with 'camera_angle_x' and 'frames'")
    angle = meta.get("camera_angle_x")
    if not isinstance(angle, (int, float)) or isinstance(angle, bool) or not 0 < angle < math.pi:
        raise UserError(
            f"{path}: field 'camera_angle_x' must be the horizontal field of view in radians, in (0, pi); got {angle!r}"
        )
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise UserError(f"{path}: field 'frames' must be a non-empty list, got {type(frames).__name__}")
    sizes = {}
    for i, frame in enumerate(frames):
        where = f"{path}: frames[{i}]"
        if not isinstance(frame, dict):
            raise UserError(f"{where}: expected an object with 'file_path' and 'transform_matrix'")
        file_path = frame.get("file_path")
        if not isinstance(file_path, str) or not file_path:
            raise UserError(f"{where}.file_path: expected a path string, got {file_path!r}")
        image = frame_image_path(data, file_path)
        if not image.is_file():
            raise UserError(f"{where}.file_path = {file_path!r}: image file {image} not found")
        sizes.setdefault(readable_image_size(image, f"{where}.file_path"), image)
        matrix = frame.get("transform_matrix")
        try:
            m = np.asarray(matrix, dtype=np.float64)
        except (TypeError, ValueError):
            m = None
        if m is None or m.shape != (4, 4) or not np.isfinite(m).all():
            raise UserError(
                f"{where}.transform_matrix: expected a 4x4 camera-to-world matrix of finite numbers, got {matrix!r}"
            )
        if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-4):
            raise UserError(f"{where}.transform_matrix: last row must be [0, 0, 0, 1], got {m[3].tolist()}")
        rot = m[:3, :3]
        if not np.allclose(rot.T @ rot, np.eye(3), atol=1e-3):
            raise UserError(
                f"{where}.transform_matrix: the upper-left 3x3 block is not a rotation "
                "(Blender camera-to-world matrices are rigid)"
            )
    if len(sizes) > 1:
        listed = ", ".join(f"{w}x{h} ({p.name})" for (w, h), p in sizes.items())
        raise UserError(
            f"{path}: frames have different image sizes: {listed}; nerfstudio's Blender parser "
            "assumes one size per split"
        )


@dataclass
class CheckedBlenderDataParserConfig(BlenderDataParserConfig):
    """Blender-format scenes (nerfstudio's parser), with missing files and malformed entries reported clearly.
    Downscale with ``--pipeline.datamanager.camera-res-scale-factor`` (e.g. 0.25 for 400x400 -> 100x100)."""

    _target: Type = field(default_factory=lambda: CheckedBlender)


class CheckedBlender(Blender):
    config: CheckedBlenderDataParserConfig

    def _generate_dataparser_outputs(self, split: str = "train"):
        check_blender_split(Path(self.data), split)
        outputs = super()._generate_dataparser_outputs(split)
        # nerfstudio's parser passes its focal length as a numpy float64, so fx and fy become float64 tensors beside
        # float32 poses, and `ns-render spiral` then fails ("expected scalar type Float but found Double" in
        # camera_utils.viewmatrix): the intrinsics in float32, like everything else
        cameras = outputs.cameras
        for name in ("fx", "fy", "cx", "cy"):
            setattr(cameras, name, getattr(cameras, name).float())
        return outputs
