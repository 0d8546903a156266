"""Seed study behind a learning test (see results.txt and experiments/learning_test_seeds/README.md)."""

from pathlib import Path

from nerf_norm.tasks.commands import MRICommand, OccupancyCommand, run_mri, run_occupancy

data = Path(__file__).resolve().parents[3] / "shared" / "data"
for seed in (0, 1, 2):
    r = {}
    for m in ("relu", "relu+cn"):
        cmd = MRICommand(
            volume=data / "mri" / "ch2bet.nii.gz",
            method=m,
            arch="4x128",
            resolution=24,
            iters=300,
            seed=seed,
            quiet=True,
            out=Path(f"/tmp/mriseed/{seed}{m}"),
            overwrite=True,
        )
        r[m] = run_mri(cmd)[0].metrics["psnr"]
    print("RESULT mri", seed, r, round(r["relu+cn"] - r["relu"], 2), flush=True)
for seed in (0, 1, 2):
    r = {}
    for m in ("relu", "relu+cn"):
        cmd = OccupancyCommand(
            method=m,
            arch="2x128",
            resolution=64,
            batch=20_000,
            iters=60,
            seed=seed,
            quiet=True,
            out=Path(f"/tmp/occseed/{seed}{m}"),
            overwrite=True,
        )
        r[m] = run_occupancy(cmd)[0].metrics["iou"]
    print("RESULT occ", seed, r, round(r["relu+cn"] - r["relu"], 3), flush=True)
