"""neus-{cn,bn,ln,gn}, neus-cn-lite and neus-facto-cn(-lite): registered, built and trained without tinycudann,
the SDF at step 0, chunk-invariant eval."""

from __future__ import annotations

import importlib.util
import math
from importlib.metadata import entry_points

import numpy as np
import pytest
import torch
from test_neus_data import make_scene

from nerf_norm.nerfstudio.experiment import RunSettings, configure, method_config, train
from nerf_norm.nerfstudio.neus import NormalizedSDFField, NormalizedSDFFieldConfig
from nerf_norm.nerfstudio.softplus import BoundedSoftplus

NEUS_METHODS = sorted(
    ep.name
    for ep in entry_points(group="nerfstudio.method_configs")
    if ep.value.startswith("nerf_norm.method_configs.neus:")
)
AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


@pytest.fixture(scope="module")
def neus_scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("neus_scene")
    make_scene(root, views=4, masks=4)
    return root


def test_registered():
    assert NEUS_METHODS == [
        "neus-bn",
        "neus-cn",
        "neus-cn-lite",
        "neus-facto-cn",
        "neus-facto-cn-lite",
        "neus-facto-lite",
        "neus-gn",
        "neus-ln",
    ]


def test_neus_facto_cn_is_neus_facto_with_the_normalized_field():
    """Every setting of nerfstudio's neus-facto, except: the normalized SDF field (its options are neus-facto's),
    objects read as neus-cn reads them (our parser and mask dataset, negative SDF inside)."""
    from dataclasses import fields

    base, ours = method_config("neus-facto"), method_config("neus-facto-cn")
    model, base_model = ours.pipeline.model, base.pipeline.model
    for f in fields(base_model):
        if f.name not in ("_target", "sdf_field"):
            assert getattr(model, f.name) == getattr(base_model, f.name), f.name
    field, base_field = model.sdf_field, base_model.sdf_field
    for f in fields(base_field):
        if f.name not in ("_target", "inside_outside"):
            assert getattr(field, f.name) == getattr(base_field, f.name), f.name
    assert field.norm == "cn" and field.inside_outside is False
    for key in ("max_num_iterations", "mixed_precision", "steps_per_save"):
        assert getattr(ours, key) == getattr(base, key), key
    assert ours.pipeline.datamanager.train_num_rays_per_batch == base.pipeline.datamanager.train_num_rays_per_batch
    for group, settings in base.optimizers.items():
        for part in ("optimizer", "scheduler"):
            assert vars(ours.optimizers[group][part]) == vars(settings[part]), (group, part)


def _grid_config():
    from nerfstudio.fields.sdf_field import SDFFieldConfig

    return SDFFieldConfig(use_grid_feature=True, num_levels=4, max_res=64, log2_hashmap_size=12)


def test_grid_needs_no_tinycudann(monkeypatch):
    """Whatever is installed: with tinycudann unimportable the grid is nerfstudio's torch HashEncoding."""
    import sys

    import nerfstudio.field_components.encodings as encodings

    from nerf_norm.nerfstudio.neus import _GridFeature

    monkeypatch.setitem(sys.modules, "tinycudann", None)  # import tinycudann -> ImportError
    monkeypatch.setattr(encodings, "TCNN_EXISTS", False)
    grid = _GridFeature(_grid_config())
    assert grid.grid.tcnn_encoding is None
    out = grid(torch.rand(10, 3))
    assert out.shape == (10, grid.n_output_dims) and torch.isfinite(out).all()


@pytest.mark.skipif(importlib.util.find_spec("tinycudann") is None, reason="tinycudann is not installed here")
def test_grid_uses_tinycudann_when_installed():
    from nerf_norm.nerfstudio.neus import _GridFeature

    assert _GridFeature(_grid_config()).grid.tcnn_encoding is not None


@pytest.mark.parametrize("name", NEUS_METHODS)
def test_train_two_iterations(name, neus_scene, tmp_path):
    config = configure(method_config(name), RunSettings(neus_scene, tmp_path, steps=2))
    config.pipeline.datamanager.dataparser.eval_every = 2
    config.pipeline.datamanager.train_num_rays_per_batch = 32
    trainer, _ = train(config)
    field = trainer.pipeline.model.field
    assert isinstance(field, NormalizedSDFField)
    assert all(torch.isfinite(p).all() for p in field.parameters())
    norm = field.config.norm
    normalized = field.norm_layers()
    if norm == "none":  # neus-facto-lite: the baseline
        assert not normalized
        return
    assert normalized and all(
        type(m).__name__.lower().startswith({"cn": "cross", "bn": "batch", "ln": "layer", "gn": "global"}[norm])
        for m in normalized
    )


@pytest.mark.parametrize("norm", ["none", "bn", "gn", "cn"])
def test_sdf_at_step_zero_is_the_init_sphere(norm):
    """NeuS' geometric initialisation (sphere of radius 0.8, negative inside) survives bn/gn/cn in the SDF net
    (with the re-fitted read-out). Measured (seed 0, a batch uniform in the scene box, fit over the unit ball):
    SDF at the centre -0.53 (none), -0.47 (bn), -0.71 (gn), -0.55 (cn); zero level of a linear fit
    sdf ~ a + b r 0.90 / 0.79 / 0.80 / 0.77, slope 0.76 / 0.89 / 0.98 / 0.90. Layer norm is left out: it
    normalizes away the |x| scale of the first layer's features (zero at the centre); measured its SDF is
    +0.19 at the centre (wrong sign), slope 0.44."""
    torch.manual_seed(0)
    field = NormalizedSDFFieldConfig(norm=norm, norm_in="sdf", inside_outside=False).setup(aabb=AABB, num_images=2)
    # behind a norm the Softplus(beta=100) is the bounded-exponent kernel's; without, nerfstudio's own
    assert isinstance(field.softplus, BoundedSoftplus) == (norm != "none") and float(field.softplus.beta) == 100
    gen = torch.Generator().manual_seed(1)
    pts = 2.0 * torch.rand(4096, 3, generator=gen) - 1.0  # a batch spread over the scene box, as rays sample it
    probes = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.98], [-0.98, 0.0, 0.0]])
    with torch.no_grad():
        sdf = field.forward_geonetwork(torch.cat([pts, probes]))[:, 0]
    assert sdf[-3] < -0.3 and sdf[-2] > 0 and sdf[-1] > 0, sdf[-3:]
    r = pts.norm(dim=-1)
    inside = r < 1.0  # fit over the unit ball
    design = torch.stack([torch.ones_like(r), r], dim=1)[inside]
    intercept, slope = torch.linalg.lstsq(design, sdf[:-3][inside].unsqueeze(1)).solution[:, 0]
    print(f"{norm}: centre {float(sdf[-3]):.2f}, zero level {float(-intercept / slope):.2f}, slope {float(slope):.2f}")
    assert 0.5 < float(slope) < 1.2
    assert 0.75 < float(-intercept / slope) < 0.95


def test_eval_is_chunk_invariant(neus_scene, tmp_path):
    config = configure(method_config("neus-cn-lite"), RunSettings(neus_scene, tmp_path, steps=3))
    config.pipeline.datamanager.dataparser.eval_every = 2
    config.pipeline.model.sdf_field.norm_in = "both"
    config.pipeline.datamanager.train_num_rays_per_batch = 64
    trainer, _ = train(config)
    model = trainer.pipeline.model
    model.eval()
    camera = trainer.pipeline.datamanager.eval_dataset.cameras[0:1]
    renders = []
    for chunk in (97, 512):
        model.config.eval_num_rays_per_chunk = chunk
        with torch.no_grad():
            renders.append(model.get_outputs_for_camera(camera)["rgb"])
    torch.testing.assert_close(renders[0], renders[1], atol=2e-5, rtol=0)


@pytest.mark.slow
def test_extract_mesh_on_cpu_in_world_units(neus_scene, tmp_path, capsys):
    """A 3-step neus-cn-lite run: the mesh lies on the SDF's zero level, and the scene's scale matrix (x2.5,
    shifted to (10, -5, 300)) carries it to world units."""
    import trimesh

    from nerf_norm.cli import main
    from nerf_norm.nerfstudio.extract_mesh import load_pipeline

    config = configure(method_config("neus-cn-lite"), RunSettings(neus_scene, tmp_path / "run", steps=3))
    config.pipeline.datamanager.dataparser.eval_every = 2
    config.pipeline.datamanager.train_num_rays_per_batch = 32
    train(config)
    config_path = config.get_base_dir() / "config.yml"
    common = ["--load-config", str(config_path), "--resolution", "64", "--block", "16", "--largest-component"]
    world, local = tmp_path / "world.ply", tmp_path / "local.ply"
    assert main(["extract-mesh", *common, "--out", str(world)]) == 0
    assert main(["extract-mesh", *common, "--out", str(local), "--no-world"]) == 0
    mesh_w = trimesh.load(str(world), process=False)
    mesh_l = trimesh.load(str(local), process=False)
    assert mesh_w.is_watertight and len(mesh_w.faces) > 1000
    np.testing.assert_allclose(mesh_w.vertices, 2.5 * mesh_l.vertices + [10.0, -5.0, 300.0], atol=1e-4)
    _, pipeline = load_pipeline(config_path)
    pipeline.model.eval()
    with torch.no_grad():
        sdf = pipeline.model.sdf(torch.from_numpy(np.asarray(mesh_l.vertices)).float())
    spacing = 2.0 / 63
    # a vertex lies on a cell edge whose ends have opposite signs: for a field of slope ~1 its |SDF| is below one
    # cell (measured: mean 0.05, max 0.65 cells)
    assert float(sdf.abs().mean()) < 0.1 * spacing and float(sdf.abs().max()) < spacing
    assert main(["extract-mesh", *common, "--out", str(world)]) == 2 and "pass --overwrite" in capsys.readouterr().out
    assert main(["extract-mesh", "--load-config", str(tmp_path / "nope.yml"), "--out", str(tmp_path / "m.ply")]) == 2
    for text, message in (("a: [1, 2\n", "not a YAML file"), ("just: a dict\n", "holds a dict, not a nerfstudio")):
        (tmp_path / "bad.yml").write_text(text)
        capsys.readouterr()
        assert main(["extract-mesh", "--load-config", str(tmp_path / "bad.yml"), "--out", str(tmp_path / "m.ply")]) == 2
        assert message in capsys.readouterr().out.replace("\n", "")
    # sizes that cannot work are refused in one line, before the run is loaded
    for option, message in (
        (["--block", "0"], "--block must be at least 1, got 0"),
        (["--chunk", "0"], "--chunk must be at least 1, got 0"),
        (["--resolution", "100000"], "a mesh at --resolution 100000 needs about"),
    ):
        capsys.readouterr()
        assert main(["extract-mesh", "--load-config", str(config_path), "--out", str(tmp_path / "m.ply"), *option]) == 2
        assert message in capsys.readouterr().out.replace("\n", "")


def test_checkpoints_resume_migrate_and_refuse_mismatches(neus_scene, tmp_path):
    """A neus-cn-lite run past its warm-up (numpy learning rates in the checkpoint) resumes through nerfstudio's
    trainer under torch's weights-only loading; a checkpoint in the layout before the Linear -> Norm layers
    (geo_norms.{k} beside plain glin{k}) restores the same field; a checkpoint of another norm is refused even by
    nerfstudio's non-strict retry, instead of leaving the field partly untrained."""
    from nerf_norm.nerfstudio.checkpoints import CheckpointMismatch
    from nerf_norm.nerfstudio.experiment import setup_trainer

    config = configure(method_config("neus-cn-lite"), RunSettings(neus_scene, tmp_path / "run", steps=2))
    config.pipeline.datamanager.dataparser.eval_every = 2
    config.pipeline.datamanager.train_num_rays_per_batch = 32
    for group in config.optimizers.values():  # past the warm-up, as every real run: numpy learning rates
        group["scheduler"].warm_up_end = 1
    trainer, _ = train(config)
    state = trainer.pipeline.state_dict()
    (ckpt,) = (config.get_base_dir() / config.relative_model_dir).glob("step-*.ckpt")
    saved = torch.load(ckpt, map_location="cpu")  # torch's default (weights-only) load, as nerfstudio's
    assert isinstance(saved["optimizers"]["fields"]["param_groups"][0]["lr"], np.floating)
    from nerf_norm.cli import main

    assert (
        main(
            [
                "extract-mesh",
                "--load-config",
                str(config.get_base_dir() / "config.yml"),
                "--resolution",
                "32",
                "--block",
                "16",
                "--out",
                str(tmp_path / "m.ply"),
            ]
        )
        == 0
    )  # eval_setup reads it too
    assert (
        main(
            [
                "extract-mesh",
                "--load-config",
                str(config.get_base_dir() / "config.yml"),
                "--resolution",
                "32",
                "--block",
                "16",
                "--out",
                str(tmp_path / "r.ply"),
                "--refresh-stats",
                "2",
            ]
        )
        == 0
    )
    config.load_dir = config.get_base_dir() / config.relative_model_dir
    resumed = setup_trainer(config)
    assert resumed._start_step == 2
    for key, value in resumed.pipeline.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)

    field_keys = [k for k in state if k.startswith("_model.field.glin")]
    assert any(".norm.running_mean" in k for k in field_keys)
    old = {}
    for key, value in state.items():  # the layout of nerf_norm before cef38ae
        parts = key.split(".")
        if key.startswith("_model.field.glin") and parts[3] == "norm":
            old[".".join(["_model", "field", "geo_norms", parts[2][len("glin") :], *parts[4:]])] = value
        elif key.startswith("_model.field.glin") and parts[3] == "linear":
            old[".".join(parts[:3] + parts[4:])] = value
        else:
            old[key] = value
    assert not any(".norm." in k or ".linear." in k for k in old if k.startswith("_model.field.glin"))

    def like(folder: str, **field_options):
        other = configure(method_config("neus-cn-lite"), RunSettings(neus_scene, tmp_path / folder, steps=2))
        other.pipeline.datamanager.dataparser.eval_every = 2
        for key, value in field_options.items():
            setattr(other.pipeline.model.sdf_field, key, value)
        return setup_trainer(other)

    fresh = like("b")
    fresh.pipeline.load_state_dict(old)
    for key, value in fresh.pipeline.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)

    with pytest.raises(CheckpointMismatch, match="not used field.glin0.norm.running_mean"):
        like("c", norm="ln").pipeline.load_state_dict(state)  # LN keeps no running statistics


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_bounded_softplus_matches_torch_softplus(dtype):
    """NeuS' Softplus(beta=100) behind a norm runs on the CPU kernel with a bounded exponent: value, gradient and
    second derivative (what the eikonal loss takes) equal torch's over unit-scale inputs, the threshold region
    included; gradcheck/gradgradcheck in float64."""
    from nerf_norm import kernels as kernel

    torch.manual_seed(0)
    ours, ref = BoundedSoftplus(beta=100), torch.nn.Softplus(beta=100)
    assert kernel.load_for_elementwise(torch.zeros(2)) is not None, "the CPU kernels must build here"
    x = (torch.randn(4000, 37, dtype=torch.float64) * 1.5).to(dtype).requires_grad_(True)
    # the documented bound of the clamped exponent: exp(-30) / beta on the value, exp(-30) |w| on the derivative,
    # beta exp(-30) |w|^2 on the second derivative; beyond it, float rounding
    bound, rtol = math.exp(-30.0), (1e-12 if dtype == torch.float64 else 1e-5)
    eps = torch.finfo(dtype).eps
    y, y_ref = ours(x), ref(x)
    torch.testing.assert_close(y, y_ref, rtol=rtol, atol=bound / 100 + 10 * eps / 100)
    w = torch.randn_like(x)
    (g,) = torch.autograd.grad((y * w).sum(), x, create_graph=True)
    (g_ref,) = torch.autograd.grad((y_ref * w).sum(), x, create_graph=True)
    wmax = float(w.abs().max())
    torch.testing.assert_close(g, g_ref, rtol=rtol, atol=(bound + 10 * eps) * wmax)
    (gg,) = torch.autograd.grad((g * w).sum(), x)
    (gg_ref,) = torch.autograd.grad((g_ref * w).sum(), x)
    torch.testing.assert_close(gg, gg_ref, rtol=rtol, atol=100 * (bound + 10 * eps) * wmax**2)
    if dtype == torch.float64:
        small = (torch.randn(30, 4, dtype=dtype) * 0.05).requires_grad_(True)
        assert torch.autograd.gradcheck(ours, (small,))
        assert torch.autograd.gradgradcheck(ours, (small,))
    assert "beta=100" in repr(ours)


def test_refresh_running_statistics_changes_statistics_only(neus_scene, tmp_path):
    """Precise statistics: the norms' running statistics become the plain average over every norm call of the
    given training batches at the current weights; no weight changes, momenta are restored, eval mode after."""
    from nerf_norm.nerfstudio.statistics import norms_with_running_statistics, refresh_running_statistics

    config = configure(method_config("neus-cn-lite"), RunSettings(neus_scene, tmp_path, steps=2))
    config.pipeline.datamanager.dataparser.eval_every = 2
    config.pipeline.datamanager.train_num_rays_per_batch = 32
    trainer, _ = train(config)
    pipeline = trainer.pipeline
    params = {k: v.clone() for k, v in pipeline.model.named_parameters()}
    norms = norms_with_running_statistics(pipeline.model)
    before = [m.running_mean.clone() for m in norms]
    momenta = [m.momentum for m in norms]
    calls = []
    hooks = [m.register_forward_hook(lambda mod, i, o: calls.append(mod)) for m in norms[:1]]
    assert refresh_running_statistics(pipeline, 2) == len(norms) > 0
    for h in hooks:
        h.remove()
    assert not pipeline.model.training
    for k, v in pipeline.model.named_parameters():
        assert torch.equal(v, params[k]), k
    assert [m.momentum for m in norms] == momenta
    assert all(not torch.equal(m.running_mean, b) for m, b in zip(norms, before))
    # a cumulative average over every call of the 2 batches: NeuS calls its SDF network several times per batch
    assert int(norms[0].num_batches_tracked) == len(calls) >= 2
    assert refresh_running_statistics(pipeline, 0) == 0


def test_mask_dataset_reads_rgb_masks_and_blacks_out_background(tmp_path):
    """DTU's IDR masks are RGB PNGs; the mask dataset must read them (nerfstudio's mask reader refuses them)."""
    from PIL import Image

    from nerf_norm.nerfstudio.neus_dataparser import NeuSDataParserConfig
    from nerf_norm.nerfstudio.neus_dataset import NeuSMaskDataset

    make_scene(tmp_path, views=2, masks=2)
    rgb = np.zeros((24, 32, 3), dtype=np.uint8)
    rgb[:, :16] = 255
    for i in range(2):
        Image.fromarray(rgb).save(tmp_path / "mask" / f"{i:03}.png")
    outputs = NeuSDataParserConfig(data=tmp_path, eval_every=0, use_masks=True).setup().get_dataparser_outputs("train")
    item = NeuSMaskDataset(outputs)[1]
    assert item["fg_mask"].shape == (24, 32, 1)
    assert float(item["fg_mask"][:, :16].min()) == 1.0 and float(item["fg_mask"][:, 16:].max()) == 0.0
    assert float(item["image"][:, 16:].abs().max()) == 0.0 and float(item["image"][:, :16].max()) > 0


def test_bounded_collider_keeps_hits_and_brings_misses_near_the_box():
    """Rays through the box keep nerfstudio's bounds; a ray that misses it, nearly parallel to an axis, is not
    sampled ~1e6 units away (one such sample set a whole batch's statistics in neus-facto-cn)."""
    from nerfstudio.data.scene_box import SceneBox
    from nerfstudio.model_components.scene_colliders import AABBBoxCollider

    from nerf_norm.nerfstudio.colliders import BoundedAABBBoxCollider

    box = SceneBox(aabb=AABB.clone())
    origins = torch.tensor([[-3.0, 0.2, 0.1], [0.5, -4.0, 0.3], [-3.0, -2.5, 0.0]])
    directions = torch.nn.functional.normalize(torch.tensor([[1.0, 0.05, 0.0], [0.1, 1.0, 0.2], [1.0, 0.0, 0.0]]))
    theirs = AABBBoxCollider(box, near_plane=0.05)._intersect_with_aabb(origins, directions, box.aabb)
    ours = BoundedAABBBoxCollider(box, near_plane=0.05)._intersect_with_aabb(origins, directions, box.aabb)
    torch.testing.assert_close(ours[0][:2], theirs[0][:2])  # the two hits: unchanged
    torch.testing.assert_close(ours[1][:2], theirs[1][:2])
    assert theirs[0][2] > 1e5  # the miss, parallel to x beside the box: nerfstudio's near is ~1e6 away
    limit = torch.linalg.norm(origins[2]) + math.sqrt(3.0)
    assert ours[0][2] <= limit and ours[1][2] <= limit + 1e-5 and ours[1][2] > ours[0][2]
