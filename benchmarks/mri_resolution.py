"""MRI at two grid sizes: does fitting the measured k-space exactly stop hurting with more measurements?

In the MRI table (``benchmarks/results/mri.md``, 24^3, 25% of k-space) the networks with high-frequency inputs
(MFN, WIRE, SIREN, PE+BN, PE+CN at 2x256) fit the measured coefficients to numerical exactness (over 100 dB) and
fill the unmeasured ones badly, while the ReLU networks fit less and fill better: with 3,456 measured
coefficients against about 70,000-80,000 parameters the fit is far from determined. The paper reconstructs 96^3
volumes, 64x as many measurements. This driver runs a few methods at 24^3 and at a larger grid with the same
sampling fraction and reports each run's error split over measured and unmeasured k-space.

    .venv/bin/python benchmarks/mri_resolution.py     # writes benchmarks/results/mri_resolution.{json,md}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro

from mri import add_kspace_db, mri_case
from task_tables import DATA, RESULTS, run_cases, write_report


@dataclass
class Args:
    volume: Path = DATA / "mri" / "ch2bet.nii.gz"
    methods: tuple[str, ...] = ("relu+cn", "pe+cn", "pe+ln", "mfn")
    resolutions: tuple[int, ...] = (24, 40)
    arch: str = "2x256"
    sampling: float = 0.25
    iters: int = 600
    threads: int = 1
    seed: int = 0
    out: Path = RESULTS / "mri_resolution"


def main(args: Args) -> None:
    if not args.volume.is_file():
        raise SystemExit(f"MRI volume not found: {args.volume} (set NERF_NORM_DATA or --volume)")

    def case(resolution: int):
        return mri_case(f"{resolution}^3", args.volume, args.arch, resolution, args.sampling, args.iters, args.seed)

    setting = (f"{args.volume.name} resampled to each grid, {100 * args.sampling:.0f}% of k-space (variable-density "
               f"random mask, mask seed 0), {args.arch}, {args.iters} full-batch iterations, Adam 2e-3 with cosine "
               f"decay to 2e-4, seed {args.seed}")
    record = run_cases("mri_resolution", [case(r) for r in args.resolutions], args.methods,
                       ("psnr", "psnr_best", "ssim", "zero_filled_psnr", "mse_measured_kspace",
                        "mse_unmeasured_kspace"), setting, args.threads, args.out)
    add_kspace_db(record)
    write_report(args.out, "MRI at two grid sizes: measured vs unmeasured k-space", record, [
        "`measured` / `unmeasured k-space error (dB)`: -10 log10 of the voxel MSE's two parts by Parseval; higher "
        "is better; a measured error far above the unmeasured one is a fit of the measurements that does not carry "
        "over to the coefficients the network fills in",
        "runs as Ray tasks of --threads CPUs each"], args.methods,
        [("psnr", "PSNR final", "{:.2f}"), ("fit_db", "measured k-space error (dB)", "{:.1f}"),
         ("fill_db", "unmeasured k-space error (dB)", "{:.1f}")], [f"{r}^3" for r in args.resolutions], {})


if __name__ == "__main__":
    main(tyro.cli(Args))
