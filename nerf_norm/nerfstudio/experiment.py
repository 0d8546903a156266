"""Run nerfstudio methods in-process, offline and on the CPU, step by step: the engine of ``nerf-norm demo`` (the
package's main job, which interleaves two methods under one time budget and evaluates them between steps), also
used by the tests and benchmarks that compare nerfstudio's methods with the normalized ones on exactly the same
settings. Everything here is nerfstudio's own trainer and configs; nothing is re-implemented.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from nerfstudio.engine.trainer import Trainer, TrainerConfig

from .metrics import offline_lpips


def method_config(name: str) -> TrainerConfig:
    """A deep copy of a registered method's configuration (ours or nerfstudio's), by ``ns-train`` name."""
    from nerfstudio.configs.method_configs import all_methods

    if name not in all_methods:
        raise KeyError(f"unknown nerfstudio method {name!r}")
    return copy.deepcopy(all_methods[name])


def lite_config(name: str) -> TrainerConfig:
    """The registered ``{name}-lite`` preset (``mipnerf-lite``, ``mipnerf-cn-lite``: what ``ns-eval`` and the viewer
    find again by the saved method name), else ``name``'s configuration with the CPU preset of ``mipnerf-cn-lite``
    and our checked Blender parser."""
    from nerfstudio.configs.method_configs import all_methods

    from nerf_norm.method_configs.mipnerf import lite

    from .blender_dataparser import CheckedBlenderDataParserConfig

    if f"{name}-lite" in all_methods:
        return method_config(f"{name}-lite")
    config = method_config(name)
    config.pipeline.datamanager.dataparser = CheckedBlenderDataParserConfig()
    return lite(config, f"{name}-lite")


@dataclass
class RunSettings:
    data: Path
    out: Path
    steps: int
    seed: int = 0
    image_scale: float = 1.0
    """``camera_res_scale_factor``: image downscaling (0.25: 400x400 -> 100x100)"""
    save_every: Optional[int] = None


def configure(config: TrainerConfig, run: RunSettings) -> TrainerConfig:
    """Points ``config`` at the data and output folder; no viewer, no periodic eval, CPU, fixed seed."""
    config.pipeline.datamanager.data = run.data
    config.pipeline.datamanager.dataparser.data = run.data
    config.pipeline.datamanager.camera_res_scale_factor = run.image_scale
    config.data = run.data
    config.output_dir = run.out
    config.experiment_name = "run"
    config.timestamp = config.method_name
    config.max_num_iterations = run.steps
    config.steps_per_save = run.save_every or run.steps
    config.save_only_latest_checkpoint = run.save_every is None
    config.steps_per_eval_batch = config.steps_per_eval_image = config.steps_per_eval_all_images = 10**9
    config.vis = "tensorboard"
    config.machine.device_type = "cpu"
    config.machine.seed = run.seed
    config.logging.local_writer.enable = False
    return config


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup_trainer(config: TrainerConfig) -> Trainer:
    """Builds the trainer with the test split as its eval data (as ``ns-eval`` does); LPIPS only if cached."""
    seed_everything(config.machine.seed)
    config.get_base_dir().mkdir(parents=True, exist_ok=True)
    config.save_config()
    trainer = config.setup(local_rank=0, world_size=1)
    with offline_lpips():
        trainer.setup(test_mode="test")
    return trainer


def train(config: TrainerConfig) -> tuple[Trainer, float]:
    """Trains in this process; returns the trainer and the training wall time in seconds."""
    trainer = setup_trainer(config)
    start = time.perf_counter()
    trainer.train()
    return trainer, time.perf_counter() - start


def evaluate(
    trainer: Trainer,
    max_images: Optional[int] = None,
    indices: Optional[Sequence[int]] = None,
    renders: Optional[Dict[int, np.ndarray]] = None,
) -> Dict[str, float]:
    """Mean PSNR/SSIM (and LPIPS when available) of the model over the test split (the first ``max_images``
    views, or the views ``indices``). With ``renders``, the model's combined image of each view (nerfstudio's
    ``img``: ground truth | ... | final render, ``[H, k W, 3]`` in [0, 1]) is stored in it by view index."""
    pipeline = trainer.pipeline
    pipeline.eval()
    dataset = pipeline.datamanager.eval_dataset
    model = pipeline.model
    sums: Dict[str, float] = {}
    if indices is None:
        indices = range(len(dataset) if max_images is None else min(max_images, len(dataset)))
    indices = list(indices)
    with torch.no_grad():
        for index in indices:
            camera = dataset.cameras[index : index + 1].to(model.device)
            batch = dataset[index]
            outputs = model.get_outputs_for_camera(camera)
            metrics, images = model.get_image_metrics_and_images(outputs, batch)
            if renders is not None:
                renders[index] = images["img"].clamp(0, 1).cpu().numpy()
            for key, value in metrics.items():
                if np.isfinite(value):
                    sums[key] = sums.get(key, 0.0) + float(value)
    pipeline.train()
    return {key: value / len(indices) for key, value in sums.items()} | {"images": len(indices)}


def final_ssim(scores: Dict[str, float]) -> float:
    """SSIM of a model's final render in :func:`evaluate`'s scores: Mip-NeRF's fine pass (``fine_ssim``), else
    ``ssim`` (nerfacto, NeuS)."""
    return scores["fine_ssim"] if "fine_ssim" in scores else scores["ssim"]


def train_step(trainer: Trainer, step: int, losses: Optional[dict] = None) -> float:
    """One training step as ``Trainer.train`` takes it (callbacks, forward/backward, optimizer); returns the loss
    and, when ``losses`` is given, fills it with the step's named loss terms (floats)."""
    from nerfstudio.engine.callbacks import TrainingCallbackLocation

    for callback in trainer.callbacks:
        callback.run_callback_at_location(step, location=TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
    loss, loss_dict, _ = trainer.train_iteration(step)
    if losses is not None:
        losses.update({name: float(value.detach()) for name, value in loss_dict.items()})
    for callback in trainer.callbacks:
        callback.run_callback_at_location(step, location=TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
    return float(loss.detach())
