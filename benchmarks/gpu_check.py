"""Everything only a GPU can show, in one prepared run: correctness, host synchronisation, torch.compile, speed and
memory of the norms and of the nerfstudio methods, end to end.

    python benchmarks/gpu_check.py                       # on a CUDA machine: about 7 minutes
    python benchmarks/gpu_check.py --dry-run             # the parts and their estimated GPU times
    python benchmarks/gpu_check.py --device cpu --tiny   # every part at tiny sizes on the CPU (what the tests run)

Writes ``OUT/gpu_check.json`` and ``OUT/gpu_check.md`` after every part, so a run stopped by a time limit keeps
what it measured. A part that fails is recorded with its error and the run goes on. The data are those of the
benchmarks (``../shared/data``: Blender lego, DTU scan 65; ``NERF_NORM_DATA`` elsewhere); ``--tiny`` generates
its scenes instead.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import tyro
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from provenance import provenance  # noqa: E402

DATA = Path(os.environ.get("NERF_NORM_DATA", HERE.parent.parent / "shared" / "data"))


@dataclass
class Args:
    device: str = "cuda"
    """cuda (the point of this script) or cpu (every part at --tiny sizes, to exercise the script)"""
    tiny: bool = False
    """tiny sizes and generated scenes: the whole run in about a minute on a CPU"""
    out: Path = HERE / "results"
    """folder of gpu_check.json and gpu_check.md"""
    dry_run: bool = False
    """list the parts and their estimated GPU seconds, run nothing"""
    parts: Optional[List[str]] = None
    """run only these parts (default: all)"""
    work: Optional[Path] = None
    """scratch folder of the run's scenes and trainings (default: a temporary one, removed at the end)"""


@dataclass
class Part:
    name: str
    gpu_seconds: int
    """estimated seconds on one modern GPU at full size"""
    what: str
    run: Callable[["Args"], dict]


@contextlib.contextmanager
def _work(args: Args):
    """A fresh subfolder of the run's scratch folder. nerfstudio's event writers are process-global, so a
    trainer's folder must outlive the part that made it: the scratch folder goes when the run ends."""
    folder = Path(tempfile.mkdtemp(dir=args.work))
    yield str(folder)


def _sizes(args: Args) -> dict:
    if args.tiny:
        return {"T": 2**10, "C": 16, "mlp_T": 4096, "mlp_C": 32, "layers": 2, "rounds": 2, "steps": 2, "ratio": 100.0}
    return {"T": 2**18, "C": 256, "mlp_T": 131072, "mlp_C": 256, "layers": 8, "rounds": 5, "steps": 50, "ratio": 100.0}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _offset_batch(T: int, C: int, ratio: float, seed: int = 0) -> torch.Tensor:
    """``[T, C]`` with column means ``ratio`` times their spreads (which differ per column)."""
    g = torch.Generator().manual_seed(seed)
    std = torch.rand(C, generator=g) * 1.5 + 0.5
    sign = torch.where(torch.rand(C, generator=g) < 0.5, -1.0, 1.0)
    return torch.randn(T, C, generator=g) * std + ratio * std * sign


# ---------------------------------------------------------------------------------------------------------------
# parts


def part_environment(args: Args) -> dict:
    info = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda}
    if args.device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1))
    try:
        import tinycudann  # noqa: F401

        info["tinycudann"] = True
    except Exception:  # noqa: BLE001 - not installed, or built for another GPU
        info["tinycudann"] = False
    return info


def part_pytest_cuda(args: Args) -> dict:
    # the tests marked cuda all live in test_gpu_check.py: collecting only that file saves importing the whole suite
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rs", str(HERE.parent / "tests" / "test_gpu_check.py")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return {
        "exit_code": proc.returncode,
        "summary": lines[-1] if lines else proc.stderr[-300:],
        "skipped_reasons": sorted({line.split(":", 2)[-1].strip() for line in lines if line.startswith("SKIPPED")}),
    }


def _norm_cases():
    from nerf_norm.norms import make_norm
    from nerf_norm.norms.spec import cross_norm_spec, global_norm_spec, standardize

    def bn_ref(x, w, b):
        var, mean = torch.var_mean(x, dim=0, correction=0)
        return standardize(x, mean, var, 1e-5, w, b)

    return {
        "bn": (lambda C: make_norm("bn", C), bn_ref),
        "gn": (lambda C: make_norm("gn", C), global_norm_spec),
        "cn": (lambda C: make_norm("cn", C), cross_norm_spec),
    }


def _three_orders(norm: Callable, x: torch.Tensor, v: torch.Tensor):
    """Output, input gradient of <y, v>, and the input gradient of the input-gradient penalty (NeuS' eikonal
    case), all as float64 on the CPU."""
    x = x.detach().requires_grad_(True)
    y = norm(x)
    (gx,) = torch.autograd.grad((y * v).sum(), x, create_graph=True)
    (ggx,) = torch.autograd.grad((gx * v).sum(), x)
    return [t.detach().double().cpu() for t in (y, gx, ggx)]


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def part_numerics(args: Args) -> dict:
    """BN / GN / CN forward, backward and double backward on the device, float32 and under bf16/fp16 autocast,
    against the float64 spec on the CPU; the same tensors through the CPU kernels for comparison."""
    from nerf_norm import kernels

    s = _sizes(args)
    x = _offset_batch(s["T"], s["C"], s["ratio"])
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    out = {}
    for name, (layer, spec) in _norm_cases().items():
        w, b = torch.rand(s["C"]) + 0.5, torch.randn(s["C"])
        ref = _three_orders(lambda t: spec(t, w.double(), b.double()), x.double(), v.double())
        module = layer(s["C"])
        with torch.no_grad():
            module.weight.copy_(w)
            module.bias.copy_(b)
        row = {}
        dev_module = module.to(args.device)
        for label, dtype in (("float32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
            context = torch.autocast(args.device, dtype=dtype) if dtype is not None else contextlib.nullcontext()
            with context:
                got = _three_orders(dev_module, x.to(args.device), v.to(args.device))
            row[label] = {order: _relative(g, r) for order, g, r in zip(("forward", "backward", "double"), got, ref)}
        with kernels.selected("auto"):
            got = _three_orders(module.cpu(), x, v)
        row["cpu_kernels"] = {
            order: _relative(g, r) for order, g, r in zip(("forward", "backward", "double"), got, ref)
        }
        out[name] = row
    worst = max(e for row in out.values() for errs in row.values() for e in errs.values())
    return {"relative_errors": out, "worst": worst, "ok": worst < 1e-2}


def _offending_frame() -> str:
    """``file:line: code`` of the innermost frame of the exception being handled outside this script."""
    frames = [
        f for f in traceback.extract_tb(sys.exc_info()[2]) if Path(f.filename).resolve() != Path(__file__).resolve()
    ]
    frame = frames[-1] if frames else traceback.extract_tb(sys.exc_info()[2])[-1]
    return f"{frame.filename}:{frame.lineno}: {frame.line}"


def _no_host_sync(args: Args, fn: Callable[[], None]) -> dict:
    """Runs ``fn`` once to warm up, then again where a host synchronisation is an error: CUDA's sync debug mode, or
    on the CPU every Tensor-to-Python conversion (its stand-in)."""
    fn()
    if args.device == "cuda":
        torch.cuda.set_sync_debug_mode("error")
        try:
            fn()
            return {"host_syncs": 0}
        except RuntimeError as exc:
            return {
                "host_syncs": "at least 1",
                "first": str(exc).splitlines()[0][:300],
                "where": traceback.format_exc().splitlines()[-4:],
            }
        finally:
            torch.cuda.set_sync_debug_mode(0)
    seen = []
    saved = {name: getattr(torch.Tensor, name) for name in ("item", "tolist", "__float__", "__int__", "__bool__")}

    def forbidden(*a, **k):
        raise RuntimeError("a tensor was read back to Python")

    for name in saved:
        setattr(torch.Tensor, name, forbidden)
    try:
        fn()
    except RuntimeError:
        seen.append(_offending_frame())
    finally:
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)
    return {"host_syncs": 0} if not seen else {"host_syncs": "at least 1", "where": seen[0]}


def _coordinate_mlp(args: Args, norm: str):
    from nerf_norm.networks import build_network

    s = _sizes(args)
    return build_network(norm, 3, 3, f"{s['layers']}x{s['mlp_C']}", seed=0).to(args.device)


def _lite_trainer(args: Args, name: str, scene: Path, out: Path, steps: int):
    from nerf_norm.nerfstudio.experiment import RunSettings, configure, method_config, setup_trainer

    config = configure(method_config(name), RunSettings(scene, out, steps=steps))
    config.machine.device_type = args.device
    return config, setup_trainer(config)


def _scenes(args: Args, work: Path) -> dict:
    from nerf_norm.scenes.blender import BlenderSceneConfig, write_blender_scene
    from nerf_norm.scenes.dtu import DTUSceneConfig, write_dtu_scene

    blender = work / "blender"
    dtu = work / "dtu"
    if not blender.exists():
        write_blender_scene(blender, BlenderSceneConfig(resolution=32))
    if not dtu.exists():
        write_dtu_scene(dtu, None, DTUSceneConfig(width=32, height=24, views=8))
    return {"blender": blender, "dtu": dtu}


def part_no_host_sync(args: Args) -> dict:
    """Forward + backward of a CN MLP and one training step of mipnerf-cn-lite and neus-cn-lite with every host
    synchronisation an error."""
    from nerf_norm.nerfstudio.experiment import train_step

    s = _sizes(args)
    mlp = _coordinate_mlp(args, "relu+cn")
    x = torch.rand(s["mlp_T"], 3, device=args.device)
    result = {"cn_mlp": _no_host_sync(args, lambda: mlp(x).square().mean().backward())}
    with _work(args) as tmp:
        scenes = _scenes(args, Path(tmp))
        for name, scene in (("mipnerf-cn-lite", scenes["blender"]), ("neus-cn-lite", scenes["dtu"])):
            _, trainer = _lite_trainer(args, name, scene, Path(tmp) / name, steps=4)
            step = iter(range(4))
            result[name] = _no_host_sync(args, lambda: train_step(trainer, next(step)))
    result["ok"] = result["cn_mlp"]["host_syncs"] == 0
    return result


def _timed(fn: Callable[[], None], device: str, rounds: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(rounds):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def part_compile(args: Args) -> dict:
    """``torch.compile(fullgraph=True)`` of a CrossNorm and of a CN CoordinateMLP equals eager (outputs 1e-5,
    gradients 1e-4 of their largest magnitude), and their speed."""
    from nerf_norm.norms import CrossNorm

    s = _sizes(args)
    out = {}
    for label, module, shape in (
        ("cross_norm", CrossNorm(s["C"]).to(args.device), (s["T"], s["C"])),
        ("cn_mlp", _coordinate_mlp(args, "relu+cn"), (s["mlp_T"], 3)),
    ):
        x = torch.rand(*shape, device=args.device)
        compiled = torch.compile(module, fullgraph=True)

        def grads(m):
            xi = x.detach().requires_grad_(True)
            y = m(xi)
            (g,) = torch.autograd.grad(y.square().mean(), xi)
            return y.detach(), g

        (ye, ge), (yc, gc) = grads(module), grads(compiled)
        out[label] = {
            "output": _relative(yc, ye),
            "input_gradient": _relative(gc, ge),
            "eager_seconds": _timed(lambda: grads(module), args.device, s["rounds"]),
            "compiled_seconds": _timed(lambda: grads(compiled), args.device, s["rounds"]),
        }
    # float32: outputs within 1e-5; gradients within 1e-4 (the two sum in different orders, as tests/test_compile.py
    # measures; in float64 they agree to 1e-9 there)
    out["ok"] = all(v["output"] <= 1e-5 and v["input_gradient"] <= 1e-4 for v in out.values() if isinstance(v, dict))
    return out


class _TorchBN(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(c)

    def forward(self, x):
        return self.bn(x)


def _norm_mlp(args: Args, norm: str) -> nn.Module:
    from nerf_norm.norms import make_norm

    s = _sizes(args)
    layers = []
    for _ in range(s["layers"]):
        layers += [
            nn.Linear(s["mlp_C"], s["mlp_C"]),
            _TorchBN(s["mlp_C"])
            if norm == "torch-bn"
            else make_norm("none" if norm == "none" else norm.split("-")[0], s["mlp_C"]),
            nn.ReLU(),
        ]
    return nn.Sequential(*layers).to(args.device)


def _peak_memory(args: Args, fn: Callable[[], None]) -> Optional[float]:
    if args.device != "cuda":
        return None  # measured on the CPU by benchmarks/cross_norm_paths.py
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return round((torch.cuda.max_memory_allocated() - base) / 2**20, 1)


def part_timing_norms(args: Args) -> dict:
    """An 8x256 MLP with none / torch BatchNorm1d / our BN / GN / CN (eager and compiled) on [131072, 256]:
    forward + backward and, NeuS' case, double backward; medians of interleaved rounds, peak memory."""
    s = _sizes(args)
    x = torch.randn(s["mlp_T"], s["mlp_C"], device=args.device)
    configs = ["none", "torch-bn", "bn", "gn", "cn", "cn-compiled"]
    models = {}
    for name in configs:
        model = _norm_mlp(args, name)
        models[name] = torch.compile(model, fullgraph=True) if name.endswith("compiled") else model

    def first(model):
        return lambda: model(x).square().mean().backward()

    def second(model):
        def run():
            xi = x.detach().requires_grad_(True)
            y = model(xi)
            (g,) = torch.autograd.grad(y.sum(), xi, create_graph=True)
            (y.square().mean() + g.square().mean()).backward()

        return run

    times: Dict[str, Dict[str, list]] = {n: {"first": [], "second": []} for n in configs}
    for name in configs:  # warm-up (and compilation) outside the timed rounds
        first(models[name])()
        if not name.endswith("compiled"):
            second(models[name])()
    for round_ in range(s["rounds"]):
        order = configs if round_ % 2 == 0 else configs[::-1]
        for name in order:
            for kind, make in (("first", first), ("second", second)):
                if kind == "second" and name.endswith("compiled"):
                    continue  # torch.compile has no double backward
                fn = make(models[name])
                _sync(args.device)
                start = time.perf_counter()
                fn()
                _sync(args.device)
                times[name][kind].append(time.perf_counter() - start)
    out = {}
    for name in configs:
        out[name] = {kind: round(statistics.median(v), 5) for kind, v in times[name].items() if v}
        out[name]["peak_mib_first"] = _peak_memory(args, first(models[name]))
    return out


def _steps_per_second(args: Args, config, steps: int) -> dict:
    """Seconds per training step of ``config`` (``steps`` steps after two warm-up steps) on the device."""
    from nerf_norm.nerfstudio.experiment import setup_trainer, train_step

    config.machine.device_type = args.device
    trainer = setup_trainer(config)
    for step in range(2):
        train_step(trainer, step)
    _sync(args.device)
    start = time.perf_counter()
    for step in range(2, steps + 2):
        train_step(trainer, step)
    _sync(args.device)
    return {"seconds_per_step": round((time.perf_counter() - start) / steps, 4)}


def part_timing_mipnerf(args: Args) -> dict:
    """mipnerf vs mipnerf-cn at nerfstudio's defaults (1024 rays, 128 + 128 samples) on lego 400x400 (tiny: the
    lite preset with and without its norm on a generated scene)."""
    from nerf_norm.nerfstudio.blender_dataparser import CheckedBlenderDataParserConfig
    from nerf_norm.nerfstudio.experiment import RunSettings, configure, method_config

    s = _sizes(args)
    out = {}
    with _work(args) as tmp:
        scene = _scenes(args, Path(tmp))["blender"] if args.tiny else DATA / "blender" / "lego"
        for label in ("mipnerf", "mipnerf-cn"):
            name = "mipnerf-cn-lite" if args.tiny else label
            config = method_config(name)
            config.pipeline.datamanager.dataparser = CheckedBlenderDataParserConfig()
            config = configure(config, RunSettings(scene, Path(tmp) / label, steps=s["steps"] + 2))
            if args.tiny and label == "mipnerf":
                config.pipeline.model.norm = "none"
            out[label] = _steps_per_second(args, config, s["steps"])
    return out


def part_timing_neus(args: Args) -> dict:
    """neus (our CPU-capable field without norms: no tinycudann) vs neus-cn at nerfstudio's neus defaults on DTU
    scan 65 (tiny: the lite preset on a generated scene)."""
    from nerf_norm.nerfstudio.experiment import RunSettings, configure, method_config

    s = _sizes(args)
    out = {}
    with _work(args) as tmp:
        scene = _scenes(args, Path(tmp))["dtu"] if args.tiny else DATA / "dtu" / "dtu_scan65"
        for label, norm in (("neus", "none"), ("neus-cn", "cn")):
            config = method_config("neus-cn-lite" if args.tiny else "neus-cn")
            config = configure(config, RunSettings(scene, Path(tmp) / label, steps=s["steps"] + 2))
            config.pipeline.model.sdf_field.norm = norm
            out[label] = _steps_per_second(args, config, s["steps"])
    return out


def part_end_to_end(args: Args) -> dict:
    """mipnerf-cn-lite and neus-cn-lite trained 20 steps on the device, ns-eval, and nerf-norm extract-mesh."""
    from nerf_norm.cli import main as nerf_norm_main
    from nerf_norm.nerfstudio.experiment import RunSettings, configure, method_config, train

    steps = 2 if args.tiny else 20
    out = {}
    with _work(args) as tmp:
        scenes = _scenes(args, Path(tmp))
        for name, scene in (("mipnerf-cn-lite", scenes["blender"]), ("neus-cn-lite", scenes["dtu"])):
            config = configure(method_config(name), RunSettings(scene, Path(tmp) / name, steps=steps))
            config.machine.device_type = args.device
            train(config)
            config_yml = config.get_base_dir() / "config.yml"
            ns_eval = Path(sys.executable).parent / "ns-eval"
            proc = subprocess.run(
                [str(ns_eval), "--load-config", str(config_yml), "--output-path", str(Path(tmp) / f"{name}.json")],
                capture_output=True,
                text=True,
            )
            row = {"ns_eval_exit": proc.returncode}
            if proc.returncode == 0:
                row["ns_eval"] = json.loads((Path(tmp) / f"{name}.json").read_text())["results"]
            if name.startswith("neus"):
                row["extract_mesh_exit"] = nerf_norm_main(
                    [
                        "extract-mesh",
                        "--load-config",
                        str(config_yml),
                        "--resolution",
                        "32",
                        "--block",
                        "16",
                        "--out",
                        str(Path(tmp) / "mesh.ply"),
                    ]
                )
            out[name] = row
    out["ok"] = all(r["ns_eval_exit"] == 0 for r in out.values()) and out["neus-cn-lite"]["extract_mesh_exit"] == 0
    return out


def part_sync_norms(args: Args) -> dict:
    """``convert_sync_norms`` over a one-process group (nccl on CUDA, gloo on the CPU) equals the layer it
    converts, in training and eval."""
    import torch.distributed as dist

    from nerf_norm.norms import convert_sync_norms

    backend = "nccl" if args.device == "cuda" else "gloo"
    with tempfile.TemporaryDirectory() as tmp:
        dist.init_process_group(backend, init_method=f"file://{tmp}/rendezvous", rank=0, world_size=1)
        try:
            plain = _coordinate_mlp(args, "relu+cn")
            synced = convert_sync_norms(copy.deepcopy(plain))
            x = torch.rand(512, 3, device=args.device)
            errors = {}
            for mode in ("train", "eval"):
                plain.train(mode == "train")
                synced.train(mode == "train")
                errors[mode] = _relative(synced(x).detach(), plain(x).detach())
        finally:
            dist.destroy_process_group()
    return {"backend": backend, "relative_difference": errors, "ok": max(errors.values()) <= 1e-6}


PARTS = [
    Part("environment", 2, "GPU, torch and CUDA versions, tinycudann", part_environment),
    Part("pytest_cuda", 45, "pytest -m cuda", part_pytest_cuda),
    Part("numerics", 30, "BN/GN/CN three derivative orders, float32/bf16/fp16, against float64", part_numerics),
    Part("no_host_sync", 30, "sync debug mode: CN MLP, mipnerf-cn and neus-cn steps", part_no_host_sync),
    Part("compile", 60, "torch.compile(fullgraph=True) equals eager, and its speed", part_compile),
    Part("timing_norms", 45, "8x256 MLP with each norm on [131072, 256]: time and peak memory", part_timing_norms),
    Part(
        "timing_mipnerf", 60, "mipnerf vs mipnerf-cn, nerfstudio defaults, lego 400x400, 50 steps", part_timing_mipnerf
    ),
    Part("timing_neus", 60, "neus vs neus-cn, DTU scan 65, 50 steps", part_timing_neus),
    Part("end_to_end", 60, "mipnerf-cn-lite and neus-cn-lite: train, ns-eval, extract-mesh", part_end_to_end),
    Part("sync_norms", 10, "convert_sync_norms with nccl, world size 1", part_sync_norms),
]


def write(args: Args, record: dict) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(record, indent=2, default=str))
    lines = [
        "# GPU check",
        "",
        f"- command: `{record['meta']['command']}`",
        f"- date: {record['meta']['date']}, commit {record['meta']['commit']}",
        f"- device: {args.device}{' (tiny sizes)' if args.tiny else ''}",
        "",
        "| part | status | seconds | result |",
        "|---|---|---:|---|",
    ]
    for name, part in record["parts"].items():
        status = "error" if "error" in part else ("ok" if part.get("result", {}).get("ok", True) else "FAILED")
        summary = json.dumps(part.get("result", part.get("error")), default=str)
        lines.append(f"| {name} | {status} | {part['seconds']:.1f} | `{summary[:400]}` |")
    (args.out / "gpu_check.md").write_text("\n".join(lines) + "\n")


def main(args: Args) -> int:
    chosen = [p for p in PARTS if args.parts is None or p.name in args.parts]
    if args.dry_run:
        for p in chosen:
            print(f"{p.name:16s} ~{p.gpu_seconds:4d} s  {p.what}")
        print(f"{'total':16s} ~{sum(p.gpu_seconds for p in chosen):4d} s on one GPU")
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here (use --device cpu --tiny to exercise the script on the CPU)", file=sys.stderr)
        return 2
    record = {"meta": provenance({"device": args.device, "tiny": args.tiny}), "parts": {}}
    failed = 0
    own_work = args.work is None
    args.work = Path(tempfile.mkdtemp(prefix="gpu_check_")) if own_work else args.work
    args.work.mkdir(parents=True, exist_ok=True)
    try:
        failed = _run_parts(args, chosen, record)
    finally:
        if own_work:
            shutil.rmtree(args.work, ignore_errors=True)
    print(f"[gpu_check] {len(chosen) - failed} of {len(chosen)} parts ok; {args.out / 'gpu_check.md'}")
    return 1 if failed else 0


def _run_parts(args: Args, chosen: List[Part], record: dict) -> int:
    failed = 0
    for part in chosen:
        print(f"[gpu_check] {part.name}: {part.what} ...", flush=True)
        start = time.perf_counter()
        try:
            entry = {"result": part.run(args)}
            failed += entry["result"].get("ok", True) is False
        except Exception as exc:  # noqa: BLE001 - a broken part is recorded; the others still run
            entry = {"error": f"{type(exc).__name__}: {exc}", "where": traceback.format_exc().splitlines()[-6:]}
            failed += 1
        entry["seconds"] = time.perf_counter() - start
        record["parts"][part.name] = entry
        write(args, record)
        print(f"[gpu_check]   {'error' if 'error' in entry else 'done'} in {entry['seconds']:.1f} s", flush=True)
    return failed


if __name__ == "__main__":
    raise SystemExit(main(tyro.cli(Args)))
