"""How well each CT run fits its measurements, against how well it reconstructs the slice.

Reads the ``metrics.json`` every ``ct.py`` run leaves in its scratch folder (``benchmarks/scratch/ct/<arch>/<method>``
by default) and tabulates, per architecture and method, the final sinogram MSE (the training loss: how closely the
network's projections match the measured ones) beside the slice's PSNR and SSIM. 100 projections of a
128x128 slice leave part of the image unconstrained; a network that matches the measurements more closely and
still reconstructs worse puts its error where no projection looks (as the MRI runs do in unmeasured k-space).

    .venv/bin/python experiments/ct_fit/ct_fit.py                       # results/ct_fit.{json,md}
    .venv/bin/python experiments/ct_fit/ct_fit.py --scratch benchmarks/scratch/ct other_clone/benchmarks/scratch/ct
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # the benchmarks' helpers
from task_tables import ALL_METHODS, SCRATCH, provenance, provenance_lines  # noqa: E402


@dataclass
class Args:
    """Tabulate the sinogram fit and the reconstruction quality of finished ct.py runs."""

    scratch: tuple[Path, ...] = (SCRATCH / "ct",)
    """ct.py's scratch folders: <arch>/<method with + as _>/metrics.json (e.g. of ct.py and of a long ct.py run)"""
    out: Path = Path(__file__).resolve().parent / "ct_fit"
    """output stem: OUT.json, OUT.md"""


def high_frequency_share(folder: Path) -> float:
    """Share of the reconstruction error's energy above half the Nyquist frequency (radially), from the run's
    ``reconstruction.png`` and ``target.png`` (8-bit, as ``nerf-norm ct`` writes them)."""
    load = lambda name: np.asarray(Image.open(folder / name), dtype=np.float64) / 255.0  # noqa: E731
    error = load("reconstruction.png") - load("target.png")
    power = np.abs(np.fft.fft2(error)) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(error.shape[0]), np.fft.fftfreq(error.shape[1]), indexing="ij")
    radius = np.hypot(fx, fy) / 0.5  # 1 = Nyquist along an axis
    return float(power[radius > 0.5].sum() / power.sum())


def main(args: Args) -> None:
    runs, threads = [], set()
    found = [(folder, path) for folder in args.scratch for path in sorted(folder.glob("*/*/metrics.json"))]
    for folder, path in found:
        record = json.loads(path.read_text())
        metrics, run = record["metrics"], record["run"]
        threads.add(record.get("torch_threads", "not recorded by the run"))
        if "sinogram_mse" not in metrics:
            raise SystemExit(f"{path}: no 'sinogram_mse' in its metrics (not a finished `nerf-norm ct` run?)")
        runs.append(
            {
                "arch": run["arch"],
                "method": run["method"],
                "iterations": metrics["iterations"],
                "projections": run["projections"],
                "sinogram_mse": metrics["sinogram_mse"],
                "psnr": metrics["psnr"],
                "ssim": metrics["ssim"],
                "high_frequency_error_share": high_frequency_share(path.parent),
                "source": str(path.relative_to(folder)),
            }
        )
    if not runs:
        raise SystemExit(f"no finished CT runs under {args.scratch} (run benchmarks/ct.py first)")
    recorded = ", ".join(sorted(map(str, threads)))
    meta = {
        **provenance("experiments/ct_fit/ct_fit", 0, "final metrics of the ct.py runs found under the scratch folders"),
        # this analysis runs no torch: the machine and threads that count are those of the runs it reads
        "machine": f"the runs' (benchmarks/results/ct.md); torch threads as the runs recorded: {recorded}",
        "torch_threads": recorded,
    }
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    order = {m: i for i, m in enumerate(ALL_METHODS)}
    lines = [
        *provenance_lines("CT: fit of the measurements vs quality of the reconstruction", meta),
        "",
        "sinogram fit: -10 log10(sinogram MSE) in dB (higher: the network's projections match the measured ones "
        "more closely); PSNR / SSIM: the reconstructed slice against the true one; high-frequency error: the "
        "share of the slice error's energy above half the Nyquist frequency.",
        "",
        "| arch | projections | iterations | method | sinogram fit (dB) | PSNR (dB) | SSIM | high-frequency error |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in sorted(runs, key=lambda r: (r["arch"], r["projections"], r["iterations"], order.get(r["method"], 99))):
        fit = -10 * math.log10(r["sinogram_mse"])
        lines.append(
            f"| {r['arch']} | {r['projections']} | {r['iterations']} | {r['method']} | {fit:.1f} | "
            f"{r['psnr']:.2f} | {r['ssim']:.3f} | {r['high_frequency_error_share']:.3f} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(tyro.cli(Args))
