"""Writes the procedural scene as a Blender-format NeRF dataset (the layout of the NeRF synthetic scenes):
``transforms_{train,val,test}.json`` with ``camera_angle_x`` and per-frame camera-to-world ``transform_matrix``
(OpenGL convention), and RGBA PNGs under ``train/``, ``val/``, ``test/`` named ``r_{i}.png``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, Tuple

import imageio.v2 as imageio
import numpy as np

from ..errors import UserError, require_memory
from ..outputs import prepare_output_dir
from .procedural import default_scene, look_at_origin, render_rgba


@dataclass
class BlenderSceneConfig:
    resolution: int = 80
    """image width and height in pixels"""
    train_views: int = 40
    """training views, random on the upper hemisphere"""
    val_views: int = 4
    test_views: int = 4
    """test views, evenly spaced on a ring at 30 degrees elevation"""
    radius: float = 4.0
    """camera distance from the origin (Blender scenes: ~4; nerfstudio's near/far planes are 2 and 6)"""
    camera_angle_x: float = 0.6911112070083618
    """horizontal field of view in radians (the NeRF synthetic scenes' value)"""
    supersample: int = 2
    """rays per pixel side (anti-aliasing)"""
    seed: int = 0

    def validate(self) -> None:
        if self.resolution < 8:
            raise UserError(f"--resolution must be >= 8, got {self.resolution}")
        for name in ("train_views", "val_views", "test_views", "supersample"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.camera_angle_x < math.pi:
            raise UserError(f"--camera-angle-x must be in (0, pi) radians, got {self.camera_angle_x}")
        if not self.radius > 1.3 or not math.isfinite(self.radius):
            raise UserError(f"--radius must exceed the scene's radius 1.2 (plus margin), got {self.radius}")
        # one view's rays and their shading, per supersampled pixel
        rays = (self.resolution * self.supersample) ** 2
        require_memory(
            f"rendering {self.resolution}x{self.resolution} views at supersample {self.supersample}", rays * 400.0
        )


def camera_positions(config: BlenderSceneConfig) -> Dict[str, np.ndarray]:
    """Camera centres ``[N, 3]`` per split: train random on the upper hemisphere, val and test on rings."""
    rng = np.random.default_rng(config.seed)
    r = config.radius

    def sphere(az, el):
        return r * np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1)

    n = config.train_views
    train = sphere(rng.uniform(0, 2 * np.pi, n), np.arcsin(rng.uniform(np.sin(0.17), np.sin(1.2), n)))
    val = sphere(rng.uniform(0, 2 * np.pi, config.val_views), np.full(config.val_views, 0.6))
    k = config.test_views
    test = sphere(np.arange(k) * 2 * np.pi / k + np.pi / k, np.full(k, np.pi / 6))
    return {"train": train, "val": val, "test": test}


#: what a scene consists of (removed first with overwrite)
OUTPUTS = ("train", "val", "test", "transforms_train.json", "transforms_val.json", "transforms_test.json", "scene.json")


def render_views(config: BlenderSceneConfig, progress=None) -> Iterator[Tuple[str, int, np.ndarray, np.ndarray]]:
    """``(split, index in split, camera-to-world [4, 4], RGBA [H, W, 4] in [0, 1])`` for every view of the scene,
    in split order; ``progress(done, total)`` after each."""
    scene = default_scene()
    focal = focal_length(config)
    positions = camera_positions(config)
    total = sum(len(p) for p in positions.values())
    done = 0
    for split, pos in positions.items():
        for i, p in enumerate(pos):
            c2w = look_at_origin(p)
            yield (
                split,
                i,
                c2w,
                render_rgba(scene, c2w, config.resolution, config.resolution, focal, config.supersample),
            )
            done += 1
            if progress is not None:
                progress(done, total)


def focal_length(config: BlenderSceneConfig) -> float:
    """Focal length in pixels of the scene's square images."""
    return 0.5 * config.resolution / math.tan(0.5 * config.camera_angle_x)


def write_blender_scene(
    out: Path, config: BlenderSceneConfig = BlenderSceneConfig(), progress=None, overwrite: bool = False
) -> Path:
    """Renders the default scene into ``out`` (Blender format) and returns ``out``. A scene (or any of its files)
    already in ``out`` is an error unless ``overwrite``, which removes it first.

    ``progress``: optional callable ``(done, total)`` for a progress bar.
    """
    config.validate()
    out = prepare_output_dir(Path(out), OUTPUTS, overwrite, command="nerf-norm make-scene blender")
    frames: Dict[str, list] = {}
    for split, i, c2w, rgba in render_views(config, progress):
        (out / split).mkdir(parents=True, exist_ok=True)
        imageio.imwrite(out / split / f"r_{i}.png", (rgba * 255 + 0.5).astype(np.uint8))
        frame = {"file_path": f"./{split}/r_{i}", "rotation": 0.0, "transform_matrix": c2w.tolist()}
        frames.setdefault(split, []).append(frame)
    for split, split_frames in frames.items():
        meta = {"camera_angle_x": config.camera_angle_x, "frames": split_frames}
        (out / f"transforms_{split}.json").write_text(json.dumps(meta, indent=2))
    (out / "scene.json").write_text(json.dumps({"generator": "nerf_norm.scenes.blender", **vars(config)}, indent=2))
    return out
