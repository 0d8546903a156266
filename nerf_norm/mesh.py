"""Meshes from implicit fields: block-wise, coarse-to-fine evaluation and marching cubes in bounded memory.

The grid of ``resolution^3`` samples over an axis-aligned box is split into blocks of ``block^3`` cells. Each
block is first probed on a coarse lattice (every ``stride``-th sample); for a signed distance field, a block
whose coarse samples all have the same sign and lie farther from the level than the coarse cell diagonal
(times ``safety``; the surface could only pass within half a diagonal of a probe, so 1 leaves a factor 2 for
fields that are not exactly 1-Lipschitz) cannot contain the surface and is skipped. The other blocks are evaluated in full, in
chunks of ``chunk`` points, and meshed by scikit-image's marching cubes; the pieces are welded with trimesh.
Memory is one block of samples at a time, so 512^3 and 1024^3 grids fit in a few GB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from .errors import UserError

__all__ = ["MeshStats", "extract_mesh", "mesh_from_volume", "keep_largest_component", "transform_vertices", "read_mesh"]


def read_mesh(path, process: bool = False):
    """The triangle mesh in ``path`` (trimesh); a missing, unreadable or empty file is a :class:`UserError`."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise UserError(f"mesh file not found: {path}")
    try:
        mesh = trimesh.load(str(path), force="mesh", process=process)
    except Exception as exc:  # noqa: BLE001 - one message for any unreadable file
        raise UserError(f"cannot read mesh {path}: {exc}") from exc
    if len(mesh.vertices) == 0 or len(mesh.faces) == 0:
        raise UserError(f"mesh {path} is empty ({len(mesh.vertices)} vertices, {len(mesh.faces)} faces)")
    return mesh


@dataclass
class MeshStats:
    """What an extraction evaluated: blocks in total, blocks meshed, field samples computed."""

    blocks: int = 0
    blocks_meshed: int = 0
    samples: int = 0


def _evaluate(field: Callable[[Tensor], Tensor], points: Tensor, chunk: int) -> Tensor:
    out = [field(points[i : i + chunk]).reshape(-1).float().cpu() for i in range(0, len(points), chunk)]
    return torch.cat(out)


@torch.no_grad()
def extract_mesh(
    field: Callable[[Tensor], Tensor],
    bounds: Tuple[Tuple[float, float, float], Tuple[float, float, float]],
    resolution: int = 512,
    *,
    level: float = 0.0,
    block: int = 64,
    stride: int = 8,
    sdf: bool = True,
    safety: float = 1.0,
    chunk: int = 1 << 18,
    device: str = "cpu",
    progress: Optional[Callable[[int, int], None]] = None,
    stats: Optional[MeshStats] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Triangle mesh of ``{x : field(x) = level}`` inside ``bounds`` (min corner, max corner).

    Args:
        field: maps points ``[N, 3]`` (on ``device``) to values ``[N]`` or ``[N, 1]``.
        resolution: samples per axis of the full grid.
        sdf: the field is a signed distance (Lipschitz ~1), which enables skipping empty blocks; with
            ``False`` (e.g. occupancy) every block is evaluated in full.
        block, stride: block size in cells and coarse probing stride (samples) for the skip test.
        progress: called as ``progress(done_blocks, total_blocks)``.

    Returns:
        ``(vertices [V, 3] float64, faces [F, 3] int64)`` in the coordinates of ``bounds``; outward normals
        for a field that is negative (or, for occupancy, larger than ``level``) inside.
    """
    import trimesh

    if resolution < 2:
        raise UserError(f"mesh resolution must be at least 2, got {resolution}")
    lo = np.asarray(bounds[0], dtype=np.float64)
    hi = np.asarray(bounds[1], dtype=np.float64)
    if lo.shape != (3,) or hi.shape != (3,) or np.any(hi <= lo):
        raise UserError(f"mesh bounds must be a min and a max corner with min < max, got {bounds}")
    spacing = (hi - lo) / (resolution - 1)
    starts = list(range(0, resolution - 1, block))
    total = len(starts) ** 3
    stats = stats if stats is not None else MeshStats()
    pieces = []
    done = 0
    for i0 in starts:
        for j0 in starts:
            for k0 in starts:
                stats.blocks += 1
                n = [min(block, resolution - 1 - s) + 1 for s in (i0, j0, k0)]  # samples per axis in the block
                axes = [lo[a] + spacing[a] * (s + np.arange(n[a])) for a, s in enumerate((i0, j0, k0))]
                if sdf and stride > 1:
                    coarse = [
                        ax[::stride] if (len(ax) - 1) % stride == 0 else np.r_[ax[::stride], ax[-1]] for ax in axes
                    ]
                    pts = np.stack(np.meshgrid(*coarse, indexing="ij"), -1).reshape(-1, 3)
                    values = _evaluate(field, torch.from_numpy(pts).float().to(device), chunk).numpy() - level
                    stats.samples += len(pts)
                    diag = float(np.linalg.norm(spacing * stride))
                    if np.all(values > safety * diag) or np.all(values < -safety * diag):
                        done += 1
                        if progress:
                            progress(done, total)
                        continue
                pts = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
                volume = _evaluate(field, torch.from_numpy(pts).float().to(device), chunk).numpy().reshape(n)
                stats.samples += len(pts)
                if volume.min() < level < volume.max():
                    origin = lo + spacing * np.array([i0, j0, k0])
                    verts, faces = mesh_from_volume(volume, origin, spacing, level, inside_low=sdf)
                    pieces.append(trimesh.Trimesh(verts, faces, process=False))
                    stats.blocks_meshed += 1
                done += 1
                if progress:
                    progress(done, total)
    if not pieces:
        raise UserError(
            f"the field never crosses the level {level:g} inside {lo.tolist()} - {hi.tolist()}: "
            "no surface to extract (wrong bounds, or an untrained field?)"
        )
    mesh = trimesh.util.concatenate(pieces)
    mesh.merge_vertices(digits_vertex=int(max(0, -math.floor(math.log10(float(spacing.min()))) + 4)))
    mesh.update_faces(mesh.nondegenerate_faces())  # welding collapses marching cubes' zero-area triangles
    mesh.remove_unreferenced_vertices()
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)


def mesh_from_volume(
    volume: np.ndarray, origin, spacing, level: float, *, inside_low: bool
) -> Tuple[np.ndarray, np.ndarray]:
    """Marching cubes (scikit-image) of the samples ``volume`` ``[X, Y, Z]`` taken at ``origin + spacing * index``.

    ``inside_low``: the inside is below ``level`` (SDF) rather than above it (occupancy); either way the faces
    are wound for outward normals. Returns ``(vertices [V, 3], faces [F, 3])``.
    """
    from skimage.measure import marching_cubes

    # face winding, measured: "descent" gives outward normals for a field that increases outward (SDF),
    # "ascent" for one that decreases outward (occupancy)
    verts, faces, _, _ = marching_cubes(
        np.asarray(volume),
        level=level,
        spacing=tuple(np.broadcast_to(spacing, 3)),
        gradient_direction="descent" if inside_low else "ascent",
    )
    return verts + np.asarray(origin, dtype=np.float64), faces.astype(np.int64)


def keep_largest_component(vertices: np.ndarray, faces: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The connected component with the most faces."""
    import trimesh

    parts = trimesh.Trimesh(vertices, faces, process=False).split(only_watertight=False)
    if len(parts) <= 1:
        return vertices, faces
    best = max(parts, key=lambda m: len(m.faces))
    return np.asarray(best.vertices, dtype=np.float64), np.asarray(best.faces, dtype=np.int64)


def transform_vertices(vertices: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``[V, 3]`` points mapped by a ``[4, 4]`` affine matrix (e.g. NeuS' scale matrix back to world units)."""
    return vertices @ matrix[:3, :3].T + matrix[:3, 3]
