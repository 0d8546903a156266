"""Spectral-bias analysis: the empirical NTK against explicit Jacobians, its statistics, the paper's claims
on a fixed seed, frequency-resolved errors, and the two commands."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from nerf_norm.analysis import empirical_ntk, ntk_eigenvalues, ntk_statistics
from nerf_norm.analysis.commands import build_ntk_network
from nerf_norm.analysis.spectral import (
    SignalTask,
    band_edges,
    band_errors,
    periodic_grid,
    spectral_dynamics,
    tones_signal,
    two_tone_signal,
)
from nerf_norm.cli import main
from nerf_norm.encodings import PositionalEncoding
from nerf_norm.networks import CoordinateMLP
from nerf_norm.norms import CrossNorm

NORMS = ["none", "bn", "ln", "gn", "cn"]


def _explicit_ntk(model: nn.Module, coords: torch.Tensor) -> torch.Tensor:
    """Reference NTK: one reverse pass per output element through the model itself (its own CrossNorm
    backward, no torch.func), in float64 and training mode."""
    model = model.double().train()
    out = model(coords.double()).reshape(-1)
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for k in range(out.numel()):
        grads = torch.autograd.grad(out[k], params, retain_graph=True)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    jac = torch.stack(rows)
    return jac @ jac.T


@pytest.mark.parametrize("norm", NORMS)
def test_ntk_matches_explicit_jacobian(norm):
    torch.manual_seed(0)
    model = CoordinateMLP(2, 2, 2, 8, norm, PositionalEncoding(2, 2))
    coords = torch.rand(6, 2) * 2 - 1
    kernel = empirical_ntk(model, coords, chunk_size=5)
    assert kernel.shape == (12, 12) and kernel.dtype == torch.float64
    torch.testing.assert_close(kernel, _explicit_ntk(model, coords), rtol=1e-9, atol=1e-9)


def test_ntk_fused_relu_crossnorm_matches_explicit_jacobian():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(1, 6), CrossNorm(6, fuse_relu=True), nn.Linear(6, 1))
    coords = torch.linspace(-1, 1, 7).unsqueeze(-1)
    torch.testing.assert_close(empirical_ntk(model, coords), _explicit_ntk(model, coords), rtol=1e-9, atol=1e-9)


def test_ntk_matches_finite_differences():
    """J by central differences of every parameter, K = J J^T (float64)."""
    torch.manual_seed(2)
    model = CoordinateMLP(1, 1, 2, 4, "cn").double().train()
    coords = torch.linspace(-1, 1, 5, dtype=torch.float64).unsqueeze(-1)
    h = 1e-6
    columns = []
    with torch.no_grad():
        for p in model.parameters():
            flat = p.view(-1)
            for i in range(flat.numel()):
                old = flat[i].item()
                flat[i] = old + h
                plus = model(coords).reshape(-1)
                flat[i] = old - h
                minus = model(coords).reshape(-1)
                flat[i] = old
                columns.append((plus - minus) / (2 * h))
    jac = torch.stack(columns, dim=1)
    torch.testing.assert_close(empirical_ntk(model, coords), jac @ jac.T, rtol=1e-6, atol=1e-8)


def test_ntk_is_symmetric_psd_and_statistics_are_consistent():
    torch.manual_seed(0)
    model = CoordinateMLP(1, 1, 3, 32, "cn")
    kernel = empirical_ntk(model, periodic_grid([64]))
    torch.testing.assert_close(kernel, kernel.T, rtol=0, atol=1e-12 * float(kernel.abs().max()))
    lam = ntk_eigenvalues(kernel)
    assert float(lam.min()) >= -1e-10 * float(lam.max())
    stats = ntk_statistics(kernel, lam)
    # Eq. 6: the trace formulas give the eigenvalues' mean and variance, and bound the largest one
    assert stats.trace_mean == pytest.approx(stats.mean, rel=1e-9)
    assert stats.trace_variance == pytest.approx(stats.variance, rel=1e-6)
    assert stats.max_lower_bound <= stats.max * (1 + 1e-9) and stats.max <= stats.max_upper_bound * (1 + 1e-9)


def test_ntk_leaves_the_model_untouched():
    torch.manual_seed(0)
    model = CoordinateMLP(1, 1, 2, 8, "cn", norm_kwargs={"track_running_stats": True}).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    empirical_ntk(model, periodic_grid([16]))
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_ntk_rejects_bad_input():
    model = CoordinateMLP(1, 1, 2, 8, "none")
    with pytest.raises(ValueError, match=r"coords must be \[T, D\]"):
        empirical_ntk(model, torch.zeros(8))


@pytest.mark.parametrize("seed", [0, 1])
def test_cn_and_bn_shift_the_ntk_spectrum_up(seed):
    """Proposition 1 on a fixed seed (3x64 ReLU MLP, 128 points): measured, the median eigenvalue of CN/BN is
    about 1e4-1e5 times the plain MLP's and max/median is about 1e3 times smaller; asserted: 100x each."""
    coords = periodic_grid([128])
    stats = {
        n: ntk_statistics(empirical_ntk(build_ntk_network(n, 0, "3x64", seed), coords)) for n in ("none", "bn", "cn")
    }
    for norm in ("bn", "cn"):
        assert stats[norm].median > 100 * stats["none"].median, (norm, stats[norm].median, stats["none"].median)
        assert stats[norm].max_over_median < stats["none"].max_over_median / 100, norm


# ----------------------------------------------------------------------------------------------------------
# frequency-resolved error


def test_band_errors_known_answers():
    n = 128
    low = tones_signal(n, [3.0], seed=0)
    high = tones_signal(n, [40.0], seed=1)
    target = low + high
    edges = torch.tensor([0.0, 20.0, 64.0])
    torch.testing.assert_close(band_errors(target, target, edges), torch.zeros(2, dtype=torch.float64))
    # missing the high tone entirely: low band exact, high band error 1
    torch.testing.assert_close(
        band_errors(low, target, edges), torch.tensor([0.0, 1.0], dtype=torch.float64), atol=1e-6, rtol=0
    )
    # half the low tone's amplitude: relative error 0.5 in the low band only
    torch.testing.assert_close(
        band_errors(0.5 * low + high, target, edges), torch.tensor([0.5, 0.0], dtype=torch.float64), atol=1e-6, rtol=0
    )
    # a band with no target energy is undefined
    assert math.isnan(float(band_errors(low, low, edges)[1]))


def test_band_errors_2d_radial():
    n = 32
    grid = periodic_grid([n, n])
    wave = torch.sin(math.pi * 10 * (grid[:, 1] + 1)).reshape(n, n, 1)  # |k| = 10 along x
    edges = band_edges((n, n), 4)
    assert edges[-1] == pytest.approx(math.sqrt(2) * n / 2)
    errs = band_errors(torch.zeros_like(wave), wave, edges)
    band = int(torch.bucketize(torch.tensor(10.0), edges)) - 1
    assert float(errs[band]) == pytest.approx(1.0)
    assert all(math.isnan(float(e)) for b, e in enumerate(errs) if b != band)


def _two_tone_task() -> SignalTask:
    return SignalTask(two_tone_signal(256, 2, 40), (256,), torch.tensor([0.0, 20.0, 64.0]), "two tones")


def test_pe_cn_learns_the_high_band_faster(tmp_path):
    """Two unit tones (2 and 40 cycles), 4x128, seed 0. Measured at iteration 100 with the paper's learning
    rates: high-band error relu 1.01, pe+cn 0.004 (the paper's PE, 10 frequencies). At one learning rate for
    both (1e-3), iteration 50: pe 0.615, pe+cn 0.016."""
    task = _two_tone_task()
    runs = {m: spectral_dynamics(m, task, "4x128", 100, 50, tmp_path / m) for m in ("relu", "pe+cn")}
    for run in runs.values():
        assert list(run.iterations) == [1, 50, 100] and run.errors.shape == (3, 2)
    high = {m: r.errors[-1, 1] for m, r in runs.items()}
    assert high["pe+cn"] < 0.1 < 0.9 < high["relu"], high
    same_lr = {
        m: spectral_dynamics(m, task, "4x128", 50, 50, tmp_path / f"{m}-lr", lr=1e-3).errors[-1, 1]
        for m in ("pe", "pe+cn")
    }
    assert same_lr["pe+cn"] < same_lr["pe"] / 2, same_lr


def test_spectral_dynamics_resumes_with_its_records(tmp_path):
    task = _two_tone_task()
    first = spectral_dynamics("relu+cn", task, "2x16", 20, 5, tmp_path)
    again = spectral_dynamics("relu+cn", task, "2x16", 20, 5, tmp_path)  # finished checkpoint: nothing retrained
    np.testing.assert_array_equal(first.iterations, again.iterations)
    np.testing.assert_array_equal(first.errors, again.errors)
    assert list(first.iterations) == [1, 5, 10, 15, 20]


# ----------------------------------------------------------------------------------------------------------
# commands


def test_ntk_command_writes_figure_and_statistics(tmp_path):
    out = tmp_path / "ntk"
    code = main(
        ["ntk", "--norms", "none,cn", "--encodings", "relu,pe2", "--arch", "2x16", "--samples", "32", "--out", str(out)]
    )
    assert code == 0
    record = json.loads((out / "ntk.json").read_text())
    assert set(record["statistics"]) == {"relu", "pe2"}
    assert set(record["statistics"]["pe2"]) == {"none", "cn"}
    assert record["statistics"]["relu"]["cn"]["size"] == 32
    assert (out / "ntk_eigenvalues.png").stat().st_size > 10_000
    assert "| relu | cn |" in (out / "ntk.md").read_text()


def test_spectral_dynamics_command_1d_and_2d(tmp_path):
    assert (
        main(
            [
                "spectral-dynamics",
                "--methods",
                "relu,pe+cn",
                "--iters",
                "10",
                "--every",
                "5",
                "--samples",
                "64",
                "--bands",
                "4",
                "--arch",
                "2x16",
                "--out",
                str(tmp_path / "tones"),
            ]
        )
        == 0
    )
    record = json.loads((tmp_path / "tones" / "spectral_dynamics.json").read_text())
    assert [r["method"] for r in record["runs"]] == ["relu", "pe+cn"]
    assert len(record["runs"][0]["errors"]) == 3 and len(record["runs"][0]["errors"][0]) == 4
    assert (tmp_path / "tones" / "spectral_dynamics.png").exists()
    assert (
        main(
            [
                "spectral-dynamics",
                "--signal",
                "image",
                "--methods",
                "pe+cn",
                "--iters",
                "5",
                "--every",
                "5",
                "--samples",
                "16",
                "--bands",
                "3",
                "--arch",
                "2x16",
                "--out",
                str(tmp_path / "image"),
            ]
        )
        == 0
    )
    assert (tmp_path / "image" / "pe+cn" / "fit.png").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["ntk", "--norms", "none,xn"], "unknown norm 'xn'"),
        (["ntk", "--encodings", "fourier"], "unknown network 'fourier'"),
        (["ntk", "--samples", "1"], "--samples must be at least 2"),
        (["ntk", "--samples", "1000000"], "the empirical NTK of --samples 1000000 points needs about"),
        (["spectral-dynamics", "--methods", "relu,foo"], "unknown method 'foo'"),
        (["spectral-dynamics", "--samples", "16", "--bands", "8"], "too few"),
        (["spectral-dynamics", "--image", "x.png"], "--image is used with --signal image only"),
        (["spectral-dynamics", "--signal", "image", "--image", "missing.png"], "image file not found"),
    ],
)
def test_analysis_commands_reject_bad_options(argv, message, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().out.replace("\n", "")
