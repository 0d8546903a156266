"""Writes the procedural scene in nerfstudio's own data format, as ``ns-process-data`` leaves a capture: one
``transforms.json`` (pinhole intrinsics ``fl_x``, ``fl_y``, ``cx``, ``cy``, ``w``, ``h`` with ``camera_model``
``OPENCV`` and zero distortion; per frame an OpenGL camera-to-world ``transform_matrix`` and ``file_path``) and RGB
images under ``images/`` (the object on a white background: a capture has no alpha). The split is given by
``train_filenames`` / ``val_filenames`` / ``test_filenames`` (read by ``nerfstudio-data --eval-mode filename``).

The views and their placement are those of the Blender-format scene (:mod:`nerf_norm.scenes.blender`), so the two
formats hold the same images.
"""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from ..outputs import prepare_output_dir
from .blender import BlenderSceneConfig, focal_length, render_views

#: what a scene consists of (removed first with overwrite)
OUTPUTS = ("images", "transforms.json", "scene.json")


def write_nerfstudio_scene(
    out: Path, config: BlenderSceneConfig = BlenderSceneConfig(), progress=None, overwrite: bool = False
) -> Path:
    """Renders the default scene into ``out`` in nerfstudio's format and returns ``out`` (``progress``: optional
    callable ``(done, total)``). A scene already in ``out`` is an error unless ``overwrite``."""
    config.validate()
    out = prepare_output_dir(Path(out), OUTPUTS, overwrite, command="nerf-norm make-scene nerfstudio")
    w = h = config.resolution
    focal = focal_length(config)
    (out / "images").mkdir(parents=True, exist_ok=True)
    frames, splits = [], {}
    for split, _, c2w, rgba in render_views(config, progress):
        rgb = rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])  # composited on white
        name = f"images/frame_{len(frames) + 1:05d}.png"
        imageio.imwrite(out / name, (rgb * 255 + 0.5).astype(np.uint8))
        frames.append({"file_path": name, "transform_matrix": c2w.tolist()})
        splits.setdefault(f"{split}_filenames", []).append(name)
    intrinsics = {"w": w, "h": h, "fl_x": focal, "fl_y": focal, "cx": w / 2, "cy": h / 2}
    distortion = {"k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0}
    meta = {**intrinsics, **distortion, "camera_model": "OPENCV", "frames": frames, **splits}
    (out / "transforms.json").write_text(json.dumps(meta, indent=2))
    (out / "scene.json").write_text(json.dumps({"generator": "nerf_norm.scenes.nerfstudio", **vars(config)}, indent=2))
    return out
