"""Renders a mesh into the NeuS / IDR layout with a known world scale: a DTU-like scene with exact ground truth.

Writes ``image/000000.png ...`` (RGB, black background), ``mask/000.png ...`` (255 on the object),
``cameras_sphere.npz`` (``world_mat_i``, ``scale_mat_i``), ``mesh_world.ply`` (the rendered mesh in world units,
the ground truth for chamfer distances) and ``scene.json`` (the settings).

The mesh is centred and scaled so that its bounding sphere has radius ``object_radius`` in the normalized frame
(the unit sphere NeuS reconstructs in) and ``world_radius`` millimetres in the world frame centred at
``world_centre``; ``scale_mat`` maps normalized to world coordinates, as in DTU. Cameras look at the centre from
the upper hemisphere at distance ``camera_distance`` (normalized units), OpenCV convention. Shading: a
procedural high-frequency albedo (products of sines of the normalized position) times Lambertian light from
two directions plus ambient, so both texture and shape show. Rays are cast with open3d's CPU ray caster.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal, Optional, Tuple

import numpy as np

from ..errors import UserError, require_memory
from ..neus_layout import compose_projection
from ..outputs import prepare_output_dir
from .procedural import look_at_origin, pixel_rays

__all__ = ["DTUSceneConfig", "default_mesh_path", "write_dtu_scene", "load_scene_mesh"]


def default_mesh_path() -> Path:
    """The Stanford bunny that pymeshlab ships with its tests (28k vertices, closed)."""
    import pymeshlab

    path = Path(pymeshlab.__file__).parent / "tests" / "sample_meshes" / "bunny.obj"
    if not path.is_file():
        raise UserError(f"pymeshlab's sample bunny is not at {path}; pass --mesh PATH")
    return path


#: what a scene consists of (removed first with --overwrite)
OUTPUTS = ("image", "mask", "cameras_sphere.npz", "mesh_world.ply", "scene.json")


@dataclass
class DTUSceneConfig:
    width: int = 96
    """image width in pixels"""
    height: int = 72
    """image height in pixels"""
    views: int = 24
    """camera views on the upper hemisphere"""
    fov_x_deg: float = 40.0
    """horizontal field of view (degrees)"""
    camera_distance: float = 3.0
    """camera distance from the centre, in the normalized frame (unit sphere)"""
    object_radius: float = 0.7
    """bounding-sphere radius of the object in the normalized frame"""
    world_radius: float = 80.0
    """bounding-sphere radius of the object in world units (mm, DTU-like)"""
    world_centre: Tuple[float, float, float] = (20.0, -30.0, 600.0)
    """object centre in world units"""
    supersample: int = 2
    """rays per pixel side (anti-aliasing of images and masks)"""
    up_axis: Literal["x", "y", "z"] = "y"
    """the mesh's up axis, turned to the world's z (the Stanford scans are y-up)"""
    seed: int = 0

    def validate(self) -> None:
        numbers = {
            "--fov-x-deg": self.fov_x_deg,
            "--camera-distance": self.camera_distance,
            "--object-radius": self.object_radius,
            "--world-radius": self.world_radius,
            **{f"--world-centre[{k}]": v for k, v in enumerate(self.world_centre)},
        }
        for option, value in numbers.items():
            if not math.isfinite(value):
                raise UserError(f"{option} must be a finite number, got {value}")
        if min(self.width, self.height) < 8:
            raise UserError(f"--width/--height must be >= 8, got {self.width}x{self.height}")
        if self.views < 2:
            raise UserError(f"--views must be >= 2, got {self.views}")
        if not 5 < self.fov_x_deg < 170:
            raise UserError(f"--fov-x-deg must be in (5, 170), got {self.fov_x_deg}")
        if not 0 < self.object_radius < 1:
            raise UserError(f"--object-radius must be in (0, 1) (inside the unit sphere), got {self.object_radius}")
        if self.camera_distance <= 1.2:
            raise UserError(f"--camera-distance must exceed 1.2 (outside the unit sphere), got {self.camera_distance}")
        if self.world_radius <= 0 or self.supersample < 1:
            raise UserError("--world-radius and --supersample must be positive")
        # one view's rays: origins, directions, hits and shading, float32/float64, per supersampled pixel
        rays = self.width * self.height * self.supersample**2
        require_memory(f"rendering {self.width}x{self.height} views at supersample {self.supersample}", rays * 160.0)


def load_scene_mesh(path: Path):
    """A non-empty triangle mesh from ``path``, merged and cleaned by trimesh (clear errors otherwise)."""
    from ..mesh import read_mesh

    # read without processing first: trimesh's processing drops non-finite vertices without a word
    raw = read_mesh(path, process=False)
    bad = int(np.count_nonzero(~np.isfinite(np.asarray(raw.vertices)).all(axis=1)))
    if bad:
        raise UserError(f"mesh {path} has {bad} vertices with NaN or infinite coordinates; repair or remove them")
    mesh = read_mesh(path, process=True)
    spread = np.linalg.svd(np.asarray(mesh.vertices) - np.asarray(mesh.vertices).mean(axis=0), compute_uv=False)
    if spread.size < 3 or spread[2] <= 1e-9 * max(float(spread[0]), 1e-300):
        raise UserError(
            f"mesh {path} is degenerate: its {len(mesh.vertices)} vertices lie on a plane, a line or a "
            "point, so it has no 3D extent to render"
        )
    return mesh


def _albedo(p: np.ndarray) -> np.ndarray:
    """Procedural colour of normalized surface points ``[N, 3]`` -> ``[N, 3]`` in [0.1, 0.9]."""
    a = np.sin(9.0 * p[:, 0] + 1.0) * np.sin(11.0 * p[:, 1] + 2.0) * np.sin(13.0 * p[:, 2] + 0.5)
    b = np.sin(23.0 * (p[:, 0] + p[:, 2]))
    base = np.array([0.75, 0.55, 0.35])
    alt = np.array([0.25, 0.45, 0.75])
    t = (0.5 + 0.5 * np.sign(a))[:, None] * 0.8 + 0.1 * (1 + b[:, None])
    return np.clip(base * t + alt * (1 - t), 0.1, 0.9)


def write_dtu_scene(
    out: Path,
    mesh_path: Optional[Path],
    config: DTUSceneConfig,
    progress: Optional[Callable[[int, int], None]] = None,
    overwrite: bool = False,
) -> Path:
    """Renders ``mesh_path`` (default: pymeshlab's bunny) into ``out`` in the NeuS layout; returns ``out``."""
    import imageio.v2 as imageio
    import open3d as o3d

    config.validate()
    out = prepare_output_dir(Path(out), OUTPUTS, overwrite, command="nerf-norm make-scene dtu")
    mesh_path = Path(mesh_path) if mesh_path is not None else default_mesh_path()
    mesh = load_scene_mesh(mesh_path)
    centre = mesh.bounding_sphere.primitive.center
    radius = float(np.max(np.linalg.norm(mesh.vertices - centre, axis=1)))
    verts_norm = (mesh.vertices - centre) / radius * config.object_radius
    up = {"x": [[0, 0, -1], [0, 1, 0], [1, 0, 0]], "y": [[1, 0, 0], [0, 0, -1], [0, 1, 0]], "z": np.eye(3)}
    verts_norm = verts_norm @ np.asarray(up[config.up_axis], dtype=np.float64).T  # rotation: up axis -> +z
    s = config.world_radius / config.object_radius
    scale_mat = np.diag([s, s, s, 1.0])
    scale_mat[:3, 3] = config.world_centre

    (out / "image").mkdir()
    (out / "mask").mkdir()
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(verts_norm.astype(np.float32)), o3d.core.Tensor(mesh.faces.astype(np.uint32)))
    face_normals = np.asarray(mesh.face_normals)
    W, H, ss = config.width, config.height, config.supersample
    focal = 0.5 * W / math.tan(math.radians(config.fov_x_deg) / 2)
    K = np.array([[focal, 0.0, W / 2], [0.0, focal, H / 2], [0.0, 0.0, 1.0]])
    lights = np.array([[0.4, -0.3, 0.85], [-0.6, 0.5, 0.6]])
    lights /= np.linalg.norm(lights, axis=1, keepdims=True)

    rng = np.random.default_rng(config.seed)
    golden = math.pi * (3.0 - math.sqrt(5.0))
    arrays = {}
    for i in range(config.views):
        z = 0.15 + 0.8 * (i + 0.5) / config.views  # elevations from ~9 to ~70 degrees
        azimuth = golden * i + rng.uniform(0, 0.1)
        r_xy = math.sqrt(1 - z * z)
        position = config.camera_distance * np.array([r_xy * math.cos(azimuth), r_xy * math.sin(azimuth), z])
        c2w_gl = look_at_origin(position)
        origins, dirs = pixel_rays(c2w_gl, W, H, focal, ss)
        rays = np.concatenate([origins, dirs], axis=1).astype(np.float32)
        c2w = c2w_gl.copy()
        c2w[:3, 1:3] *= -1  # OpenGL (y up, looking along -z) -> OpenCV (y down, along +z), as NeuS stores it
        hit = scene.cast_rays(o3d.core.Tensor(rays))
        t = hit["t_hit"].numpy()
        found = np.isfinite(t)
        colour = np.zeros((len(rays), 3))
        pts = rays[found, :3] + t[found, None] * rays[found, 3:]
        normals = face_normals[hit["primitive_ids"].numpy()[found]]
        normals = np.where((np.sum(normals * rays[found, 3:], axis=1) > 0)[:, None], -normals, normals)
        shade = 0.25 + 0.55 * np.clip(normals @ lights[0], 0, None) + 0.3 * np.clip(normals @ lights[1], 0, None)
        colour[found] = np.clip(_albedo(pts) * shade[:, None], 0.0, 1.0)
        img = colour.reshape(H, ss, W, ss, 3).mean(axis=(1, 3))
        mask = found.reshape(H, ss, W, ss).mean(axis=(1, 3))
        imageio.imwrite(out / "image" / f"{i:06}.png", np.round(img * 255).astype(np.uint8))
        imageio.imwrite(out / "mask" / f"{i:03}.png", np.where(mask >= 0.5, 255, 0).astype(np.uint8))
        arrays[f"world_mat_{i}"] = compose_projection(K, c2w, scale_mat)
        arrays[f"scale_mat_{i}"] = scale_mat
        if progress:
            progress(i + 1, config.views)
    np.savez(out / "cameras_sphere.npz", **arrays)
    import trimesh

    world = trimesh.Trimesh(verts_norm @ scale_mat[:3, :3].T + scale_mat[:3, 3], mesh.faces, process=False)
    world.export(str(out / "mesh_world.ply"))
    info = {
        **asdict(config),
        "mesh": str(mesh_path),
        "scale_mat": scale_mat.tolist(),
        "normalized_from_mesh": {"centre": np.asarray(centre).tolist(), "radius": radius},
    }
    (out / "scene.json").write_text(json.dumps(info, indent=2))
    return out
