"""neus-cn on the real DTU scan 65 at a reduced resolution, for a look at the extracted mesh.

Trains ``neus-cn-lite`` (masks on, images composited on black) on ``../shared/data/dtu/dtu_scan65`` downscaled by
``--downscale`` (8: 200x150), extracts the mesh at ``--resolution`` in world millimetres (scale matrix undone),
keeps the largest component and renders it to a PNG. The official DTU ground truth is not available here, so no
chamfer is computed; the numbers reported are training time and the mesh's size and extent.

    .venv/bin/python benchmarks/neus_dtu65.py   # writes benchmarks/results/neus_dtu65.{json,md,png}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh
import tyro
from provenance import machine_line, provenance

from nerf_norm.mesh import extract_mesh, keep_largest_component, transform_vertices
from nerf_norm.mesh_render import render_mesh_png
from nerf_norm.nerfstudio.experiment import RunSettings, configure, method_config, train

HERE = Path(__file__).resolve().parent


@dataclass
class Args:
    data: Path = HERE.parents[1] / "shared" / "data" / "dtu" / "dtu_scan65"
    downscale: int = 8
    steps: int = 1500
    resolution: int = 128
    seed: int = 0
    out: Path = HERE / "results" / "neus_dtu65"
    scratch: Path = HERE / "scratch" / "neus_dtu65"


def main(args: Args) -> None:
    torch.set_num_threads(2)
    config = configure(
        method_config("neus-cn-lite"), RunSettings(args.data, args.scratch, steps=args.steps, seed=args.seed)
    )
    config.pipeline.datamanager.dataparser.downscale_factor = args.downscale
    config.pipeline.datamanager.dataparser.cache_dir = args.scratch / "cache"
    trainer, seconds = train(config)
    model = trainer.pipeline.model
    model.eval()
    outputs = trainer.pipeline.datamanager.train_dataparser_outputs
    scale = np.asarray(outputs.metadata["scale_mat"], dtype=np.float64)
    with torch.no_grad():
        v, f = extract_mesh(
            lambda p: model.field.forward_geonetwork(p)[:, 0], ((-1.0,) * 3, (1.0,) * 3), args.resolution, block=32
        )
    v, f = keep_largest_component(v, f)
    v = transform_vertices(v, scale)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    trimesh.Trimesh(v, f, process=False).export(str(args.scratch / "mesh_world.ply"))
    png = render_mesh_png(v, f, args.out.with_suffix(".png"), size=512, view_dir=(0.0, -1.0, -1.0), up=(0.0, -1.0, 0.0))
    width, height = int(outputs.cameras.width[0]), int(outputs.cameras.height[0])
    meta = provenance({k: str(v) for k, v in vars(args).items()})
    record = {
        "provenance": meta,
        "machine": machine_line(meta),
        "date": meta["date"],
        "data": str(args.data),
        "image_size": [width, height],
        "train_views": len(outputs.image_filenames),
        "steps": args.steps,
        "train_seconds": seconds,
        "s_per_iter": seconds / args.steps,
        "mesh_resolution": args.resolution,
        "mesh_vertices": int(len(v)),
        "mesh_faces": int(len(f)),
        "mesh_extent_mm": (v.max(axis=0) - v.min(axis=0)).round(1).tolist(),
        "png": png.name,
    }
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    md = (
        f"# neus-cn on DTU scan 65, reduced resolution ({record['machine']}, {record['date']})\n\n"
        f"Command: `{record['provenance']['command']}`. "
        f"{width}x{height} images, {record['train_views']} training views (every 8th held out), neus-cn-lite "
        f"settings with masks; {args.steps} steps in {seconds:.0f} s ({seconds / args.steps:.2f} s/iter). Mesh at "
        f"{args.resolution}^3, largest component, world millimetres: {len(v):,} vertices, extent "
        f"{record['mesh_extent_mm']} mm. No chamfer: the official DTU ground truth is not available here.\n\n"
        f"![mesh]({png.name})\n"
    )
    args.out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main(tyro.cli(Args))
