"""Coordinate networks: the normalized ReLU MLP, the SIREN / MFN / WIRE baselines, and the registry of the
paper's 13 methods (section 5, "Compared methods").

All networks map ``[..., in_dim]`` coordinates to ``[..., out_dim]`` values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from .encodings import ENCODINGS, GaussianFourierFeatures, PositionalEncoding
from .norms import FUSED_RELU_NORMS, NORM_NAMES, make_norm

__all__ = [
    "CoordinateMLP",
    "Siren",
    "MFN",
    "Wire",
    "MethodSpec",
    "METHODS",
    "parse_arch",
    "get_method",
    "build_network",
    "EncodingSpec",
    "count_parameters",
]


class CoordinateMLP(nn.Module):
    """``encoding -> [Linear -> Norm -> ReLU] x hidden_layers -> Linear``.

    Args:
        in_dim: coordinate dimension (before encoding).
        out_dim: output channels.
        hidden_layers: number of hidden Linear -> Norm -> ReLU blocks.
        hidden_features: their width C.
        norm: ``none | bn | ln | gn | cn`` (see :mod:`nerf_norm.norms`), inserted before every hidden ReLU.
        encoding: an encoding module with an ``out_dim`` attribute, or ``None`` for raw coordinates.
        norm_kwargs: forwarded to :func:`~nerf_norm.norms.make_norm` (e.g. ``track_running_stats``).

    Linear layers keep torch's default (LeCun-style uniform) initialisation, as in the paper.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_layers: int,
        hidden_features: int,
        norm: str = "none",
        encoding: Optional[nn.Module] = None,
        norm_kwargs: Optional[dict] = None,
    ) -> None:
        super().__init__()
        if hidden_layers < 1 or hidden_features < 1:
            raise ValueError(
                f"CoordinateMLP needs hidden_layers, hidden_features >= 1, got {hidden_layers}x{hidden_features}"
            )
        self.encoding = encoding if encoding is not None else nn.Identity()
        width = getattr(encoding, "out_dim", in_dim) if encoding is not None else in_dim
        blocks = []
        # CrossNorm and GlobalNorm apply the ReLU themselves (fuse_relu: one pass fewer each way, the same values
        # and gradients); an Identity keeps the block's place, so checkpoints have the same keys either way
        fused = norm in FUSED_RELU_NORMS
        for _ in range(hidden_layers):
            kwargs = {**(norm_kwargs or {}), **({"fuse_relu": True} if fused else {})}
            blocks += [
                nn.Linear(width, hidden_features),
                make_norm(norm, hidden_features, **kwargs),
                nn.Identity() if fused else nn.ReLU(inplace=True),
            ]
            width = hidden_features
        self.hidden = nn.Sequential(*blocks)
        self.output = nn.Linear(width, out_dim)
        self.norm = norm

    def forward(self, coords: Tensor) -> Tensor:
        return self.output(self.hidden(self.encoding(coords)))


class _SineLayer(nn.Module):
    def __init__(self, in_features: int, out_features: int, omega_0: float, first: bool) -> None:
        super().__init__()
        self.omega_0 = omega_0
        self.linear = nn.Linear(in_features, out_features)
        bound = 1.0 / in_features if first else math.sqrt(6.0 / in_features) / omega_0
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.omega_0 * self.linear(x))


class Siren(nn.Module):
    """SIREN (Sitzmann et al. 2020): ``hidden_layers`` sine layers with ``omega_0`` and their init, linear out."""

    def __init__(
        self, in_dim: int, out_dim: int, hidden_layers: int, hidden_features: int, omega_0: float = 30.0
    ) -> None:
        super().__init__()
        layers = [_SineLayer(in_dim, hidden_features, omega_0, first=True)]
        layers += [_SineLayer(hidden_features, hidden_features, omega_0, first=False) for _ in range(hidden_layers - 1)]
        self.hidden = nn.Sequential(*layers)
        self.output = nn.Linear(hidden_features, out_dim)
        bound = math.sqrt(6.0 / hidden_features) / omega_0
        with torch.no_grad():
            self.output.weight.uniform_(-bound, bound)

    def forward(self, coords: Tensor) -> Tensor:
        return self.output(self.hidden(coords))


class MFN(nn.Module):
    """Multiplicative filter network (Fathony et al. 2021), Fourier or Gabor filters, with their init.

    ``z_1 = g_1(x)``, ``z_{k+1} = (W_k z_k + b_k) * g_{k+1}(x)``, output ``W z_K + b``, ``K = hidden_layers``.
    ``input_scale`` is the total filter frequency scale for coordinates in ``[-1, 1]`` (128 here equals the
    original 256 for coordinates in ``[0, 1]``); it is split over the K filters as ``input_scale / sqrt(K)``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_layers: int,
        hidden_features: int,
        filter: str = "fourier",
        input_scale: float = 128.0,
        weight_scale: float = 1.0,
        alpha: float = 6.0,
        beta: float = 1.0,
    ) -> None:
        super().__init__()
        if filter not in ("fourier", "gabor"):
            raise ValueError(f"MFN filter must be 'fourier' or 'gabor', got {filter!r}")
        self.filter = filter
        K = hidden_layers
        self.filters = nn.ModuleList(nn.Linear(in_dim, hidden_features) for _ in range(K))
        self.linears = nn.ModuleList(nn.Linear(hidden_features, hidden_features) for _ in range(K - 1))
        self.output = nn.Linear(hidden_features, out_dim)
        freq_scale = input_scale / math.sqrt(K)
        with torch.no_grad():
            for lin in list(self.linears) + [self.output]:
                bound = math.sqrt(weight_scale / hidden_features)
                lin.weight.uniform_(-bound, bound)
            for f in self.filters:
                f.bias.uniform_(-math.pi, math.pi)
        if filter == "fourier":
            with torch.no_grad():
                for f in self.filters:
                    f.weight.mul_(freq_scale)
        else:
            gamma_dist = torch.distributions.Gamma(alpha / K, beta)
            self.mu = nn.ParameterList(nn.Parameter(2 * torch.rand(hidden_features, in_dim) - 1) for _ in range(K))
            gammas = [gamma_dist.sample((hidden_features,)) for _ in range(K)]
            self.gamma = nn.ParameterList(nn.Parameter(g) for g in gammas)
            with torch.no_grad():
                for f, g in zip(self.filters, gammas):
                    f.weight.mul_(freq_scale * torch.sqrt(g).unsqueeze(-1))

    def _g(self, k: int, x: Tensor) -> Tensor:
        wave = torch.sin(self.filters[k](x))
        if self.filter == "fourier":
            return wave
        d2 = ((x.unsqueeze(-2) - self.mu[k]) ** 2).sum(-1)  # [..., hidden]
        return wave * torch.exp(-0.5 * d2 * self.gamma[k])

    def forward(self, coords: Tensor) -> Tensor:
        z = self._g(0, coords)
        for k, lin in enumerate(self.linears, start=1):
            z = lin(z) * self._g(k, coords)
        return self.output(z)


class _GaborLayer(nn.Module):
    """Complex Gabor wavelet activation of WIRE: ``exp(j omega z) * exp(-|s z|^2)``, ``z = W x + b``."""

    def __init__(self, in_features: int, out_features: int, omega: float, s: float, first: bool) -> None:
        super().__init__()
        self.omega, self.s = omega, s
        dtype = torch.float32 if first else torch.cfloat
        self.linear = nn.Linear(in_features, out_features, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        z = self.linear(x)
        return torch.exp(1j * self.omega * z - (self.s * z).abs().square())


class Wire(nn.Module):
    """WIRE (Saragadam et al. 2023) with complex Gabor wavelets, ``omega = 20``, ``s = 10``.

    As in its authors' setup, the width is divided by sqrt(2) so that the complex network has about the
    parameter count of a real one of ``hidden_features``; the output is the real part of a complex linear.
    """

    def __init__(
        self, in_dim: int, out_dim: int, hidden_layers: int, hidden_features: int, omega: float = 20.0, s: float = 10.0
    ) -> None:
        super().__init__()
        width = max(1, int(hidden_features / math.sqrt(2)))
        layers = [_GaborLayer(in_dim, width, omega, s, first=True)]
        layers += [_GaborLayer(width, width, omega, s, first=False) for _ in range(hidden_layers - 1)]
        self.hidden = nn.Sequential(*layers)
        self.output = nn.Linear(width, out_dim, dtype=torch.cfloat)

    def forward(self, coords: Tensor) -> Tensor:
        return self.output(self.hidden(coords)).real


# ----------------------------------------------------------------------------------------------------------
# the 13-method registry


@dataclass(frozen=True)
class MethodSpec:
    """One of the paper's methods: a network family, its norm, and the paper's learning rate for it."""

    name: str
    family: str  # relu | pe | siren | mfn | wire
    norm: str = "none"

    @property
    def default_lr(self) -> float:
        """Paper section 5.1: 1e-2 for normalized networks, 2e-4 for the rest."""
        return 1e-2 if self.norm != "none" else 2e-4


def _registry() -> Dict[str, MethodSpec]:
    methods = {name: MethodSpec(name, name) for name in ("siren", "mfn", "wire", "relu", "pe")}
    for family in ("relu", "pe"):
        for norm in NORM_NAMES[1:]:
            name = f"{family}+{norm}"
            methods[name] = MethodSpec(name, family, norm)
    order = [
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
    return {k: methods[k] for k in order}


METHODS: Dict[str, MethodSpec] = _registry()

_ARCH = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def parse_arch(arch: str) -> Tuple[int, int]:
    """``"13x49"`` -> ``(13, 49)`` (hidden layers, hidden features)."""
    m = _ARCH.match(str(arch))
    if not m:
        raise ValueError(f"invalid architecture {arch!r}: expected HIDDEN_LAYERSxHIDDEN_FEATURES, e.g. '13x49'")
    layers, features = int(m.group(1)), int(m.group(2))
    if layers < 1 or features < 1:
        raise ValueError(f"invalid architecture {arch!r}: both numbers must be at least 1")
    return layers, features


def get_method(name: str) -> MethodSpec:
    """The registry entry of method ``name`` (``relu``, ``pe+cn``, ``siren``, ...; case and spaces ignored)."""
    key = name.strip().lower()
    if key not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of: {', '.join(METHODS)}")
    return METHODS[key]


@dataclass(frozen=True)
class EncodingSpec:
    """The input encoding of the ``pe`` family.

    ``positional`` (default) is the paper's PE: NeRF's encoding with ``frequencies`` octaves (paper: 10) and
    the input kept. ``gaussian`` is Tancik et al.'s random Fourier features, ``gaussian_features`` of them
    (default: the hidden width) with ``gaussian_scale`` in the unit-interval convention; it is a different
    method and results with it are labelled ``gaussian``, never ``pe``.
    """

    kind: str = "positional"
    frequencies: int = 10
    gaussian_scale: float = 10.0
    gaussian_features: Optional[int] = None

    def __post_init__(self) -> None:
        if self.kind not in ENCODINGS:
            raise ValueError(f"unknown encoding {self.kind!r}; expected one of: {', '.join(ENCODINGS)}")
        if self.frequencies < 1:
            raise ValueError(f"the positional encoding needs at least 1 frequency, got {self.frequencies}")
        if not self.gaussian_scale > 0 or (self.gaussian_features is not None and self.gaussian_features < 1):
            raise ValueError(
                f"Gaussian features need a positive scale and count, got scale "
                f"{self.gaussian_scale}, features {self.gaussian_features}"
            )

    def build(self, in_dim: int, width: int, seed: Optional[int]) -> nn.Module:
        if self.kind == "positional":
            return PositionalEncoding(in_dim, self.frequencies, include_input=True)
        # every task feeds coordinates in [-1, 1], hence coord_span=2
        return GaussianFourierFeatures(
            in_dim, self.gaussian_features or width, self.gaussian_scale, seed=seed, coord_span=2.0
        )

    def describe(self) -> Dict[str, object]:
        """What identifies the encoding in run records."""
        if self.kind == "positional":
            return {"encoding": "positional", "pe_frequencies": self.frequencies}
        return {
            "encoding": "gaussian",
            "gaussian_scale": self.gaussian_scale,
            "gaussian_features": self.gaussian_features,
        }


def build_network(
    method: str,
    in_dim: int,
    out_dim: int,
    arch: str,
    *,
    encoding: Optional[EncodingSpec] = None,
    seed: Optional[int] = None,
    norm_kwargs: Optional[dict] = None,
) -> nn.Module:
    """Builds ``method`` (a registry name such as ``pe+cn``) with architecture ``arch`` (``"13x49"``).

    The ``pe`` family's input encoding is ``encoding`` (default: the paper's NeRF positional encoding with 10
    frequencies, so ``pe+cn`` at 10x28 in 2D has 42 inputs and 9159 parameters).
    """
    spec = get_method(method)
    layers, features = parse_arch(arch)
    if spec.family == "siren":
        return Siren(in_dim, out_dim, layers, features)
    if spec.family == "mfn":
        return MFN(in_dim, out_dim, layers, features)
    if spec.family == "wire":
        return Wire(in_dim, out_dim, layers, features)
    enc = (encoding or EncodingSpec()).build(in_dim, features, seed) if spec.family == "pe" else None
    return CoordinateMLP(in_dim, out_dim, layers, features, spec.norm, enc, norm_kwargs)


def count_parameters(model: nn.Module) -> int:
    """Trainable real parameters (a complex parameter counts twice)."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters() if p.requires_grad)


__all__ += ["PositionalEncoding", "GaussianFourierFeatures"]
