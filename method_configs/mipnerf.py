"""Method specifications ``mipnerf-{cn,bn,ln,gn}``, the CPU preset ``mipnerf-cn-lite`` and its baseline
``mipnerf-lite``: nerfstudio's Mip-NeRF field and MLPs untouched (``norm none``) at the same CPU settings, what
``nerf-norm demo`` compares with. It runs through our model class, which only adds what nerfstudio's own
``mipnerf`` lacks for its commands: the ``rgb`` / ``depth`` / ``accumulation`` outputs the viewer and
``ns-render`` read, and LPIPS without downloading weights (so ``ns-eval`` opens the run offline).

Each full method is nerfstudio's ``mipnerf`` configuration (RAdam 5e-4, 1024 rays, 128 + 128 samples, coarse loss
weight 0.1, 1024-ray eval chunks) with the field's MLPs normalized; ``tests/test_mipnerf.py`` checks that every
shared setting still equals nerfstudio's. They read Blender-format scenes by default (checked input, see
:mod:`nerf_norm.nerfstudio.blender_dataparser`); any other dataparser can be chosen on the command line.
"""

from __future__ import annotations

from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
from nerfstudio.data.datamanagers.parallel_datamanager import ParallelDataManagerConfig
from nerfstudio.engine.optimizers import RAdamOptimizerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig

from nerf_norm.method_configs.presets import cpu_run, spec
from nerf_norm.nerfstudio.blender_dataparser import CheckedBlenderDataParserConfig
from nerf_norm.nerfstudio.mipnerf import MipNerfNormModelConfig
from nerf_norm.nerfstudio.trainer_config import CheckedTrainerConfig

NORM_TITLES = {"cn": "cross", "bn": "batch", "ln": "layer", "gn": "global"}


def mipnerf_norm(norm: str) -> TrainerConfig:
    """nerfstudio's ``mipnerf`` with ``norm`` in the field's base MLP."""
    return CheckedTrainerConfig(
        method_name=f"mipnerf-{norm}",
        pipeline=VanillaPipelineConfig(
            datamanager=ParallelDataManagerConfig(
                dataparser=CheckedBlenderDataParserConfig(), train_num_rays_per_batch=1024
            ),
            model=MipNerfNormModelConfig(
                norm=norm,
                loss_coefficients={"rgb_loss_coarse": 0.1, "rgb_loss_fine": 1.0},
                num_coarse_samples=128,
                num_importance_samples=128,
                eval_num_rays_per_chunk=1024,
            ),
        ),
        optimizers={"fields": {"optimizer": RAdamOptimizerConfig(lr=5e-4, eps=1e-08), "scheduler": None}},
    )


# CPU preset (2 cores): 128 rays x (32 + 32) samples, in-process data manager (no worker start-up), 600 steps,
# one eval image every 200 steps, checkpoints every 200 steps, tensorboard logging, no network needed, CPU.
LITE = {"rays": 128, "coarse": 32, "fine": 32, "steps": 600, "lr": 5e-4}


def lite(config: TrainerConfig, name: str) -> TrainerConfig:
    """The CPU-sized version of a mipnerf(-norm) configuration; the model's norm settings are kept."""
    model = config.pipeline.model
    model.num_coarse_samples = LITE["coarse"]
    model.num_importance_samples = LITE["fine"]
    model.eval_num_rays_per_chunk = 4096
    datamanager = config.pipeline.datamanager
    config.pipeline.datamanager = VanillaDataManagerConfig(
        dataparser=datamanager.dataparser, train_num_rays_per_batch=LITE["rays"], eval_num_rays_per_batch=LITE["rays"]
    )
    cpu_run(config, name, LITE["steps"], every=200)
    config.optimizers["fields"]["optimizer"].lr = LITE["lr"]
    return config


mipnerf_cn = spec(mipnerf_norm("cn"), "Mip-NeRF with cross normalization in the field MLP (nerf_norm).")
mipnerf_bn = spec(mipnerf_norm("bn"), "Mip-NeRF with batch normalization in the field MLP (nerf_norm).")
mipnerf_ln = spec(mipnerf_norm("ln"), "Mip-NeRF with layer normalization in the field MLP (nerf_norm).")
mipnerf_gn = spec(mipnerf_norm("gn"), "Mip-NeRF with global normalization in the field MLP (nerf_norm).")
mipnerf_lite = spec(
    lite(mipnerf_norm("none"), "mipnerf-lite"),
    "nerfstudio's mipnerf at mipnerf-cn-lite's CPU settings: the baseline of nerf-norm demo (nerf_norm).",
)
mipnerf_cn_lite = spec(
    lite(mipnerf_norm("cn"), "mipnerf-cn-lite"),
    "mipnerf-cn sized for a 2-core CPU: 128 rays, 32+32 samples, 600 steps (nerf_norm).",
)
