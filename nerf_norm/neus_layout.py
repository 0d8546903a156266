"""The NeuS / IDR dataset layout: ``image/*.png``, ``mask/*.png`` and ``cameras_sphere.npz``.

``cameras_sphere.npz`` holds, for every view i, ``world_mat_i`` (``[4, 4]``, the projection
``P = K [R | t]`` from world to pixels in its top three rows) and ``scale_mat_i`` (``[4, 4]``, mapping the
unit sphere around the object to world coordinates: ``x_world = S x_normalized``). Pixel coordinates follow
OpenCV (x right, y down, camera looking along +z).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from .errors import UserError

__all__ = ["NeuSCameras", "load_cameras", "load_world_mats", "decompose_projection", "compose_projection"]


@dataclass
class NeuSCameras:
    """``world_mats`` and ``scale_mats``, ``[N, 4, 4]`` each, from one ``cameras_sphere.npz``."""

    world_mats: np.ndarray
    scale_mats: np.ndarray
    path: Path

    def normalized_projections(self) -> np.ndarray:
        """``P S`` for every view, ``[N, 3, 4]``: projections of the normalized (unit-sphere) coordinates."""
        return (self.world_mats @ self.scale_mats)[:, :3, :4]

    def intrinsics_and_poses(self) -> Tuple[np.ndarray, np.ndarray]:
        """``K`` ``[N, 3, 3]`` and OpenCV camera-to-world ``[N, 4, 4]`` in normalized coordinates."""
        projections = self.normalized_projections()
        for i, p in enumerate(projections):
            m = p[:, :3]
            if abs(np.linalg.det(m)) <= 1e-12 * max(float(np.abs(m).max()), 1e-300) ** 3:
                raise UserError(
                    f"{self.path}: world_mat_{i} (times scale_mat_{i}) is singular: its left 3x3 block "
                    "has no inverse, so it is not a camera projection K [R | t]"
                )
        pairs = [decompose_projection(p) for p in projections]
        return np.stack([k for k, _ in pairs]), np.stack([c for _, c in pairs])


def _matrix(data, key: str, path: Path) -> np.ndarray:
    if key not in data:
        present = sorted(data.files)
        shown = ", ".join(present[:6]) + (", ..." if len(present) > 6 else "")
        raise UserError(
            f"{path}: missing key '{key}' (the NeuS layout has world_mat_i and scale_mat_i for every "
            f"view i; found: {shown})"
        )
    mat = np.asarray(data[key], dtype=np.float64)
    if mat.shape not in ((4, 4), (3, 4)):
        raise UserError(f"{path}: '{key}' must be a 4x4 (or 3x4) matrix, got shape {mat.shape}")
    if not np.all(np.isfinite(mat)):
        raise UserError(f"{path}: '{key}' contains non-finite values")
    if mat.shape == (3, 4):
        mat = np.vstack([mat, [0.0, 0.0, 0.0, 1.0]])
    return mat


def load_cameras(path: Path, num_views: int, need_scale: bool = True) -> NeuSCameras:
    """Reads ``world_mat_i`` (and ``scale_mat_i``) for ``i < num_views``; a missing key names the file and key."""
    path = Path(path)
    data = _open_npz(path)
    world = np.stack([_matrix(data, f"world_mat_{i}", path) for i in range(num_views)])
    if need_scale:
        scale = np.stack([_matrix(data, f"scale_mat_{i}", path) for i in range(num_views)])
    else:
        scale = np.tile(np.eye(4), (num_views, 1, 1))
    return NeuSCameras(world, scale, path)


def _open_npz(path: Path):
    if not path.is_file():
        raise UserError(f"camera file not found: {path} (the NeuS layout needs cameras_sphere.npz)")
    try:
        return np.load(path)
    except Exception as exc:  # noqa: BLE001 - one message for any unreadable archive
        raise UserError(f"cannot read {path} as a .npz archive: {exc}") from exc


def count_world_mats(path: Path) -> int:
    """How many cameras (``world_mat_<i>`` keys) ``path`` holds."""
    import re

    return sum(bool(re.fullmatch(r"world_mat_\d+", key)) for key in _open_npz(Path(path)).files)


def load_world_mats(path: Path, num_views: int) -> np.ndarray:
    """``world_mat_i`` for ``i < num_views``, ``[N, 4, 4]`` (world -> pixels)."""
    return load_cameras(path, num_views, need_scale=False).world_mats


def decompose_projection(P: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``P = K [R | t]`` (``[3, 4]``) -> ``K`` (``[3, 3]``, ``K[2, 2] = 1``, positive focal lengths) and the
    OpenCV camera-to-world matrix ``[4, 4]`` (``R^T``, camera centre ``-R^T t``)."""
    from scipy.linalg import rq

    P = np.asarray(P, dtype=np.float64)[:3, :4]
    K, R = rq(P[:, :3])
    signs = np.diag(np.sign(np.diag(K)))  # make the diagonal of K positive; R absorbs the signs
    K, R = K @ signs, signs @ R
    if np.linalg.det(R) < 0:  # P was given up to a negative scale
        K, R = -K, -R
    t = np.linalg.solve(K, P[:, 3])
    K = K / K[2, 2]
    c2w = np.eye(4)
    c2w[:3, :3] = R.T
    c2w[:3, 3] = -R.T @ t
    return K, c2w


def compose_projection(K: np.ndarray, c2w: np.ndarray, scale_mat: Optional[np.ndarray] = None) -> np.ndarray:
    """Inverse of :func:`decompose_projection`: the ``[4, 4]`` world_mat ``K [R | t]`` of an OpenCV camera.

    With ``scale_mat`` given, ``c2w`` is in normalized coordinates and the result projects world coordinates
    (``world_mat = P_normalized S^-1``), as NeuS stores it.
    """
    w2c = np.linalg.inv(c2w)
    P = np.eye(4)
    P[:3, :4] = K @ w2c[:3, :4]
    if scale_mat is not None:
        P = P @ np.linalg.inv(scale_mat)
    return P


def sorted_images(folder: Path) -> List[Path]:
    """The PNG/JPEG files of ``folder`` in name order (the view order of the NeuS layout)."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
