"""MRI task: volumes (NIfTI, TIFF, phantom), the k-space mask and forward model, the CLI, bad input, learning."""

import json

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from conftest import squash

from nerf_norm.cli import main
from nerf_norm.tasks.commands import MRICommand, run_mri
from nerf_norm.tasks.mri import MRITask, head_phantom, load_volume, variable_density_mask


def test_phantom_and_resampling(tmp_path):
    vol = head_phantom(24)
    assert vol.shape == (24, 24, 24) and vol.min() == 0 and vol.max() == pytest.approx(1.0)
    assert vol[0, 0, 0] == 0 and vol[12, 12, 12] > 0  # empty corner, tissue in the middle
    raw = np.arange(10 * 12 * 14, dtype=np.float32).reshape(10, 12, 14)
    nib.save(nib.Nifti1Image(raw[..., None], np.eye(4)), tmp_path / "v.nii.gz")  # [X, Y, Z, 1] is accepted
    vol, source = load_volume(tmp_path / "v.nii.gz", 16)
    assert vol.shape == (16, 16, 16) and source.endswith("v.nii.gz")
    # min-max scaled to [0, 1] before the (linear, pixel-area) resampling, so the ramp stays inside and increasing
    assert 0.0 <= vol.min() < 0.05 and 0.95 < vol.max() <= 1.0
    assert np.all(np.diff(vol, axis=2) >= 0) and np.all(np.diff(vol, axis=0) > 0)


def test_user_volume_keeps_its_own_shape_and_changes_are_said_once(tmp_path, capsys):
    raw = np.arange(10 * 12 * 14, dtype=np.float32).reshape(10, 12, 14)
    np.save(tmp_path / "v.npy", raw)
    task = MRITask(tmp_path / "v.npy", sampling=0.5)
    assert task.shape == (10, 12, 14) and task.size_label == "10x12x14"
    assert task.coords().shape == (10 * 12 * 14, 3) and task.mask.shape == (10, 12, 14)
    np.testing.assert_allclose(task.target.numpy(), raw / raw.max(), atol=1e-6)  # only min-max rescaled
    said = squash(capsys.readouterr().err)
    assert said.count(squash("volume intensities rescaled from [0, 1679] to [0, 1]")) == 1
    assert "resampled" not in said
    assert MRITask(tmp_path / "v.npy", resolution=8).shape == (8, 8, 8)
    assert "resampledfrom10x12x14to8^3(--resolution)" in squash(capsys.readouterr().err)


def test_one_extreme_voxel_does_not_squash_the_volume(tmp_path, capsys):
    raw = np.linspace(0.0, 100.0, 16**3).reshape(16, 16, 16)
    raw[3, 4, 5] = 1e30
    np.save(tmp_path / "v.npy", raw)
    vol, _ = load_volume(tmp_path / "v.npy")
    assert vol[3, 4, 5] == 1.0 and np.median(vol) == pytest.approx(0.5, abs=0.01)  # not min-max scaled to ~0
    assert "outlier voxels" in capsys.readouterr().err


def test_mask_fraction_and_centre():
    mask = variable_density_mask(32, 0.25, center=0.1, seed=0)
    assert mask.shape == (32, 32, 32) and mask.dtype == torch.bool
    assert abs(mask.double().mean().item() - 0.25) < 0.01
    assert mask[0, 0, 0] and mask[1, 0, 0] and mask[-1, 0, 0]  # the low frequencies are all measured
    assert torch.equal(mask, variable_density_mask(32, 0.25, center=0.1, seed=0))
    assert not torch.equal(mask, variable_density_mask(32, 0.25, center=0.1, seed=1))


def test_forward_model_is_consistent():
    task = MRITask(None, resolution=16, sampling=1.0)
    assert task.measured_fraction == 1.0
    torch.testing.assert_close(task.zero_filled(), task.target, atol=1e-5, rtol=0)  # full k-space inverts exactly
    assert task.loss(task.target.reshape(-1, 1)).item() < 1e-10
    # orthonormal DFT: the k-space loss of an error on full sampling is its mean squared error (Parseval)
    err = 0.1 * torch.randn(16**3, 1, generator=torch.Generator().manual_seed(0))
    loss = task.loss(task.target.reshape(-1, 1) + err).item()
    assert loss == pytest.approx(err.pow(2).mean().item(), rel=1e-4)


def test_mri_cli_on_default_phantom(tmp_path, cli_output):
    out = tmp_path / "mri"
    code = main(["mri", "--resolution", "16", "--iters", "3", "--arch", "2x32", "--quiet", "--out", str(out)])
    assert code == 0, cli_output()
    record = json.loads((out / "metrics.json").read_text())
    assert record["run"]["volume"].startswith("3D head phantom") and record["run"]["shape"] == [16, 16, 16]
    assert 0.2 < record["metrics"]["measured_fraction"] < 0.3 and record["metrics"]["zero_filled_psnr"] > 10
    assert (out / "slices.png").is_file() and (out / "curve.png").is_file()


@pytest.mark.parametrize("name", ["ch2bet.nii.gz", "brain.tiff"])
def test_mri_cli_on_real_volumes(shared_data, tmp_path, cli_output, name):
    out = tmp_path / name
    code = main(
        [
            "mri",
            "--volume",
            str(shared_data / "mri" / name),
            "--resolution",
            "16",
            "--iters",
            "2",
            "--arch",
            "2x32",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert code == 0, cli_output()
    record = json.loads((out / "metrics.json").read_text())
    assert record["run"]["volume"].endswith(name) and record["metrics"]["zero_filled_psnr"] > 10


def test_mri_bad_input(tmp_path, cli_output):
    nib.save(nib.Nifti1Image(np.zeros((8, 8), dtype=np.float32), np.eye(4)), tmp_path / "flat.nii")
    code = main(["mri", "--volume", str(tmp_path / "flat.nii"), "--out", str(tmp_path / "a")])
    err = cli_output()
    assert code == 2 and "flat.nii" in err and squash("expected a 3D volume") in err
    nib.save(nib.Nifti1Image(np.random.rand(8, 8, 8, 3).astype(np.float32), np.eye(4)), tmp_path / "t.nii.gz")
    code = main(["mri", "--volume", str(tmp_path / "t.nii.gz"), "--out", str(tmp_path / "b")])
    err = cli_output()
    assert code == 2 and squash("4 dimensions") in err and squash("(8, 8, 8, 3)") in err
    tifffile.imwrite(tmp_path / "one.tif", np.zeros((16, 16), dtype=np.uint16))
    code = main(["mri", "--volume", str(tmp_path / "one.tif"), "--out", str(tmp_path / "c")])
    assert code == 2 and squash("expected a 3D volume") in cli_output()
    (tmp_path / "v.png").write_bytes(b"not a volume")
    code = main(["mri", "--volume", str(tmp_path / "v.png"), "--out", str(tmp_path / "d")])
    assert code == 2 and squash("unsupported format") in cli_output()
    code = main(["mri", "--sampling", "0", "--resolution", "8", "--out", str(tmp_path / "e")])
    assert code == 2 and "--sampling" in cli_output()


@pytest.mark.slow
def test_relu_cn_beats_relu_on_mri(shared_data, tmp_path):
    """Fixed seed and budget (ch2bet at 24^3, 25% of k-space, 4x128, 300 iterations): CN lifts PSNR.

    Not universal at this budget: at 2x256 and 4x256 plain ReLU was ahead (benchmarks/results/mri_gff.md, 300 iterations), and in
    exploratory runs also on the generated phantom and on brain.tiff (see README)."""
    psnr = {}
    for method in ("relu", "relu+cn"):
        cmd = MRICommand(
            volume=shared_data / "mri" / "ch2bet.nii.gz",
            method=method,
            arch="4x128",
            resolution=24,
            iters=300,
            seed=0,
            quiet=True,
            out=tmp_path / method,
        )
        psnr[method] = run_mri(cmd)[0].metrics["psnr"]
    # measured 2026-12-04 at seeds 0, 1, 2: relu 25.48 / 25.51 / 26.29 dB, relu+cn 27.37 / 26.72 / 27.08 (gains 1.89,
    # 1.21, 0.80); asserted at seed 0: 0.4 dB, half the smallest gain
    assert psnr["relu+cn"] > psnr["relu"] + 0.4, psnr


def test_kspace_error_split_is_parseval_exact():
    """The two parts of the k-space error split add up to the voxel MSE (orthonormal DFT); the target has neither."""
    task = MRITask(None, 12, sampling=0.3)
    torch.manual_seed(0)
    pred = task.target.reshape(-1, 1) + 0.05 * torch.randn(task.target.numel(), 1)
    split = task.kspace_error_split(pred)
    mse = ((pred.reshape(task.shape).double() - task.target.double()) ** 2).mean().item()
    assert split["mse_measured_kspace"] + split["mse_unmeasured_kspace"] == pytest.approx(mse, rel=1e-5)
    assert split["mse_measured_kspace"] < split["mse_unmeasured_kspace"]  # ~30% vs ~70% of the coefficients
    assert max(task.kspace_error_split(task.target.reshape(-1, 1)).values()) < 1e-12
