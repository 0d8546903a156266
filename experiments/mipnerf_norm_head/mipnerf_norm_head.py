"""Where the norms go in Mip-NeRF's field: base MLP only (the default) or base and head MLP.

Trains ``mipnerf-cn`` with the ``mipnerf-cn-lite`` settings on the generated scene (``nerf-norm make-scene
blender`` defaults, 80x80) with ``norm_head`` False and True, same seed and steps, and reports test-split
PSNR/SSIM (first ``--test-images`` views). Also trains nerfstudio's ``mipnerf`` as the reference.

    .venv/bin/python experiments/mipnerf_norm_head/mipnerf_norm_head.py    # writes experiments/mipnerf_norm_head/mipnerf_norm_head.{json,md}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

from nerf_norm.nerfstudio.experiment import RunSettings, configure, evaluate, lite_config, train
from nerf_norm.provenance import provenance
from nerf_norm.scenes.blender import BlenderSceneConfig, write_blender_scene

HERE = Path(__file__).resolve().parent  # this experiment's folder: its results
BENCHMARKS = HERE.parents[1] / "benchmarks"


@dataclass
class Args:
    steps: int = 300
    test_images: int = 4
    seed: int = 0
    threads: int = 2
    out: Path = HERE / "mipnerf_norm_head"
    scratch: Path = BENCHMARKS / "scratch" / "mipnerf_norm_head"


VARIANTS = {
    "mipnerf": ("mipnerf", None),
    "mipnerf-cn (base MLP)": ("mipnerf-cn", False),
    "mipnerf-cn (base + head MLP)": ("mipnerf-cn", True),
}


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    scene = args.scratch / "scene"
    if not (scene / "transforms_test.json").exists():
        write_blender_scene(scene, BlenderSceneConfig())
    results = {}
    for label, (method, head) in VARIANTS.items():
        config = lite_config(method)
        if head is not None:
            config.pipeline.model.norm_head = head
        run = RunSettings(scene, args.scratch / label.replace(" ", "_"), args.steps, args.seed)
        trainer, seconds = train(configure(config, run))
        results[label] = {"seconds": seconds, **evaluate(trainer, args.test_images)}
        print(label, results[label], flush=True)
    settings = {k: str(v) for k, v in vars(args).items()}
    meta = provenance(settings)
    m = meta["machine"]
    machine = f"{m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads, torch {m['torch']}"
    record = {"provenance": meta, "machine": machine, "date": meta["date"], "args": settings, "results": results}
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    lines = [
        f"# Norms in the head MLP of Mip-NeRF's field? ({machine})",
        "",
        f"Command: `{meta['command']}`; {meta['date']}, commit {meta['commit']}. Generated scene (80x80, 40 train views), "
        f"mipnerf-cn-lite settings, {args.steps} steps, seed {args.seed}, first {args.test_images} test views.",
        "",
        "| variant | PSNR | SSIM | train seconds |",
        "|---|---|---|---|",
    ]
    for label, r in results.items():
        lines.append(f"| {label} | {r['psnr']:.2f} | {r['fine_ssim']:.3f} | {r['seconds']:.0f} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(tyro.cli(Args))
