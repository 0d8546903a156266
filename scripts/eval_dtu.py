#!/usr/bin/env python
"""DTU chamfer evaluation of a mesh: `scripts/eval_dtu.py --mesh PLY --scan ID --dataset-dir DIR --out JSON`.

The same as `nerf-norm eval-dtu` (see `--help`); the protocol is implemented in nerf_norm.dtu_eval.
"""

import sys

from nerf_norm.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval-dtu", *sys.argv[1:]]))
