"""Why NeuS loses its surface when only the colour network is normalized (``norm_in=color``).

With ``norm_in=color`` the SDF network is nerfstudio's, untouched, so the sphere it starts from is the plain
NeuS one; only the colour network gets Linear -> Norm -> ReLU. The placement study
(``benchmarks/results/neus_bunny.md``) found no zero crossing left after 100 steps for cn and bn alike. This
driver trains ``none`` (baseline), ``cn:color`` and ``bn:color`` on the generated bunny with the neus-cn-lite
settings and logs, at every step: the loss terms, the gradient norms reaching the SDF network and the colour
network, and the SDF on fixed probe points (its value at the centre and the fraction of the scene box that is
inside, SDF < 0), so the moment and the way the surface goes are on record.

Interventions, to find the path by which the colour network moves the geometry: a placement may end in
``:detach-normals`` or ``:detach-features``, which cut the gradient from the colour network into the SDF network
through its normal input (the SDF's spatial gradient) or through its geometric-feature input.

    .venv/bin/python experiments/neus_color_norm/neus_color_norm.py   # writes experiments/neus_color_norm/neus_color_norm.{json,md,png}
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

import torch
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # the benchmarks' helpers
from neus_equal_time import Args as SceneArgs, _scene  # noqa: E402
from task_tables import provenance, provenance_lines  # noqa: E402

HERE = Path(__file__).resolve().parent  # this experiment's folder: its results
BENCHMARKS = HERE.parents[1] / "benchmarks"


@dataclass
class Args:
    placements: Tuple[str, ...] = (
        "none:sdf",
        "cn:color",
        "bn:color",
        "cn:color:detach-normals",
        "cn:color:detach-features",
        "ln:color",
        "gn:color",
    )
    """norm:place[:intervention]; ln and gn in the colour network tell batch coupling from normalization as such"""
    steps: int = 150
    probes: int = 4096
    threads: int = 1
    seed: int = 0
    out: Path = HERE / "neus_color_norm"
    scratch: Path = BENCHMARKS / "scratch" / "neus_color_norm"


def _grad_norm(params) -> float:
    grads = [p.grad.detach().double().square().sum() for p in params if p.grad is not None]
    return float(torch.stack(grads).sum().sqrt()) if grads else 0.0


def _cut(field, what: str) -> None:
    """Makes the colour network see its ``normals`` or ``geo_features`` input without gradient (an intervention of
    this experiment only)."""
    colors = field.get_colors

    def get_colors(points, directions, normals, geo_features, camera_indices):
        if what == "detach-normals":
            normals = normals.detach()
        else:
            geo_features = geo_features.detach()
        return colors(points, directions, normals, geo_features, camera_indices)

    field.get_colors = get_colors


def run(args: Args, scene: Path, norm: str, place: str, *cut: str) -> dict:
    from nerf_norm.nerfstudio.experiment import RunSettings, configure, method_config, setup_trainer, train_step

    label = ":".join((norm, place, *cut))
    config = configure(
        method_config("neus-cn-lite"),
        RunSettings(scene, args.scratch / label.replace(":", "-"), steps=args.steps, seed=args.seed),
    )
    config.pipeline.datamanager.dataparser.eval_every = 8
    config.pipeline.model.sdf_field.norm = norm
    config.pipeline.model.sdf_field.norm_in = place
    trainer = setup_trainer(config)
    field = trainer.pipeline.model.field
    for what in cut:
        if what not in ("detach-normals", "detach-features"):
            raise SystemExit(f"unknown intervention {what!r} in placement {label!r}")
        _cut(field, what)
    sdf_params = [p for n, p in field.named_parameters() if n.startswith("glin")]
    color_params = [p for n, p in field.named_parameters() if n.startswith("clin")]
    probes = 2.0 * torch.rand(args.probes, 3, generator=torch.Generator().manual_seed(1)) - 1.0
    probes[0] = 0.0  # the centre of the scene box

    def sdf_state() -> dict:
        with torch.no_grad():  # the SDF network holds no norm here, so train and eval mode agree
            sdf = field.forward_geonetwork(probes)[:, 0]
        return {
            "sdf_centre": float(sdf[0]),
            "inside_fraction": float((sdf < 0).double().mean()),
            "sdf_min": float(sdf.min()),
            "sdf_max": float(sdf.max()),
        }

    rendered = {}

    def weights_of_the_step(module, args_, kwargs):  # the rendering weights [rays, samples, 1] of the RGB pass
        rendered["weights"] = kwargs["weights"].detach()

    trainer.pipeline.model.renderer_rgb.register_forward_pre_hook(weights_of_the_step, with_kwargs=True)
    log = [{"step": 0, **sdf_state()}]
    for step in range(args.steps):
        losses: dict = {}
        train_step(trainer, step, losses)
        w = rendered["weights"][..., 0]
        opaque = w.sum(dim=-1) > 0.5  # rays that hit the object
        # how concentrated each opaque ray's weight is: the largest single sample weight over the ray's opacity
        peak = (w.max(dim=-1).values / w.sum(dim=-1).clamp_min(1e-8))[opaque]
        log.append(
            {
                "step": step + 1,
                **losses,
                "grad_sdf": _grad_norm(sdf_params),
                "grad_color": _grad_norm(color_params),
                "opaque_rays": float(opaque.double().mean()),
                "peak_weight": float(peak.mean()) if peak.numel() else 0.0,
                **sdf_state(),
            }
        )
    lost = next((e["step"] for e in log if e["inside_fraction"] in (0.0, 1.0)), None)  # no zero crossing left
    print(
        f"{label}: inside fraction {log[0]['inside_fraction']:.3f} -> {log[-1]['inside_fraction']:.3f}, "
        f"surface gone at step {lost}",
        flush=True,
    )
    return {"norm": norm, "norm_in": place, "label": label, "surface_gone_at_step": lost, "log": log}


def _peaks(log: list) -> str:
    """Mean peak weight (largest sample weight over the ray's opacity) in three windows of steps."""

    def mean(lo, hi):
        vals = [e["peak_weight"] for e in log if lo <= e["step"] <= hi and "peak_weight" in e]
        return f"{sum(vals) / len(vals):.3f}" if vals else "-"

    return " / ".join(mean(lo, hi) for lo, hi in ((31, 60), (61, 90), (91, 10**9)))


def main(args: Args) -> None:
    from nerf_norm.plotting import pyplot

    torch.set_num_threads(args.threads)
    scene = _scene(SceneArgs(scene="bunny"))  # the scene of benchmarks/neus_equal_time.py
    setting = (
        f"generated bunny (make-scene dtu, 64x48, 16 views), neus-cn-lite settings, {args.steps} steps, "
        f"seed {args.seed}; {args.probes} probe points uniform in the scene box [-1, 1]^3 (point 0: the "
        f"centre)"
    )
    done = {}
    if args.out.with_suffix(".json").exists():  # a rerun trains only the placements not recorded yet
        earlier = json.loads(args.out.with_suffix(".json").read_text())
        if earlier["meta"]["setting"] == setting:
            done = {r.setdefault("label", f"{r['norm']}:{r['norm_in']}"): r for r in earlier["runs"]}
    runs = [done[p] if p in done else run(args, scene, *p.split(":")) for p in args.placements]
    record = {"meta": provenance("neus_color_norm", args.threads, setting), "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1))

    plt = pyplot()
    keys = (
        ("inside_fraction", "fraction of the box inside (SDF < 0)", "linear"),
        ("sdf_centre", "SDF at the centre", "linear"),
        ("grad_sdf", "|grad| of the SDF network", "log"),
        ("grad_color", "|grad| of the colour network", "log"),
        ("opaque_rays", "fraction of rays with opacity > 0.5", "linear"),
        ("peak_weight", "largest sample weight / opacity (opaque rays)", "linear"),
    )
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    axes = axes.ravel()
    for ax, (key, title, scale) in zip(axes, keys):
        for r in runs:
            pts = [(e["step"], e[key]) for e in r["log"] if key in e]
            ax.plot(*zip(*pts), label=r["label"])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.set_yscale(scale)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=100)
    plt.close(fig)

    meta = record["meta"]
    lines = [
        *provenance_lines("NeuS with norms only in the colour network: how the surface goes", meta),
        "",
        "| placement | inside fraction at step 0 / 10 / end | SDF at centre, step 0 / end | median grad SDF net, "
        "steps 1-10 | median grad colour net, steps 1-10 | peak weight of opaque rays, steps 31-60 / 61-90 / "
        "91-end (mean) | surface gone at step |",
        "|---|---|---|---:|---:|---|---|",
    ]
    for r in runs:
        log = r["log"]
        first = sorted(e["grad_sdf"] for e in log[1:11])
        firstc = sorted(e["grad_color"] for e in log[1:11])
        lines.append(
            f"| {r['label']} | {log[0]['inside_fraction']:.3f} / "
            f"{log[min(10, len(log) - 1)]['inside_fraction']:.3f} / {log[-1]['inside_fraction']:.3f} | "
            f"{log[0]['sdf_centre']:.3f} / {log[-1]['sdf_centre']:.3f} | {first[len(first) // 2]:.3g} | "
            f"{firstc[len(firstc) // 2]:.3g} | {_peaks(log)} | {r['surface_gone_at_step'] or 'kept'} |"
        )
    lines += ["", f"Figure: `{args.out.name}.png`."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(tyro.cli(Args))
