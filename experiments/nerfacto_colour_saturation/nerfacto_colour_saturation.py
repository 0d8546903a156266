"""Why does plain nerfacto render lego in grey? Its colour head's sigmoid saturates.

In ``benchmarks/results/nerfacto_lego.md`` nerfstudio's nerfacto (``nerfacto-lite``: the torch implementation at the
CPU preset) stays near 18-19 dB for 3000 steps and renders the object in shades of grey, while ``nerfacto-cn-lite``
reaches 26 dB. Grey means R = G = B: the colour head outputs ~0 for every channel (black), and compositing on the
white background leaves greys. This script measures it: the pre-activations of the colour head's sigmoid output
(fraction below -6.9, i.e. sigmoid < 1e-3, where its gradient vanishes) and the alive units of the head's last
hidden layer (ReLU > 0 on some sample), on the samples of one training batch, every ``--probe-every`` steps, for
both methods at ``--seeds`` (lego at ``--scale``, lite settings). With ``--runs`` it measures finished runs
instead (their config.yml), e.g. the benchmark's.

    .venv/bin/python experiments/nerfacto_colour_saturation/nerfacto_colour_saturation.py
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # the benchmarks' helpers
from task_tables import provenance, provenance_lines, resume_keyed  # noqa: E402

from nerf_norm.nerfstudio.experiment import RunSettings, configure, lite_config, setup_trainer, train_step

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("NERF_NORM_DATA", HERE.parents[2] / "shared" / "data")) / "blender" / "lego"
console = Console()
SATURATED = -6.9  # sigmoid(-6.9) < 1e-3: the colour's gradient is below 1e-3 of its largest


@dataclass
class Args:
    methods: tuple[str, ...] = ("nerfacto", "nerfacto-cn")
    seeds: tuple[int, ...] = (0, 1, 2)
    data: Path = DATA
    scale: float = 0.25
    """camera_res_scale_factor (400x400 -> 100x100)"""
    steps: int = 300
    probe_every: int = 50
    threads: int = 1
    out: Path = HERE / "nerfacto_colour_saturation"
    scratch: Path = HERE.parents[1] / "benchmarks" / "scratch" / "nerfacto_colour_saturation"


def head_state(model, batch) -> dict:
    """Colour-head statistics on the field samples of one forward pass over ``batch``'s rays."""
    head = model.field.mlp_head
    seen = {}
    hooks = [
        head.layers[-1].register_forward_hook(lambda m, i, o: seen.__setitem__("pre", o.detach())),
        head.layers[-2].register_forward_hook(lambda m, i, o: seen.__setitem__("hidden", i[0].detach())),
    ]
    model.eval()  # running statistics: the probe changes nothing in the model
    try:
        with torch.no_grad():
            model(batch)
    finally:
        model.train()
        for hook in hooks:
            hook.remove()
    pre = seen["pre"].reshape(-1, 3)
    # the input of the last Linear is the last hidden layer's activation (after its norm and ReLU)
    alive = (seen["hidden"].reshape(-1, seen["hidden"].shape[-1]) > 0).any(0)
    return {
        "saturated_fraction": float((pre < SATURATED).float().mean()),
        "pre_activation_median": float(pre.median()),
        "alive_units": int(alive.sum()),
        "units": int(alive.numel()),
    }


def run(args: Args, method: str, seed: int) -> dict:
    config = configure(
        lite_config(method), RunSettings(args.data, args.scratch / f"{method}_seed{seed}", args.steps, seed, args.scale)
    )
    trainer = setup_trainer(config)
    datamanager = trainer.pipeline.datamanager
    probes = []
    for step in range(args.steps):
        loss = train_step(trainer, step)
        if (step + 1) % args.probe_every == 0:
            bundle, _ = datamanager.next_train(step)
            state = head_state(trainer.pipeline.model, bundle)
            probes.append({"step": step + 1, "loss": loss, **state})
            console.print(f"{method} seed {seed} step {step + 1}: {state}")
    return {"method": method, "seed": seed, "probes": probes}


def write_markdown(args: Args, record: dict) -> None:
    lines = provenance_lines("nerfacto's colour head: saturation of its sigmoid output", record["meta"]) + [""]
    lines += [
        "Fraction of the colour head's output pre-activations below -6.9 (sigmoid < 1e-3, gradient vanishing) on",
        "one training batch's field samples, and the alive units (ReLU > 0 on some sample) of its last hidden layer.",
        "",
        "| method | seed | step | loss | saturated | median pre-activation | alive units |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, r in record["runs"].items():
        for p in r["probes"]:
            lines.append(
                f"| {r['method']} | {r['seed']} | {p['step']} | {p['loss']:.4f} | {p['saturated_fraction']:.3f} | "
                f"{p['pre_activation_median']:.2f} | {p['alive_units']}/{p['units']} |"
            )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    meta = provenance(
        "experiments/nerfacto_colour_saturation/nerfacto_colour_saturation",
        args.threads,
        f"{args.data.name} at scale {args.scale}, lite settings, {args.steps} steps, seeds {list(args.seeds)}, "
        f"probe every {args.probe_every} steps",
    )
    runs = {f"{m}/seed{s}": (lambda m=m, s=s: run(args, m, s)) for s in args.seeds for m in args.methods}
    record = resume_keyed(args.out, meta, runs)
    write_markdown(args, record)
    console.print(f"wrote {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main(tyro.cli(Args))
