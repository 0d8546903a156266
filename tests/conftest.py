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


@pytest.fixture(scope="session")
def astronaut_psnr(tmp_path_factory):
    """``fit(method) -> PSNR``: the image learning tests' setting (the bundled astronaut at 64x64, 5x30, 150
    full-batch iterations, seed 0, the method's own learning rate), each method fitted once per session."""
    from nerf_norm.tasks.commands import ImageCommand, run_image

    root, psnr = tmp_path_factory.mktemp("astronaut"), {}

    def fit(method: str) -> float:
        if method not in psnr:
            out = root / method.replace("+", "_")
            cmd = ImageCommand(
                method=method, arch="5x30", downscale=8, iters=150, seed=0, quiet=True, out=out, log_every=50
            )
            psnr[method] = run_image(cmd)[0].metrics["psnr"]
        return psnr[method]

    return fit


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


def spread_between_ranks(flat: torch.Tensor) -> float:
    """Largest difference between this rank's 1-D ``flat`` and rank 0's (a collective: every rank calls it)."""
    import torch.distributed as dist

    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    return max((g - gathered[0]).abs().max().item() for g in gathered)


def _rank_main(rank: int, world: int, rendezvous: str, out: str, fn, args) -> None:
    import json

    import torch.distributed as dist

    # a file rendezvous: no port to pick in advance that another process (e.g. a Ray instance) could take first;
    # gloo's own connections then use ports the OS assigns
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        result = fn(rank, world, *args)
        with open(f"{out}.{rank}.json", "w") as handle:
            json.dump(result, handle)
    finally:
        dist.destroy_process_group()
    # the result is on disk: leave without the interpreter's teardown of torch's C++ state, which once aborted a
    # rank at exit ("terminate called without an active exception", SIGABRT) after its work was done
    import os

    os._exit(0)


def run_on_two_ranks(fn, folder: Path, *args) -> list:
    """Runs ``fn(rank, world, *args)`` (a module-level function returning JSON-able data) in two processes joined
    by a gloo process group on loopback (rendezvous through a file in ``folder``); returns the two results, rank 0
    first."""
    import json

    import torch.multiprocessing as mp

    out = str(folder / "rank")
    mp.spawn(_rank_main, args=(2, str(folder / "rendezvous"), out, fn, args), nprocs=2, join=True)
    results = []
    for rank in range(2):
        with open(f"{out}.{rank}.json") as handle:
            results.append(json.load(handle))
    return results
