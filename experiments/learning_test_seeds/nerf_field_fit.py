"""Seed study behind a learning test (see results.txt and experiments/learning_test_seeds/README.md)."""

import math
import sys

import torch
from nerfstudio.cameras.rays import Frustums, RaySamples
from nerfstudio.field_components.encodings import NeRFEncoding
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.fields.vanilla_nerf_field import NeRFField

from nerf_norm.nerfstudio.normalize import normalize_mlps


def field(norm, seed):
    torch.manual_seed(seed)
    pe = NeRFEncoding(in_dim=3, num_frequencies=16, min_freq_exp=0.0, max_freq_exp=16.0, include_input=True)
    de = NeRFEncoding(in_dim=3, num_frequencies=4, min_freq_exp=0.0, max_freq_exp=4.0, include_input=True)
    f = NeRFField(position_encoding=pe, direction_encoding=de, use_integrated_encoding=True)
    if norm != "none":
        normalize_mlps(f, norm, names=("mlp_base",), num_stat_sets=1, norm_kwargs={"track_running_stats": True})
    return f


def samples(n, g):
    origins = torch.rand(n, 1, 3, generator=g) * 2 - 1
    dirs = torch.nn.functional.normalize(torch.randn(n, 1, 3, generator=g), dim=-1)
    fr = Frustums(
        origins=origins,
        directions=dirs,
        starts=torch.zeros(n, 1, 1),
        ends=torch.full((n, 1, 1), 0.01),
        pixel_area=torch.full((n, 1, 1), 1e-6),
    )
    return RaySamples(frustums=fr)


steps = int(sys.argv[1]) if len(sys.argv) > 1 else 200  # RAdam steps per fit
g = torch.Generator().manual_seed(123)
S = samples(4096, g)
p = S.frustums.origins.reshape(-1, 3)
target = 0.5 + 0.5 * torch.sin(6 * math.pi * p[:, :1] * 1.0 + 3 * math.pi * p[:, 1:2]) * torch.cos(
    4 * math.pi * p[:, 2:3]
) * torch.ones(1, 3)
for seed in (0, 1, 2):
    res = {}
    for norm in ("none", "cn"):
        f = field(norm, seed)
        f.train()
        opt = torch.optim.RAdam(f.parameters(), lr=5e-4)
        for it in range(steps):
            out = f(S)
            rgb = out[FieldHeadNames.RGB].reshape(-1, 3)
            loss = ((rgb - target) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        res[norm] = -10 * math.log10(loss.item())
    print("RESULT", steps, seed, {k: round(v, 2) for k, v in res.items()}, flush=True)
