"""Method specifications ``nerfacto-{cn,bn,ln,gn}``, the CPU presets ``nerfacto-cn-lite`` and its baseline
``nerfacto-lite`` (nerfstudio's nerfacto MLPs untouched, ``norm none``, at the same CPU settings).

Each full method is nerfstudio's ``nerfacto`` configuration (nerfstudio-data scenes, 4096 rays, proposal sampling
256 + 96 -> 48, Adam 1e-2 with exponential decay, SO3xR3 camera optimizer, mixed precision) with the field's MLPs
normalized and the torch implementation (the only one with room for a norm); ``tests/test_nerfacto.py`` checks that
every other setting equals nerfstudio's. It is meant for real captures, as nerfacto is.

The lite presets are for bounded synthetic scenes on a CPU (Blender format, through our checked parser, e.g. a
scene of ``nerf-norm make-scene blender`` or lego): 512 rays of 64 + 32 proposal and 24 field samples, a hash grid of
2^15 entries per level, no scene contraction (a bounded scene; near 2, far 6 as Blender scenes), a white
background, no camera optimizer (synthetic poses are exact), fp32, 1000 steps over which the learning rates decay
exponentially from 1e-2 to 1e-4.
"""

from __future__ import annotations

from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig
from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
from nerfstudio.data.datamanagers.parallel_datamanager import ParallelDataManagerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig

from nerf_norm.method_configs.presets import cpu_run, spec
from nerf_norm.nerfstudio.blender_dataparser import CheckedBlenderDataParserConfig
from nerf_norm.nerfstudio.nerfacto import NerfactoNormModelConfig
from nerf_norm.nerfstudio.trainer_config import CheckedTrainerConfig


def _adam(lr_final: float, max_steps: int, lr: float = 1e-2) -> dict:
    return {
        "optimizer": AdamOptimizerConfig(lr=lr, eps=1e-15),
        "scheduler": ExponentialDecaySchedulerConfig(lr_final=lr_final, max_steps=max_steps),
    }


def nerfacto_norm(norm: str) -> TrainerConfig:
    """nerfstudio's ``nerfacto`` with ``norm`` in the field's MLPs."""
    return CheckedTrainerConfig(
        method_name=f"nerfacto-{norm}",
        steps_per_eval_batch=500,
        steps_per_save=2000,
        max_num_iterations=30000,
        mixed_precision=True,
        pipeline=VanillaPipelineConfig(
            datamanager=ParallelDataManagerConfig(
                dataparser=NerfstudioDataParserConfig(), train_num_rays_per_batch=4096, eval_num_rays_per_batch=4096
            ),
            model=NerfactoNormModelConfig(
                norm=norm,
                eval_num_rays_per_chunk=1 << 15,
                average_init_density=0.01,
                camera_optimizer=CameraOptimizerConfig(mode="SO3xR3"),
            ),
        ),
        optimizers={
            "proposal_networks": _adam(1e-4, 200000),
            "fields": _adam(1e-4, 200000),
            "camera_opt": _adam(1e-4, 5000, lr=1e-3),
        },
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    )


# CPU preset (2 cores) for bounded synthetic scenes; see the module docstring
LITE = {"rays": 512, "proposal_samples": (64, 32), "field_samples": 24, "log2_hashmap_size": 15, "steps": 1000}


def lite(config: TrainerConfig, name: str) -> TrainerConfig:
    """The CPU-sized, bounded-scene version of a nerfacto(-norm) configuration; the model's norm settings are kept."""
    model = config.pipeline.model
    model.num_proposal_samples_per_ray = LITE["proposal_samples"]
    model.num_nerf_samples_per_ray = LITE["field_samples"]
    model.log2_hashmap_size = LITE["log2_hashmap_size"]
    model.disable_scene_contraction = True
    model.near_plane, model.far_plane = 2.0, 6.0
    model.background_color = "white"
    model.camera_optimizer = CameraOptimizerConfig(mode="off")
    model.eval_num_rays_per_chunk = 4096
    config.pipeline.datamanager = VanillaDataManagerConfig(
        dataparser=CheckedBlenderDataParserConfig(),
        train_num_rays_per_batch=LITE["rays"],
        eval_num_rays_per_batch=LITE["rays"],
    )
    config.optimizers.pop("camera_opt")
    for group in config.optimizers.values():
        group["scheduler"].max_steps = LITE["steps"]
    cpu_run(config, name, LITE["steps"], every=250)
    return config


nerfacto_cn = spec(nerfacto_norm("cn"), "nerfacto with cross normalization in the field MLPs (nerf_norm).")
nerfacto_bn = spec(nerfacto_norm("bn"), "nerfacto with batch normalization in the field MLPs (nerf_norm).")
nerfacto_ln = spec(nerfacto_norm("ln"), "nerfacto with layer normalization in the field MLPs (nerf_norm).")
nerfacto_gn = spec(nerfacto_norm("gn"), "nerfacto with global normalization in the field MLPs (nerf_norm).")
nerfacto_lite = spec(
    lite(nerfacto_norm("none"), "nerfacto-lite"),
    "nerfstudio's nerfacto at nerfacto-cn-lite's CPU settings, the baseline of the nerfacto comparison (nerf_norm).",
)
nerfacto_cn_lite = spec(
    lite(nerfacto_norm("cn"), "nerfacto-cn-lite"),
    "nerfacto-cn sized for a 2-core CPU on bounded synthetic scenes: 512 rays, 1000 steps (nerf_norm).",
)
