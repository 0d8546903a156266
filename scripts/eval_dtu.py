#!/usr/bin/env python
"""DTU chamfer evaluation of a mesh: `scripts/eval_dtu.py --mesh PLY --scan ID --dataset-dir DIR --out JSON`.

The same as `nerf-norm eval-dtu` (see `--help`); the protocol is implemented in nerf_norm.dtu_eval.
"""

import sys

try:
    from nerf_norm.cli import main
except ImportError as exc:  # run by an interpreter that does not have nerf_norm installed
    sys.exit(
        f"error: {sys.executable} cannot import nerf_norm ({exc}); run this script with the Python that nerf_norm "
        "is installed in, e.g. `.venv/bin/python scripts/eval_dtu.py ...` after `bash scripts/install.sh`"
    )

if __name__ == "__main__":
    sys.exit(main(["eval-dtu", *sys.argv[1:]]))
