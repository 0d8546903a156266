"""benchmarks/gpu_check.py, the prepared GPU run: exercised on the CPU at tiny sizes (so nothing in it is dead code
when a GPU comes), and its pass/fail checks as tests marked ``cuda`` (skipped, with the reason, without CUDA)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_dry_run_lists_every_part_within_seven_minutes():
    out = subprocess.run([sys.executable, str(SCRIPT), "--dry-run"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    names = [p.name for p in _module().PARTS]
    for name in names:
        assert name in out.stdout
    total = int(out.stdout.strip().splitlines()[-1].split("~")[1].split()[0])
    assert total < 7 * 60


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_part_runs_on_the_cpu_at_tiny_sizes(tmp_path):
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    record = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(record["parts"]) == {p.name for p in _module().PARTS}
    errors = {name: part.get("error") for name, part in record["parts"].items() if "error" in part}
    assert not errors, errors
    failed = {name: part["result"] for name, part in record["parts"].items() if part["result"].get("ok") is False}
    assert not failed, failed
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    md = (tmp_path / "gpu_check.md").read_text()
    assert "| numerics | ok |" in md and record["meta"]["machine"]["device"] == "cpu"
    # the CUDA tests were collected and skipped here with their reason
    assert "skipped" in record["parts"]["pytest_cuda"]["result"]["summary"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("part", ["numerics", "no_host_sync", "compile", "sync_norms"])
def test_cuda_part_passes(part):
    """On CUDA: the norms against float64, no host synchronisation, torch.compile equal to eager, nccl sync."""
    module = _module()
    result = next(p for p in module.PARTS if p.name == part).run(module.Args(device="cuda", tiny=True))
    assert result["ok"], result
