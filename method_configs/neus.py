"""Method specifications ``neus-{cn,bn,ln,gn}``, the CPU preset ``neus-cn-lite``, ``neus-facto-cn`` and its CPU
preset ``neus-facto-cn-lite`` with the baseline ``neus-facto-lite`` (the SDF network without a norm).

Each full method is nerfstudio's ``neus`` configuration (1024 rays, 64 + 64 samples, 32 background samples, Adam
5e-4 with cosine decay, eikonal loss, NeRF++ background MLP) with the SDF field replaced by
:class:`~nerf_norm.nerfstudio.neus.NormalizedSDFField`, built without tinycudann, and three changes for objects
in the NeuS layout: our ``neus-data`` parser (``cameras_sphere.npz``), ``inside_outside=False`` (negative SDF
inside the object, as NeuS uses for DTU; nerfstudio's default inverts it for indoor scenes), and a dataset that
passes the parser's masks to the model's mask loss when ``--pipeline.datamanager.dataparser.use-masks True``.

``neus-facto-cn`` is nerfstudio's ``neus-facto`` (proposal sampling 256 + 96 -> 48, a hash grid feeding a 2x256
SDF network, Adam with nerfstudio's schedules) with the same field and the same three changes.
"""

from __future__ import annotations

import copy

from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import CosineDecaySchedulerConfig, MultiStepSchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig

from nerf_norm.method_configs.presets import cpu_run, spec
from nerf_norm.nerfstudio.neus import NeuSFactoNormModelConfig, NeuSNormModelConfig, NormalizedSDFFieldConfig
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


def _object_datamanager(rays: int) -> VanillaDataManagerConfig:
    """Objects in the NeuS layout: our ``neus-data`` parser and the dataset that passes its masks on."""
    return VanillaDataManagerConfig(
        _target=VanillaDataManager[NeuSMaskDataset],
        dataparser=NeuSDataParserConfig(),
        train_num_rays_per_batch=rays,
        eval_num_rays_per_batch=rays,
    )


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
            datamanager=_object_datamanager(1024),
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
    cpu_run(config, name, LITE["steps"], every=500)
    # the generated scenes (and DTU) come with masks and a black background: train "with mask" as NeuS does
    dm.dataparser.use_masks = True
    model.fg_mask_loss_mult = 0.1
    model.background_model = "none"
    for group in config.optimizers.values():
        group["scheduler"] = CosineDecaySchedulerConfig(
            warm_up_end=LITE["warm_up"], learning_rate_alpha=0.05, max_steps=LITE["steps"]
        )
    return config


def neus_facto_norm(norm: str) -> TrainerConfig:
    """nerfstudio's ``neus-facto`` with ``norm`` in the SDF field, read as :func:`neus_norm` reads objects."""

    def fields():
        return {
            "optimizer": AdamOptimizerConfig(lr=5e-4, eps=1e-15),
            "scheduler": CosineDecaySchedulerConfig(warm_up_end=500, learning_rate_alpha=0.05, max_steps=20001),
        }

    return CheckedTrainerConfig(
        method_name=f"neus-facto-{norm}",
        steps_per_eval_image=5000,
        steps_per_eval_batch=5000,
        steps_per_save=2000,
        steps_per_eval_all_images=1000000,
        max_num_iterations=20001,
        mixed_precision=False,
        pipeline=VanillaPipelineConfig(
            datamanager=_object_datamanager(2048),
            model=NeuSFactoNormModelConfig(
                sdf_field=NormalizedSDFFieldConfig(
                    norm=norm,
                    inside_outside=False,
                    use_grid_feature=True,
                    num_layers=2,
                    num_layers_color=2,
                    hidden_dim=256,
                    bias=0.5,
                    beta_init=0.8,
                    use_appearance_embedding=False,
                ),
                background_model="none",
                eval_num_rays_per_chunk=2048,
            ),
        ),
        optimizers={
            "proposal_networks": {
                "optimizer": AdamOptimizerConfig(lr=1e-2, eps=1e-15),
                "scheduler": MultiStepSchedulerConfig(max_steps=20001, milestones=(10000, 1500, 18000)),
            },
            "fields": fields(),
            "field_background": fields(),
        },
        vis="viewer",
    )


# CPU preset of neus-facto: 128 rays of 64 + 32 proposal and 24 SDF samples, a hash grid of 2^15 entries per level
# feeding a 2x128 SDF network, masks on and no background model (as neus-cn-lite), 2000 steps
FACTO_LITE = {"rays": 128, "proposal_samples": (64, 32), "sdf_samples": 24, "log2_hashmap_size": 15, "width": 128}


def facto_lite(config: TrainerConfig, name: str) -> TrainerConfig:
    """The CPU-sized version of a neus-facto(-norm) configuration; the field's norm settings are kept."""
    config = copy.deepcopy(config)
    model = config.pipeline.model
    model.num_proposal_samples_per_ray = FACTO_LITE["proposal_samples"]
    model.num_neus_samples_per_ray = FACTO_LITE["sdf_samples"]
    model.eval_num_rays_per_chunk = 1024
    f = model.sdf_field
    f.log2_hashmap_size = FACTO_LITE["log2_hashmap_size"]
    f.hidden_dim = f.geo_feat_dim = f.hidden_dim_color = FACTO_LITE["width"]
    dm = config.pipeline.datamanager
    dm.train_num_rays_per_batch = dm.eval_num_rays_per_batch = FACTO_LITE["rays"]
    cpu_run(config, name, LITE["steps"], every=500)
    dm.dataparser.use_masks = True
    model.fg_mask_loss_mult = 0.1
    for key in ("fields", "field_background"):
        config.optimizers[key]["scheduler"] = CosineDecaySchedulerConfig(
            warm_up_end=LITE["warm_up"], learning_rate_alpha=0.05, max_steps=LITE["steps"]
        )
    config.optimizers["proposal_networks"]["scheduler"] = MultiStepSchedulerConfig(
        max_steps=LITE["steps"], milestones=(LITE["steps"] // 2, LITE["steps"] * 3 // 4, LITE["steps"] * 9 // 10)
    )
    return config


neus_cn = spec(neus_norm("cn"), "NeuS with cross normalization (nerf_norm; no tinycudann needed).")
neus_bn = spec(neus_norm("bn"), "NeuS with batch normalization (nerf_norm; no tinycudann needed).")
neus_ln = spec(neus_norm("ln"), "NeuS with layer normalization (nerf_norm; no tinycudann needed).")
neus_gn = spec(neus_norm("gn"), "NeuS with global normalization (nerf_norm; no tinycudann needed).")
neus_cn_lite = spec(
    lite(neus_norm("cn"), "neus-cn-lite"),
    "neus-cn sized for a 2-core CPU: 128 rays, 32+32 samples, 6x128 SDF net, 2000 steps (nerf_norm).",
)
neus_facto_cn = spec(
    neus_facto_norm("cn"), "NeuS-facto with cross normalization in the SDF network (nerf_norm; no tinycudann needed)."
)
neus_facto_cn_lite = spec(
    facto_lite(neus_facto_norm("cn"), "neus-facto-cn-lite"),
    "neus-facto-cn sized for a 2-core CPU: 128 rays, 64+32 proposal and 24 SDF samples, 2000 steps (nerf_norm).",
)
neus_facto_lite = spec(
    facto_lite(neus_facto_norm("none"), "neus-facto-lite"),
    "nerfstudio's neus-facto at neus-facto-cn-lite's CPU settings, its baseline (nerf_norm).",
)
