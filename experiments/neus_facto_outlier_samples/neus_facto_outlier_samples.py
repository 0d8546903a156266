"""Why did neus-facto-cn's surface vanish in eval mode? One far sample sets a whole batch's statistics.

Trains ``neus-facto-cn-lite`` on the generated bunny twice from the same seed: with nerfstudio's ``AABBBoxCollider``
(what the model used before ``nerf_norm/nerfstudio/colliders.py``) and with our ``BoundedAABBBoxCollider``. Every
step records, for the first SDF layer's norm, the largest per-channel variance of its input batch and the largest
running variance after the step, and the farthest sample from the origin in the field's call. The first arm stops
early once the running variance exceeds ``--stop-above``.

    .venv/bin/python experiments/neus_facto_outlier_samples/neus_facto_outlier_samples.py
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # the benchmarks' helpers
from task_tables import provenance, provenance_lines, resume_keyed  # noqa: E402

from nerf_norm.nerfstudio.experiment import RunSettings, configure, method_config, setup_trainer, train_step

HERE = Path(__file__).resolve().parent
console = Console()


@dataclass
class Args:
    scene: Path = HERE.parents[1] / "benchmarks" / "scratch" / "neus_facto_equal_time" / "scene_bunny"
    """a make-scene dtu scene (default: the equal-time benchmark's bunny)"""
    steps: int = 400
    stop_above: float = 1e3
    seed: int = 0
    threads: int = 1
    out: Path = HERE / "neus_facto_outlier_samples"
    scratch: Path = HERE.parents[1] / "benchmarks" / "scratch" / "neus_facto_outlier_samples"


def run(args: Args, bounded: bool) -> dict:
    from nerfstudio.model_components.scene_colliders import AABBBoxCollider

    name = "bounded" if bounded else "nerfstudio"
    config = configure(
        method_config("neus-facto-cn-lite"), RunSettings(args.scene, args.scratch / name, args.steps, args.seed)
    )
    config.pipeline.datamanager.dataparser.eval_every = 8
    trainer = setup_trainer(config)
    model = trainer.pipeline.model
    if not bounded:  # the collider nerfstudio's surface models build
        model.collider = AABBBoxCollider(model.collider.scene_box, near_plane=model.collider.near_plane)
    norm = model.field.glin0.norm
    seen = {}

    def hook(module, inputs, output):
        if module.training:
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1])
            seen["input_var"] = float(x.var(0).max())

    norm.register_forward_hook(hook)
    steps = []
    original = model.field.forward_geonetwork

    def traced(inputs):
        if model.training:
            seen["farthest"] = float(inputs.detach().reshape(-1, inputs.shape[-1])[:, :3].norm(dim=-1).max())
        return original(inputs)

    model.field.forward_geonetwork = traced
    for step in range(args.steps):
        train_step(trainer, step)
        record = {"step": step, **seen, "running_var_max": float(norm.running_var.max())}
        steps.append(record)
        if step % 50 == 0 or record["running_var_max"] > args.stop_above:
            console.print(f"{name} {record}")
        if not bounded and record["running_var_max"] > args.stop_above:
            break
    return {"collider": name, "steps": steps}


def write_markdown(args: Args, record: dict) -> None:
    lines = provenance_lines("neus-facto-cn-lite: far samples and the first SDF layer's statistics", record["meta"])
    lines += [
        "",
        "| collider | steps run | largest input variance (step) | farthest sample | largest running variance |",
    ]
    lines += ["|---|---:|---:|---:|---:|"]
    for r in record["runs"].values():
        worst = max(r["steps"], key=lambda s: s["input_var"])
        lines.append(
            f"| {r['collider']} | {len(r['steps'])} | {worst['input_var']:.3g} ({worst['step']}) | "
            f"{max(s['farthest'] for s in r['steps']):.3g} | {max(s['running_var_max'] for s in r['steps']):.3g} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    meta = provenance(
        "experiments/neus_facto_outlier_samples/neus_facto_outlier_samples",
        args.threads,
        f"neus-facto-cn-lite on {args.scene.name}, seed {args.seed}, up to {args.steps} steps; nerfstudio's "
        f"AABBBoxCollider (stopped once the running variance exceeds {args.stop_above:g}) and ours",
    )
    record = resume_keyed(args.out, meta, {"nerfstudio": lambda: run(args, False), "bounded": lambda: run(args, True)})
    write_markdown(args, record)
    console.print(f"wrote {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main(tyro.cli(Args))
