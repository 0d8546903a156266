"""2D CT benchmark (paper Table 4) at a CPU budget: the 13 methods x the paper's architectures on a chest slice.

Every run goes through ``nerf-norm ct``'s code path (differentiable parallel-beam projector, MSE on the
sinogram, full batch, Adam 5e-3 -> 5e-4). Results are appended to the JSON after every run, so an interrupted
benchmark resumes where it stopped.

    .venv/bin/python benchmarks/ct.py               # writes benchmarks/results/ct.{json,md}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro
from task_tables import DATA, PAPER_METHODS, RESULTS, Case, run_cases, write_report

from nerf_norm.tasks.commands import CTCommand, run_ct

# paper Table 4, methods in registry order
PAPER = {
    ("psnr", "2x128"): (28.30, 24.82, 28.30, 26.31, 28.50, 27.55, 27.07, 28.72, 28.16, 31.14, 30.08, 29.71, 31.44),
    ("psnr", "2x256"): (16.16, 27.97, 28.26, 26.78, 28.41, 27.75, 27.40, 28.77, 28.11, 31.60, 30.52, 30.03, 31.71),
    ("psnr", "4x128"): (18.31, 29.15, 28.31, 28.21, 30.42, 29.46, 28.75, 30.81, 30.42, 32.45, 32.34, 31.61, 32.62),
    ("psnr", "4x256"): (18.32, 30.92, 28.70, 28.30, 30.48, 29.67, 28.67, 30.87, 30.00, 32.64, 32.47, 31.86, 32.87),
    ("ssim", "2x128"): (0.803, 0.527, 0.756, 0.821, 0.882, 0.865, 0.833, 0.885, 0.873, 0.913, 0.903, 0.879, 0.915),
    ("ssim", "2x256"): (0.198, 0.677, 0.729, 0.841, 0.884, 0.856, 0.848, 0.886, 0.890, 0.910, 0.908, 0.890, 0.912),
    ("ssim", "4x128"): (0.201, 0.765, 0.744, 0.862, 0.923, 0.903, 0.887, 0.928, 0.921, 0.934, 0.934, 0.930, 0.936),
    ("ssim", "4x256"): (0.261, 0.856, 0.719, 0.873, 0.924, 0.905, 0.890, 0.930, 0.917, 0.937, 0.937, 0.930, 0.939),
}


@dataclass
class Args:
    """Reconstruct a CT slice from 100 projections with the 13 methods; write a Table-4-style summary."""

    image: Path = DATA / "ct" / "chest.png"
    methods: tuple[str, ...] = PAPER_METHODS
    archs: tuple[str, ...] = ("2x128", "2x256", "4x128", "4x256")
    size: int = 128
    projections: int = 100
    pe_frequencies: int = 10
    """octaves of the pe family's positional encoding (paper: 10)"""
    iters: int = 800
    """4x the first CPU budget (paper fidelity plan, docs/reproduction.md)"""
    threads: int = 2
    seed: int = 0
    out: Path = RESULTS / "ct"
    """output stem: OUT.json, OUT.md"""
    curve_at: tuple[int, ...] = ()
    """also report PSNR at these iterations and plot the training curves (OUT.png), e.g. for long runs"""
    report_only: bool = False
    """write OUT.md from the runs OUT.json holds so far, running nothing (missing cells show -)"""


def main(args: Args) -> None:
    if not args.image.is_file():
        raise SystemExit(f"CT slice not found: {args.image} (set NERF_NORM_DATA or --image)")

    def case(arch: str) -> Case:
        def run(method: str, out: Path):
            cmd = CTCommand(
                image=args.image,
                method=method,
                arch=arch,
                size=args.size,
                projections=args.projections,
                iters=args.iters,
                seed=args.seed,
                quiet=True,
                pe_frequencies=args.pe_frequencies,
                resume=False,
                out=out,
            )
            result, _ = run_ct(cmd)
            return result.metrics, {k: result.history[k] for k in ("iteration", "seconds", "psnr")}

        return Case(arch, run)

    setting = (
        f"{args.image.name} zero-padded to a square and resampled to {args.size}x{args.size} (paper: 512x512 "
        f"colorectal slices), {args.projections} parallel-beam projections, {args.iters} full-batch "
        f"iterations (paper 20,000), Adam 5e-3 with cosine decay to 5e-4, seed {args.seed}"
        + (f", PE with {args.pe_frequencies} octaves (paper: 10)" if args.pe_frequencies != 10 else "")
    )
    keep = ("psnr", "psnr_best", "ssim", "sinogram_mse", "fbp_psnr", "fbp_ssim")
    record = run_cases(
        "ct",
        [case(a) for a in args.archs],
        args.methods,
        keep,
        setting,
        args.threads,
        args.out,
        report_only=args.report_only,
    )
    fbp = next(iter(record["runs"]))
    write_report(
        args.out,
        "2D CT reconstruction (Table 4 layout)",
        record,
        [
            f"filtered back projection (scikit-image iradon, ramp filter) of the same measurements: PSNR "
            f"{fbp['fbp_psnr']:.2f} dB, SSIM {fbp['fbp_ssim']:.3f}",
            "runs as Ray tasks of --threads CPUs each, as many at once as the machine has CPUs (seconds per iteration are under that load); `paper` rows: the paper's Table 4 (other data, 512x512, "
            "20k iterations)",
        ],
        args.methods,
        [("psnr", "PSNR final", "{:.2f}"), ("psnr_best", "PSNR best", "{:.2f}"), ("ssim", "SSIM final", "{:.3f}")],
        args.archs,
        PAPER,
        curve_at=args.curve_at,
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
