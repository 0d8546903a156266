"""What every CPU preset (``*-lite``) sets the same way, and the method specification wrapper."""

from __future__ import annotations

from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.plugins.types import MethodSpecification


def cpu_run(config: TrainerConfig, name: str, steps: int, every: int) -> TrainerConfig:
    """``config`` as a CPU preset named ``name``: ``steps`` steps, an eval batch and image and a checkpoint every
    ``every`` steps (only the latest kept), no all-images eval, fp32, tensorboard logging, the CPU."""
    config.method_name = name
    config.max_num_iterations = steps
    config.steps_per_eval_batch = config.steps_per_eval_image = every
    config.steps_per_eval_all_images = 1_000_000
    config.steps_per_save = every
    config.save_only_latest_checkpoint = True
    config.mixed_precision = False
    config.vis = "tensorboard"
    config.machine.device_type = "cpu"
    return config


def spec(config: TrainerConfig, description: str) -> MethodSpecification:
    return MethodSpecification(config=config, description=description)
