"""The trainer's malloc setting (nerf_norm/cpu_memory.py): a steady-state CPU step faults in no fresh pages."""

import resource
import subprocess
import sys
import textwrap

import pytest

from nerf_norm.cpu_memory import uses_glibc
from nerf_norm.tasks.base import TrainConfig

glibc_only = pytest.mark.skipif(not uses_glibc(), reason="mallopt is glibc's")

# A relu+cn 4x28 network on T = 65,536 coordinates (7.3 MB activations, 1,792 pages of 4 KiB each), full batch:
# minor page faults over ten steps after six warm-up steps, in a fresh process (the setting is process-wide).
# Under glibc's defaults this pattern faults in thousands of pages every step (41,762 and 65,283 over the ten
# steps in two runs here: several activations re-faulted per step). With the setting, most runs fault in
# nothing; now and then the heap still grows by one activation (1,792 faults once).
_PROBE = textwrap.dedent("""
    import resource, sys
    import torch
    from nerf_norm.cpu_memory import retain_freed_memory
    if sys.argv[1] == "retain":
        assert retain_freed_memory()
    from nerf_norm.networks import build_network
    torch.set_num_threads(1)
    torch.manual_seed(0)
    coords, target = torch.rand(65536, 2) * 2 - 1, torch.rand(65536, 3)
    model = build_network("relu+cn", 2, 3, "4x28")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(model(coords), target).backward()
        opt.step()
    for _ in range(6):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        step()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults_in_ten_steps(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip().splitlines()[-1])


@glibc_only
def test_retained_memory_removes_page_faults_of_a_training_step():
    activation_pages = 65536 * 28 * 4 // resource.getpagesize()
    # at most three activations re-faulted in ten steps; glibc's defaults re-fault several in every step
    assert _faults_in_ten_steps("retain") <= 3 * activation_pages


def test_trainer_applies_it_unless_switched_off(monkeypatch, tmp_path):
    from nerf_norm.cli import ImageCommand, run_image
    from nerf_norm.tasks import base

    calls = []
    monkeypatch.setattr(base, "retain_freed_memory", lambda: calls.append(1) or True)
    assert TrainConfig().retain_freed_memory
    run_image(ImageCommand(out=tmp_path / "on", downscale=16, arch="2x8", iters=2, quiet=True))
    assert calls == [1]
    run_image(ImageCommand(out=tmp_path / "off", downscale=16, arch="2x8", iters=2, quiet=True,
                           retain_freed_memory=False))
    assert calls == [1]
