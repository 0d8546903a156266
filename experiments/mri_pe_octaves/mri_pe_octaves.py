"""MRI with fewer PE octaves: is the PE networks' overfit of the measured k-space made by octaves above the grid?

In the MRI table (``benchmarks/results/mri.md``, 24^3, 25% of k-space) PE+BN and PE+CN fit the measured
coefficients to numerical exactness and fill the unmeasured ones badly; more measurements (40^3,
``mri_resolution.md``) did not change that. The paper's PE has 10 octaves, sin/cos(2^k pi x) for k < 10: its top
frequencies (up to 512 periods across [-1, 1]) lie far above the Nyquist frequency of a 24^3 grid (12 periods),
where the sampled features of different octaves alias onto the grid's own frequencies. This driver runs the PE
family at 24^3 with L = 4 octaves (top frequency 8 periods, below Nyquist), 6 and the paper's 10, and reports each
run's error split over measured and unmeasured k-space.

    .venv/bin/python experiments/mri_pe_octaves/mri_pe_octaves.py     # writes experiments/mri_pe_octaves/mri_pe_octaves.{json,md}
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
    """Fit the MRI volume with the PE family at several octave counts; write the measured / unmeasured split."""

    volume: Path = DATA / "mri" / "ch2bet.nii.gz"
    methods: tuple[str, ...] = ("pe", "pe+bn", "pe+ln", "pe+cn")
    octaves: tuple[int, ...] = (4, 6, 10)
    resolution: int = 24
    arch: str = "2x256"
    sampling: float = 0.25
    iters: int = 600
    threads: int = 1
    seed: int = 0
    out: Path = Path(__file__).resolve().parent / "mri_pe_octaves"


def main(args: Args) -> None:
    if not args.volume.is_file():
        raise SystemExit(f"MRI volume not found: {args.volume} (set NERF_NORM_DATA or --volume)")

    def case(octaves: int):
        return mri_case(
            f"L={octaves}",
            args.volume,
            args.arch,
            args.resolution,
            args.sampling,
            args.iters,
            args.seed,
            pe_frequencies=octaves,
        )

    setting = (
        f"{args.volume.name} resampled to {args.resolution}^3, {100 * args.sampling:.0f}% of k-space "
        f"(variable-density random mask, mask seed 0), {args.arch}, {args.iters} full-batch iterations, Adam "
        f"2e-3 with cosine decay to 2e-4, seed {args.seed}; PE with L octaves sin/cos(2^k pi x), k < L"
    )
    kspace_split_study(
        "mri_pe_octaves",
        "MRI with fewer PE octaves: measured vs unmeasured k-space",
        [case(L) for L in args.octaves],
        args.methods,
        setting,
        args.threads,
        args.out,
        (
            f"Nyquist frequency of the {args.resolution}^3 grid: {args.resolution // 2} periods across "
            "[-1, 1]; octave k has 2^k periods",
        ),
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
