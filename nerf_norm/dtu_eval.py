"""The DTU chamfer protocol as the NeuS literature evaluates meshes (accuracy, completeness, overall in mm).

Steps, for a mesh in DTU world coordinates (millimetres):

1. mesh -> points: every triangle sampled on a regular barycentric lattice of spacing ``density`` (0.2 mm),
   plus the vertices;
2. random-order greedy downsampling: visiting the points in a random order, a point still present removes
   every other point within ``density`` of it;
3. points inside the scan's bounding box ``BB`` extended by ``-patch`` / ``+2 patch`` (60 / 120 mm) are kept
   for completeness; of those, the ones whose voxel of the observation mask (``ObsMask``, voxel size ``Res``,
   origin ``BB[0]``) is set are kept for accuracy;
4. accuracy = mean distance from the accuracy points to the ground-truth points
   (``Points/stl/stl{scan:03}_total.ply``) over distances below ``max_dist`` (20 mm); completeness = mean
   distance from the ground-truth points above the plane ``Plane{scan}.mat`` (``P . [x, 1] > 0``) to the
   completeness points, over distances below ``max_dist``; overall = their mean.

The official files are read in their official layout under ``--dataset-dir``:
``Points/stl/stl{scan:03}_total.ply``, ``ObsMask/ObsMask{scan}_10.mat`` (``ObsMask``, ``BB``, ``Res``) and
``ObsMask/Plane{scan}.mat`` (``P``). Nearest neighbours use scipy's KD-tree on all cores.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
from scipy.spatial import cKDTree

from .errors import UserError, require_finite_positive, require_memory
from .neus_layout import count_world_mats, load_world_mats, sorted_images
from .outputs import atomic_write, check_output_file, write_text

__all__ = [
    "DTUGroundTruth",
    "ChamferResult",
    "load_ground_truth",
    "load_mesh",
    "sample_mesh",
    "downsample_greedy",
    "evaluate_mesh",
    "cull_by_masks",
    "write_error_ply",
]


@dataclass
class DTUGroundTruth:
    """One scan's evaluation data: ``points`` ``[N, 3]`` (mm), ``obs_mask`` ``[X, Y, Z]`` bool, ``bb``
    ``[2, 3]`` (min and max corner), ``res`` (voxel size of the mask, mm), ``plane`` ``[4]``."""

    points: np.ndarray
    obs_mask: np.ndarray
    bb: np.ndarray
    res: float
    plane: np.ndarray
    scan: int = -1


@dataclass
class ChamferResult:
    accuracy: float
    completeness: float
    overall: float
    mesh_points: int
    """mesh points after sampling and downsampling"""
    accuracy_points: int
    """of those, inside the bounding box and the observation mask"""
    completeness_points: int
    """of those, inside the bounding box"""
    gt_points_above_plane: int
    seconds: float
    settings: Dict[str, float] = field(default_factory=dict)
    # per-point distances for the error visualisation (not serialised)
    _acc_points: Optional[np.ndarray] = field(default=None, repr=False)
    _acc_dist: Optional[np.ndarray] = field(default=None, repr=False)
    _comp_points: Optional[np.ndarray] = field(default=None, repr=False)
    _comp_dist: Optional[np.ndarray] = field(default=None, repr=False)

    def as_dict(self) -> Dict[str, object]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


def _loadmat(path: Path, keys: Tuple[str, ...]) -> Dict[str, np.ndarray]:
    from scipy.io import loadmat

    if not path.is_file():
        raise UserError(f"DTU ground truth file not found: {path}")
    try:
        data = loadmat(str(path))
    except Exception as exc:  # noqa: BLE001 - any unreadable .mat gets one clear message
        raise UserError(f"cannot read {path} as a MATLAB .mat file: {exc}") from exc
    missing = [k for k in keys if k not in data]
    if missing:
        present = sorted(k for k in data if not k.startswith("__"))
        raise UserError(f"{path} has no {', '.join(repr(k) for k in missing)} (keys present: {present})")
    return {k: np.asarray(data[k]) for k in keys}


def load_ground_truth(dataset_dir: Path, scan: int) -> DTUGroundTruth:
    """Reads scan ``scan``'s STL points, observation mask and plane from the official layout."""
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise UserError(f"--dataset-dir {dataset_dir} is not a directory")
    obs = _loadmat(dataset_dir / "ObsMask" / f"ObsMask{scan}_10.mat", ("ObsMask", "BB", "Res"))
    plane = _loadmat(dataset_dir / "ObsMask" / f"Plane{scan}.mat", ("P",))["P"].astype(np.float64).reshape(-1)
    bb = obs["BB"].astype(np.float64)
    if bb.shape != (2, 3):
        raise UserError(f"ObsMask{scan}_10.mat: 'BB' must be 2x3 (min and max corner), got shape {bb.shape}")
    if obs["ObsMask"].ndim != 3:
        raise UserError(f"ObsMask{scan}_10.mat: 'ObsMask' must be a 3D voxel grid, got shape {obs['ObsMask'].shape}")
    if plane.size != 4:
        raise UserError(f"Plane{scan}.mat: 'P' must have 4 coefficients, got {plane.size}")
    stl_path = dataset_dir / "Points" / "stl" / f"stl{scan:03}_total.ply"
    if not stl_path.is_file():
        raise UserError(f"DTU ground truth file not found: {stl_path}")
    import trimesh

    try:
        cloud = trimesh.load(str(stl_path), process=False)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"cannot read ground-truth points {stl_path}: {exc}") from exc
    points = np.asarray(getattr(cloud, "vertices", np.empty((0, 3))), dtype=np.float64)
    if len(points) == 0:
        raise UserError(f"ground-truth points {stl_path} contain no vertices")
    return DTUGroundTruth(
        points, obs["ObsMask"].astype(bool), bb, float(np.asarray(obs["Res"]).reshape(-1)[0]), plane, scan
    )


def load_mesh(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """``(vertices [V, 3] float64, faces [F, 3] int64)`` of a mesh file; an empty mesh is an error and an open
    (non-watertight) one a warning, since extracted scene meshes are usually open."""
    from .mesh import read_mesh

    mesh = read_mesh(path)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    bad = ~np.isfinite(vertices).all(axis=1)
    if bad.any():
        raise UserError(
            f"mesh {path} has {int(bad.sum())} vertices with NaN or infinite coordinates (the first is "
            f"vertex {int(np.argmax(bad))}); repair or re-extract the mesh"
        )
    if not mesh.is_watertight:
        warnings.warn(
            f"mesh {path} is not watertight (open boundary or non-manifold edges); it is evaluated as is", stacklevel=2
        )
    return vertices, faces


def sample_mesh(vertices: np.ndarray, faces: np.ndarray, density: float, chunk: int = 200_000) -> np.ndarray:
    """Vertices plus a regular lattice on every triangle, ``[N, 3]``.

    For a triangle ``(v0, v1, v2)`` with edges ``e1 = v1 - v0``, ``e2 = v2 - v0``, the step is
    ``s = density * sqrt(|e1| |e2| / |e1 x e2|)``, ``n_k = floor(|e_k| / s)``, and the samples are
    ``v0 + a e1 + b e2`` at ``a = (i + 1/2) / n1``, ``b = (j + 1/2) / n2`` (``i <= n1``, ``j <= n2``) with
    ``a + b < 1``. Degenerate (zero-area) triangles contribute no samples.
    """
    if density <= 0:
        raise UserError(f"sampling density must be positive, got {density}")
    tri = vertices[faces]  # [F, 3, 3]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    l1, l2 = np.linalg.norm(e1, axis=1), np.linalg.norm(e2, axis=1)
    area2 = np.linalg.norm(np.cross(e1, e2), axis=1)
    ok = area2 > 0
    tri, e1, e2, l1, l2, area2 = tri[ok], e1[ok], e2[ok], l1[ok], l2[ok], area2[ok]
    step = density * np.sqrt(l1 * l2 / area2)
    n1, n2 = np.floor(l1 / step).astype(np.int64), np.floor(l2 / step).astype(np.int64)
    parts = [vertices]
    for lo in range(0, len(tri), chunk):
        sl = slice(lo, lo + chunk)
        a_n, b_n = n1[sl], n2[sl]
        counts = (a_n + 1) * (b_n + 1)
        owner = np.repeat(np.arange(len(counts)), counts)
        local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        i, j = local // (b_n[owner] + 1), local % (b_n[owner] + 1)
        a = (i + 0.5) / np.maximum(a_n[owner], 1e-7)
        b = (j + 0.5) / np.maximum(b_n[owner], 1e-7)
        keep = a + b < 1
        owner, a, b = owner[keep], a[keep], b[keep]
        parts.append(tri[sl][owner, 0] + a[:, None] * e1[sl][owner] + b[:, None] * e2[sl][owner])
    return np.concatenate(parts, axis=0)


def downsample_greedy(points: np.ndarray, radius: float, seed: int = 0) -> np.ndarray:
    """Random-order greedy thinning: in a random order, each point still present removes all others within
    ``radius``. Returns the kept points (in the random order)."""
    rng = np.random.default_rng(seed)
    pts = points[rng.permutation(len(points))]
    pairs = cKDTree(pts).query_pairs(radius, output_type="ndarray")
    if len(pairs) == 0:
        return pts
    from scipy.sparse import coo_matrix

    n = len(pts)
    ones = np.ones(2 * len(pairs), dtype=bool)
    adj = coo_matrix((ones, (np.r_[pairs[:, 0], pairs[:, 1]], np.r_[pairs[:, 1], pairs[:, 0]])), shape=(n, n)).tocsr()
    indptr, indices = adj.indptr, adj.indices
    alive = np.ones(n, dtype=bool)
    for i in np.flatnonzero(np.diff(indptr)):  # points without neighbours are always kept
        if alive[i]:
            alive[indices[indptr[i] : indptr[i + 1]]] = False
    return pts[alive]


def _nearest(reference: np.ndarray, queries: np.ndarray, max_dist: float) -> np.ndarray:
    """Distance from each query to its nearest reference point (inf beyond ``max_dist``)."""
    if len(reference) == 0 or len(queries) == 0:
        return np.full(len(queries), np.inf)
    dist, _ = cKDTree(reference).query(queries, k=1, distance_upper_bound=max_dist, workers=-1)
    return dist


def symmetric_chamfer(vertices: np.ndarray, faces: np.ndarray, reference: np.ndarray, density: float = 1.0) -> float:
    """Mean of the two mean nearest-neighbour distances between a mesh (sampled at ``density``, thinned to one
    point per ``density``) and the points ``reference`` ``[M, 3]``, with no distance cut and no observation mask:
    unlike the DTU protocol, it does not flatter a mesh far from the object."""
    points = downsample_greedy(sample_mesh(vertices, faces, density), density)
    there = cKDTree(reference).query(points, workers=-1)[0].mean()
    back = cKDTree(points).query(reference, workers=-1)[0].mean()
    return float((there + back) / 2)


def evaluate_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    gt: DTUGroundTruth,
    *,
    density: float = 0.2,
    patch: float = 60.0,
    max_dist: float = 20.0,
    seed: int = 0,
) -> ChamferResult:
    """Accuracy, completeness and overall chamfer (mm) of a mesh in DTU world coordinates (see module doc)."""
    start = time.perf_counter()
    down = downsample_greedy(sample_mesh(vertices, faces, density), density, seed)
    lo, hi = gt.bb[0], gt.bb[1]
    in_box = np.all((down >= lo - patch) & (down < hi + 2 * patch), axis=1)
    comp_pts = down[in_box]
    if len(comp_pts) == 0:
        raise UserError(
            f"no mesh point lies inside scan {gt.scan}'s bounding box {lo.tolist()} - {hi.tolist()} "
            f"(extended by -{patch:g}/+{2 * patch:g} mm): is the mesh in DTU world coordinates (mm)?"
        )
    voxel = np.around((comp_pts - lo) / gt.res).astype(np.int64)
    in_grid = np.all((voxel >= 0) & (voxel < np.asarray(gt.obs_mask.shape)), axis=1)
    observed = np.zeros(len(comp_pts), dtype=bool)
    v = voxel[in_grid]
    observed[np.flatnonzero(in_grid)] = gt.obs_mask[v[:, 0], v[:, 1], v[:, 2]]
    acc_pts = comp_pts[observed]

    d_acc = _nearest(gt.points, acc_pts, max_dist)
    above = gt.points @ gt.plane[:3] + gt.plane[3] > 0
    gt_above = gt.points[above]
    d_comp = _nearest(comp_pts, gt_above, max_dist)
    acc = float(d_acc[d_acc < max_dist].mean()) if np.any(d_acc < max_dist) else float("nan")
    comp = float(d_comp[d_comp < max_dist].mean()) if np.any(d_comp < max_dist) else float("nan")
    return ChamferResult(
        accuracy=acc,
        completeness=comp,
        overall=(acc + comp) / 2,
        mesh_points=len(down),
        accuracy_points=len(acc_pts),
        completeness_points=len(comp_pts),
        gt_points_above_plane=len(gt_above),
        seconds=time.perf_counter() - start,
        settings={"density": density, "patch": patch, "max_dist": max_dist, "seed": seed},
        _acc_points=acc_pts,
        _acc_dist=d_acc,
        _comp_points=gt_above,
        _comp_dist=d_comp,
    )


def cull_by_masks(
    vertices: np.ndarray, faces: np.ndarray, cameras: Path, masks: Path, dilation: int = 12
) -> Tuple[np.ndarray, np.ndarray]:
    """Removes the mesh parts outside the objects' view masks (NeuS' clean-mesh step for unmasked training).

    ``cameras``: a ``cameras_sphere.npz`` whose ``world_mat_i`` project DTU world points to pixels;
    ``masks``: the folder of per-view mask PNGs (sorted order = view order). A vertex is kept when, in every
    view it projects into, it lands on the mask dilated by ``dilation`` pixels; a face is kept when all its
    vertices are. Returns the culled ``(vertices, faces)`` with unused vertices dropped.
    """
    import imageio.v3 as iio
    from scipy.ndimage import binary_dilation

    if not Path(masks).is_dir():
        raise UserError(f"mask folder not found: {masks}")
    mask_files = sorted_images(Path(masks))
    if not mask_files:
        raise UserError(f"mask folder {masks} holds no PNG/JPEG masks")
    views = count_world_mats(Path(cameras))
    if views != len(mask_files):
        raise UserError(
            f"{cameras} has {views} cameras (world_mat_i) but {masks} holds {len(mask_files)} masks; "
            "culling needs one mask per camera, in camera order"
        )
    world_mats = load_world_mats(Path(cameras), len(mask_files))
    keep = np.ones(len(vertices), dtype=bool)
    hom = np.c_[vertices, np.ones(len(vertices))]
    for mat, mask_file in zip(world_mats, mask_files):
        mask = np.asarray(iio.imread(mask_file))
        mask = (mask.max(axis=-1) if mask.ndim == 3 else mask) > 127
        if dilation > 0:
            mask = binary_dilation(mask, iterations=dilation)
        h, w = mask.shape
        proj = hom @ mat[:3, :4].T
        front = proj[:, 2] > 0
        uv = np.full((len(vertices), 2), -1, dtype=np.int64)
        uv[front] = np.floor(proj[front, :2] / proj[front, 2:3]).astype(np.int64)
        inside = front & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
        on_mask = np.zeros(len(vertices), dtype=bool)
        on_mask[inside] = mask[uv[inside, 1], uv[inside, 0]]
        keep &= on_mask | ~inside
    face_keep = keep[faces].all(axis=1)
    used = np.unique(faces[face_keep])
    remap = np.full(len(vertices), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return vertices[used], remap[faces[face_keep]]


def write_error_ply(points: np.ndarray, distances: np.ndarray, path: Path, vmax: float = 10.0) -> Path:
    """Point cloud coloured by distance (``viridis``, clipped at ``vmax`` mm; beyond ``max_dist`` red)."""
    import matplotlib
    import trimesh

    finite = np.isfinite(distances)
    colours = np.zeros((len(points), 4), dtype=np.uint8)
    colours[finite] = (matplotlib.colormaps["viridis"](np.clip(distances[finite] / vmax, 0, 1)) * 255).astype(np.uint8)
    colours[~finite] = (255, 0, 0, 255)
    with atomic_write(path) as tmp:
        trimesh.PointCloud(points, colors=colours).export(str(tmp))
    return path


def run_evaluation(
    mesh: Path,
    scan: int,
    dataset_dir: Path,
    out: Path,
    *,
    overwrite: bool = False,
    density: float = 0.2,
    max_dist: float = 20.0,
    seed: int = 0,
    visualize: bool = False,
    cull_cameras: Optional[Path] = None,
    cull_masks: Optional[Path] = None,
    dilation: int = 12,
) -> ChamferResult:
    """Loads, optionally culls, evaluates, writes ``out`` (JSON) and optional error PLYs beside it."""
    out = Path(out)
    vis = [out.with_name(out.stem + "_accuracy.ply"), out.with_name(out.stem + "_completeness.ply")]
    for target in [out] + (vis if visualize else []):
        check_output_file(target, overwrite)
    if (cull_cameras is None) != (cull_masks is None):
        raise UserError("mask culling needs both --cull-cameras (cameras_sphere.npz) and --cull-masks (mask folder)")
    require_finite_positive("--density", density)
    require_finite_positive("--max-dist", max_dist)
    if dilation < 0:
        raise UserError(f"--dilation must be a number of pixels >= 0, got {dilation}")
    vertices, faces = load_mesh(mesh)
    # the lattice holds about area / density^2 points; sampling (float64 [N, 3] plus barycentric temporaries),
    # thinning and the KD-tree hold several copies of them: estimated at 32 float64 values (256 bytes) a point
    tri = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum()
    require_memory(f"sampling {mesh} ({area:.0f} mm^2) at --density {density}", 256.0 * area / density**2)
    if cull_cameras is not None:
        vertices, faces = cull_by_masks(vertices, faces, cull_cameras, cull_masks, dilation)
        if len(faces) == 0:
            raise UserError(f"mask culling removed the whole mesh {mesh}: do its coordinates match {cull_cameras}?")
    gt = load_ground_truth(dataset_dir, scan)
    result = evaluate_mesh(vertices, faces, gt, density=density, max_dist=max_dist, seed=seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"mesh": str(mesh), "scan": scan, **result.as_dict()}
    write_text(out, json.dumps(record, indent=2))
    if visualize:
        write_error_ply(result._acc_points, result._acc_dist, vis[0])
        write_error_ply(result._comp_points, result._comp_dist, vis[1])
    return result
