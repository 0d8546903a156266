"""Process-wide settings: only entry points apply them; importing nerf_norm or training with its Trainer does not."""

import subprocess
import sys
import textwrap

import pytest

from nerf_norm.cpu_memory import retain_freed_memory, uses_glibc


def test_importing_nerf_norm_changes_no_process_setting():
    """Threads and torch's weights-only allowlist are what they were before ``import nerf_norm`` and
    ``import nerf_norm.nerfstudio`` (and the method configs ns-train loads). nerfstudio's own modules are imported
    first: some of their dependencies extend the allowlist themselves."""
    probe = textwrap.dedent("""
        import torch
        import nerfstudio.engine.trainer, nerfstudio.models.mipnerf, nerfstudio.models.neus
        import nerfstudio.data.datamanagers.parallel_datamanager, nerfstudio.pipelines.base_pipeline
        torch.set_num_threads(1)
        before = (torch.get_num_threads(), len(torch.serialization.get_safe_globals()))
        import nerf_norm, nerf_norm.nerfstudio, nerf_norm.method_configs.mipnerf, nerf_norm.method_configs.neus
        after = (torch.get_num_threads(), len(torch.serialization.get_safe_globals()))
        print(before == after, before, after)
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "True", out.stdout


def test_only_the_command_applies_threads_and_the_allocator(monkeypatch, tmp_path):
    """``nerf-norm image`` applies --threads and the malloc setting for its process; the library call
    (``run_image``, what benchmarks and notebooks use) applies neither."""
    import torch

    from nerf_norm.cli import main
    from nerf_norm.tasks.commands import ImageCommand, run_image

    calls = []
    monkeypatch.setattr("nerf_norm.process._retain_freed_memory", lambda: calls.append("malloc") or True)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(("threads", n)))
    run_image(ImageCommand(out=tmp_path / "lib", downscale=16, arch="2x8", iters=2, quiet=True, threads=1))
    assert calls == []
    assert (
        main(
            [
                "image",
                "--out",
                str(tmp_path / "cli"),
                "--downscale",
                "16",
                "--arch",
                "2x8",
                "--iters",
                "2",
                "--quiet",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    assert calls == [("threads", 1), "malloc"]
    calls.clear()
    assert (
        main(
            [
                "image",
                "--out",
                str(tmp_path / "off"),
                "--downscale",
                "16",
                "--arch",
                "2x8",
                "--iters",
                "2",
                "--quiet",
                "--no-retain-freed-memory",
            ]
        )
        == 0
    )
    assert calls == []


@pytest.mark.skipif(not uses_glibc(), reason="mallopt is glibc's")
def test_retain_freed_memory_is_accepted_by_glibc():
    """glibc accepts both thresholds (mallopt returns 1 for each); what they do to a training step's page faults is
    measured by benchmarks/step_cost.py (faults per step with and without the setting)."""
    probe = "from nerf_norm.cpu_memory import retain_freed_memory; print(retain_freed_memory())"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr
    assert retain_freed_memory is not None
