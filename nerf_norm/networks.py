"""Coordinate networks: the normalized ReLU MLP, the SIREN / MFN / WIRE baselines, FINER and Gauss (optionally
normalized), and the method registry: the paper's 13 methods (section 5, "Compared methods") and the later
baselines ``finer``, ``gauss`` and ``hash`` with their normalized variants.

All networks map ``[..., in_dim]`` coordinates to ``[..., out_dim]`` values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .encodings import ENCODINGS, GaussianFourierFeatures, PositionalEncoding
from .norms import FUSED_RELU_NORMS, NORM_NAMES, make_norm

__all__ = [
    "CoordinateMLP",
    "Siren",
    "MFN",
    "Wire",
    "Finer",
    "Gauss",
    "finer_activation",
    "gauss_activation",
    "MethodSpec",
    "METHODS",
    "PAPER_METHODS",
    "hash_mlp_width",
    "hash_table_size",
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


def finer_activation(z: Tensor, omega: float) -> Tensor:
    """FINER's variable-periodic activation ``sin(omega (|z| + 1) z)`` (Liu et al. 2024, Eq. 4). The factor
    ``|z| + 1`` is held constant in the backward pass, as in the authors' release (``scale_req_grad=False``), so
    ``d/dz = omega (|z| + 1) cos(omega (|z| + 1) z)``."""
    return torch.sin(omega * (z.detach().abs() + 1.0) * z)


class _GaussActivationFunction(torch.autograd.Function):
    """``y = exp(-(s z)^2 / 2)`` and ``dz = -s^2 z y dy`` in closed form (four elementwise passes each way), with
    results below the dtype's smallest normal number set to zero in both directions (see :func:`gauss_activation`)."""

    generate_vmap_rule = True  # torch.func (the NTK analysis) maps it over samples

    @staticmethod
    def forward(z: Tensor, s: float) -> Tensor:
        y = torch.exp(z.square().mul(-0.5 * s * s))
        return F.threshold(y, torch.finfo(y.dtype).tiny, 0.0)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        z, s = inputs
        ctx.save_for_backward(z, output)
        ctx.s = s

    @staticmethod
    def backward(ctx, grad: Tensor):
        z, y = ctx.saved_tensors
        grad_z = (grad * y).mul(z).mul(-ctx.s * ctx.s)
        return F.hardshrink(grad_z, torch.finfo(grad_z.dtype).tiny), None


def gauss_activation(z: Tensor, s: float) -> Tensor:
    """The Gaussian activation ``exp(-(s z)^2 / 2)`` of Ramasinghe & Lucey 2022 (``exp(-z^2 / (2 sigma^2))``,
    ``s = 1 / sigma``), with its derivative ``-s^2 z exp(-(s z)^2 / 2)``.

    Values and gradients below the dtype's smallest normal number are exact zeros (they differ from the formula by
    less than that number, about 1e-38 in float32): subnormal floats, which a wide Gaussian of ``s z`` makes in
    large numbers, slow every CPU operation that touches them (a Gauss 2x256 training step on 25,000 points: 1.37 s
    through autograd of the formula, 0.29 s so; ``experiments/gauss_cpu_cost/``)."""
    return _GaussActivationFunction.apply(z, s)


class _ScaledActivationLayer(nn.Module):
    """``Linear -> [Norm] -> activation(., scale)``.

    Without a norm the activation gets ``z = W x + b``. With one, the normalized ``z_hat`` (unit variance under the
    norm's statistics) stands for ``scale * z``, the activation's argument (for FINER, whose SIREN initialisation
    gives ``omega W x`` about unit variance, the spread the design expects): the activation gets ``z_hat / scale``.
    ``[..., in] -> [..., out]``.
    """

    def __init__(self, in_features: int, out_features: int, activation, scale: float, norm: str, norm_kwargs) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.norm = make_norm(norm, out_features, **(norm_kwargs or {}))
        self.activation = activation
        self.scale = scale
        self.normalized = norm != "none"

    def forward(self, x: Tensor) -> Tensor:
        z = self.linear(x)
        if self.normalized:
            z = self.norm(z) / self.scale
        return self.activation(z, self.scale)

    def extra_repr(self) -> str:
        return f"activation={self.activation.__name__}, scale={self.scale:g}"


class _ScaledActivationMLP(nn.Module):
    """``hidden_layers`` :class:`_ScaledActivationLayer` s (the first without a norm: it sets the frequencies, as the
    encoding does for ``pe+cn``), then a linear output. ``[..., in_dim] -> [..., out_dim]``."""

    def __init__(self, in_dim, out_dim, hidden_layers, hidden_features, activation, scale, norm, norm_kwargs) -> None:
        super().__init__()
        layers = [_ScaledActivationLayer(in_dim, hidden_features, activation, scale, "none", None)]
        layers += [
            _ScaledActivationLayer(hidden_features, hidden_features, activation, scale, norm, norm_kwargs)
            for _ in range(hidden_layers - 1)
        ]
        self.hidden = nn.Sequential(*layers)
        self.output = nn.Linear(hidden_features, out_dim)
        self.norm = norm

    def forward(self, coords: Tensor) -> Tensor:
        return self.output(self.hidden(coords))


class Finer(_ScaledActivationMLP):
    """FINER (Liu et al., CVPR 2024): ``hidden_layers`` layers ``sin(omega (|z| + 1) z)``, linear out.

    Initialisation as the authors' release: SIREN's weights (first layer ``U(-1/in, 1/in)``, the others and the
    output ``U(-sqrt(6/in)/omega, sqrt(6/in)/omega)``), torch's default biases, and the first layer's bias
    ``U(-k, k)`` when ``first_bias_scale`` ``k`` is given (FINER's bias initialisation; the release's image script
    leaves it unset). ``norm`` goes before the activation of every hidden layer after the first (the first sets
    the frequencies, as the encoding does for ``pe+cn``), with the normalized value standing for ``omega z``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_layers: int,
        hidden_features: int,
        omega: float = 30.0,
        first_bias_scale: Optional[float] = None,
        norm: str = "none",
        norm_kwargs: Optional[dict] = None,
    ) -> None:
        super().__init__(in_dim, out_dim, hidden_layers, hidden_features, finer_activation, omega, norm, norm_kwargs)
        layers = list(self.hidden)
        with torch.no_grad():
            for i, layer in enumerate(layers):
                fan_in = layer.linear.in_features
                bound = 1.0 / fan_in if i == 0 else math.sqrt(6.0 / fan_in) / omega
                layer.linear.weight.uniform_(-bound, bound)
            if first_bias_scale is not None:
                layers[0].linear.bias.uniform_(-first_bias_scale, first_bias_scale)
            bound = math.sqrt(6.0 / hidden_features) / omega
            self.output.weight.uniform_(-bound, bound)


class Gauss(_ScaledActivationMLP):
    """Gaussian-activated MLP (Ramasinghe & Lucey, ECCV 2022): ``hidden_layers`` layers ``exp(-(s z)^2 / 2)``,
    linear out, torch's default initialisation (as the released baselines of WIRE and FINER).

    ``s = 10 sqrt(2)`` is WIRE's and FINER's released Gauss baseline (``exp(-(10 z)^2)``). ``norm`` as in
    :class:`Finer`: before the activation of every hidden layer after the first, the normalized value standing for
    ``s z`` (so the activation is ``exp(-z_hat^2 / 2)``).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_layers: int,
        hidden_features: int,
        s: float = 10.0 * math.sqrt(2.0),
        norm: str = "none",
        norm_kwargs: Optional[dict] = None,
    ) -> None:
        super().__init__(in_dim, out_dim, hidden_layers, hidden_features, gauss_activation, s, norm, norm_kwargs)


#: the hash family's grid (Instant-NGP's defaults: L = 16 levels of F = 2 features, coarsest resolution 16) and
#: its MLP (Instant-NGP's two hidden ReLU layers of 64 neurons; of the architecture's width where that is narrower)
HASH_LEVELS, HASH_FEATURES, HASH_MIN_RES, HASH_MAX_RES, HASH_MLP_LAYERS, HASH_MLP_WIDTH = 16, 2, 16, 512, 2, 64


def hash_mlp_width(arch: str) -> int:
    """Width of the MLP behind the hash grid at ``arch``: ``min(C, HASH_MLP_WIDTH)`` for ``arch = LxC``."""
    return min(parse_arch(arch)[1], HASH_MLP_WIDTH)


def hash_table_size(in_dim: int, out_dim: int, arch: str, norm: str = "none") -> int:
    """The hash table size (entries per level) that gives ``hash[+norm]`` at ``arch`` the parameter count of the
    plain ReLU MLP ``relu`` at ``arch``: ``(P_relu - P_mlp) // (L F)``, where the MLP behind the grid has
    :data:`HASH_MLP_LAYERS` hidden layers of :func:`hash_mlp_width` (with the norm's affine parameters)."""
    layers, features = parse_arch(arch)
    width = hash_mlp_width(arch)
    with torch.device("meta"):
        budget = count_parameters(CoordinateMLP(in_dim, out_dim, layers, features))
        mlp = count_parameters(CoordinateMLP(HASH_LEVELS * HASH_FEATURES, out_dim, HASH_MLP_LAYERS, width, norm))
    table = (budget - mlp) // (HASH_LEVELS * HASH_FEATURES)
    if table < 1:
        raise ValueError(
            f"the hash grid does not fit the budget of {arch}: relu at {arch} has {budget:,} parameters and the "
            f"grid's own {HASH_MLP_LAYERS}x{width} MLP already {mlp:,}; give a larger --arch"
        )
    return table


# ----------------------------------------------------------------------------------------------------------
# the method registry


@dataclass(frozen=True)
class MethodSpec:
    """One method: a network family, its norm, and its learning rate."""

    name: str
    family: str  # relu | pe | siren | mfn | wire | finer | gauss | hash
    norm: str = "none"
    lr: Optional[float] = None
    """the method's own learning rate (the later baselines: their authors'), else the paper's rule"""

    @property
    def default_lr(self) -> float:
        """``lr`` when the method has its own; else paper section 5.1: 1e-2 for normalized networks, 2e-4 for the
        rest."""
        if self.lr is not None:
            return self.lr
        return 1e-2 if self.norm != "none" else 2e-4


#: the paper's 13 methods, in its tables' order
PAPER_METHODS: Tuple[str, ...] = (
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
)


def _registry() -> Dict[str, MethodSpec]:
    methods = {name: MethodSpec(name, name) for name in ("siren", "mfn", "wire", "relu", "pe")}
    for family in ("relu", "pe"):
        for norm in NORM_NAMES[1:]:
            name = f"{family}+{norm}"
            methods[name] = MethodSpec(name, family, norm)
    # the later baselines at their authors' learning rates (FINER's release: 5e-4 for FINER, 5e-3 for Gauss;
    # Instant-NGP: 1e-2), their normalized variants at the paper's 1e-2
    later = [MethodSpec("finer", "finer", lr=5e-4), MethodSpec("finer+cn", "finer", "cn")]
    later += [MethodSpec("gauss", "gauss", lr=5e-3), MethodSpec("gauss+cn", "gauss", "cn")]
    later += [MethodSpec("hash", "hash", lr=1e-2)] + [MethodSpec(f"hash+{n}", "hash", n) for n in NORM_NAMES[1:]]
    return {**{k: methods[k] for k in PAPER_METHODS}, **{m.name: m for m in later}}


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
    frequencies, so ``pe+cn`` at 10x28 in 2D has 42 inputs and 9159 parameters). The ``hash`` family does not
    take ``arch``'s depth: it is a hash grid of :func:`hash_table_size` entries per level and a
    :data:`HASH_MLP_LAYERS` x :func:`hash_mlp_width` ReLU MLP, together of ``relu``'s parameter count at ``arch``.
    """
    spec = get_method(method)
    layers, features = parse_arch(arch)
    if spec.family == "siren":
        return Siren(in_dim, out_dim, layers, features)
    if spec.family == "mfn":
        return MFN(in_dim, out_dim, layers, features)
    if spec.family == "wire":
        return Wire(in_dim, out_dim, layers, features)
    if spec.family == "finer":
        return Finer(in_dim, out_dim, layers, features, norm=spec.norm, norm_kwargs=norm_kwargs)
    if spec.family == "gauss":
        return Gauss(in_dim, out_dim, layers, features, norm=spec.norm, norm_kwargs=norm_kwargs)
    if spec.family == "hash":
        from .hash_grid import HashGridEncoding  # imports nerfstudio

        grid = HashGridEncoding(
            in_dim,
            hash_table_size(in_dim, out_dim, arch, spec.norm),
            levels=HASH_LEVELS,
            features_per_level=HASH_FEATURES,
            min_res=HASH_MIN_RES,
            max_res=HASH_MAX_RES,
        )
        return CoordinateMLP(in_dim, out_dim, HASH_MLP_LAYERS, hash_mlp_width(arch), spec.norm, grid, norm_kwargs)
    enc = (encoding or EncodingSpec()).build(in_dim, features, seed) if spec.family == "pe" else None
    return CoordinateMLP(in_dim, out_dim, layers, features, spec.norm, enc, norm_kwargs)


def count_parameters(model: nn.Module) -> int:
    """Trainable real parameters (a complex parameter counts twice)."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters() if p.requires_grad)


__all__ += ["PositionalEncoding", "GaussianFourierFeatures"]
