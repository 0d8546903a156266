"""Seed study behind a learning test (see results.txt and experiments/learning_test_seeds/README.md)."""

import sys
from pathlib import Path

import torch
from nerfstudio.utils.eval_utils import eval_setup

from nerf_norm.nerfstudio.metrics import offline_lpips
from nerf_norm.nerfstudio.statistics import refresh_running_statistics

for cfg in sys.argv[1:]:
    with offline_lpips():
        config, pipeline, _, step = eval_setup(Path(cfg), test_mode="test")

    def ev():
        pipeline.eval()
        vals = []
        ds = pipeline.datamanager.eval_dataset
        with torch.no_grad():
            for i in range(len(ds)):
                cam = ds.cameras[i : i + 1]
                out = pipeline.model.get_outputs_for_camera(cam)
                m, _ = pipeline.model.get_image_metrics_and_images(out, ds[i])
                vals.append(m["psnr"])
        return sum(vals) / len(vals)

    before = ev()
    refresh_running_statistics(pipeline, 16, start_step=step)
    after = ev()
    print("RESULT", cfg.split("/")[3], round(before, 2), round(after, 2), flush=True)
