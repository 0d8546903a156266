"""3D MRI benchmark (paper Table 5) at a CPU budget: the 13 methods x the paper's architectures on a brain volume.

Every run goes through ``nerf-norm mri``'s code path (variable-density undersampled 3D k-space, loss on the
measured coefficients, full batch, Adam 2e-3). Results are appended to the JSON after every run, so an
interrupted benchmark resumes where it stopped.

    .venv/bin/python benchmarks/mri.py              # writes benchmarks/results/mri.{json,md}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import tyro
from task_tables import DATA, PAPER_METHODS, RESULTS, Case, run_cases, write_report

from nerf_norm.tasks.commands import MRICommand, run_mri

# paper Table 5, methods in registry order
PAPER = {
    ("psnr", "2x256"): (26.04, 25.31, 27.24, 24.52, 28.97, 27.91, 27.11, 29.34, 30.17, 32.42, 31.97, 31.39, 32.86),
    ("psnr", "4x256"): (27.89, 29.74, 30.24, 26.11, 30.62, 29.71, 29.58, 31.09, 32.12, 34.56, 34.21, 34.11, 34.97),
    ("ssim", "2x256"): (0.708, 0.623, 0.722, 0.781, 0.888, 0.857, 0.825, 0.899, 0.902, 0.914, 0.902, 0.858, 0.918),
    ("ssim", "4x256"): (0.764, 0.820, 0.837, 0.868, 0.914, 0.898, 0.891, 0.920, 0.929, 0.955, 0.937, 0.932, 0.961),
}


@dataclass
class Args:
    """Reconstruct a brain MRI volume from undersampled k-space with the 13 methods; write a Table-5 summary."""

    volume: Path = DATA / "mri" / "ch2bet.nii.gz"
    methods: tuple[str, ...] = PAPER_METHODS
    archs: tuple[str, ...] = ("2x256", "4x256")
    resolution: int = 24
    sampling: float = 0.25
    iters: int = 1200
    """4x the first CPU budget (paper fidelity plan, docs/reproduction.md)"""
    threads: int = 2
    seed: int = 0
    out: Path = RESULTS / "mri"
    """output stem: OUT.json, OUT.md"""
    report_only: bool = False
    """write OUT.md from the runs OUT.json holds so far, running nothing (missing cells show -)"""


def mri_case(
    label: str,
    volume: Path,
    arch: str,
    resolution: int,
    sampling: float,
    iters: int,
    seed: int,
    pe_frequencies: int = 10,
) -> Case:
    """One row group of an MRI table: ``nerf-norm mri``'s code path for any method, with these settings."""

    def run(method: str, out: Path):
        cmd = MRICommand(
            volume=volume,
            method=method,
            arch=arch,
            resolution=resolution,
            sampling=sampling,
            iters=iters,
            seed=seed,
            quiet=True,
            resume=False,
            out=out,
            pe_frequencies=pe_frequencies,
        )
        result, _ = run_mri(cmd)
        return result.metrics, {k: result.history[k] for k in ("iteration", "seconds", "psnr")}

    return Case(label, run)


def add_kspace_db(record: dict) -> None:
    """The voxel error's two parts by Parseval (measured / unmeasured k-space) as dB, so that higher is better."""
    for run in record["runs"]:
        for key, shown in (("mse_measured_kspace", "fit_db"), ("mse_unmeasured_kspace", "fill_db")):
            if key in run:
                run[shown] = -10.0 * math.log10(max(run[key], 1e-30))


SPLIT_NOTE = (
    "`measured` / `unmeasured k-space error (dB)`: -10 log10 of the voxel MSE's two parts by Parseval; "
    "higher is better; a measured error far above the unmeasured one is a fit of the measurements that "
    "does not carry over to the coefficients the network fills in"
)


def kspace_split_study(
    name: str,
    title: str,
    cases: list[Case],
    methods: tuple[str, ...],
    setting: str,
    threads: int,
    out: Path,
    notes: tuple[str, ...] = (),
) -> dict:
    """An MRI study beside the table (one case per setting varied): runs what ``out.json`` lacks and writes
    ``out.md`` with PSNR and each run's measured / unmeasured k-space error."""
    record = run_cases(
        name,
        cases,
        methods,
        ("psnr", "psnr_best", "ssim", "zero_filled_psnr", "mse_measured_kspace", "mse_unmeasured_kspace"),
        setting,
        threads,
        out,
    )
    add_kspace_db(record)
    write_report(
        out,
        title,
        record,
        [SPLIT_NOTE, *notes, "runs as Ray tasks of --threads CPUs each"],
        methods,
        [
            ("psnr", "PSNR final", "{:.2f}"),
            ("fit_db", "measured k-space error (dB)", "{:.1f}"),
            ("fill_db", "unmeasured k-space error (dB)", "{:.1f}"),
        ],
        [c.label for c in cases],
        {},
    )
    return record


def main(args: Args) -> None:
    if not args.volume.is_file():
        raise SystemExit(f"MRI volume not found: {args.volume} (set NERF_NORM_DATA or --volume)")

    def case(arch: str) -> Case:
        return mri_case(arch, args.volume, arch, args.resolution, args.sampling, args.iters, args.seed)

    setting = (
        f"{args.volume.name} resampled to {args.resolution}^3 (paper: ATLAS volumes at 96^3), "
        f"{100 * args.sampling:.0f}% of k-space on a variable-density random mask (mask seed 0), "
        f"{args.iters} full-batch iterations (paper 1,000), Adam 2e-3 with cosine decay to 2e-4, "
        f"seed {args.seed}"
    )
    record = run_cases(
        "mri",
        [case(a) for a in args.archs],
        args.methods,
        (
            "psnr",
            "psnr_best",
            "ssim",
            "zero_filled_psnr",
            "zero_filled_ssim",
            "kspace_mse",
            "mse_measured_kspace",
            "mse_unmeasured_kspace",
        ),
        setting,
        args.threads,
        args.out,
        report_only=args.report_only,
    )
    add_kspace_db(record)
    zf = next(iter(record["runs"]))
    write_report(
        args.out,
        "3D MRI reconstruction (Table 5 layout)",
        record,
        [
            f"zero-filled inverse FFT of the same measurements: PSNR {zf['zero_filled_psnr']:.2f} dB, SSIM "
            f"{zf['zero_filled_ssim']:.3f}",
            "runs as Ray tasks of --threads CPUs each, as many at once as the machine has CPUs (seconds per iteration are under that load); `paper` rows: the paper's Table 5 (other data and "
            "sampling, 96^3, 1,000 iterations)",
            "`measured` / `unmeasured k-space error (dB)`: -10 log10 of the voxel MSE's two parts by Parseval (the "
            "error on the measured coefficients, which training minimises, and on the coefficients the network had to "
            "fill in); higher is better; before PSNR's clamp to [0, 1]",
        ],
        args.methods,
        [
            ("psnr", "PSNR final", "{:.2f}"),
            ("psnr_best", "PSNR best", "{:.2f}"),
            ("ssim", "SSIM final", "{:.3f}"),
            ("fit_db", "measured k-space error (dB)", "{:.2f}"),
            ("fill_db", "unmeasured k-space error (dB)", "{:.2f}"),
        ],
        args.archs,
        PAPER,
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
