"""nerfacto-{cn,bn,ln,gn}, nerfacto-cn-lite and nerfacto-lite: registered with nerfacto's settings, the field's MLPs
normalized in place (the colour head's sigmoid output left alone), tinycudann refused, the running statistics used
in eval, and ``ns-train`` -> ``ns-eval`` -> ``ns-render`` on a generated scene."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
import torch
from nerfstudio.field_components.mlp import MLP, MLPWithHashEncoding
from ns_commands import assert_dataset_render_matches_eval, run_ns

from nerf_norm.nerfstudio.experiment import RunSettings, configure, method_config, train
from nerf_norm.nerfstudio.mlp import NormalizedMLP
from nerf_norm.nerfstudio.nerfacto import NerfactoNormModelConfig
from nerf_norm.nerfstudio.normalize import normalize_mlps
from nerf_norm.scenes.blender import BlenderSceneConfig, write_blender_scene

NORMS = ("cn", "bn", "ln", "gn")
OURS = {"nerfacto-cn-lite": "cn", "nerfacto-lite": "none", **{f"nerfacto-{n}": n for n in NORMS}}


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    out = tmp_path_factory.mktemp("nerfacto_scene")
    return write_blender_scene(out, BlenderSceneConfig(resolution=16, train_views=4, val_views=1, test_views=1))


def test_full_methods_are_nerfacto_with_only_the_norm_and_implementation_changed():
    base = method_config("nerfacto")
    for name, norm in OURS.items():
        config = method_config(name)
        assert config.method_name == name and config.pipeline.model.norm == norm
        if name.endswith("lite"):
            continue
        model, base_model = config.pipeline.model, base.pipeline.model
        assert isinstance(model, NerfactoNormModelConfig) and model.implementation == "torch"
        for f in fields(base_model):
            if f.name not in ("_target", "implementation"):
                assert getattr(model, f.name) == getattr(base_model, f.name), f.name
        for key in ("max_num_iterations", "mixed_precision", "steps_per_save", "steps_per_eval_batch"):
            assert getattr(config, key) == getattr(base, key), key
        dm, base_dm = config.pipeline.datamanager, base.pipeline.datamanager
        assert type(dm) is type(base_dm) and type(dm.dataparser) is type(base_dm.dataparser)
        assert dm.train_num_rays_per_batch == base_dm.train_num_rays_per_batch
        assert config.optimizers.keys() == base.optimizers.keys()
        for group, settings in base.optimizers.items():
            for part in ("optimizer", "scheduler"):
                ours, theirs = config.optimizers[group][part], settings[part]
                assert type(ours) is type(theirs) and vars(ours) == vars(theirs), (group, part)
    # the lite pair differs only in the norm
    cn, plain = method_config("nerfacto-cn-lite").pipeline.model, method_config("nerfacto-lite").pipeline.model
    assert {f.name for f in fields(cn) if getattr(cn, f.name) != getattr(plain, f.name)} == {"norm"}


def test_field_mlps_normalized_with_the_same_layout():
    from nerfstudio.fields.nerfacto_field import NerfactoField

    aabb = torch.tensor([[-1.0, -1, -1], [1, 1, 1]])
    torch.manual_seed(0)
    plain = NerfactoField(aabb, num_images=4, log2_hashmap_size=10, implementation="torch")
    normed = NerfactoField(aabb, num_images=4, log2_hashmap_size=10, implementation="torch")
    assert sorted(normalize_mlps(normed, "cn")) == ["mlp_base.model.1", "mlp_head"]
    base, head = normed.mlp_base.model[1], normed.mlp_head
    assert isinstance(base, NormalizedMLP) and isinstance(head, NormalizedMLP)
    assert len(base.norms) == 1  # one hidden layer of 64; the density/feature output has no activation
    assert len(head.norms) == 2  # two hidden layers; the three sigmoid colour channels are not normalized
    shapes = lambda m: [(n, tuple(p.shape)) for n, p in m.named_parameters() if "norms" not in n]  # noqa: E731
    assert shapes(plain) == shapes(normed)


def test_a_tinycudann_hash_grid_mlp_is_refused():
    grid = MLPWithHashEncoding(num_levels=2, log2_hashmap_size=8, implementation="torch")
    assert normalize_mlps(torch.nn.ModuleDict({"grid": grid}), "cn") == ["grid.model.1"]
    fused = MLPWithHashEncoding(num_levels=2, log2_hashmap_size=8, implementation="torch")
    fused.model = torch.nn.Identity()  # where tinycudann's NetworkWithInputEncoding sits
    with pytest.raises(ValueError, match="tinycudann hash grid fused with its MLP.*implementation='torch'"):
        normalize_mlps(torch.nn.ModuleDict({"grid": fused}), "cn")


@pytest.mark.parametrize("norm_proposals", [False, True])
def test_training_updates_the_running_statistics_eval_uses(tiny_scene, tmp_path, norm_proposals):
    config = configure(method_config("nerfacto-cn-lite"), RunSettings(tiny_scene, tmp_path, steps=3))
    config.pipeline.model.norm_proposal_networks = norm_proposals
    trainer, _ = train(config)
    model = trainer.pipeline.model
    head = model.field.mlp_head.norms[0].sets[0]
    assert int(head.num_batches_tracked) == 3 and torch.isfinite(head.running_mean).all()
    proposal_mlps = [m for net in model.proposal_networks for m in net.modules() if isinstance(m, MLP)]
    assert len(proposal_mlps) == 2
    assert all(isinstance(m, NormalizedMLP) for m in proposal_mlps) == norm_proposals
    # eval: the same rays render the same in any chunking (running statistics, not the chunk's)
    camera = trainer.pipeline.datamanager.eval_dataset.cameras[0:1]
    bundle = camera.generate_rays(camera_indices=0)
    model.eval()
    renders = {}
    for chunk in (64, 256):
        model.config.eval_num_rays_per_chunk = chunk
        torch.manual_seed(0)  # the proposal sampler jitters nothing in eval; seeded anyway
        renders[chunk] = model.get_outputs_for_camera_ray_bundle(bundle)["rgb"]
    torch.testing.assert_close(renders[64], renders[256], rtol=0, atol=2e-5)


def test_ns_train_ns_eval_ns_render_on_a_generated_scene(tiny_scene, tmp_path):
    train = ["nerfacto-cn-lite", "--data", tiny_scene, "--output-dir", tmp_path, "--timestamp", "run"]
    train += ["--max-num-iterations", "4", "--pipeline.datamanager.train-num-rays-per-batch", "64", "--vis"]
    run_ns("train", *train, "tensorboard")
    config = next(tmp_path.rglob("config.yml"))
    assert any(config.parent.glob("nerfstudio_models/step-*.ckpt"))
    assert_dataset_render_matches_eval(config, tmp_path)
    metrics = json.loads((tmp_path / "eval.json").read_text())["results"]
    assert metrics["psnr"] > 0 and 0 < metrics["ssim"] <= 1
