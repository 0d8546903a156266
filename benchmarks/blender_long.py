"""A radiance field on a Blender-format scene for thousands of steps, a baseline against its normalized version:
nerfstudio's ``mipnerf`` against ``mipnerf-cn`` (the default), or ``nerfacto`` against ``nerfacto-cn``.

Each method runs at its family's registered lite settings (``mipnerf-cn-lite``: 128 rays per step, 32 + 32 samples,
RAdam 5e-4; ``nerfacto-cn-lite``: 512 rays, 64 + 32 proposal and 24 field samples, Adam 1e-2; the baselines
``mipnerf-lite`` / ``nerfacto-lite`` the same with the MLPs untouched), our checked Blender parser, the scene (real
lego by default) at ``--scale`` 0.5 (400x400 -> 200x200), seed 0. Every ``--eval-every`` steps the test views
``--views`` are rendered and scored (nerfstudio's PSNR/SSIM of the model's final render); the last renders are
written as PNGs. Each method runs in its own process (``--method``), so the two can train side by side; a nerfstudio
checkpoint is written at every evaluation and a rerun resumes from it (the ray sampler's random state is not
restored, so a resumed run draws other rays than an uninterrupted one would). ``--report`` combines the two JSON
files into a table and a figure (test PSNR/SSIM over steps and over training seconds, and ground truth | mipnerf
| mipnerf-cn for two views).

    .venv/bin/python benchmarks/blender_long.py --method mipnerf &
    .venv/bin/python benchmarks/blender_long.py --method mipnerf-cn &
    wait; .venv/bin/python benchmarks/blender_long.py --report

    # nerfacto: the same with --methods nerfacto nerfacto-cn --out benchmarks/results/nerfacto_lego
    # (and --data / --scale / --out for another scene)
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import tyro
from rich.console import Console
from task_tables import provenance

from nerf_norm.nerfstudio.experiment import final_ssim

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("NERF_NORM_DATA", HERE.parent.parent / "shared" / "data")) / "blender" / "lego"
console = Console()


@dataclass
class Args:
    method: Optional[str] = None
    """train this method (one of --methods; any registered mipnerf-* or nerfacto-*); omit with --report"""
    report: bool = False
    """combine the results of --methods into OUT.md and OUT.png"""
    per_view: bool = False
    """score each of --final-views separately from --method's last checkpoint (stored as the last evaluation's
    per_view), so equal-time comparisons can use the views scored every --eval-every steps"""
    methods: tuple[str, ...] = ("mipnerf", "mipnerf-cn")
    """the baseline first, then the methods compared with it"""
    data: Path = DATA
    scale: float = 0.5
    """camera_res_scale_factor (400x400 -> 200x200)"""
    steps: int = 5000
    eval_every: int = 500
    views: tuple[int, ...] = (0,)
    """test views scored every --eval-every steps (one 200x200 view costs as much compute as ~180 steps)"""
    final_views: tuple[int, ...] = (0, 100)
    """test views scored and drawn at the last step"""
    threads: int = 1
    seed: int = 0
    out: Path = HERE / "results" / "mipnerf_lego_long"
    scratch: Path = HERE / "scratch" / "mipnerf_lego_long"


def _lite_settings(method: str) -> dict:
    from nerf_norm.method_configs import mipnerf, nerfacto

    return {"mipnerf": mipnerf.LITE, "nerfacto": nerfacto.LITE}[method.split("-")[0]]


def _json(args: Args, method: str) -> Path:
    return args.out.parent / f"{args.out.name}_{method}.json"


def _png(args: Args, method: str, view: int) -> Path:
    return args.out.parent / f"{args.out.name}_{method}_view{view:03d}.png"


def _config(args: Args):
    """--method's nerfstudio configuration: lite settings, the scene at --scale, output under --scratch."""
    from nerf_norm.nerfstudio.experiment import RunSettings, configure, lite_config

    config = configure(
        lite_config(args.method),
        RunSettings(args.data, args.scratch / args.method, args.steps, args.seed, image_scale=args.scale),
    )
    for group in config.optimizers.values():  # a decaying learning rate (nerfacto's) decays over the whole run
        if hasattr(group["scheduler"], "max_steps"):
            group["scheduler"].max_steps = args.steps
    return config


def train(args: Args) -> None:
    from nerf_norm.nerfstudio.experiment import evaluate, setup_trainer, train_step

    torch.set_num_threads(args.threads)
    method = args.method
    config = _config(args)
    ckpt_dir = config.get_base_dir() / config.relative_model_dir
    if ckpt_dir.exists() and any(ckpt_dir.glob("step-*.ckpt")):
        config.load_dir = ckpt_dir
    path = _json(args, method)
    record = json.loads(path.read_text()) if path.exists() and config.load_dir is not None else {"evals": []}
    record["evals"] = [e for e in record["evals"] if e["step"] <= args.steps]
    record["meta"] = provenance(
        "blender_long",
        args.threads,
        f"{args.data.name} at scale {args.scale}, lite settings {_lite_settings(method)} except steps = {args.steps}, seed {args.seed}, "
        f"test views {list(args.views)} every {args.eval_every} steps, {list(args.final_views)} at the end",
    )
    trainer = setup_trainer(config)
    record["view_width"] = int(trainer.pipeline.datamanager.eval_dataset.cameras.width[0])
    start = trainer._start_step  # 0, or the step after the loaded checkpoint
    elapsed = record["evals"][-1]["seconds"] if record["evals"] else 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    for step in range(start, args.steps):
        t0 = time.perf_counter()
        train_step(trainer, step)
        elapsed += time.perf_counter() - t0
        done = step + 1
        if done % args.eval_every == 0 or done == args.steps:
            renders: dict = {}
            final = done == args.steps
            scores = evaluate(
                trainer, indices=args.final_views if final else args.views, renders=renders if final else None
            )
            record["evals"].append({"step": done, "seconds": elapsed, **scores})
            trainer.save_checkpoint(step)
            for view, img in renders.items():
                _save_png(_png(args, method, view), img)
            path.write_text(json.dumps(record, indent=1))
            console.print(
                f"{method} step {done} ({elapsed:.0f} s training): PSNR {scores['psnr']:.2f} SSIM {final_ssim(scores):.3f}"
            )


def score_per_view(args: Args) -> None:
    from nerf_norm.nerfstudio.experiment import evaluate, setup_trainer

    torch.set_num_threads(args.threads)
    config = _config(args)
    config.load_dir = config.get_base_dir() / config.relative_model_dir
    path = _json(args, args.method)
    record = json.loads(path.read_text())
    last = record["evals"][-1]
    if last["step"] != args.steps:
        raise SystemExit(f"{args.method} has not reached step {args.steps} yet ({path})")
    trainer = setup_trainer(config)
    last["per_view"] = {str(v): evaluate(trainer, indices=[v]) for v in args.final_views}
    path.write_text(json.dumps(record, indent=1))
    console.print(
        f"{args.method} step {args.steps}: "
        + ", ".join(f"view {v}: {s['psnr']:.2f} dB / {final_ssim(s):.3f}" for v, s in last["per_view"].items())
    )


def _save_png(path: Path, img: np.ndarray) -> None:
    import imageio.v3 as iio

    iio.imwrite(path, (np.clip(img, 0, 1) * 255).round().astype(np.uint8))


def report(args: Args) -> None:
    import imageio.v3 as iio

    from nerf_norm.plotting import pyplot

    records = {m: json.loads(_json(args, m).read_text()) for m in args.methods if _json(args, m).exists()}
    if not records:
        raise SystemExit(f"no results yet under {args.out.parent}")
    finals = {m: r["evals"][-1] for m, r in records.items()}
    # the curves use the views scored at every evaluation (--views); the last evaluation scored --final-views,
    # so its row takes those views' own scores when --per-view stored them
    key = ",".join(map(str, args.views))
    for r in records.values():
        r["evals"] = [
            {**e, **e["per_view"][key], "step": e["step"], "seconds": e["seconds"]}
            if key in e.get("per_view", {})
            else e
            for e in r["evals"]
        ]
    ref = args.methods[0]
    # the title from what the runs recorded (the report's own --data/--scale/--steps need not be repeated)
    setting = next(iter(records.values()))["meta"]["setting"]
    last_step = max(r["evals"][-1]["step"] for r in records.values())
    lines = [f"# {setting.split(',')[0]}, {last_step} steps: {' vs '.join(records)}", ""]
    for m, r in records.items():
        lines += [f"- {m}: `{r['meta']['command']}`; {r['meta']['machine']}; {r['meta']['date']}"]
    lines += [
        f"- setting: {next(iter(records.values()))['meta']['setting']}",
        "- both processes trained side by side (one torch thread each) on a 2-core machine that was also "
        "running other work, so the seconds are comparable between the two methods but not absolute",
        f"- PSNR / SSIM: nerfstudio's metrics of the final render (Mip-NeRF: fine pass) of test view(s) {key} (the curve); the last "
        f"step also over views {', '.join(map(str, args.final_views))}, below the table",
        "",
    ]
    steps = sorted({e["step"] for r in records.values() for e in r["evals"]})
    head = "| step | " + " | ".join(f"{m} PSNR | {m} SSIM | {m} s" for m in records) + " |"
    lines += [head, "|" + "---|" * (1 + 3 * len(records))]
    for s in steps:
        row = [str(s)]
        for r in records.values():
            e = next((e for e in r["evals"] if e["step"] == s), None)
            row += [f"{e['psnr']:.2f}", f"{final_ssim(e):.3f}", f"{e['seconds']:.0f}"] if e else ["-"] * 3
        lines.append("| " + " | ".join(row) + " |")
    lines += [""] + [
        f"Step {e['step']}, mean over test views {', '.join(map(str, args.final_views))}: {m} "
        f"{e['psnr']:.2f} dB / SSIM {final_ssim(e):.3f}"
        + (
            " (" + "; ".join(f"view {v}: {p['psnr']:.2f} / {final_ssim(p):.3f}" for v, p in e["per_view"].items()) + ")"
            if "per_view" in e
            else ""
        )
        + "."
        for m, e in finals.items()
    ]
    if ref in records and len(records) > 1:
        lines += [""]
        base = records[ref]["evals"][-1]
        for m, r in records.items():
            if m == ref:
                continue
            last = r["evals"][-1]
            # equal wall-clock: the other method's score at the last evaluation within ref's training time
            within = [e for e in r["evals"] if e["seconds"] <= base["seconds"]]
            eq = within[-1] if within else r["evals"][0]
            lines.append(
                f"Test view(s) {key}, at step {last['step']}: {m} {last['psnr']:.2f} dB / SSIM {final_ssim(last):.3f} against "
                f"{ref} {base['psnr']:.2f} dB / {final_ssim(base):.3f} (difference "
                f"{last['psnr'] - base['psnr']:+.2f} dB). Within {ref}'s {base['seconds']:.0f} s of training, "
                f"{m} reached step {eq['step']}: {eq['psnr']:.2f} dB / {final_ssim(eq):.3f}."
            )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")

    plt = pyplot()
    views = [v for v in args.final_views[:2] if all(_png(args, m, v).exists() for m in records)]
    fig = plt.figure(figsize=(12, 3.6 * (1 + len(views))), layout="constrained")
    top, *rows = fig.subfigures(1 + len(views), 1)
    curves = top.subplots(1, 3)
    for ax, (key, metric, xlabel, ylabel) in zip(
        curves,
        (
            ("step", "psnr", "training step", "test PSNR (dB)"),
            ("step", "ssim", "training step", "test SSIM"),
            ("seconds", "psnr", "training seconds", "test PSNR (dB)"),
        ),
    ):
        for m, r in records.items():
            value = final_ssim if metric == "ssim" else (lambda e, metric=metric: e[metric])
            ax.plot([e[key] for e in r["evals"]], [value(e) for e in r["evals"]], marker="o", ms=3, label=m)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for sub, v in zip(rows, views):
        panels = []
        for m in records:
            img = iio.imread(_png(args, m, v))
            width = records[m].get(
                "view_width", img.shape[1] // 3
            )  # mipnerf: gt | coarse | fine; nerfacto: gt | render
            if not panels:
                panels.append(("ground truth", img[:, :width]))
            e = records[m]["evals"][-1]
            panels.append((f"{m}, step {e['step']}", img[:, -width:]))
        for ax, (title, img) in zip(sub.subplots(1, len(panels)), panels):
            ax.imshow(img)
            ax.set_title(f"test view {v}: {title}", fontsize=9)
            ax.axis("off")
    fig.savefig(args.out.with_suffix(".png"), dpi=100)
    plt.close(fig)
    console.print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.png')}")


def main(args: Args) -> None:
    if args.report:
        report(args)
    elif args.method and args.per_view:
        score_per_view(args)
    elif args.method:
        if not (args.data / "transforms_test.json").exists():
            raise SystemExit(f"no Blender scene at {args.data} (set --data or NERF_NORM_DATA)")
        train(args)
    else:
        raise SystemExit("give --method NAME to train, or --report")


if __name__ == "__main__":
    main(tyro.cli(Args))
