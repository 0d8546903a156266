"""What a fitting task supplies, and the one trainer every task uses.

A :class:`Task` owns its data and everything task specific: the input coordinates, the forward model
from network output to measurements and the loss on them, the metrics, and the figures it writes. The
:class:`Trainer` owns everything else: seeding, Adam (full batch, or the task's random batches) with a cosine
learning-rate decay, the rich progress bar, checkpoints with resume, the training curve, and ``metrics.json``.
"""

from __future__ import annotations

import abc
import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor, nn

from ..errors import UserError, require_finite_positive
from ..file_identity import content_digest
from ..networks import count_parameters
from ..norms.running_statistics import norms_with_running_statistics, refresh_statistics
from ..outputs import prepare_output_dir

console = Console(stderr=True)


class Task(abc.ABC):
    """A signal to fit with a coordinate network: full batch unless :meth:`sample` draws batches."""

    #: short name used in outputs, e.g. ``"image"``
    name: str = "task"
    #: name of the quality number shown while training (higher is better)
    progress_metric: str = "psnr"
    #: the files :meth:`save_outputs` writes into the output folder (the overwrite rule protects them)
    outputs: Tuple[str, ...] = ()
    #: record the best :meth:`progress` over all iterations (``{metric}_best`` in the metrics, the number the
    #: paper's authors report); only where :meth:`progress` measures the whole signal and is cheap
    track_best: bool = False

    @property
    @abc.abstractmethod
    def in_dim(self) -> int: ...

    @property
    @abc.abstractmethod
    def out_dim(self) -> int: ...

    @abc.abstractmethod
    def coords(self) -> Tensor:
        """Network inputs, ``[T, in_dim]``."""

    @abc.abstractmethod
    def loss(self, pred: Tensor, index: Optional[Tensor] = None) -> Tensor:
        """Training loss of the network output ``pred`` ``[T, out_dim]`` (through the forward model).

        ``index`` ``[B]`` is the step's batch from :meth:`sample` (``pred`` is then ``[B, out_dim]``), or
        ``None`` for the full batch."""

    @abc.abstractmethod
    def progress(self, pred: Tensor, index: Optional[Tensor] = None) -> float:
        """A cheap quality number for the progress bar and training curve (on the step's batch)."""

    def sample(self, generator: torch.Generator) -> Optional[Tensor]:
        """Indices ``[B]`` into :meth:`coords` of one training step's batch, drawn with ``generator``;
        ``None`` (the default) trains full batch."""
        return None

    #: evaluate the final prediction in chunks of this many coordinates (None: all at once). Exact with any norm:
    #: a task that trains on batches (:meth:`trains_on_batches`) gets networks whose batch-coupled norms keep
    #: running statistics, refreshed at the final weights before evaluation, so a point's output does not depend
    #: on the other points of its chunk; a full-batch task evaluates its whole batch at once
    eval_chunk: Optional[int] = None

    def train_batch(self) -> int:
        """Coordinates one training step sees (all of :meth:`coords` unless :meth:`sample` draws batches)."""
        if not self.trains_on_batches():
            return len(self.coords())
        return len(self.sample(torch.Generator().manual_seed(0)))

    @classmethod
    def trains_on_batches(cls) -> bool:
        """Whether a training step sees a batch drawn by :meth:`sample` rather than every coordinate."""
        return cls.sample is not Task.sample

    @abc.abstractmethod
    def evaluate(self, pred: Tensor) -> Dict[str, float]:
        """Final metrics of ``pred``."""

    @abc.abstractmethod
    def save_outputs(self, pred: Tensor, out_dir: Path) -> Dict[str, Path]:
        """Writes the task's figures and files; returns them by name."""

    def describe(self) -> Dict[str, object]:
        """What identifies the data (stored with checkpoints and metrics)."""
        return {"task": self.name}

    def input_digest(self) -> Optional[str]:
        """Hash of the input file's bytes (``self.source`` when it names a file), so a run never resumes on a
        replaced input of the same name and size; ``None`` for bundled or generated data."""
        return content_digest(getattr(self, "source", None))

    def record(self, pred: Tensor) -> Dict[str, object]:
        """Extra quantities logged with the progress metric (JSON-serialisable); none by default."""
        return {}

    def rate(self, params: int) -> Dict[str, float]:
        """Metrics that depend on the model size (e.g. bits per pixel); none by default."""
        return {}


@dataclass
class TrainConfig:
    """Optimisation settings shared by all tasks."""

    iters: int = 1000
    """training iterations (full batch each)"""
    lr: Optional[float] = None
    """initial Adam learning rate; default: the paper's (1e-2 with a norm, 2e-4 without)"""
    lr_final_ratio: float = 0.1
    """cosine decay of the learning rate to this fraction of the initial one"""
    seed: int = 0
    """seed of the network initialisation"""
    log_every: int = 25
    """iterations between evaluations of the progress metric (training curve)"""
    checkpoint_every: int = 250
    """iterations between checkpoints"""
    resume: bool = True
    """continue from OUT/checkpoint.pt when it exists and matches the run"""
    threads: Optional[int] = None
    """torch CPU threads (default: torch's choice); set for the process by the command, not by the trainer"""
    retain_freed_memory: bool = True
    """on the CPU under glibc (Linux): keep freed tensor memory in the process instead of returning it to the OS,
    so a step does not fault in fresh pages (see nerf_norm/cpu_memory.py); speed only, results are identical; set
    for the process by the command, not by the trainer"""
    quiet: bool = False
    """no progress bar"""
    overwrite: bool = False
    """start over in an --out that holds another run's outputs or checkpoint (they are removed first)"""
    stats_batches: int = 16
    """tasks trained on batches (occupancy): training batches over which the norms' running statistics are
    re-estimated at the final weights before evaluation (0: keep the running averages of training, which is what
    the checkpoint holds either way)"""

    def validate(self) -> None:
        if self.iters < 1:
            raise UserError(f"--iters must be a positive number of iterations, got {self.iters}")
        if self.lr is not None:
            require_finite_positive("--lr", self.lr)
        if self.threads is not None and self.threads < 1:
            raise UserError(f"--threads must be at least 1 (or left out for torch's choice), got {self.threads}")
        if not 0 < self.lr_final_ratio <= 1:
            raise UserError(f"--lr-final-ratio must be in (0, 1], got {self.lr_final_ratio}")
        if self.log_every < 1 or self.checkpoint_every < 1:
            raise UserError("--log-every and --checkpoint-every must be positive")
        if self.stats_batches < 0:
            raise UserError(f"--stats-batches must be at least 0, got {self.stats_batches}")


@dataclass
class FitResult:
    metrics: Dict[str, float]
    history: Dict[str, List[float]]
    outputs: Dict[str, Path] = field(default_factory=dict)
    prediction: Optional[Tensor] = None


@dataclass
class TrainingState:
    """Everything the training loop changes, and so everything a checkpoint holds: the model, its optimizer and
    schedule, the finished iterations, the seconds trained before this process, the curve and the best progress
    value. ``statistics`` holds the running statistics as the last finished iteration left them (an interrupted
    iteration's forward may have updated them already), for the norms in ``tracked``."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    history: Dict[str, List[float]]
    lr: float
    generator: torch.Generator = field(default_factory=torch.Generator)
    """draws each step's batch, reseeded from (seed, step) every step"""
    step: int = 0
    elapsed: float = 0.0
    best: Dict[str, float] = field(default_factory=lambda: {"value": -math.inf, "iteration": 0})
    tracked: List[nn.Module] = field(default_factory=list)
    statistics: List[Dict[str, Tensor]] = field(default_factory=list)
    start_loss: Optional[float] = None
    """the loss of the first iteration (the divergence check's reference)"""
    above_start: int = 0
    """iterations in a row whose loss exceeded ``DIVERGENCE_FACTOR`` times ``start_loss``"""

    def keep_statistics(self) -> None:
        self.statistics = [{k: b.clone() for k, b in m.named_buffers()} for m in self.tracked]

    def restore_statistics(self) -> None:
        with torch.no_grad():
            for norm, saved in zip(self.tracked, self.statistics):
                for k, b in norm.named_buffers():
                    b.copy_(saved[k])


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that the same handlers checkpoint and clean up."""


@contextlib.contextmanager
def terminate_as_interrupt():
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only; elsewhere nothing changes)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


#: a loss above this multiple of its first value ...
DIVERGENCE_FACTOR = 100.0
#: ... for this many iterations in a row means the fit diverged
DIVERGENCE_STEPS = 10


class Trainer:
    """Training of ``model`` on ``task`` with Adam and a cosine learning-rate decay.

    Each step uses the full batch of ``task.coords()``, or the indices ``task.sample`` draws from a generator
    seeded by ``(seed, step)``, so a resumed run sees the same batches as an uninterrupted one.

    Checkpoints (``OUT/checkpoint.pt``) hold the :class:`TrainingState` and the run's identity; a run restarted
    with the same settings resumes from the last one, a run with other settings refuses to touch it (so a
    checkpoint is never lost by accident). Process-wide settings (threads, the allocator) are the entry points'
    business (:func:`nerf_norm.process.configure_process`), never the trainer's.
    """

    CHECKPOINT = "checkpoint.pt"

    def __init__(self, config: TrainConfig, out_dir: Path, run_info: Dict[str, object]) -> None:
        config.validate()
        self.config = config
        self.out_dir = Path(out_dir)
        self.run_info = {k: (str(v) if isinstance(v, Path) else v) for k, v in run_info.items()}

    # identity of a run: what must match for a checkpoint to be resumed
    def _identity(self, task: Task) -> Dict[str, object]:
        cfg = asdict(self.config)
        keep = {k: cfg[k] for k in ("lr", "lr_final_ratio", "seed")}
        return {**self.run_info, **task.describe(), "input_sha256": task.input_digest(), **keep}

    @property
    def _ckpt_path(self) -> Path:
        return self.out_dir / self.CHECKPOINT

    def fit(self, task: Task, build_model: Callable[[], nn.Module], default_lr: float) -> FitResult:
        identity = self._identity(task)
        state = self._setup(task, build_model, default_lr, identity)
        coords = task.coords()
        t_start = time.perf_counter() - state.elapsed
        with self._progress(state) as show, self._checkpoint_on_interrupt(state, identity, t_start):
            while state.step < self.config.iters:
                pred, loss, index = self._train_step(task, coords, state)
                show(self._log_step(task, state, pred, loss, index, t_start))
                if state.step % self.config.checkpoint_every == 0 or state.step == self.config.iters:
                    self._save(identity, state, time.perf_counter() - t_start)
        train_seconds = time.perf_counter() - t_start
        return self._evaluate(task, coords, state, identity, train_seconds)

    def _setup(self, task: Task, build_model: Callable[[], nn.Module], default_lr: float, identity) -> TrainingState:
        """Seeds and builds the model and optimizer, then resumes ``OUT/checkpoint.pt`` when it is this run's."""
        cfg = self.config
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        model = build_model()
        lr = cfg.lr if cfg.lr is not None else default_lr
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, self._cosine(cfg.iters, cfg.lr_final_ratio))
        history: Dict[str, List[float]] = {"iteration": [], "seconds": [], "loss": [], task.progress_metric: []}
        state = TrainingState(model, opt, sched, history, lr, tracked=norms_with_running_statistics(model))
        path = self._ckpt_path
        if cfg.overwrite or not path.exists():
            # no run of ours to resume here: whatever outputs the folder holds are someone else's
            prepare_output_dir(
                self.out_dir,
                (self.CHECKPOINT, "metrics.json", "curve.png", *task.outputs),
                cfg.overwrite,
                command=f"nerf-norm {task.name}",
            )
        if path.exists():
            if not cfg.resume:
                raise UserError(f"{path} exists and --no-resume was given: choose another --out or remove it")
            planned = self._load(path, identity, state)
            if state.step > cfg.iters:
                raise UserError(
                    f"{path} is at iteration {state.step}, beyond --iters {cfg.iters}: give --iters "
                    f">= {state.step} to continue it, or another --out"
                )
            console.log(f"resuming from {path} at iteration {state.step}")
            if planned is not None and planned != cfg.iters:
                console.log(
                    f"note: the cosine learning-rate schedule was planned over {planned} iterations and now "
                    f"spans {cfg.iters}: from iteration {state.step} on the rate follows the new schedule"
                )
        state.keep_statistics()
        state.model.train()
        return state

    def _train_step(self, task: Task, coords: Tensor, state: TrainingState):
        """One Adam step on the step's batch (full, or drawn from a generator seeded by (seed, step))."""
        state.optimizer.zero_grad(set_to_none=True)
        state.generator.manual_seed(self.config.seed * 1_000_003 + state.step)
        index = task.sample(state.generator)
        pred = state.model(coords if index is None else coords[index])
        loss = task.loss(pred, index)
        value = loss.item()  # the step's one host sync: the divergence check and the curve both use it
        self._check_divergence(state, value)
        loss.backward()
        state.optimizer.step()
        state.scheduler.step()
        state.step += 1
        state.keep_statistics()
        return pred, value, index

    def _check_divergence(self, state: TrainingState, loss: float) -> None:
        """Stops a fit whose loss is not finite, or has stayed above :data:`DIVERGENCE_FACTOR` times its first value
        for :data:`DIVERGENCE_STEPS` iterations, with one line saying so (no NaN needed to notice)."""
        rate = f"learning rate {state.scheduler.get_last_lr()[0]:.3g}"
        if not math.isfinite(loss):
            raise UserError(
                f"training diverged: the loss became {loss} at iteration {state.step} ({rate}); try a smaller --lr"
            )
        state.start_loss = state.start_loss if state.start_loss is not None else loss
        state.above_start = state.above_start + 1 if loss > DIVERGENCE_FACTOR * state.start_loss else 0
        if state.above_start >= DIVERGENCE_STEPS:
            raise UserError(
                f"training diverged: the loss has stayed above {DIVERGENCE_FACTOR:g}x its first value "
                f"({state.start_loss:.4g}) for {state.above_start} iterations, now {loss:.4g} at iteration "
                f"{state.step} ({rate}); try a smaller --lr"
            )

    def _log_step(self, task: Task, state: TrainingState, pred: Tensor, loss: float, index, t_start: float):
        """Updates the best value and, every ``log_every`` iterations, the curve; returns the value to show."""
        step = state.step
        logged = step % self.config.log_every == 0 or step == self.config.iters or step == 1
        if not (logged or task.track_best):
            return None
        # the output of this step's forward pass, i.e. of the weights before this step's update
        value = task.progress(pred.detach(), index)
        if value > state.best["value"]:
            state.best = {"value": value, "iteration": step - 1}
        if not logged:
            return None
        history = state.history
        history["iteration"].append(step)
        history["seconds"].append(time.perf_counter() - t_start)
        history["loss"].append(loss)
        history[task.progress_metric].append(value)
        for key, extra in task.record(pred.detach()).items():
            history.setdefault(key, []).append(extra)
        return f"{task.progress_metric} {value:.2f}"

    @contextlib.contextmanager
    def _progress(self, state: TrainingState):
        """The rich progress bar; yields ``show(metric_text | None)``, called after every step."""
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[metric]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=self.config.quiet,
            transient=False,
        )
        with progress:
            bar = progress.add_task(
                f"{self.run_info.get('method', 'fit')}", total=self.config.iters, completed=state.step, metric=""
            )

            def show(metric: Optional[str]) -> None:
                if metric is not None:
                    progress.update(bar, metric=metric)
                progress.update(bar, completed=state.step)

            yield show

    def _evaluate(self, task: Task, coords: Tensor, state: TrainingState, identity, train_seconds: float) -> FitResult:
        """Final statistics, evaluation in chunks, the task's outputs, the curve and ``metrics.json``."""
        cfg, model = self.config, state.model
        if task.trains_on_batches():  # precise running statistics at the final weights (none without norms)
            state.generator.manual_seed(cfg.seed * 1_000_003 + cfg.iters)  # not a training step's batch
            refresh_statistics(model, lambda k: model(coords[task.sample(state.generator)]), cfg.stats_batches)
        model.eval()
        with torch.no_grad():
            chunk = task.eval_chunk or len(coords)
            pred = torch.cat([model(part) for part in coords.split(chunk)])
        metrics = dict(task.evaluate(pred))
        params = count_parameters(model)
        metrics.update(
            params=params, iterations=state.step, train_seconds=train_seconds, lr=state.lr, **task.rate(params)
        )
        if task.track_best:
            metrics[f"{task.progress_metric}_best"] = state.best["value"]
            metrics[f"{task.progress_metric}_best_iteration"] = state.best["iteration"]
        outputs = dict(task.save_outputs(pred, self.out_dir))
        outputs["curve"] = self._plot_curve(state.history, task.progress_metric)
        outputs["metrics"] = self.out_dir / "metrics.json"
        record = {
            "run": identity,
            "torch_threads": torch.get_num_threads(),
            "metrics": metrics,
            "history": state.history,
            "outputs": {k: str(v) for k, v in outputs.items()},
        }
        outputs["metrics"].write_text(json.dumps(record, indent=2))
        outputs["checkpoint"] = self._ckpt_path
        return FitResult(metrics, state.history, outputs, pred)

    @contextlib.contextmanager
    def _checkpoint_on_interrupt(self, state: TrainingState, identity, t_start: float):
        """Ctrl-C (SIGINT) or SIGTERM (a scheduler's or ``timeout``'s stop) during training writes a checkpoint of
        the last finished iteration, then re-raises (SIGTERM as :class:`Terminated`)."""
        try:
            with terminate_as_interrupt():
                yield
        except KeyboardInterrupt:
            if state.step > 0:
                state.restore_statistics()  # undo the interrupted iteration's running-statistics update
                self._save(identity, state, time.perf_counter() - t_start)
                console.log(
                    f"interrupted at iteration {state.step}: checkpoint written to {self._ckpt_path} (the "
                    "same command resumes from it)"
                )
            else:
                console.log("interrupted before the first iteration finished: no checkpoint written")
            raise

    @staticmethod
    def _cosine(total: int, final_ratio: float) -> Callable[[int], float]:
        return lambda it: final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * min(it, total) / total))

    def _save(self, identity, state: TrainingState, elapsed: float) -> None:
        path = self._ckpt_path
        tmp = path.with_suffix(".tmp")
        torch.save(
            {
                "identity": identity,
                "model": state.model.state_dict(),
                "optimizer": state.optimizer.state_dict(),
                "scheduler": state.scheduler.state_dict(),
                "step": state.step,
                "elapsed": elapsed,
                "history": state.history,
                "best": state.best,
                "start_loss": state.start_loss,
                "planned_iters": self.config.iters,
            },
            tmp,
        )
        os.replace(tmp, path)  # atomic: an interrupted save never corrupts the previous checkpoint

    @staticmethod
    def _load(path: Path, identity, state: TrainingState) -> Optional[int]:
        """Restores ``state`` from the checkpoint at ``path``; returns the iterations its schedule was planned for."""
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
            raise UserError(f"cannot read checkpoint {path}: {exc}") from exc
        if not isinstance(ckpt, dict):
            raise UserError(f"{path} is not a nerf-norm checkpoint; use another --out or remove it")
        missing = [k for k in ("model", "optimizer", "scheduler", "step", "elapsed", "history") if k not in ckpt]
        if missing:
            raise UserError(
                f"checkpoint {path} lacks {', '.join(missing)}: it is not a complete nerf-norm checkpoint; "
                "use another --out or remove it"
            )
        saved = ckpt.get("identity", {})
        diff = {k: (saved.get(k), v) for k, v in identity.items() if saved.get(k) != v}
        if diff:
            details = "; ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diff.items())
            raise UserError(f"{path} belongs to a different run ({details}); use another --out or remove it")
        try:
            state.model.load_state_dict(ckpt["model"])
        except RuntimeError as exc:
            raise UserError(
                f"{path} holds weights of another network layout (e.g. a run made before its norms kept "
                f"running statistics); use another --out or remove it. {exc}"
            ) from exc
        state.optimizer.load_state_dict(ckpt["optimizer"])
        state.scheduler.load_state_dict(ckpt["scheduler"])
        state.best = ckpt.get("best", {"value": -math.inf, "iteration": 0})
        state.start_loss = ckpt.get("start_loss")
        state.step, state.elapsed, state.history = int(ckpt["step"]), float(ckpt["elapsed"]), ckpt["history"]
        return ckpt.get("planned_iters")

    def _plot_curve(self, history: Dict[str, List[float]], metric: str) -> Path:
        from ..plotting import pyplot

        plt = pyplot()

        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
        for ax, key, label in ((axes[0], "iteration", "iteration"), (axes[1], "seconds", "wall-clock seconds")):
            ax.plot(history[key], history[metric], lw=1.5)
            ax.set_xlabel(label)
            ax.set_ylabel(metric.upper())
            ax.grid(alpha=0.3)
        fig.suptitle(f"training curve: {self.run_info.get('method', '')} {self.run_info.get('arch', '')}")
        fig.tight_layout()
        path = self.out_dir / "curve.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path
