"""Seed study behind a learning test (see results.txt and experiments/learning_test_seeds/README.md)."""

import sys
from pathlib import Path

from nerf_norm.tasks.commands import CTCommand, run_ct

arch, iters = sys.argv[1], int(sys.argv[2])
for seed in (0, 1, 2):
    r = {}
    for m in ("relu", "relu+cn"):
        cmd = CTCommand(
            method=m,
            arch=arch,
            size=64,
            iters=iters,
            seed=seed,
            quiet=True,
            out=Path(f"/tmp/ctseed/{arch}_{iters}_{seed}_{m}"),
            overwrite=True,
        )
        r[m] = run_ct(cmd)[0].metrics["psnr"]
    print(arch, iters, seed, r, round(r["relu+cn"] - r["relu"], 2), flush=True)
