"""Seed study behind a learning test (see results.txt and experiments/learning_test_seeds/README.md)."""

import sys
from pathlib import Path

from nerf_norm.tasks.commands import CTCommand, run_ct

a, b, arch, iters = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
for seed in (0, 1, 2):
    r = {}
    for m in (a, b):
        cmd = CTCommand(
            method=m,
            arch=arch,
            size=64,
            iters=iters,
            seed=seed,
            quiet=True,
            out=Path(f"/tmp/ctseed2/{arch}_{iters}_{seed}_{m}"),
            overwrite=True,
        )
        r[m] = run_ct(cmd)[0].metrics["psnr"]
    print("RESULT", arch, iters, seed, r, round(r[b] - r[a], 2), flush=True)
