"""Encodings, coordinate networks and the method registry."""

import math

import pytest
import torch
from torch import nn

from nerf_norm.encodings import GaussianFourierFeatures, PositionalEncoding
from nerf_norm.networks import (
    METHODS,
    PAPER_METHODS,
    CoordinateMLP,
    EncodingSpec,
    build_network,
    count_parameters,
    get_method,
    parse_arch,
)
from nerf_norm.norms import BatchNorm, CrossNorm


def test_positional_encoding_is_nerfs_hand_computed():
    """The paper's PE (NeRF, L = 10, input kept) against values written out by hand for one 2D point."""
    pe = PositionalEncoding(2)
    x, y = 0.3, -0.7
    expected = [x, y]
    for k in range(10):
        f = (2.0**k) * math.pi
        expected += [math.sin(f * x), math.sin(f * y), math.cos(f * x), math.cos(f * y)]
    out = pe(torch.tensor([[x, y]], dtype=torch.float64))
    assert pe.out_dim == 42 and out.shape == (1, 42)
    assert torch.allclose(out[0], torch.tensor(expected, dtype=torch.float64), atol=1e-12)
    assert PositionalEncoding(3).out_dim == 63
    assert PositionalEncoding(2, 3, include_input=False)(torch.zeros(1, 2)).shape == (1, 12)


def test_encodings_compute_in_float32_under_autocast():
    x = torch.rand(64, 2) * 2 - 1
    for enc in (PositionalEncoding(2), GaussianFourierFeatures(2, 16, scale=10.0, seed=0, coord_span=2.0)):
        ref = enc(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = enc(x.bfloat16())
        assert low.dtype == torch.float32
        # the input was rounded to bfloat16 (8 bits), the encoding itself is not: compare to the rounded input's
        assert torch.allclose(low, enc(x.bfloat16().float()), atol=1e-6)
        assert ref.dtype == torch.float32


def test_pe_family_is_the_papers_positional_encoding():
    net = build_network("pe+cn", 2, 3, "10x28", seed=0)
    assert isinstance(net.encoding, PositionalEncoding) and net.encoding.num_frequencies == 10
    assert count_parameters(net) == 9159  # 42*28+28 + 9*(28*28+28) + 28*3+3 + 10 layers x (2*28) CN affine
    gauss = build_network("pe", 2, 3, "10x28", seed=0, encoding=EncodingSpec("gaussian", gaussian_scale=10.0))
    assert isinstance(gauss.encoding, GaussianFourierFeatures) and gauss.encoding.out_dim == 56
    with pytest.raises(ValueError, match="unknown encoding"):
        EncodingSpec("fourier")


def test_fourier_features_fixed_and_seeded():
    a = GaussianFourierFeatures(2, 16, scale=10.0, seed=3)
    b = GaussianFourierFeatures(2, 16, scale=10.0, seed=3)
    assert torch.equal(a.B, b.B) and a.out_dim == 32
    assert not any(p.requires_grad for p in a.parameters())
    assert 5.0 < a.B.std().item() < 15.0  # scale 10
    half = GaussianFourierFeatures(2, 16, scale=10.0, seed=3, coord_span=2.0)  # coordinates in [-1, 1]
    assert torch.allclose(half.B, a.B / 2)
    x = torch.rand(5, 2)
    y = a(x)
    assert torch.allclose(y[:, :16] ** 2 + y[:, 16:] ** 2, torch.ones(5, 16), atol=1e-5)


def test_coordinate_mlp_is_linear_norm_relu():
    net = CoordinateMLP(2, 3, hidden_layers=3, hidden_features=8, norm="bn")
    assert [type(m) for m in net.hidden] == [nn.Linear, BatchNorm, nn.ReLU] * 3
    assert isinstance(net.output, nn.Linear) and net.output.out_features == 3
    # CrossNorm applies the ReLU itself; an Identity keeps the layout (and the checkpoint keys)
    fused = CoordinateMLP(2, 3, hidden_layers=3, hidden_features=8, norm="cn")
    assert [type(m) for m in fused.hidden] == [nn.Linear, CrossNorm, nn.Identity] * 3
    assert all(m.fuse_relu for m in fused.hidden if isinstance(m, CrossNorm))
    assert list(fused.state_dict()) == [
        k for k in CoordinateMLP(2, 3, 3, 8, norm="bn").state_dict() if "running" not in k and "num_batches" not in k
    ]
    x = torch.rand(40, 2) * 2 - 1
    y_fused = fused(x)
    for m in fused.hidden:  # the same network as Linear -> CrossNorm -> ReLU
        if isinstance(m, CrossNorm):
            m.fuse_relu = False
    unfused = nn.Sequential(*[nn.ReLU() if isinstance(m, nn.Identity) else m for m in fused.hidden])
    torch.testing.assert_close(y_fused, fused.output(unfused(x)), rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_builds_and_runs(method):
    net = build_network(method, 2, 3, "4x32", seed=0)  # 4x32: the smallest budget here that a hash grid fits
    y = net(torch.rand(50, 2) * 2 - 1)
    assert y.shape == (50, 3) and y.dtype == torch.float32 and torch.isfinite(y).all()
    assert count_parameters(net) > 0


def test_registry_has_the_papers_13_methods_and_rates():
    assert (
        list(PAPER_METHODS)
        == list(METHODS)[:13]
        == [
            "siren",
            "mfn",
            "wire",
            "relu",
            "relu+bn",
            "relu+ln",
            "relu+gn",
            "relu+cn",
            "pe",
            "pe+bn",
            "pe+ln",
            "pe+gn",
            "pe+cn",
        ]
    )
    assert get_method("PE+CN").default_lr == 1e-2 and get_method("relu").default_lr == 2e-4


def test_parse_arch():
    assert parse_arch("13x49") == (13, 49)
    assert parse_arch(" 5 X 20 ") == (5, 20)
    for bad in ("13", "x49", "0x10", "13x49x2", "axb"):
        with pytest.raises(ValueError, match="architecture"):
            parse_arch(bad)


def test_unknown_method_names_the_choices():
    with pytest.raises(ValueError, match="unknown method 'gelu'.*pe\\+cn"):
        get_method("gelu")


def test_parameter_counts():
    # relu 2x10 -> 3: (2*10+10) + (10*10+10) + (10*3+3); each norm adds 2*10 per hidden layer
    assert count_parameters(build_network("relu", 2, 3, "2x10")) == 30 + 110 + 33
    assert count_parameters(build_network("relu+cn", 2, 3, "2x10")) == 30 + 110 + 33 + 40
    # WIRE's complex parameters count twice
    wire = build_network("wire", 2, 3, "2x10")
    assert count_parameters(wire) == sum(p.numel() * (2 if p.is_complex() else 1) for p in wire.parameters())
