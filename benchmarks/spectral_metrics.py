"""Spectral bias watched during ns-train: the band errors ``--pipeline.model.spectral-metrics`` logs, read back from
real runs' tensorboard event files, for nerfstudio's Mip-NeRF (``mipnerf-lite``) and ``mipnerf-cn-lite``.

Both train on the bundled scene (``nerf-norm make-scene blender`` at its defaults, but one test view so that every
evaluation scores the same image) with the spectral metrics on, one eval image every ``--eval-every`` steps, in
this process through nerfstudio's own trainer (``Trainer.train``, which logs the eval metrics). The event files
are then read with tensorboard's reader; the result is OUT_METHOD.json per method (the curves and their
provenance) and OUT.png (the relative error of each radial frequency band over the steps, one panel per method, and
the methods' highest band side by side). Eval rays start at the training near plane (``--eval-near-plane
training``): from nerfstudio's default near plane of 0 the eval image also shows the never-trained space in front
of the training near plane (docs/methods/mipnerf.md, ``--pipeline.model.eval-near-plane``), which is not what the
bands are meant to measure.

    .venv/bin/python benchmarks/spectral_metrics.py --methods mipnerf-lite &      # one process per method
    .venv/bin/python benchmarks/spectral_metrics.py --methods mipnerf-cn-lite &
    wait; .venv/bin/python benchmarks/spectral_metrics.py --methods                # the figure only
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro
from provenance import provenance
from rich.console import Console

HERE = Path(__file__).resolve().parent
console = Console()


@dataclass
class Args:
    methods: tuple[str, ...] = ("mipnerf-lite", "mipnerf-cn-lite")
    steps: int = 600
    eval_every: int = 50
    bands: int = 8
    eval_near_plane: str = "training"
    """where eval rays start (the models' --pipeline.model.eval-near-plane): training or zero"""
    threads: int = 1
    seed: int = 0
    out: Path = HERE / "results" / "spectral_metrics"
    scratch: Path = HERE / "scratch" / "spectral_metrics"


def band_curves(run_dir: Path) -> dict:
    """``{"spectral_band_b": [[step, value], ...]}`` from the tensorboard event file in ``run_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = list(run_dir.glob("events.out.tfevents.*"))
    accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
    accumulator.Reload()
    curves = {}
    for tag in accumulator.Tags()["scalars"]:
        name = tag.rsplit("/", 1)[-1]
        if name.startswith("spectral_band_") or name == "psnr":
            curves[name] = [[e.step, e.value] for e in accumulator.Scalars(tag)]
    return curves


def train_with_metrics(args: Args, scene: Path, method: str) -> dict:
    from nerf_norm.nerfstudio.experiment import RunSettings, configure, method_config, train

    config = configure(method_config(method), RunSettings(scene, args.scratch / method, args.steps, args.seed))
    config.pipeline.model.spectral_metrics = True
    config.pipeline.model.spectral_bands = args.bands
    config.steps_per_eval_image = args.eval_every
    config.pipeline.model.eval_near_plane = args.eval_near_plane
    _, seconds = train(config)
    console.print(f"{method}: {args.steps} steps in {seconds:.0f} s")
    return {"seconds": seconds, "curves": band_curves(config.get_base_dir())}


def figure(data: dict, path: Path) -> None:
    from nerf_norm.plotting import pyplot

    plt = pyplot()
    methods = list(data["runs"])
    fig, axes = plt.subplots(1, len(methods) + 1, figsize=(4.2 * (len(methods) + 1), 3.6), layout="constrained")
    bands = data["bands"]
    colours = plt.get_cmap("viridis")
    for ax, method in zip(axes, methods):
        curves = data["runs"][method]["curves"]
        for b in range(bands):
            points = curves.get(f"spectral_band_{b}", [])
            ax.plot(
                [p[0] for p in points], [p[1] for p in points], color=colours(b / max(bands - 1, 1)), label=f"band {b}"
            )
        ax.set_title(method)
        ax.set_xlabel("training step")
        ax.set_ylabel("relative error of the band")
        ax.set_ylim(0, None)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    top = f"spectral_band_{bands - 1}"
    for method in methods:
        points = data["runs"][method]["curves"].get(top, [])
        axes[-1].plot([p[0] for p in points], [p[1] for p in points], marker="o", ms=3, label=method)
    axes[-1].set_title(f"highest band ({top})")
    axes[-1].set_xlabel("training step")
    axes[-1].grid(alpha=0.3)
    axes[-1].legend(fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _json(args: Args, method: str) -> Path:
    return args.out.parent / f"{args.out.name}_{method}.json"


def main(args: Args) -> None:
    from nerf_norm.scenes.blender import BlenderSceneConfig, write_blender_scene

    torch.set_num_threads(args.threads)
    scene_config = BlenderSceneConfig(test_views=1)
    for method in args.methods:
        path = _json(args, method)
        if path.exists():  # a rerun resumes: finished methods are kept
            continue
        scene = args.scratch / f"scene_{method}"  # one copy per process: runs of two methods start together
        if not (scene / "transforms_test.json").exists():
            write_blender_scene(scene, scene_config, overwrite=True)
        record = {
            "provenance": provenance({k: str(v) for k, v in vars(args).items()}),
            "bands": args.bands,
            "scene": {"generator": "nerf-norm make-scene blender", **vars(scene_config)},
            **train_with_metrics(args, scene, method),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1))
    runs = {
        p.stem[len(args.out.name) + 1 :]: json.loads(p.read_text())
        for p in sorted(args.out.parent.glob(f"{args.out.name}_*.json"))
    }
    if runs:
        figure({"runs": runs, "bands": next(iter(runs.values()))["bands"]}, args.out.with_suffix(".png"))
        console.print(f"wrote {args.out.with_suffix('.png')} from {', '.join(runs)}")


if __name__ == "__main__":
    main(tyro.cli(Args))
