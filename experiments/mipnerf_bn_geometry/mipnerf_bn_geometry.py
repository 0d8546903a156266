"""Why does mipnerf-bn fail on lego's views? Colour and silhouettes, rendered from two near planes.

``mipnerf_bn_anomaly.py`` found mipnerf-bn at 19.9 dB on training rays in eval mode and 10.6 dB on test views,
and read it as a failure to generalize to new views. This script trains the same runs (lite settings, lego at
100x100, 600 steps, seed 0) and renders whole training and test views in eval mode (running statistics, as
``ns-eval``), scoring each view's colour (PSNR of the fine pass) and its geometry: the fine pass's accumulated
opacity against the ground-truth alpha of the Blender PNG, as the IoU of the silhouettes (opacity > 0.5 vs
alpha > 0.5), the mean absolute opacity error, the opacity left on background pixels (floaters), the opacity
missing on object pixels (holes), and the fraction of pixels drawn (opacity > 0.5) at a depth in front of the
training near plane.

Each view is rendered twice: with nerfstudio's eval default (its ``NearFarCollider`` resets the near plane to 0
outside training, so eval rays are sampled over [0, 6] where training saw [2, 6]) and from the training near
plane. Rendering whole training views separates "fails on new views" from "fails when rendered this way".

    .venv/bin/python experiments/mipnerf_bn_geometry/mipnerf_bn_geometry.py     # results/mipnerf_bn_geometry.{json,md}
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import torch
import tyro
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # the benchmarks' helpers
from task_tables import provenance, provenance_lines, resume_keyed  # noqa: E402

from nerf_norm.nerfstudio.experiment import RunSettings, configure, lite_config, setup_trainer, train_step

HERE = Path(__file__).resolve().parent  # this experiment's folder: its results
BENCHMARKS = HERE.parents[1] / "benchmarks"
DATA = Path(os.environ.get("NERF_NORM_DATA", HERE.parents[2] / "shared" / "data")) / "blender" / "lego"
console = Console()
NEAR_PLANES = {"eval_near_0": "0 (nerfstudio's eval default)", "eval_near_kept": "the training near plane (2)"}


@dataclass
class Args:
    """Train mipnerf-bn, mipnerf-cn and mipnerf as in mipnerf_bn_anomaly.py; score colour and silhouettes on
    training and test views rendered from two near planes."""

    methods: tuple[str, ...] = ("mipnerf-bn", "mipnerf-cn", "mipnerf")
    data: Path = DATA
    scale: float = 0.25
    steps: int = 600
    train_views: tuple[int, ...] = (0, 25, 50, 75)
    """indices into the training split"""
    test_views: tuple[int, ...] = (0, 1, 2, 3)
    """indices into the test split (mipnerf_bn_anomaly.py's views)"""
    threads: int = 1
    seed: int = 0
    out: Path = HERE / "mipnerf_bn_geometry"
    scratch: Path = BENCHMARKS / "scratch" / "mipnerf_bn_geometry"


def view_scores(
    rgb: np.ndarray, opacity: np.ndarray, depth: np.ndarray, near_plane: float, rgba: np.ndarray
) -> Dict[str, float]:
    """Colour and silhouette scores of one rendered view.

    ``rgb`` ``[H, W, 3]`` and ``opacity`` ``[H, W]`` in [0, 1] and ``depth`` ``[H, W]`` (the render);
    ``rgba`` ``[H, W, 4]`` uint8, the Blender PNG at the render's size (its colour composited on white, as the
    training target).
    """
    alpha = rgba[..., 3].astype(np.float64) / 255.0
    target = rgba[..., :3].astype(np.float64) / 255.0 * alpha[..., None] + (1.0 - alpha[..., None])
    mse = float(np.mean((np.clip(rgb, 0, 1) - target) ** 2))
    inside, drawn = alpha > 0.5, opacity > 0.5
    union = np.logical_or(inside, drawn).sum()
    return {
        "psnr": -10 * math.log10(max(mse, 1e-12)),
        "silhouette_iou": float(np.logical_and(inside, drawn).sum() / max(union, 1)),
        "opacity_error": float(np.mean(np.abs(opacity - alpha))),
        "background_opacity": float(opacity[~inside].mean()) if (~inside).any() else float("nan"),
        "object_transparency": float(1.0 - opacity[inside].mean()) if inside.any() else float("nan"),
        "drawn_before_near_plane": float(np.mean(drawn & (depth < near_plane))),
    }


def score_views(trainer, split: str, views: Sequence[int], reset_near_plane: bool) -> Dict[str, float]:
    """Mean :func:`view_scores` over ``views`` of the ``split`` ("train" or "test") dataset, rendered in eval mode.

    ``reset_near_plane``: nerfstudio's default for its ``NearFarCollider`` (rays start at 0 in eval, at the near
    plane in training); ``False`` renders from the training near plane."""
    pipeline = trainer.pipeline
    model = pipeline.model
    dataset = pipeline.datamanager.train_dataset if split == "train" else pipeline.datamanager.eval_dataset
    sums: Dict[str, float] = {}
    default = model.collider.reset_near_plane
    model.collider.reset_near_plane = reset_near_plane
    pipeline.eval()
    try:
        with torch.no_grad():
            for index in views:
                outputs = model.get_outputs_for_camera(dataset.cameras[index : index + 1].to(model.device))
                rgba = dataset.get_numpy_image(index)
                if rgba.shape[-1] != 4:
                    raise SystemExit(
                        f"{dataset.image_filenames[index]}: expected an RGBA Blender PNG, got {rgba.shape[-1]} channels"
                    )
                scores = view_scores(
                    outputs["rgb_fine"].cpu().numpy(),
                    outputs["accumulation_fine"][..., 0].cpu().numpy(),
                    outputs["depth_fine"][..., 0].cpu().numpy(),
                    model.collider.near_plane,
                    rgba,
                )
                for key, value in scores.items():
                    sums[key] = sums.get(key, 0.0) + value
    finally:
        pipeline.train()
        model.collider.reset_near_plane = default
    return {key: value / len(views) for key, value in sums.items()}


def run(args: Args, method: str) -> dict:
    config = configure(
        lite_config(method),
        RunSettings(args.data, args.scratch / method, args.steps, args.seed, image_scale=args.scale),
    )
    trainer = setup_trainer(config)
    start = time.perf_counter()
    for step in range(args.steps):
        loss = train_step(trainer, step)
        if (step + 1) % 100 == 0:
            console.print(f"{method} step {step + 1}: loss {loss:.4f}")
    result = {"train_seconds": time.perf_counter() - start}
    for near, reset in (("eval_near_0", True), ("eval_near_kept", False)):
        result[near] = {
            "train_views": score_views(trainer, "train", args.train_views, reset),
            "test_views": score_views(trainer, "test", args.test_views, reset),
        }
    console.print(f"{method}: {result}")
    return result


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    meta = provenance(
        "mipnerf_bn_geometry",
        args.threads,
        f"lego at scale {args.scale}, lite settings, {args.steps} steps, seed {args.seed}, eval mode (running "
        f"statistics), rays from 0 and from the near plane; training views {list(args.train_views)}, test views "
        f"{list(args.test_views)}",
    )
    record = resume_keyed(args.out, meta, {m: functools.partial(run, args, m) for m in args.methods})
    lines = [
        *provenance_lines("mipnerf-bn on lego: colour and silhouettes on training and test views", record["meta"]),
        "",
        "Silhouettes: the fine pass's accumulated opacity > 0.5 against the PNG's alpha > 0.5. Background "
        "opacity: mean opacity on pixels outside the object (floaters); object transparency: 1 - mean "
        "opacity on object pixels (holes).",
        "",
        "| method | rays start at (eval) | views | PSNR (dB) | silhouette IoU | mean abs opacity error | "
        "background opacity | object transparency | pixels drawn before the near plane |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for method, r in record["runs"].items():
        for near, shown in NEAR_PLANES.items():
            for split in ("train_views", "test_views"):
                s = r[near][split]
                lines.append(
                    f"| {method} | {shown} | {split.split('_')[0]} | {s['psnr']:.2f} | "
                    f"{s['silhouette_iou']:.3f} | "
                    f"{s['opacity_error']:.3f} | {s['background_opacity']:.3f} | "
                    f"{s['object_transparency']:.3f} | {s['drawn_before_near_plane']:.3f} |"
                )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    console.print("\n".join(lines))


if __name__ == "__main__":
    main(tyro.cli(Args))
