"""NeuS without and with cross normalization at equal training time, chamfer distance (mm) over time.

Each run is ``neus-cn-lite`` (6x128 SDF network, 128 rays, 32 + 32 samples, masks with loss weight 0.1) with the
SDF field's norm ``none`` (nerfstudio's SDF field unchanged: the ``neus`` baseline) or ``cn``, or likewise
``neus-facto-cn-lite`` (``neus-facto`` / ``neus-facto-cn``), on a scene that
``nerf-norm make-scene dtu`` generates from a mesh (the bundled bunny, or a Stanford mesh of
``../shared/data/meshes``). A run trains until it has both ``--seconds`` of training time and ``--min-steps`` steps;
every ``--eval-seconds`` of training it extracts the mesh (eval mode, ``--resolution``^3) and scores it against the
scene's ``mesh_world.ply`` (symmetric chamfer in world millimetres, both sampled and thinned at 1 mm, mean of the
two directions), then writes a nerfstudio checkpoint, so a rerun resumes. Training seconds count training steps
only (not the evaluations), and they are the process's CPU seconds (``time.process_time``; one torch thread), so
each method is charged for its own compute even when other work shares the machine: with one thread, CPU time and
wall-clock time of an unshared run agree.

The two methods of a scene run side by side, one process and one torch thread each, so both see the same
machine; ``--report`` writes the table (chamfer at equal training time and at the last evaluation) and the
chamfer-over-time figure.

    .venv/bin/python benchmarks/neus_equal_time.py --scene bunny --method neus &
    .venv/bin/python benchmarks/neus_equal_time.py --scene bunny --method neus-cn &
    wait; .venv/bin/python benchmarks/neus_equal_time.py --report

    # NeuS-facto (a hash grid feeding a 2x128 SDF network, proposal sampling): the same with --method neus-facto /
    # neus-facto-cn, and --methods neus-facto neus-facto-cn --out benchmarks/results/neus_facto_equal_time
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import torch
import trimesh
import tyro
from neus_bunny import trainer_chamfer_mm
from rich.console import Console
from task_tables import provenance

HERE = Path(__file__).resolve().parent
MESHES = Path(os.environ.get("NERF_NORM_DATA", HERE.parent.parent / "shared" / "data")) / "meshes"
#: method -> (the registered lite preset it runs, the SDF field's norm)
METHODS = {
    "neus": ("neus-cn-lite", "none"),
    "neus-cn": ("neus-cn-lite", "cn"),
    "neus-facto": ("neus-facto-cn-lite", "none"),
    "neus-facto-cn": ("neus-facto-cn-lite", "cn"),
}
console = Console()


@dataclass
class Args:
    scene: str = "bunny"
    """bunny (the bundled default) or the stem of a mesh in ../shared/data/meshes (e.g. dragon, armadillo)"""
    method: Optional[str] = None
    """neus, neus-cn, neus-facto or neus-facto-cn; omit with --report"""
    methods: Tuple[str, ...] = ("neus", "neus-cn")
    """the pair --report compares (the baseline first)"""
    report: bool = False
    """combine the runs of --scenes into OUT.md and OUT.png"""
    scenes: Tuple[str, ...] = ("bunny", "dragon")
    seconds: float = 1500.0
    """training seconds of each run (both methods get the same)"""
    min_steps: int = 2000
    """and at least this many steps (so the slower method reaches the issue's 2000)"""
    eval_seconds: float = 150.0
    """training seconds between chamfer evaluations"""
    resolution: int = 64
    width: int = 64
    height: int = 48
    views: int = 16
    threads: int = 1
    """torch threads; keep 1 so that the CPU seconds counted equal the wall-clock seconds of an unshared run"""
    seed: int = 0
    out: Path = HERE / "results" / "neus_equal_time"
    scratch: Path = HERE / "scratch" / "neus_equal_time"


def _json(args: Args, scene: str, method: str) -> Path:
    return args.out.parent / f"{args.out.name}_{scene}_{method}.json"


def _scene(args: Args) -> Path:
    from nerf_norm.scenes.dtu import DTUSceneConfig, write_dtu_scene

    folder = args.scratch / f"scene_{args.scene}"
    if not (folder / "cameras_sphere.npz").exists():
        mesh = None
        if args.scene != "bunny":
            found = sorted(MESHES.glob(f"{args.scene}.*"))
            if not found:
                raise SystemExit(f"no mesh {args.scene}.* in {MESHES} (set NERF_NORM_DATA)")
            mesh = found[0]
        # the two methods of a scene start together: each writes its own copy and the first rename wins
        tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
        write_dtu_scene(
            tmp, mesh, DTUSceneConfig(width=args.width, height=args.height, views=args.views), overwrite=True
        )
        try:
            tmp.rename(folder)
        except OSError:
            shutil.rmtree(tmp)
    return folder


def equal_time_config(scene: Path, out: Path, method: str, seed: int):
    """The runs' nerfstudio config: ``method``'s lite preset with its SDF field's norm (:data:`METHODS`) on ``scene``. The runs stop on time,
    not on a step count, so no schedule can be sized to them: the lite warm-up, then an effectively constant rate
    (a cosine over a step cap no run comes near); without this the lite cosine (2000 steps, nerfstudio does not
    clamp it) would raise the rate again after step 2000."""
    from nerfstudio.engine.schedulers import CosineDecaySchedulerConfig

    from nerf_norm.method_configs.neus import LITE
    from nerf_norm.nerfstudio.experiment import RunSettings, configure, method_config

    cap = 100_000
    preset, norm = METHODS[method]
    config = configure(method_config(preset), RunSettings(scene, out, steps=cap, seed=seed))
    for group in config.optimizers.values():
        group["scheduler"] = CosineDecaySchedulerConfig(
            warm_up_end=LITE["warm_up"], learning_rate_alpha=0.05, max_steps=cap
        )
    config.pipeline.datamanager.dataparser.eval_every = 8
    config.pipeline.model.sdf_field.norm = norm
    return config


def train(args: Args) -> None:
    from nerf_norm.dtu_eval import downsample_greedy, sample_mesh
    from nerf_norm.nerfstudio.experiment import setup_trainer, train_step

    if args.method not in METHODS:
        raise SystemExit(f"--method must be one of {sorted(METHODS)}, got {args.method!r}")
    torch.set_num_threads(args.threads)
    scene = _scene(args)
    gt = trimesh.load(scene / "mesh_world.ply", process=False)
    gt_points = downsample_greedy(sample_mesh(gt.vertices, gt.faces, 1.0), 1.0)
    from nerf_norm.method_configs.neus import LITE

    config = equal_time_config(scene, args.scratch / args.scene / args.method, args.method, args.seed)
    preset, norm = METHODS[args.method]
    ckpt_dir = config.get_base_dir() / config.relative_model_dir
    path = _json(args, args.scene, args.method)
    resuming = ckpt_dir.exists() and any(ckpt_dir.glob("step-*.ckpt")) and path.exists()
    if resuming:
        config.load_dir = ckpt_dir
    record = json.loads(path.read_text()) if resuming else {"evals": []}
    record["meta"] = provenance(
        "neus_equal_time",
        args.threads,
        f"scene {args.scene} (make-scene dtu, {args.width}x{args.height}, {args.views} views), {preset} settings "
        f"with sdf_field.norm={norm} and the rate constant after the {LITE['warm_up']}-step warm-up, seed {args.seed}, until {args.seconds:.0f} training seconds and "
        f">= {args.min_steps} steps, chamfer every {args.eval_seconds:.0f} training seconds at {args.resolution}^3",
    )
    trainer = setup_trainer(config)
    step = trainer._start_step
    elapsed = record["evals"][-1]["seconds"] if record["evals"] else 0.0
    if not record["evals"]:
        initial = trainer_chamfer_mm(trainer, args.resolution, gt_points)
        record["evals"].append({"step": 0, "seconds": 0.0, "chamfer_mm": initial})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    next_eval = (int(elapsed // args.eval_seconds) + 1) * args.eval_seconds
    while elapsed < args.seconds or step < args.min_steps:
        t0 = time.process_time()
        train_step(trainer, step)
        elapsed += time.process_time() - t0
        step += 1
        done = elapsed >= args.seconds and step >= args.min_steps
        if elapsed >= next_eval or done:
            cd = trainer_chamfer_mm(trainer, args.resolution, gt_points)
            record["evals"].append({"step": step, "seconds": elapsed, "chamfer_mm": cd})
            trainer.save_checkpoint(step - 1)
            path.write_text(json.dumps(record, indent=1))
            console.print(
                f"{args.scene} {args.method} step {step} ({elapsed:.0f} s training): chamfer "
                f"{'vanished' if cd is None else f'{cd:.2f} mm'}"
            )
            while next_eval <= elapsed:
                next_eval += args.eval_seconds


def _at_mark(evals: list, mark: float, eval_seconds: float) -> dict | None:
    """The evaluation taken for the mark ``mark`` (a multiple of ``eval_seconds``): runs evaluate at the first
    step past each mark, so it is the one in ``[mark, mark + eval_seconds / 2)``."""
    return next((e for e in evals if mark - 1e-6 <= e["seconds"] < mark + eval_seconds / 2), None)


def report(args: Args) -> None:
    from nerf_norm.plotting import pyplot

    def cd(e):
        return "vanished" if e["chamfer_mm"] is None else f"{e['chamfer_mm']:.2f}"

    lines = [
        f"# {' vs '.join(args.methods)} at equal training time (CPU seconds, one torch thread each; chamfer in mm)",
        "",
    ]
    plt = pyplot()
    scenes = [s for s in args.scenes if all(_json(args, s, m).exists() for m in args.methods)]
    if not scenes:
        raise SystemExit(f"no scene with both runs under {args.out.parent}")
    fig, axes = plt.subplots(1, len(scenes), figsize=(5.5 * len(scenes), 4), squeeze=False)
    rows = []
    for ax, scene in zip(axes[0], scenes):
        recs = {m: json.loads(_json(args, scene, m).read_text()) for m in args.methods}
        for m, r in recs.items():
            lines.append(
                f"- {scene} / {m}: `{r['meta']['command']}`; {r['meta']['machine']}; {r['meta']['date']}; "
                f"{r['meta']['setting']}"
            )
            ev = [e for e in r["evals"] if e["chamfer_mm"] is not None]
            (line,) = ax.plot([e["seconds"] for e in ev], [e["chamfer_mm"] for e in ev], marker="o", ms=3, label=m)
            gone = [e["seconds"] for e in r["evals"] if e["chamfer_mm"] is None]
            if gone:  # evaluations without a surface: crosses on the top edge
                ax.plot(
                    gone,
                    [1.0] * len(gone),
                    "x",
                    ms=9,
                    mew=2,
                    color=line.get_color(),
                    transform=ax.get_xaxis_transform(),
                    clip_on=False,
                    label=f"{m}: no surface",
                )
        budget = min(r["evals"][-1]["seconds"] for r in recs.values())
        marks = [k * args.eval_seconds for k in range(int(budget // args.eval_seconds + 0.5) + 1)]
        for mark in marks:
            at = {m: _at_mark(r["evals"], mark, args.eval_seconds) for m, r in recs.items()}
            if all(at.values()):
                rows.append(
                    f"| {scene} | {mark:.0f} | "
                    + " | ".join(f"{cd(at[m])} (step {at[m]['step']})" for m in args.methods)
                    + " |"
                )
        ax.set_xlabel("training seconds")
        ax.set_ylabel("chamfer (mm)")
        ax.set_yscale("log")
        ax.set_title(f"{scene}: chamfer over time")
        ax.grid(alpha=0.3)
        ax.legend()
    lines += [
        "- both methods of a scene trained side by side (one torch thread each) on the same machine, so their "
        "seconds are comparable with each other",
        "",
        "- every evaluation is shown (eval mode, running statistics): single evaluations are noisy, "
        "`vanished` means the extracted SDF had no zero crossing at that moment",
        "",
        "| scene | training seconds | " + " | ".join(f"{m}: chamfer (step)" for m in args.methods) + " |",
        "|---|---:|" + "---|" * len(args.methods),
        *rows,
        "",
        f"Figure: `{args.out.name}.png`.",
    ]
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=100)
    plt.close(fig)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    console.print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.png')}")


def main(args: Args) -> None:
    if args.report:
        report(args)
    elif args.method:
        train(args)
    else:
        raise SystemExit(f"give --method {'|'.join(METHODS)} to train, or --report")


if __name__ == "__main__":
    main(tyro.cli(Args))
