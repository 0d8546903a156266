"""Synchronized norms (``nerf_norm.norms.convert_sync_norms``): two gloo processes on loopback against one process
holding the whole batch, in float64; uneven row counts per rank."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from conftest import run_on_two_ranks, spread_between_ranks
from torch import nn

from nerf_norm.norms import SyncCrossNorm, convert_sync_norms, make_norm

ROWS = (37, 23)  # rows per rank: uneven on purpose
C = 6
# (norm, layer options, second order: an eikonal-like loss on d(output)/d(input), as NeuS differentiates CN twice)
CASES = [
    ("bn", {}, False),
    ("gn", {}, False),
    ("cn", {"variant": "paper"}, False),
    ("cn", {"variant": "reference"}, False),
    ("cn", {"variant": "paper", "fuse_relu": True}, False),
    ("cn", {"variant": "paper"}, True),
    ("cn", {"variant": "reference"}, True),
]


def _case_id(case) -> str:
    norm, kwargs, second = case
    return "-".join([norm, *(f"{k}={v}" for k, v in kwargs.items()), *(["second-order"] if second else [])])


def _network(norm: str, kwargs: dict) -> nn.Module:
    torch.manual_seed(0)
    fused = kwargs.get("fuse_relu", False)
    net = nn.Sequential(
        nn.Linear(3, C),
        make_norm(norm, C, track_running_stats=True, momentum=0.3, **kwargs),
        nn.Identity() if fused else nn.Softplus(beta=3.0),
        nn.Linear(C, 2),
    ).double()
    with torch.no_grad():  # a large offset against the spread, and a non-trivial affine
        net[0].bias.add_(40.0)
        if getattr(net[1], "weight", None) is not None:
            net[1].weight.uniform_(0.5, 1.5)
            net[1].bias.uniform_(-0.2, 0.2)
    return net


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(sum(ROWS), 3, generator=g, dtype=torch.float64)
    probe = torch.randn(sum(ROWS), 2, generator=g, dtype=torch.float64)
    return x, probe


def _run(net: nn.Module, x: torch.Tensor, probe: torch.Tensor, second_order: bool) -> dict:
    """Two training steps' worth of forward/backward (so the running statistics see two updates); returns the
    outputs and gradients of the last one. ``second_order``: an eikonal-like loss on d(output)/d(input)."""
    for _ in range(2):
        net.zero_grad()
        x = x.detach().requires_grad_(True)
        y = net(x)
        loss = (y * probe).sum()
        if second_order:
            (gx,) = torch.autograd.grad(loss, x, create_graph=True)
            loss = loss + gx.square().sum()
        loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in net.named_parameters()}
    buffers = {name: b.detach().clone() for name, b in net.named_buffers()}
    net.eval()
    with torch.no_grad():
        y_eval = net(x)
    net.train()
    return {"y": y.detach(), "gx": x.grad.detach(), "grads": grads, "buffers": buffers, "y_eval": y_eval}


def _worker(rank: int, world: int) -> dict:
    """Every case in one process group (one spawn for the module), with the errors against one process holding the
    whole batch; plus each case unconverted, which must differ (the check that the comparison can fail)."""
    x, probe = _data()
    lo = sum(ROWS[:rank])
    rows = slice(lo, lo + ROWS[rank])
    results = {}
    for case in CASES:
        norm, kwargs, second_order = case
        ref = _run(_network(norm, kwargs), x, probe, second_order)  # one process, the whole batch
        for convert in (True, False):
            net = _network(norm, kwargs)
            if convert:
                net = convert_sync_norms(net)
            got = _run(net, x[rows], probe[rows], second_order)
            for name in got["grads"]:  # what DDP's gradient all-reduce sums (before its averaging)
                dist.all_reduce(got["grads"][name])
            errors = {
                "y": (got["y"] - ref["y"][rows]).abs().max().item(),
                "gx": (got["gx"] - ref["gx"][rows]).abs().max().item(),
                "grads": max((got["grads"][k] - ref["grads"][k]).abs().max().item() for k in ref["grads"]),
                "buffers": max(
                    (got["buffers"][k].double() - ref["buffers"][k].double()).abs().max().item() for k in ref["buffers"]
                ),
                "y_eval": (got["y_eval"] - ref["y_eval"][rows]).abs().max().item(),
            }
            # running statistics identical on the ranks
            flat = torch.cat([b.double().reshape(-1) for b in got["buffers"].values()])
            errors["buffers_between_ranks"] = spread_between_ranks(flat)
            errors["layer"] = type(net[1]).__name__
            results[f"{_case_id(case)}:{'sync' if convert else 'local'}"] = errors
    return results


@pytest.fixture(scope="module")
def two_rank_errors(tmp_path_factory):
    return run_on_two_ranks(_worker, tmp_path_factory.mktemp("sync"))


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_two_ranks_equal_one_process_with_the_whole_batch(two_rank_errors, case):
    """Outputs, input gradients, summed parameter gradients, running statistics (and eval outputs from them) of
    two gloo ranks with 37 and 23 rows equal one process with all 60, in float64; unsynchronized they do not."""
    for rank, results in enumerate(two_rank_errors):
        errors = dict(results[f"{_case_id(case)}:sync"])
        assert errors.pop("layer").startswith("Sync"), errors
        assert max(errors.values()) <= 1e-8, (rank, errors)
        local = dict(results[f"{_case_id(case)}:local"])
        local.pop("layer")
        assert local["y"] > 1e-3 and local["buffers_between_ranks"] > 1e-3, (rank, local)


def test_single_process_is_unaffected():
    """Without an initialised process group a converted network computes exactly what the original does."""
    x, probe = _data()
    plain = _run(_network("cn", {}), x, probe, True)
    net = convert_sync_norms(_network("cn", {}))
    assert isinstance(net[1], SyncCrossNorm)
    synced = _run(net, x, probe, True)
    assert torch.equal(plain["y"], synced["y"]) and torch.equal(plain["gx"], synced["gx"])
    assert all(torch.equal(plain["buffers"][k], synced["buffers"][k]) for k in plain["buffers"])


def test_conversion_keeps_shared_parameters_and_state():
    """Mip-NeRF's per-pass statistic sets share one affine: conversion keeps the very same Parameter objects,
    buffers and mode, and converts norms nested anywhere."""
    from nerf_norm.nerfstudio.mlp import StatSetNorm

    stat_sets = StatSetNorm("cn", 8, num_sets=2, track_running_stats=True)
    weight = stat_sets.sets[0].weight
    stat_sets.eval()
    converted = convert_sync_norms(nn.Sequential(nn.Linear(2, 8), stat_sets))[1]
    assert all(isinstance(s, SyncCrossNorm) for s in converted.sets)
    assert converted.sets[0].weight is weight and converted.sets[1].weight is weight
    assert not converted.sets[1].training
    assert "process_group=None" in repr(converted.sets[0])
