"""Memory and time of the block-wise mesh extraction at 512^3 and 1024^3 (``nerf_norm.mesh.extract_mesh``).

The field is an analytic SDF (a sphere of radius 0.6 in [-1, 1]^3) so that the numbers measure the extraction
itself, not a network; each resolution runs in its own process and reports its peak resident memory
(``ru_maxrss``, which includes the ~0.4 GB of importing torch).

    .venv/bin/python benchmarks/mesh_extraction.py   # writes benchmarks/results/mesh_extraction.{json,md}
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

import tyro
from provenance import machine_line, provenance

RESULTS = Path(__file__).resolve().parent / "results"

CHILD = """
import json, resource, time, torch
from nerf_norm.mesh import MeshStats, extract_mesh
torch.set_num_threads(2)
c = torch.tensor([0.1, -0.05, 0.0])
stats = MeshStats()
t = time.perf_counter()
v, f = extract_mesh(lambda x: (x - c).norm(dim=-1) - 0.6, ((-1.0,) * 3, (1.0,) * 3), {res}, block=64, stats=stats)
print(json.dumps({{"resolution": {res}, "seconds": time.perf_counter() - t, "vertices": len(v), "faces": len(f),
                  "samples": stats.samples, "grid": {res} ** 3, "blocks": stats.blocks,
                  "blocks_meshed": stats.blocks_meshed,
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2}}))
"""


@dataclass
class Args:
    """Memory and time of the block-wise mesh extraction on an analytic sphere SDF."""

    resolutions: Tuple[int, ...] = (512, 1024)
    """grid samples per axis, one process each"""


def main(args: Args) -> None:
    rows = []
    for res in args.resolutions:
        out = subprocess.run([sys.executable, "-c", CHILD.format(res=res)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    meta = provenance({"resolutions": list(args.resolutions)})
    record = {"provenance": meta, "machine": machine_line(meta), "date": meta["date"], "runs": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "mesh_extraction.json").write_text(json.dumps(record, indent=2))
    lines = [
        f"# Block-wise mesh extraction ({record['machine']}, {record['date']})",
        "",
        f"Command: `{meta['command']}`. Analytic sphere SDF, 64^3-cell blocks.",
        "",
        "| resolution | samples evaluated (share of grid) | seconds | vertices | peak RSS (GB) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['resolution']}^3 | {r['samples']:,} ({r['samples'] / r['grid']:.0%}) | {r['seconds']:.1f} | "
        f"{r['vertices']:,} | {r['peak_rss_gb']:.2f} |"
        for r in rows
    ]
    (RESULTS / "mesh_extraction.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(tyro.cli(Args))
