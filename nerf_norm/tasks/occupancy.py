"""3D shape representation as an occupancy field (paper section 5.2, Table 3, Fig. 6).

A mesh is scaled into the cube ``[-1, 1]^3`` (centred, its longest side spanning ``2 * fill``) and voxelized on
a ``R^3`` grid of sample points (``R`` = ``resolution``; paper 512): 1 inside, 0 outside. Inside means a
generalized winding number above 1/2 (libigl's fast winding number). For a closed mesh that is the exact
inside; a mesh with holes or non-manifold edges (the scanned Stanford bunny is open at its base) gets the
winding number's smooth filling of its holes, with a warning that names the number of boundary edges. A mesh
that encloses nothing at the grid's resolution is refused.

The network maps a point to an occupancy logit; training draws ``batch`` random grid points per step (paper
100,000) with binary cross-entropy. Evaluation: IoU of ``sigmoid(output) > 0.5`` against the voxelization on
the whole grid, and the 0.5 level set extracted by marching cubes on the same grid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import UserError, require_memory
from .base import Task
from .fit import FitCommand, run_fit
from .grids import coordinate_grid

log = logging.getLogger(__name__)

__all__ = ["OccupancyTask", "normalize_to_cube", "voxelize", "iou"]


def normalize_to_cube(vertices: np.ndarray, fill: float = 0.9) -> np.ndarray:
    """Vertices moved so the bounding box is centred at 0 and scaled so its longest side spans ``2 * fill``."""
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    extent = float((hi - lo).max())
    if not extent > 0:
        raise UserError("the mesh has zero extent (all vertices coincide)")
    return (vertices - 0.5 * (lo + hi)) * (2.0 * fill / extent)


def voxelize(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, chunk: int = 1 << 22) -> np.ndarray:
    """Occupancy (bool ``[N]``) of ``points`` ``[N, 3]``: generalized winding number > 1/2 (libigl)."""
    import igl

    v = np.ascontiguousarray(vertices, dtype=np.float64)
    f = np.ascontiguousarray(faces, dtype=np.int64)
    out = np.empty(len(points), dtype=bool)
    for i in range(0, len(points), chunk):
        q = np.ascontiguousarray(points[i : i + chunk], dtype=np.float64)
        out[i : i + chunk] = igl.fast_winding_number(v, f, q) > 0.5
    return out


def iou(pred: Tensor, target: Tensor) -> float:
    """Intersection over union of two boolean arrays (1.0 when both are empty)."""
    union = (pred | target).sum().item()
    return 1.0 if union == 0 else (pred & target).sum().item() / union


def check_occupancy_options(resolution: int, batch: int, fill: float = 0.9) -> None:
    """The occupancy task's option values (checked by the command before anything runs, and by the task)."""
    if resolution < 8:
        raise UserError(f"--resolution must be at least 8 samples per axis, got {resolution}")
    if batch < 2:
        raise UserError(f"--batch must be at least 2 points (batch statistics need two samples), got {batch}")
    if not 0 < fill <= 1:
        raise UserError(f"--fill must be in (0, 1], got {fill}")


class OccupancyTask(Task):
    """Fit the occupancy of a mesh: ``[R^3, 3]`` grid points -> ``[R^3, 1]`` logits, ``batch`` points per step."""

    name = "occupancy"
    progress_metric = "iou"
    outputs = ("mesh.ply", "mesh.png", "target.png")
    in_dim = 3
    out_dim = 1
    eval_chunk = 1 << 17
    #: camera of the renderings: from the front right and above, y up (as the Stanford scans are stored)
    VIEW = {"view_dir": (0.4, 0.3, 1.0), "up": (0.0, 1.0, 0.0)}

    def __init__(
        self, mesh: Optional[Path] = None, resolution: int = 128, batch: int = 100_000, fill: float = 0.9
    ) -> None:
        from ..mesh import read_mesh
        from ..scenes.dtu import default_mesh_path

        check_occupancy_options(resolution, batch, fill)
        # grid coordinates (3 float32), winding numbers (float64), occupancy and the evaluation's logits
        require_memory(f"a {resolution}^3 occupancy grid", resolution**3 * 32.0)
        path = Path(mesh) if mesh is not None else default_mesh_path()
        self.source = str(path)
        tri = read_mesh(path, process=True)  # merges duplicate vertices so open edges are counted correctly
        self.vertices = normalize_to_cube(np.asarray(tri.vertices, dtype=np.float64), fill)
        self.faces = np.asarray(tri.faces, dtype=np.int64)
        self.closed = bool(tri.is_watertight)
        if not self.closed:
            import trimesh

            open_edges = len(trimesh.grouping.group_rows(tri.edges_sorted, require_count=1))
            log.warning(
                "mesh %s is not closed (%d boundary edges): its holes are filled by the generalized winding number",
                path,
                open_edges,
            )
        self.resolution, self.batch, self.fill = resolution, batch, fill
        self._coords = coordinate_grid((resolution,) * 3)
        inside = voxelize(self.vertices, self.faces, self._coords.numpy())
        self.target = torch.from_numpy(inside)
        filled = int(inside.sum())
        if filled == 0 or filled == inside.size:
            raise UserError(
                f"mesh {path} encloses no volume at resolution {resolution} ({filled} of {inside.size} "
                "grid points inside): is it a closed surface?"
            )

    @property
    def occupied_fraction(self) -> float:
        return float(self.target.float().mean())

    def coords(self) -> Tensor:
        return self._coords

    def sample(self, generator: torch.Generator) -> Tensor:
        return torch.randint(0, len(self._coords), (min(self.batch, len(self._coords)),), generator=generator)

    def _target(self, index: Optional[Tensor]) -> Tensor:
        return self.target if index is None else self.target[index]

    def loss(self, pred: Tensor, index: Optional[Tensor] = None) -> Tensor:
        return F.binary_cross_entropy_with_logits(pred.reshape(-1).float(), self._target(index).float())

    def progress(self, pred: Tensor, index: Optional[Tensor] = None) -> float:
        return iou(pred.reshape(-1) > 0, self._target(index))

    def evaluate(self, pred: Tensor) -> Dict[str, float]:
        return {
            "iou": iou(pred.reshape(-1) > 0, self.target),
            "bce": float(self.loss(pred)),
            "occupied_fraction": self.occupied_fraction,
        }

    def describe(self) -> Dict[str, object]:
        return {
            "task": self.name,
            "mesh": self.source,
            "resolution": self.resolution,
            "batch": self.batch,
            "fill": self.fill,
            "closed": self.closed,
        }

    def surface(self, pred: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The 0.5 level set of ``sigmoid(pred)`` on the grid (marching cubes), in the ``[-1, 1]^3`` frame."""
        from ..mesh import mesh_from_volume

        r = self.resolution
        prob = torch.sigmoid(pred.float()).reshape(r, r, r).numpy()
        if not prob.min() < 0.5 < prob.max():
            raise UserError("the fitted occupancy never crosses 0.5 on the grid: no surface to extract")
        return mesh_from_volume(prob, (-1.0, -1.0, -1.0), 2.0 / (r - 1), 0.5, inside_low=False)

    def save_outputs(self, pred: Tensor, out_dir: Path) -> Dict[str, Path]:
        import trimesh

        from ..mesh_render import render_mesh_png

        out_dir = Path(out_dir)
        outputs: Dict[str, Path] = {}
        try:
            vertices, faces = self.surface(pred)
        except UserError as exc:
            log.warning("%s; no mesh written", exc)
            return outputs
        outputs["mesh"] = out_dir / "mesh.ply"
        trimesh.Trimesh(vertices, faces, process=False).export(outputs["mesh"])
        outputs["render"] = render_mesh_png(vertices, faces, out_dir / "mesh.png", **self.VIEW)
        outputs["target_render"] = render_mesh_png(self.vertices, self.faces, out_dir / "target.png", **self.VIEW)
        return outputs


# the `nerf-norm occupancy` command


@dataclass
class OccupancyCommand(FitCommand):
    """Fit a mesh's occupancy (paper section 5.2): BCE on random grid points, Adam 5e-3 -> 5e-4 (cosine).

    The mesh is scaled into [-1, 1]^3 and voxelized on a RESOLUTION^3 grid (inside = 1: generalized winding
    number > 1/2, which also fills the holes of a mesh that is not closed, with a warning). Writes OUT/mesh.ply (marching cubes of the fitted
    occupancy at 0.5 on the grid), OUT/mesh.png and OUT/target.png (renderings), OUT/curve.png,
    OUT/metrics.json (IoU on the grid) and OUT/checkpoint.pt (resumable).
    """

    mesh: Optional[Path] = None
    """mesh file (OBJ, PLY, STL, ...); default: pymeshlab's sample bunny; real: ../shared/data/meshes/*"""
    arch: str = "2x256"
    """hidden layers x hidden features (paper: 2x256)"""
    resolution: int = 128
    """grid samples per axis for voxelization, IoU and marching cubes (paper: 512; 128 is the CPU default)"""
    batch: int = 100_000
    """random grid points per training step (paper: 100,000)"""
    out: Path = Path("outputs/occupancy")
    """output directory"""
    iters: int = 200
    """training steps (paper: 200 epochs of a 512^3 grid; 200 steps is the CPU default)"""
    lr: Optional[float] = 5e-3
    """initial Adam learning rate (paper: 5e-3 for every method)"""

    def validate(self) -> None:
        super().validate()
        check_occupancy_options(self.resolution, self.batch)


def run_occupancy(cmd: OccupancyCommand):
    return run_fit(cmd, lambda: OccupancyTask(cmd.mesh, cmd.resolution, cmd.batch))
