"""Seed study behind the later baselines' learning test (tests/test_later_baselines.py): each new method against
plain ReLU on the bundled astronaut at 64x64, 5x30, 150 iterations (the setting of the image task's learning
test), at seeds 0, 1 and 2 (see results.txt and experiments/learning_test_seeds/README.md)."""

import sys
import tempfile
from pathlib import Path

import torch

from nerf_norm.tasks.commands import ImageCommand, run_image

torch.set_num_threads(1)

methods = sys.argv[1:] or ["relu", "finer", "gauss", "hash", "finer+cn", "gauss+cn", "hash+cn"]
work = Path(tempfile.mkdtemp(prefix="later_baselines_"))
for seed in (0, 1, 2):
    r = {}
    for m in methods:
        cmd = ImageCommand(
            method=m,
            arch="5x30",
            downscale=8,
            iters=150,
            seed=seed,
            quiet=True,
            log_every=50,
            out=work / f"{seed}_{m.replace('+', '_')}",
        )
        r[m] = round(run_image(cmd)[0].metrics["psnr"], 2)
    print("RESULT", seed, r, flush=True)
