"""Run time of the DTU chamfer protocol on a ~1M-point mesh against ~1M ground-truth points.

The mesh is a finely subdivided icosphere (DTU-like millimetre scale, all inside the observation mask) whose
radius makes the protocol's 0.2 mm sampling and thinning leave about ``--points`` points; the ground truth is
the same sphere 0.5 mm larger, sampled and thinned the same way and written in the official layout. The whole `evaluate_mesh` call is timed
(sampling, downsampling, masks, KD-trees), and the loading of the files separately.

    .venv/bin/python benchmarks/dtu_eval_speed.py     # writes benchmarks/results/dtu_eval_speed.{json,md}
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
import tyro
from provenance import machine_line, provenance
from scipy.io import savemat

from nerf_norm.dtu_eval import downsample_greedy, evaluate_mesh, load_ground_truth, load_mesh, sample_mesh

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Args:
    points: int = 1_000_000
    """target number of mesh points and of ground-truth points after the 0.2 mm thinning"""
    subdivisions: int = 6
    """icosphere subdivisions of the evaluated mesh (6: 40,962 vertices and 81,920 faces of ~1 mm, which the
    protocol's lattice sampling turns into about --points points)"""
    out: Path = RESULTS / "dtu_eval_speed"


def main(args: Args) -> None:
    centre = np.array([0.0, 0.0, 600.0])
    # radius such that 0.2 mm sampling and thinning leave about args.points points (measured: one per 0.0557 mm^2)
    radius = float(np.sqrt(args.points * 0.0557 / (4 * np.pi)))
    mesh = trimesh.creation.icosphere(subdivisions=args.subdivisions, radius=radius)
    mesh.apply_translation(centre)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        gt_mesh = trimesh.creation.icosphere(subdivisions=6, radius=radius + 0.5)
        gt_mesh.apply_translation(centre)
        gt_pts = downsample_greedy(sample_mesh(gt_mesh.vertices, gt_mesh.faces, 0.2), 0.2, seed=1)
        (root / "Points" / "stl").mkdir(parents=True)
        (root / "ObsMask").mkdir()
        trimesh.PointCloud(gt_pts).export(str(root / "Points" / "stl" / "stl001_total.ply"))
        lo, hi = centre - radius - 20, centre + radius + 20
        shape = tuple(np.ceil((hi - lo) / 4.0).astype(int) + 1)
        savemat(
            str(root / "ObsMask" / "ObsMask1_10.mat"),
            {"ObsMask": np.ones(shape, dtype=np.uint8), "BB": np.stack([lo, hi]), "Res": np.array([[4.0]])},
        )
        savemat(str(root / "ObsMask" / "Plane1.mat"), {"P": np.array([[0.0], [0.0], [0.0], [1.0]])})
        mesh_path = root / "mesh.ply"
        mesh.export(str(mesh_path))
        t0 = time.perf_counter()
        vertices, faces = load_mesh(mesh_path)
        gt = load_ground_truth(root, 1)
        load_s = time.perf_counter() - t0
        result = evaluate_mesh(vertices, faces, gt)
    meta = provenance({})
    record = {
        "provenance": meta,
        "machine": machine_line(meta),
        "date": meta["date"],
        "mesh_vertices": int(len(mesh.vertices)),
        "mesh_faces": int(len(mesh.faces)),
        "gt_points": int(len(gt_pts)),
        "load_seconds": load_s,
        "evaluate_seconds": result.seconds,
        "result": result.as_dict(),
        "expected_overall_mm": 0.5,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    md = (
        f"# DTU chamfer tool speed ({record['machine']}, {record['date']})\n\n"
        f"Command: `{record['provenance']['command']}`.\n\n"
        f"| mesh vertices | mesh faces | GT points | mesh points after 0.2 mm thinning | load (s) | "
        f"evaluate (s) | accuracy | completeness | overall (expected 0.5) |\n|---|---|---|---|---|---|---|---|---|\n"
        f"| {record['mesh_vertices']:,} | {record['mesh_faces']:,} | {record['gt_points']:,} | "
        f"{result.mesh_points:,} | {load_s:.1f} | {result.seconds:.1f} | {result.accuracy:.3f} | "
        f"{result.completeness:.3f} | {result.overall:.3f} |\n"
    )
    args.out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main(tyro.cli(Args))
