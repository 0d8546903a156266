"""Seed study behind a learning test (see results.txt and experiments/learning_test_seeds/README.md)."""

import sys
from pathlib import Path

from nerf_norm.nerfstudio.experiment import RunSettings, configure, evaluate, lite_config, train
from nerf_norm.scenes.blender import BlenderSceneConfig, write_blender_scene

steps = int(sys.argv[1])
root = Path(f"/tmp/mipseedsB{steps}")
scene = root / "scene"
if not scene.exists():
    write_blender_scene(scene, BlenderSceneConfig(resolution=32, train_views=20, val_views=1, test_views=3))
for seed in (0, 1, 2):
    psnr = {}
    for name in ("mipnerf", "mipnerf-cn"):
        config = configure(lite_config(name), RunSettings(scene, root / f"{name}{seed}", steps=steps, seed=seed))
        config.pipeline.datamanager.train_num_rays_per_batch = 256
        config.pipeline.model.num_coarse_samples = 16
        config.pipeline.model.num_importance_samples = 16
        trainer, _ = train(config)
        psnr[name] = evaluate(trainer)["psnr"]
    print("RESULT", steps, seed, psnr, round(psnr["mipnerf-cn"] - psnr["mipnerf"], 2), flush=True)
