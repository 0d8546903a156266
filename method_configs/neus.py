"""Method specifications ``neus-{cn,bn,ln,gn}`` and the CPU preset ``neus-cn-lite``.

Each full method is nerfstudio's ``neus`` configuration (1024 rays, 64 + 64 samples, 32 background samples, Adam
5e-4 with cosine decay, eikonal loss, NeRF++ background MLP) with the SDF field replaced by
:class:`~nerf_norm.nerfstudio.neus.NormalizedSDFField`, built without tinycudann, and three changes for objects
in the NeuS layout: our ``neus-data`` parser (``cameras_sphere.npz``), ``inside_outside=False`` (negative SDF
inside the object, as NeuS uses for DTU; nerfstudio's default inverts it for indoor scenes), and a dataset that
passes the parser's masks to the model's mask loss when ``--pipeline.datamanager.dataparser.use-masks True``.
"""

from __future__ import annotations

import copy

from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import CosineDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from nerf_norm.nerfstudio.neus import NeuSNormModelConfig, NormalizedSDFFieldConfig
from nerf_norm.nerfstudio.neus_dataparser import NeuSDataParserConfig
from nerf_norm.nerfstudio.neus_dataset import NeuSMaskDataset
from nerf_norm.nerfstudio.trainer_config import CheckedTrainerConfig


def _optimizers() -> dict:
    def group():
        return {
            "optimizer": AdamOptimizerConfig(lr=5e-4, eps=1e-15),
            "scheduler": CosineDecaySchedulerConfig(warm_up_end=5000, learning_rate_alpha=0.05, max_steps=300000),
        }

    return {"fields": group(), "field_background": group()}


def neus_norm(norm: str) -> TrainerConfig:
    """nerfstudio's ``neus`` with ``norm`` in the field (placement: ``NormalizedSDFFieldConfig.norm_in``)."""
    return CheckedTrainerConfig(
        method_name=f"neus-{norm}",
        steps_per_eval_image=500,
        steps_per_eval_batch=5000,
        steps_per_save=20000,
        steps_per_eval_all_images=1000000,
        max_num_iterations=100000,
        mixed_precision=False,
        pipeline=VanillaPipelineConfig(
            datamanager=VanillaDataManagerConfig(
                _target=VanillaDataManager[NeuSMaskDataset],
                dataparser=NeuSDataParserConfig(),
                train_num_rays_per_batch=1024,
                eval_num_rays_per_batch=1024,
            ),
            model=NeuSNormModelConfig(
                sdf_field=NormalizedSDFFieldConfig(norm=norm, inside_outside=False), eval_num_rays_per_chunk=1024
            ),
        ),
        optimizers=_optimizers(),
        vis="viewer",
    )


# CPU preset (2 cores): 128 rays, 32 + 32 samples (4 up-sampling steps of 8), 16 background samples, a 6x128 SDF
# network (nerfstudio's skip input enters at layer 4, so at least 5 layers keep it a hidden layer; with 4 it
# lands on the output layer and the geometric initialisation is no longer a sphere, measured) and a 2x128
# colour network, masks on (mask loss 0.1, NeuS' "with mask" weight) and no background model, 2000 steps at a constant-then-cosine schedule sized to them, CPU, tensorboard.
LITE = {
    "rays": 128,
    "samples": 32,
    "importance": 32,
    "outside": 16,
    "steps": 2000,
    "warm_up": 200,
    "sdf_layers": 6,
    "sdf_width": 128,
    "color_layers": 2,
    "color_width": 128,
}


def lite(config: TrainerConfig, name: str) -> TrainerConfig:
    """The CPU-sized version of a neus(-norm) configuration; the field's norm settings are kept."""
    config = copy.deepcopy(config)
    model = config.pipeline.model
    model.num_samples = LITE["samples"]
    model.num_samples_importance = LITE["importance"]
    model.num_samples_outside = LITE["outside"]
    model.eval_num_rays_per_chunk = 1024
    f = model.sdf_field
    f.num_layers, f.hidden_dim, f.geo_feat_dim = LITE["sdf_layers"], LITE["sdf_width"], LITE["sdf_width"]
    f.num_layers_color, f.hidden_dim_color = LITE["color_layers"], LITE["color_width"]
    dm = config.pipeline.datamanager
    dm.train_num_rays_per_batch = dm.eval_num_rays_per_batch = LITE["rays"]
    config.method_name = name
    config.max_num_iterations = LITE["steps"]
    config.steps_per_eval_batch = config.steps_per_eval_image = 500
    config.steps_per_save = 500
    config.save_only_latest_checkpoint = True
    config.vis = "tensorboard"
    config.machine.device_type = "cpu"
    # the generated scenes (and DTU) come with masks and a black background: train "with mask" as NeuS does
    dm.dataparser.use_masks = True
    model.fg_mask_loss_mult = 0.1
    model.background_model = "none"
    for group in config.optimizers.values():
        group["scheduler"] = CosineDecaySchedulerConfig(
            warm_up_end=LITE["warm_up"], learning_rate_alpha=0.05, max_steps=LITE["steps"]
        )
    return config


def _spec(config: TrainerConfig, description: str) -> MethodSpecification:
    return MethodSpecification(config=config, description=description)


neus_cn = _spec(neus_norm("cn"), "NeuS with cross normalization (nerf_norm; no tinycudann needed).")
neus_bn = _spec(neus_norm("bn"), "NeuS with batch normalization (nerf_norm; no tinycudann needed).")
neus_ln = _spec(neus_norm("ln"), "NeuS with layer normalization (nerf_norm; no tinycudann needed).")
neus_gn = _spec(neus_norm("gn"), "NeuS with global normalization (nerf_norm; no tinycudann needed).")
neus_cn_lite = _spec(
    lite(neus_norm("cn"), "neus-cn-lite"),
    "neus-cn sized for a 2-core CPU: 128 rays, 32+32 samples, 6x128 SDF net, 2000 steps (nerf_norm).",
)
