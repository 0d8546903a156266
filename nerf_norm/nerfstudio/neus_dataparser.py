"""nerfstudio dataparser for scenes in the NeuS / IDR layout (DTU as users have it), registered as ``neus-data``.

Reads ``image/*.png``, optionally ``mask/*.png``, and ``cameras_sphere.npz`` (see :mod:`nerf_norm.neus_layout`):
every ``P_i = world_mat_i`` is composed with ``scale_mat_i`` and decomposed into intrinsics and an OpenCV pose
in the normalized frame where the object lies in the unit sphere, then converted to nerfstudio's OpenGL
convention. The scale matrix is kept in the outputs' metadata (``scale_mat``) so meshes can be written back
in world units. ``--downscale-factor N`` resizes images (and masks) once into a cache folder (keyed by their content) and scales the
intrinsics to match.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Type

import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from PIL import Image

from ..errors import UserError
from ..file_identity import content_digest
from ..image_files import readable_image_size
from ..neus_layout import load_cameras, sorted_images
from ..outputs import atomic_write, write_text

__all__ = ["NeuSDataParserConfig", "NeuSDataParser", "downscaled_copies"]


def _cache_root(data: Path) -> Path:
    digest = hashlib.sha1(str(data.resolve()).encode()).hexdigest()[:12]
    return Path.home() / ".cache" / "nerf_norm" / "neus-data" / f"{data.name}-{digest}"


def downscaled_copies(files: List[Path], factor: int, folder: Path, resample=Image.Resampling.LANCZOS) -> List[Path]:
    """Copies of ``files`` resized by ``1 / factor`` into ``folder``. Each copy is reused only while its source
    still has the content hash recorded beside it (a replaced source is resized again, whatever its timestamps).
    Returns their paths in order."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for src in files:
        dst = folder / (src.stem + ".png")
        stamp_file = dst.with_suffix(".source.json")
        stamp = {"source": str(src.resolve()), "sha256": content_digest(src)}
        try:
            fresh = dst.exists() and json.loads(stamp_file.read_text()) == stamp
        except (OSError, ValueError):
            fresh = False
        if not fresh:
            with Image.open(src) as img:
                w, h = img.size
                small = img.resize((max(1, round(w / factor)), max(1, round(h / factor))), resample)
            with atomic_write(dst) as tmp:
                small.save(tmp, format="PNG")
            write_text(stamp_file, json.dumps(stamp))
        out.append(dst)
    return out


@dataclass
class NeuSDataParserConfig(DataParserConfig):
    """NeuS / IDR layout: DATA/image/*.png, DATA/mask/*.png, DATA/cameras_sphere.npz."""

    _target: Type = field(default_factory=lambda: NeuSDataParser)
    data: Path = Path("data/dtu/dtu_scan65")
    """scene folder"""
    cameras_file: str = "cameras_sphere.npz"
    """camera file inside DATA (world_mat_i and scale_mat_i per view)"""
    downscale_factor: int = 1
    """integer image downscaling (e.g. 4: 1600x1200 -> 400x300); resized copies are cached"""
    use_masks: bool = False
    """read DATA/mask/*.png (one per image) and pass them on as foreground masks (metadata 'fg_masks')"""
    eval_every: int = 8
    """views i with i % eval_every == 0 form the val/test split and are left out of training (0: every view in
    every split, as NeuS trains)"""
    cache_dir: Optional[Path] = None
    """where downscaled copies go (default: ~/.cache/nerf_norm/neus-data/SCENE-HASH)"""


@dataclass
class NeuSDataParser(DataParser):
    config: NeuSDataParserConfig

    def _files(self):
        data = Path(self.config.data)
        if not data.is_dir():
            raise UserError(f"NeuS scene directory {data} does not exist")
        image_dir = data / "image"
        if not image_dir.is_dir():
            raise UserError(f"{image_dir}: missing; the NeuS layout has image/*.png, mask/*.png and cameras_sphere.npz")
        images = sorted_images(image_dir)
        if not images:
            raise UserError(f"{image_dir} holds no PNG/JPEG images")
        masks = None
        if self.config.use_masks:
            mask_dir = data / "mask"
            if not mask_dir.is_dir():
                raise UserError(f"{mask_dir}: missing (needed by --use-masks True)")
            masks = sorted_images(mask_dir)
            if len(masks) != len(images):
                raise UserError(
                    f"{mask_dir} has {len(masks)} masks but {image_dir} has {len(images)} images; "
                    "the NeuS layout needs one mask per image, in the same order"
                )
        return data, images, masks

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        cfg = self.config
        if cfg.downscale_factor < 1:
            raise UserError(f"--downscale-factor must be a positive integer, got {cfg.downscale_factor}")
        data, images, masks = self._files()
        cams = load_cameras(data / cfg.cameras_file, len(images))
        K, c2w = cams.intrinsics_and_poses()
        sizes = {readable_image_size(path) for path in images}  # each read whole: a broken file is named now
        if len(sizes) != 1:
            raise UserError(
                f"{data / 'image'}: images differ in size ({sorted(sizes)}); the NeuS layout needs one size"
            )
        ((width, height),) = sizes
        if masks is not None:
            for path in masks:
                size = readable_image_size(path)
                if size != (width, height):
                    raise UserError(
                        f"{path}: mask is {size[0]}x{size[1]} but the images are "
                        f"{width}x{height}; the NeuS layout needs one mask per image, same size"
                    )
        if width // cfg.downscale_factor < 1 or height // cfg.downscale_factor < 1:
            raise UserError(
                f"--downscale-factor {cfg.downscale_factor} leaves no pixels of the {width}x{height} "
                "images; choose a smaller factor"
            )

        indices = list(range(len(images)))
        if cfg.eval_every > 0:
            held_out = [i for i in indices if i % cfg.eval_every == 0]
            indices = [i for i in indices if i % cfg.eval_every != 0] if split == "train" else held_out
        f = cfg.downscale_factor
        if f > 1:
            cache = (cfg.cache_dir or _cache_root(data)) / f"x{f}"
            chosen = downscaled_copies([images[i] for i in indices], f, cache / "image")
            chosen_masks = (
                downscaled_copies([masks[i] for i in indices], f, cache / "mask", Image.Resampling.NEAREST)
                if masks is not None
                else None
            )
            width, height = round(width / f), round(height / f)
        else:
            chosen = [images[i] for i in indices]
            chosen_masks = [masks[i] for i in indices] if masks is not None else None

        K = torch.from_numpy(K[indices]).float()
        poses = torch.from_numpy(c2w[indices]).float()
        poses[:, 0:3, 1:3] *= -1  # OpenCV (y down, z forward) -> nerfstudio / OpenGL (y up, z back)
        cameras = Cameras(
            fx=K[:, 0, 0] / f,
            fy=K[:, 1, 1] / f,
            cx=K[:, 0, 2] / f,
            cy=K[:, 1, 2] / f,
            width=width,
            height=height,
            camera_to_worlds=poses[:, :3, :4],
            camera_type=CameraType.PERSPECTIVE,
        )
        scale_mat = torch.from_numpy(cams.scale_mats[0]).float()
        return DataparserOutputs(
            image_filenames=chosen,
            cameras=cameras,
            scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])),
            metadata={
                "scale_mat": scale_mat,
                "fg_masks": chosen_masks,
                # what nerfstudio's SDFDataset reads: no monocular priors here
                "depth_filenames": None,
                "normal_filenames": None,
                "transform": None,
                "camera_to_worlds": None,
                "include_mono_prior": False,
            },
        )
