import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

SHARED_DATA = Path(os.environ.get("NERF_NORM_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA} (set NERF_NORM_DATA)")
    return SHARED_DATA


def squash(text: str) -> str:
    """``text`` without whitespace: CLI messages are wrapped by rich at the terminal width."""
    return "".join(text.split())


@pytest.fixture
def cli_output(capsys):
    """Everything the CLI printed so far (stdout and stderr), whitespace removed; compare with ``squash``."""
    def read() -> str:
        captured = capsys.readouterr()
        return squash(captured.out + captured.err)
    return read


def free_port() -> int:
    """A free TCP port on loopback (for a gloo process group's rendezvous)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spread_between_ranks(flat: torch.Tensor) -> float:
    """Largest difference between this rank's 1-D ``flat`` and rank 0's (a collective: every rank calls it)."""
    import torch.distributed as dist

    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    return max((g - gathered[0]).abs().max().item() for g in gathered)
