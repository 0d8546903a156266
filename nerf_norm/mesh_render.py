"""A shaded picture of a mesh for a look (CPU ray casting with open3d): ``render_mesh_png``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

__all__ = ["render_mesh", "render_mesh_png"]


def render_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    size: int = 512,
    view_dir: Sequence[float] = (1.0, -1.2, 0.8),
    up: Sequence[float] = (0.0, 0.0, 1.0),
    fov_deg: float = 35.0,
) -> np.ndarray:
    """``[size, size, 3]`` uint8: the mesh seen from ``view_dir`` (from the centre towards the camera), framed
    to its bounding sphere, grey with a head light and a key light, white background."""
    import open3d as o3d

    v = np.asarray(vertices, dtype=np.float64)
    centre = 0.5 * (v.min(axis=0) + v.max(axis=0))
    radius = float(np.linalg.norm(v - centre, axis=1).max()) or 1.0
    back = np.asarray(view_dir, dtype=np.float64)
    back /= np.linalg.norm(back)
    distance = radius / math.sin(math.radians(fov_deg) / 2) * 1.05
    eye = centre + distance * back
    z = -back
    x = np.cross(z, np.asarray(up, dtype=np.float64))
    x = x / np.linalg.norm(x) if np.linalg.norm(x) > 1e-8 else np.array([1.0, 0.0, 0.0])
    y = np.cross(z, x)
    f = 0.5 * size / math.tan(math.radians(fov_deg) / 2)
    px = np.arange(size) + 0.5 - size / 2
    uu, vv = np.meshgrid(px, px)
    dirs = (uu[..., None] * x + vv[..., None] * y + f * z).reshape(-1, 3)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(v.astype(np.float32)), o3d.core.Tensor(np.asarray(faces).astype(np.uint32)))
    rays = np.concatenate([np.broadcast_to(eye, dirs.shape), dirs], axis=1).astype(np.float32)
    hit = scene.cast_rays(o3d.core.Tensor(rays))
    found = np.isfinite(hit["t_hit"].numpy())
    normals = hit["primitive_normals"].numpy()[found]
    normals = np.where((np.sum(normals * dirs[found], axis=1) > 0)[:, None], -normals, normals)
    key = -z + 0.6 * x - 0.8 * y
    key /= np.linalg.norm(key)
    shade = 0.15 + 0.55 * np.clip(normals @ -z, 0, None) + 0.35 * np.clip(normals @ key, 0, None)
    image = np.ones((len(rays), 3))
    image[found] = np.clip(shade, 0, 1)[:, None] * np.array([0.85, 0.85, 0.9])
    return (image.reshape(size, size, 3) * 255).round().astype(np.uint8)


def render_mesh_png(
    vertices: np.ndarray,
    faces: np.ndarray,
    path: Path,
    size: int = 512,
    view_dir: Optional[Sequence[float]] = None,
    **kwargs,
) -> Path:
    """Writes :func:`render_mesh` to ``path`` (PNG)."""
    import imageio.v2 as imageio

    image = render_mesh(vertices, faces, size, **({"view_dir": view_dir} if view_dir is not None else {}), **kwargs)
    imageio.imwrite(path, image)
    return path
