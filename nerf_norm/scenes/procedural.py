"""A small procedural scene, ray-cast analytically: spheres and a slab with high-frequency procedural textures
(checkers, stripes, rings) under Lambertian shading. World frame: z up; the scene fits in a sphere of radius 1.2
around the origin. Used to make default datasets that need no download.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Tuple

import numpy as np

Texture = Callable[[np.ndarray], np.ndarray]  # [N, 3] hit points -> [N, 3] albedo in [0, 1]

LIGHT = np.array([0.4, 0.3, 0.85]) / np.linalg.norm([0.4, 0.3, 0.85])
AMBIENT = 0.35


def _mix(a, b, w: np.ndarray) -> np.ndarray:
    return np.asarray(a)[None] * (1 - w[:, None]) + np.asarray(b)[None] * w[:, None]


def _checker_sphere(center: np.ndarray) -> Texture:
    def tex(p: np.ndarray) -> np.ndarray:
        q = p - center
        lon = np.arctan2(q[:, 1], q[:, 0])
        lat = np.arctan2(q[:, 2], np.linalg.norm(q[:, :2], axis=1))
        cells = (np.floor(lon / (np.pi / 8)) + np.floor(lat / (np.pi / 8))) % 2
        stripes = 0.5 + 0.5 * np.sin(40.0 * q[:, 2])
        base = _mix((0.85, 0.2, 0.15), (0.95, 0.85, 0.3), cells)
        return base * (0.75 + 0.25 * stripes[:, None])

    return tex


def _stripes(center: np.ndarray, axis: np.ndarray, freq: float, c0, c1) -> Texture:
    def tex(p: np.ndarray) -> np.ndarray:
        return _mix(c0, c1, (np.sin(freq * (p - center) @ axis) > 0).astype(np.float64))

    return tex


def _rings(center: np.ndarray, freq: float, c0, c1) -> Texture:
    def tex(p: np.ndarray) -> np.ndarray:
        r = np.linalg.norm((p - center)[:, :2], axis=1)
        return _mix(c0, c1, 0.5 + 0.5 * np.cos(freq * r))

    return tex


def _floor_checker(p: np.ndarray) -> np.ndarray:
    cells = (np.floor(p[:, 0] / 0.15) + np.floor(p[:, 1] / 0.15)) % 2
    fine = (np.floor(p[:, 0] / 0.05) + np.floor(p[:, 1] / 0.05)) % 2
    return _mix((0.15, 0.3, 0.6), (0.9, 0.9, 0.85), cells) * (0.85 + 0.15 * fine[:, None])


@dataclass
class Sphere:
    center: np.ndarray
    radius: float
    texture: Texture

    def intersect(self, o: np.ndarray, d: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Nearest positive hit distance per ray (inf if none) and the normals there. d is unit length."""
        oc = o - self.center
        b = np.einsum("ij,ij->i", oc, d)
        c = np.einsum("ij,ij->i", oc, oc) - self.radius**2
        disc = b * b - c
        sq = np.sqrt(np.maximum(disc, 0.0))
        t = np.where(-b - sq > 1e-6, -b - sq, -b + sq)
        t = np.where((disc >= 0) & (t > 1e-6), t, np.inf)
        n = (o + np.where(np.isfinite(t), t, 0.0)[:, None] * d - self.center) / self.radius
        return t, n


@dataclass
class Box:
    lo: np.ndarray
    hi: np.ndarray
    texture: Texture

    def intersect(self, o: np.ndarray, d: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / d
            t0 = (self.lo - o) * inv
            t1 = (self.hi - o) * inv
        tmin = np.minimum(t0, t1)
        tmax = np.maximum(t0, t1)
        t_near = np.nanmax(tmin, axis=1)
        t_far = np.nanmin(tmax, axis=1)
        hit = (t_near <= t_far) & (t_near > 1e-6)
        t = np.where(hit, t_near, np.inf)
        axis = np.nanargmax(tmin, axis=1)
        n = np.zeros_like(d)
        n[np.arange(len(d)), axis] = -np.sign(d[np.arange(len(d)), axis])
        return t, n


def default_scene() -> List:
    """The default scene: a checkered, striped sphere on a checkered slab with three small textured spheres."""
    big = np.array([0.0, 0.0, 0.2])
    s1, s2, s3 = np.array([0.62, 0.55, -0.12]), np.array([-0.6, 0.5, -0.13]), np.array([0.45, -0.65, -0.08])
    return [
        Sphere(big, 0.55, _checker_sphere(big)),
        Sphere(s1, 0.18, _stripes(s1, np.array([0.0, 0.0, 1.0]), 60.0, (0.1, 0.6, 0.2), (0.9, 0.95, 0.9))),
        Sphere(s2, 0.17, _stripes(s2, np.array([0.7, 0.7, 0.0]), 45.0, (0.5, 0.1, 0.6), (0.95, 0.6, 0.1))),
        Sphere(s3, 0.22, _rings(s3, 70.0, (0.1, 0.1, 0.1), (0.2, 0.8, 0.9))),
        Box(np.array([-0.95, -0.95, -0.45]), np.array([0.95, 0.95, -0.3]), _floor_checker),
    ]


def look_at_origin(position: np.ndarray) -> np.ndarray:
    """Camera-to-world 4x4 in the OpenGL/Blender convention (camera looks along -z, +y up) aimed at the origin."""
    z = position / np.linalg.norm(position)
    x = np.cross([0.0, 0.0, 1.0], z)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, position
    return c2w


def pixel_rays(c2w: np.ndarray, width: int, height: int, focal: float, supersample: int = 1):
    """World-space ray origins and unit directions ``[H * W * s^2, 3]`` through pixel sub-sample centres."""
    s = supersample
    offsets = (np.arange(s) + 0.5) / s
    u = (np.arange(width)[:, None] + offsets[None]).reshape(-1)
    v = (np.arange(height)[:, None] + offsets[None]).reshape(-1)
    uu, vv = np.meshgrid(u, v)  # [H*s, W*s]
    dirs = np.stack([(uu - width / 2) / focal, -(vv - height / 2) / focal, -np.ones_like(uu)], -1).reshape(-1, 3)
    dirs = dirs @ c2w[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return np.broadcast_to(c2w[:3, 3], dirs.shape), dirs


def render_rgba(
    scene: List, c2w: np.ndarray, width: int, height: int, focal: float, supersample: int = 2
) -> np.ndarray:
    """Renders ``[H, W, 4]`` float RGBA (alpha = coverage; background transparent), box-filtered."""
    o, d = pixel_rays(c2w, width, height, focal, supersample)
    best = np.full(len(d), np.inf)
    normal = np.zeros_like(d)
    owner = np.full(len(d), -1)
    for k, prim in enumerate(scene):
        t, n = prim.intersect(o, d)
        closer = t < best
        best[closer], normal[closer], owner[closer] = t[closer], n[closer], k
    rgb = np.zeros_like(d)
    hit = owner >= 0
    points = o + np.where(hit, best, 0.0)[:, None] * d
    for k, prim in enumerate(scene):
        mask = owner == k
        if mask.any():
            shade = AMBIENT + (1 - AMBIENT) * np.clip(normal[mask] @ LIGHT, 0.0, 1.0)
            rgb[mask] = prim.texture(points[mask]) * shade[:, None]
    rgba = np.concatenate([rgb * hit[:, None], hit[:, None].astype(np.float64)], axis=1)
    s = supersample
    rgba = rgba.reshape(height, s, width, s, 4).mean(axis=(1, 3))
    # colour stored un-premultiplied, as Blender writes RGBA PNGs
    alpha = rgba[..., 3:]
    rgba[..., :3] = np.where(alpha > 0, rgba[..., :3] / np.maximum(alpha, 1e-8), 0.0)
    return np.clip(rgba, 0.0, 1.0)
