"""MRI at two grid sizes: does fitting the measured k-space exactly stop hurting with more measurements?

In the MRI table (``benchmarks/results/mri.md``, 24^3, 25% of k-space) the networks with high-frequency inputs
(MFN, WIRE, SIREN, PE+BN, PE+CN at 2x256) fit the measured coefficients to numerical exactness (over 100 dB) and
fill the unmeasured ones badly, while the ReLU networks fit less and fill better: with 3,456 measured
coefficients against about 70,000-80,000 parameters the fit is far from determined. The paper reconstructs 96^3
volumes, 64x as many measurements. This driver runs a few methods at 24^3 and at a larger grid with the same
sampling fraction and reports each run's error split over measured and unmeasured k-space.

    .venv/bin/python experiments/mri_resolution/mri_resolution.py     # writes experiments/mri_resolution/mri_resolution.{json,md}
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # the benchmarks' helpers
from mri import kspace_split_study, mri_case  # noqa: E402
from task_tables import DATA  # noqa: E402


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
    out: Path = Path(__file__).resolve().parent / "mri_resolution"


def main(args: Args) -> None:
    if not args.volume.is_file():
        raise SystemExit(f"MRI volume not found: {args.volume} (set NERF_NORM_DATA or --volume)")

    def case(resolution: int):
        return mri_case(f"{resolution}^3", args.volume, args.arch, resolution, args.sampling, args.iters, args.seed)

    setting = (
        f"{args.volume.name} resampled to each grid, {100 * args.sampling:.0f}% of k-space (variable-density "
        f"random mask, mask seed 0), {args.arch}, {args.iters} full-batch iterations, Adam 2e-3 with cosine "
        f"decay to 2e-4, seed {args.seed}"
    )
    kspace_split_study(
        "mri_resolution",
        "MRI at two grid sizes: measured vs unmeasured k-space",
        [case(r) for r in args.resolutions],
        args.methods,
        setting,
        args.threads,
        args.out,
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
