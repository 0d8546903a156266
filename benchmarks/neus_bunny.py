"""NeuS with and without normalization on the generated bunny scene (``nerf-norm make-scene dtu`` defaults, made
smaller), at a CPU budget: where the norms go, and neus (no norm) against neus-cn.

Every run is ``neus-cn-lite`` (6x128 SDF net, 128 rays, 32 + 32 samples, masks with loss weight 0.1, no
background model) with the field's ``norm``/``norm_in`` changed; ``none`` is nerfstudio's SDF field unchanged
(built without tinycudann), i.e. the ``neus`` baseline. After training, the mesh is extracted at 64^3 in
eval mode and scored against the scene's ``mesh_world.ply`` with a symmetric chamfer distance in world
millimetres (both sampled and thinned at 1 mm; mean of the two directions). The initial mesh (step 0) is
scored too. Seconds per iteration are the wall time of the training loop over its steps.

    .venv/bin/python benchmarks/neus_bunny.py   # writes benchmarks/results/neus_bunny.{json,md}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
import trimesh
import tyro
from provenance import machine_line, provenance

from nerf_norm.dtu_eval import downsample_greedy, sample_mesh, symmetric_chamfer
from nerf_norm.errors import UserError
from nerf_norm.mesh import extract_mesh, transform_vertices
from nerf_norm.nerfstudio.experiment import RunSettings, configure, method_config, train
from nerf_norm.scenes.dtu import DTUSceneConfig, write_dtu_scene

HERE = Path(__file__).resolve().parent


@dataclass
class Args:
    placement_steps: int = 100
    """steps of the placement study (every norm / placement)"""
    steps: int = 600
    """steps of the main comparison (none vs cn, the chosen placement)"""
    placements: List[str] = field(
        default_factory=lambda: ["none:sdf", "cn:sdf", "cn:color", "cn:both", "bn:sdf", "bn:color", "ln:sdf", "gn:sdf"]
    )
    width: int = 64
    height: int = 48
    views: int = 16
    resolution: int = 64
    seed: int = 0
    out: Path = HERE / "results" / "neus_bunny"
    scratch: Path = HERE / "scratch" / "neus_bunny"


def chamfer_mm(v, f, gt_points) -> float:
    return symmetric_chamfer(v, f, gt_points, density=1.0)


def trainer_chamfer_mm(trainer, resolution: int, gt_points) -> Optional[float]:
    """Chamfer (mm) of the trained NeuS field's mesh (eval mode, ``resolution``^3) against ``gt_points``, or None
    when the surface vanished (no zero crossing); the model is back in training mode afterwards."""
    model = trainer.pipeline.model
    scale = np.asarray(trainer.pipeline.datamanager.train_dataparser_outputs.metadata["scale_mat"], np.float64)
    model.eval()
    try:
        with torch.no_grad():
            v, f = extract_mesh(
                lambda p: model.field.forward_geonetwork(p)[:, 0], ((-1.0,) * 3, (1.0,) * 3), resolution, block=16
            )
        return chamfer_mm(transform_vertices(v, scale), f, gt_points)
    except UserError:
        return None
    finally:
        model.train()


def run(args: Args, scene: Path, norm: str, place: str, steps: int, gt_points) -> dict:
    config = configure(
        method_config("neus-cn-lite"),
        RunSettings(scene, args.scratch / f"{norm}-{place}-{steps}", steps=steps, seed=args.seed),
    )
    config.pipeline.datamanager.dataparser.eval_every = 8
    config.pipeline.model.sdf_field.norm = norm
    config.pipeline.model.sdf_field.norm_in = place
    trainer, seconds = train(config)
    cd = trainer_chamfer_mm(trainer, args.resolution, gt_points)
    record = {"norm": norm, "norm_in": place, "steps": steps, "s_per_iter": seconds / steps, "chamfer_mm": cd}
    print(record, flush=True)
    return record


def main(args: Args) -> None:
    torch.set_num_threads(2)
    scene = args.scratch / "scene"
    if not (scene / "cameras_sphere.npz").exists():
        write_dtu_scene(scene, None, DTUSceneConfig(width=args.width, height=args.height, views=args.views))
    gt = trimesh.load(scene / "mesh_world.ply", process=False)
    gt_points = downsample_greedy(sample_mesh(gt.vertices, gt.faces, 1.0), 1.0)
    initial = run(args, scene, "none", "sdf", 1, gt_points)
    placement = [run(args, scene, *p.split(":"), args.placement_steps, gt_points) for p in args.placements]
    main_runs = [run(args, scene, n, "sdf", args.steps, gt_points) for n in ("none", "cn")]
    meta = provenance({k: str(v) for k, v in vars(args).items()})
    record = {
        "provenance": meta,
        "machine": machine_line(meta),
        "date": meta["date"],
        "scene": {
            "width": args.width,
            "height": args.height,
            "views": args.views,
            "mesh": "pymeshlab bunny",
            "world_radius_mm": 80.0,
        },
        "initial_after_1_step": initial,
        "placement": placement,
        "comparison": main_runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2))

    def cd(r):
        return "surface vanished" if r["chamfer_mm"] is None else f"{r['chamfer_mm']:.2f}"

    lines = [
        f"# NeuS with normalization on the generated bunny ({record['machine']}, {record['date']})",
        "",
        f"Command: `{record['provenance']['command']}`. Scene: `nerf-norm make-scene dtu` with the "
        f"default bunny at {args.width}x{args.height}, {args.views} views (object radius 80 mm); neus-cn-lite "
        f"settings, seed {args.seed}; mesh at {args.resolution}^3; symmetric chamfer (mm) to mesh_world.ply.",
        "",
        f"After 1 step (the initial sphere): chamfer {cd(initial)} mm.",
        "",
        f"## Where the norms go ({args.placement_steps} steps)",
        "",
        "| norm | norm_in | chamfer (mm) | s/iter |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['norm']} | {r['norm_in']} | {cd(r)} | {r['s_per_iter']:.3f} |" for r in placement]
    lines += [
        "",
        f"## neus vs neus-cn ({args.steps} steps, norms in the SDF network)",
        "",
        "| method | chamfer (mm) | s/iter |",
        "|---|---|---|",
    ]
    lines += [
        f"| {'neus (no norm)' if r['norm'] == 'none' else 'neus-cn'} | {cd(r)} | {r['s_per_iter']:.3f} |"
        for r in main_runs
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(tyro.cli(Args))
