#!/usr/bin/env bash
# Installs nerf_norm and its dependencies into .venv/ at the repository root, at the exact versions of
# scripts/constraints.txt (the project's CPU machines; pyproject.toml itself gives lower bounds only), then
# builds the nerf_norm CPU kernels so that no later run compiles anything. Idempotent: a second run
# only checks that the environment matches pyproject.toml, the constraints and this script. Needs python3.11 (or
# python3 >= 3.10) and, for open3d (pulled in by nerfstudio), Debian's libusb-1.0-0; as root it also installs
# Debian's chromium for the viewer-in-a-browser test and ffmpeg, which ns-render writes its videos with.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "[install] installing Debian package libusb-1.0-0 (needed by open3d)"
        apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q libusb-1.0-0 >/dev/null; }
    else
        echo "[install] warning: libusb-1.0 not found; open3d (nerfstudio) may fail to import. Install libusb-1.0-0." >&2
    fi
fi

# Debian's ffmpeg: nerfstudio's ns-render writes its videos (and image sequences) through it
if ! command -v ffmpeg >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "[install] installing Debian package ffmpeg (ns-render needs it)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q ffmpeg >/dev/null 2>&1 || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ffmpeg >/dev/null; } || echo "[install] warning: ffmpeg could not be installed; ns-render will say so" >&2
    else
        echo "[install] note: no ffmpeg; ns-render needs it (apt-get install ffmpeg)" >&2
    fi
fi

# Debian's Chromium for the viewer-in-a-browser test (tests/test_viewer_browser.py skips without it)
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "[install] installing Debian package chromium (the viewer test drives it headless)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } || echo "[install] warning: chromium could not be installed; the browser test will skip" >&2
    else
        echo "[install] note: no chromium; the viewer-in-a-browser test will skip (apt-get install chromium)" >&2
    fi
fi

py="${PYTHON:-}"
if [ -z "$py" ]; then
    for cand in python3.11 python3; do command -v "$cand" >/dev/null && { py="$cand"; break; }; done
fi
[ -x .venv/bin/python ] || { echo "[install] creating .venv with $py"; "$py" -m venv .venv; }

stamp=.venv/.nerf_norm_installed
want="$(cat pyproject.toml scripts/install.sh scripts/constraints.txt nerf_norm/csrc/*.cpp nerf_norm/csrc/*.h nerf_norm/nerfstudio/csrc/*.cpp | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c "import nerf_norm, torch, nerfstudio" 2>/dev/null; then
    echo "[install] .venv is up to date"
    exit 0
fi
echo "[install] installing nerf_norm and dependencies into .venv (first time: ~5 minutes, ~8 GB)"
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
.venv/bin/python -m pip install -q -c scripts/constraints.txt -e ".[test,sweep,docs]"
.venv/bin/python -c "import nerf_norm, torch, nerfstudio; print('[install] ok: torch', torch.__version__)"
.venv/bin/python -c "from nerf_norm.kernels import main; raise SystemExit(main())"
echo "$want" > "$stamp"
