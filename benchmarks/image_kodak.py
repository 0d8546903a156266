"""Kodak image-compression benchmark (paper Table 2 and Fig. 4c) at a CPU budget.

Every image x method is fitted through ``nerf-norm image``'s code path (full batch, MSE, Adam with the paper's
learning rates and cosine decay to 10%). Each run records the final PSNR (eval mode, 8-bit rounded output),
the best PSNR during training (training-mode output, 8-bit rounded: the number the authors' code reports),
SSIM, parameters, bpp and its PSNR curve. Results are appended to the JSON after every run, so an interrupted
benchmark resumes where it stopped. The table gives the mean over the images next to the paper's Table 2 (24
Kodak images at 768x512, 100k iterations), whether the paper's orderings hold, and PSNR at equal wall-clock
time (the training time of the fastest method on the same image).

    .venv/bin/python benchmarks/image_kodak.py                      # 3 images at 192x128, every registry method, 2000 it
    # the runs are Ray tasks of --threads CPUs each, as many at once as the machine has CPUs
    .venv/bin/python benchmarks/image_kodak.py --images kodim05 --downscale 2 --iters 1000 \
        --methods relu relu+cn pe pe+cn --out benchmarks/results/image_kodak_384
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import task_tables
import tyro
from task_tables import (
    ALL_METHODS,
    DATA,
    PAPER_METHODS,
    RESULTS,
    Case,
    equal_time_rows,
    method_color,
    orderings_table,
    provenance_lines,
    recorded_methods,
    run_cases,
    seconds_axis,
    seconds_table,
    table,
    timing_notes,
)

from nerf_norm.networks import get_method
from nerf_norm.tasks.commands import ImageCommand, run_image

# paper Table 2, methods in registry order (mean over the 24 Kodak images; the authors' code reports the best
# training PSNR over the run)
PAPER = {
    ("psnr_best", "5x20"): (23.18, 22.03, 21.95, 21.21, 23.39, 23.36, 23.02, 23.55, 22.10, 24.26, 24.42, 24.25, 24.51),
    ("psnr_best", "5x30"): (24.57, 23.34, 23.10, 22.57, 24.39, 24.22, 24.09, 24.62, 23.47, 25.54, 25.84, 25.56, 25.92),
    ("psnr_best", "10x28"): (25.52, 25.25, 25.05, 23.25, 26.27, 25.96, 25.58, 26.49, 24.63, 26.85, 26.61, 26.36, 26.91),
    ("psnr_best", "10x40"): (28.32, 26.92, 27.34, 23.56, 27.95, 27.57, 27.02, 28.21, 26.66, 28.71, 28.45, 28.06, 28.97),
    ("psnr_best", "13x49"): (29.42, 28.14, 29.02, 24.33, 29.08, 28.26, 27.86, 29.22, 28.23, 30.84, 29.38, 29.37, 31.08),
    ("ssim", "5x20"): (0.540, 0.482, 0.466, 0.506, 0.558, 0.552, 0.546, 0.561, 0.535, 0.577, 0.584, 0.581, 0.586),
    ("ssim", "5x30"): (0.594, 0.544, 0.513, 0.510, 0.589, 0.587, 0.568, 0.593, 0.562, 0.629, 0.637, 0.633, 0.640),
    ("ssim", "10x28"): (0.637, 0.587, 0.565, 0.521, 0.650, 0.637, 0.627, 0.654, 0.590, 0.682, 0.669, 0.667, 0.685),
    ("ssim", "10x40"): (0.712, 0.626, 0.681, 0.533, 0.693, 0.686, 0.670, 0.700, 0.626, 0.754, 0.737, 0.734, 0.760),
    ("ssim", "13x49"): (0.727, 0.715, 0.743, 0.540, 0.754, 0.727, 0.713, 0.757, 0.649, 0.821, 0.779, 0.779, 0.827),
}
MEAN = "mean"


@dataclass
class Args:
    """Fit Kodak images with the methods (default: all of the registry) at one architecture; write a Table-2-style
    summary and curves."""

    data: Path = DATA / "kodak"
    """folder with kodim01.png ... kodim24.png"""
    images: tuple[str, ...] = ("kodim05", "kodim08", "kodim23")
    """landscape images: motorbikes (fine detail), houses (edges and high frequencies), parrots (smooth)"""
    arch: str = "10x28"
    methods: tuple[str, ...] = ALL_METHODS
    iters: int = 2000
    downscale: int = 4
    """768x512 images become 192x128 at 4, 384x256 at 2"""
    log_every: int = 20
    threads: int = 1
    seed: int = 0
    out: Path = RESULTS / "image_kodak"
    """output stem: OUT.json, OUT.md, OUT_curves.png"""
    report_only: bool = False
    """write OUT.md and the curves from the runs OUT.json holds, train nothing"""
    retime: int = 0
    """> 0: measure every method's seconds per iteration in this many interleaved rounds (short runs on the first
    image, the grid's size, threads and settings), store them in OUT.json under ``timing`` and rewrite the
    report; equal-time comparisons then use iteration x measured cost instead of the runs' own clocks"""
    retime_iters: int = 60
    """iterations of each timing run (the cost is the slope between its first and last logged point)"""


def fit(args: Args, image: str, method: str, out: Path, iters: int, log_every: int):
    """One ``nerf-norm image`` run of ``method`` on ``image`` at the benchmark's settings: ``(result, task)``."""
    cmd = ImageCommand(
        image=args.data / f"{image}.png",
        method=method,
        arch=args.arch,
        downscale=args.downscale,
        iters=iters,
        seed=args.seed,
        quiet=True,
        resume=False,
        log_every=log_every,
        out=out,
        threads=args.threads,
    )
    return run_image(cmd)


def retime(args: Args) -> dict:
    """Interleaved per-method timing (see ``Args.retime``); returns the updated record."""

    def short_run(method: str, out: Path) -> dict:
        return fit(args, args.images[0], method, out, args.retime_iters, args.retime_iters // 3)[0].history

    what = f"{args.retime_iters}-iteration runs per method on {args.images[0]} at the grid's size and settings"
    return task_tables.retime(
        args.out.with_suffix(".json"), "image_kodak", args.methods, args.retime, short_run, args.threads, what
    )


def with_mean(record: dict, images, methods) -> dict:
    """``record`` plus one ``mean`` case per method (mean over the images that have it)."""
    runs = list(record["runs"])
    for m in methods:
        rs = [r for r in runs if r["method"] == m and r["case"] in images]
        if len(rs) == len(images):
            runs.append(
                {
                    "case": MEAN,
                    "method": m,
                    **{
                        k: statistics.fmean(r[k] for r in rs)
                        for k in ("psnr", "psnr_best", "ssim", "params", "bpp_half", "train_seconds", "iterations")
                    },
                }
            )
    return {**record, "runs": runs}


def report(record: dict, args: Args) -> None:
    images = sorted({r["case"] for r in record["runs"]})
    methods = recorded_methods(record)
    full = with_mean(record, images, methods)
    labels = images + ([MEAN] if any(r["case"] == MEAN for r in full["runs"]) else [])
    paper = {(k, MEAN): v for (k, arch), v in PAPER.items() if arch == args.arch}
    meta = record["meta"]
    later = [m for m in methods if m not in PAPER_METHODS]
    lines = [
        *provenance_lines("Kodak image fitting (Table 2 layout)", meta),
        *(
            [
                "- the later baselines at their own learning rates: "
                + ", ".join(f"{m} {get_method(m).default_lr:g}" for m in later)
            ]
            if later
            else []
        ),
        "- `PSNR final`: eval-mode output after the last iteration; `PSNR best`: best training-mode output "
        "over the run (the authors' metric, the one their Table 2 reports); both on the 8-bit rounded output",
        f"- images in this file: {', '.join(images)}; `mean` is over them (a method missing on one of them has no "
        "mean yet)",
        f"- `paper` rows: Table 2, {args.arch}, mean over the 24 Kodak images at 768x512 after 100k iterations",
        *[f"- {n}" for n in timing_notes(record)],
        "",
    ]
    lines += table(
        full,
        methods,
        [("psnr_best", "PSNR best", "{:.2f}"), ("psnr", "PSNR final", "{:.2f}"), ("ssim", "SSIM final", "{:.3f}")],
        labels,
        paper,
    )
    lines += ["", "## Do the paper's orderings hold? (PSNR best; cells: ours / paper)", ""]
    lines += orderings_table(full, "psnr_best", labels, paper)
    by = {(r["case"], r["method"]): r for r in record["runs"]}
    timed = "timing" in record
    lines += [
        "",
        "## Equal wall-clock time",
        "",
        "Best logged training PSNR reached within the training time "
        "of the fastest method on the same image"
        + (
            ", time = iteration x the method's measured seconds per iteration (see the timing note above)"
            if timed
            else " (the runs' own clocks: not valid, see above)"
        )
        + ".",
        "",
    ]
    lines += equal_time_rows(record, methods, images, "psnr", "{:.2f}")
    lines += ["", "## Seconds per iteration", ""]
    if timed:
        cost = record["timing"]["seconds_per_iter"]
        lines += [
            "measured (timing note above):",
            "",
            "| | " + " | ".join(methods) + " |",
            "|---|" + "---:|" * len(methods),
            "| s/iter | " + " | ".join(f"{cost[m]:.4f}" if m in cost else "-" for m in methods) + " |",
            "| relative to relu | "
            + " | ".join(f"{cost[m] / cost['relu']:.2f}" if m in cost and "relu" in cost else "-" for m in methods)
            + " |",
            "",
            "the runs' own clocks (not valid, see above):",
            "",
        ]
    lines += seconds_table(record, methods, images)
    lines += ["", "## Parameters and rate", "", "| | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    first = {m: by[(images[0], m)] for m in methods if (images[0], m) in by}
    lines.append("| params | " + " | ".join(str(first[m]["params"]) if m in first else "-" for m in methods) + " |")
    lines.append(
        "| bpp (fp16) | " + " | ".join(f"{first[m]['bpp_half']:.3f}" if m in first else "-" for m in methods) + " |"
    )
    lines += ["", f"Figure: `{args.out.name}_curves.png` (training PSNR over iterations and over seconds, per image)."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plot(record, args, images)
    print(f"wrote {args.out.with_suffix('.md')}")


def plot(record: dict, args: Args, images) -> None:
    from nerf_norm.plotting import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(2, len(images), figsize=(5.5 * len(images), 8), squeeze=False)
    for col, image in enumerate(images):
        for i, m in enumerate(recorded_methods(record)):
            rs = [r for r in record["runs"] if r["method"] == m and r["case"] == image]
            if not rs:
                continue
            h = rs[0]["history"]
            style = "-" if "+" in m else ":"
            for row, xs in enumerate((h["iteration"], seconds_axis(record, rs[0]))):
                axes[row, col].plot(xs, h["psnr"], style, color=method_color(plt, i), lw=1.3, label=m)
        seconds = "training seconds (iteration x measured s/iter)" if "timing" in record else "training seconds"
        for row, xl in enumerate(("iteration", seconds)):
            axes[row, col].set_xlabel(xl)
            axes[row, col].set_ylabel("training PSNR (dB, 8-bit)")
            axes[row, col].set_title(f"{image}, {args.arch}")
            axes[row, col].grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(args.out.parent / f"{args.out.name}_curves.png", dpi=100)
    plt.close(fig)


def main(args: Args) -> None:
    if args.retime > 0:
        report(retime(args), args)
        return
    if args.report_only:
        report(json.loads(args.out.with_suffix(".json").read_text()), args)
        return
    cases = []
    for image in args.images:
        path = args.data / f"{image}.png"
        if not path.exists():
            raise SystemExit(f"Kodak image not found: {path} (set --data or NERF_NORM_DATA)")

        def run(method: str, out: Path, image: str = image):
            result, _ = fit(args, image, method, out, args.iters, args.log_every)
            return result.metrics, {k: result.history[k] for k in ("iteration", "seconds", "psnr")}

        cases.append(Case(image, run))
    size = f"{768 // args.downscale}x{512 // args.downscale}"
    setting = (
        f"Kodak images at {size} (downscaled {args.downscale}x from 768x512; paper: full "
        f"size), {args.arch}, {args.iters} full-batch Adam iterations (paper: 100k), paper learning rates "
        f"(1e-2 normalized, 2e-4 otherwise) with cosine decay to 10%, PE = NeRF positional encoding with 10 "
        f"frequencies, seed {args.seed}"
    )
    record = run_cases(
        args.out.name,
        cases,
        args.methods,
        ("psnr", "psnr_best", "psnr_best_iteration", "ssim", "bpp_half"),
        setting,
        args.threads,
        args.out,
        script="image_kodak",
    )
    report(record, args)


if __name__ == "__main__":
    main(tyro.cli(Args))
