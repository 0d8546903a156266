"""nerf_norm as a plugin: the wheel installs into a user's existing torch + nerfstudio environment without
touching torch, carries the CrossNorm kernel source, and registers its methods with ns-train."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIP = [sys.executable, "-m", "pip"]


def _run(*args, cwd=None, **kwargs) -> str:
    # outside the checkout, so that `python -c` does not import nerf_norm from the working directory
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd or ROOT.parent, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    _run(*PIP, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, ROOT)
    return next(dist.glob("nerf_norm-*.whl"))


def test_wheel_carries_kernel_source_and_lower_bounds(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    sources = {str(p.relative_to(ROOT)) for p in (ROOT / "nerf_norm").rglob("csrc/*") if p.suffix in (".cpp", ".h")}
    assert len(sources) == 4 and sources <= set(names)
    assert "nerf_norm/method_configs/mipnerf.py" in names
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    for name in ("torch", "torchvision", "nerfstudio"):
        spec = next(r for r in requires if r.split(">")[0].split("<")[0].split("=")[0].strip() == name)
        assert "==" not in spec, f"{spec}: a plugin must not pin {name}"
    assert any(r.replace(" ", "") in ("nerfstudio<1.2,>=1.1.5", "nerfstudio>=1.1.5,<1.2") for r in requires), requires


@pytest.mark.slow
def test_installs_into_an_existing_nerfstudio_env_without_touching_torch(wheel, tmp_path):
    """A user's environment: a fresh venv that already has torch and nerfstudio (this one's, through a .pth
    file). pip's resolver plans to install nerf_norm alone; after ``pip install --no-deps`` torch is the same
    build, nerf_norm is imported from the new environment with its kernel source, and ns-train lists our
    methods."""
    env = tmp_path / "userenv"
    _run(sys.executable, "-m", "venv", "--without-pip", env)
    python = env / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    (site / "_existing_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = "import torch; print(torch.__version__, torch.__file__)"
    torch_before = _run(python, "-c", probe)

    plan = _run(*PIP, "--python", python, "install", "--dry-run", "--no-index", wheel)
    assert "Would install nerf_norm-0.1.0" in plan and "torch-" not in plan.split("Would install")[-1], plan

    _run(*PIP, "--python", python, "install", "--no-deps", "-q", wheel)
    assert _run(python, "-c", probe) == torch_before
    where = _run(
        python,
        "-c",
        "import nerf_norm, pathlib; p = pathlib.Path(nerf_norm.__file__).parent; "
        "print(p); print(all((p / f).is_file() for f in "
        "('csrc/cross_norm_cpu.cpp', 'csrc/global_norm_cpu.cpp', 'csrc/row_blocks.h', "
        "'nerfstudio/csrc/softplus_cpu.cpp')))",
    ).split()
    assert Path(where[0]).is_relative_to(site) and where[1] == "True"
    help_text = _run(
        python,
        "-c",
        "import sys; sys.argv = ['ns-train', '--help']; from nerfstudio.scripts.train import entrypoint; entrypoint()",
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )
    for method in ("mipnerf-cn", "mipnerf-cn-lite", "neus-cn", "neus-cn-lite"):
        assert method in help_text, method
