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
