"""Our methods under nerfstudio's multi-device training, at the pipeline level on the CPU.

nerfstudio's launcher insists on CUDA for ``--machine.num-devices > 1``; what it then does per rank is: initialise
the process group, seed with ``seed + rank``, build the trainer and pipeline, and wrap the model in
DistributedDataParallel (``VanillaPipeline``: ``find_unused_parameters=True``). Here two gloo processes on loopback
do the same (``device_ids`` are left out: they are CUDA-only), take two training steps of mipnerf-cn-lite and
neus-cn-lite, and compare parameters and running statistics between the ranks.
"""

from __future__ import annotations

import pytest
import torch
from conftest import run_on_two_ranks, spread_between_ranks
from test_neus_data import make_scene
from torch.nn.parallel import DistributedDataParallel as DDP

from nerf_norm.scenes.blender import BlenderSceneConfig, write_blender_scene

METHODS = ("mipnerf-cn-lite", "neus-cn-lite")


def _model_config(config):
    """The config that holds the norm options: the model's (Mip-NeRF) or its SDF field's (NeuS)."""
    model = config.pipeline.model
    return model.sdf_field if hasattr(model, "sdf_field") else model


def _worker(rank: int, world: int, scenes: dict, root: str) -> dict:
    from nerf_norm.nerfstudio.experiment import (
        RunSettings,
        configure,
        method_config,
        seed_everything,
        setup_trainer,
        train_step,
    )
    from nerf_norm.norms.sync import SyncCrossNorm

    torch.set_num_threads(1)
    results = {}
    for method in METHODS:
        for sync in (True, False):
            config = configure(
                method_config(method), RunSettings(scenes[method], f"{root}/{rank}/{method}-{sync}", steps=2, seed=0)
            )
            _model_config(config).sync_norms = sync
            trainer = setup_trainer(config)
            seed_everything(rank)  # as nerfstudio's launcher: each rank draws its own rays
            pipeline = trainer.pipeline
            pipeline._model = DDP(pipeline._model, find_unused_parameters=True)
            model = pipeline.model
            synced = sum(isinstance(m, SyncCrossNorm) for m in model.modules())
            for step in range(2):
                train_step(trainer, step)
            params = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
            buffers = torch.cat(
                [
                    b.detach().double().reshape(-1)
                    for name, b in model.named_buffers()
                    if name.split(".")[-1] in ("running_mean", "running_var", "running_batch_size")
                ]
            )
            diffs = {}
            for name, flat in (("params", params), ("running", buffers)):
                diffs[name] = spread_between_ranks(flat)
            results[f"{method}:{'sync' if sync else 'local'}"] = {
                **diffs,
                "sync_layers": synced,
                "running_numel": buffers.numel(),
            }
    return results


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi_device")
    blender = write_blender_scene(
        root / "blender", BlenderSceneConfig(resolution=16, train_views=4, val_views=1, test_views=1)
    )
    make_scene(root / "neus", views=4, masks=4)
    scenes = {"mipnerf-cn-lite": blender, "neus-cn-lite": root / "neus"}
    return run_on_two_ranks(_worker, root, scenes, str(root))


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_ranks_stay_identical_with_synchronized_norms(two_rank_results, method):
    """Synchronized (the default): after two DDP steps both ranks hold the same parameters and the same running
    statistics. Each rank normalized its own rays, so with ``sync_norms=False`` the running statistics differ
    after the step (DDP only copies rank 0's at the next forward): the check can fail."""
    for results in two_rank_results:
        synced, local = results[f"{method}:sync"], results[f"{method}:local"]
        assert synced["sync_layers"] > 0 and local["sync_layers"] == 0
        assert synced["running_numel"] > 0
        assert synced["params"] <= 1e-6 and synced["running"] <= 1e-6, synced
        assert local["running"] > 1e-3, local
