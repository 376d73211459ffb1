"""The generic training loop: ``train(cfg)`` = :func:`setup` -> :func:`train_epoch` / :func:`end_of_epoch`
-> :func:`finish`.

One step: the task's dataset item (for LoRAT ``data/sampler.py`` -> ``data/transforms.py``) -> the task's
collate -> ``loss, terms = task(model, batch)`` (LoRAT: ``models/lorat.py`` -> ``train/losses.py``, in
``train/task.py``) -> NaN guard -> backward -> clip -> AdamW step with the official groups and schedule
(``train/optim.py``). The loop knows no method: the model config's architecture names its task class
(``Arch.task``), see ``train/task.py``.

Runs as one process on CPU or one GPU; under ``torchrun`` it uses DDP (NCCL on GPU, Gloo on CPU) with no
code change: each rank takes its slice of every global batch. Every sample is a pure function of
(seed, epoch, index), so data order survives worker counts, world sizes and restarts, and ``resume``
continues exactly (same data, RNG, optimizer and scaler state; the logs are cut back to the checkpoint).
The run's record (train + model config, ``train/record.py``) is written to ``train_config.json`` and into
every checkpoint (``train/checkpoint.py``); a resume with different settings is refused unless accepted.
SIGINT/SIGTERM save a checkpoint and stop; a non-finite loss saves one and raises
:class:`NonFiniteLossError`.
"""
from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from .. import hub
from ..config import TrainConfig
from ..device import resolve_device, resolve_precision
from ..files import atomic_write_text
from ..models.registry import create_model, get_arch, get_preset, import_path, resolve_config
from ..models.vit import matmul_attention_enabled
from ..runtime import choose_training_attention, token_count
from .checkpoint import checkpoint_record, latest_checkpoint, load_training_checkpoint, save_training_checkpoint
from .optim import Schedule, param_groups
from .record import METRICS_FILE, RECORD_FILE, TrainRecord, check_resume, truncate_metrics
from .task import StepContext, Task

_DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}  # None: no autocast


class NonFiniteLossError(FloatingPointError):
    """A loss (or one of its terms) was NaN/inf: the step was not applied and a checkpoint was written."""


# --------------------------------------------------------------------------- distributed set-up
def setup_device_and_ranks(device: str = "auto") -> tuple[torch.device, int, int]:
    """Pick the device (``lorat.device.resolve_device``) and join the process group when launched by
    torchrun. Returns (device, rank, world)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        if dev.index is None:  # "cuda" under torchrun: this process's GPU
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return dev, rank, world


class RankBatches(Sampler):
    """This rank's micro-batches of one epoch, starting at optimizer step ``start_step``.

    Global batch b covers sample indices [b*B, (b+1)*B); it is cut into ``accum`` micro-batches and each
    micro-batch into ``world`` equal slices, one per rank. Yields lists of dataset indices.
    """

    def __init__(self, steps: int, batch: int, accum: int, rank: int, world: int, start_step: int = 0) -> None:
        if batch % (accum * world):
            raise ValueError(f"batch_size={batch} must be divisible by grad_accum*world_size={accum * world}")
        self.steps, self.batch, self.accum, self.rank, self.world = steps, batch, accum, rank, world
        self.start_step = start_step
        self.per_rank = batch // (accum * world)

    def first_index(self, step: int, micro: int) -> int:
        """Dataset index of this rank's first sample in micro-batch ``micro`` of global batch ``step``."""
        return step * self.batch + micro * (self.batch // self.accum) + self.rank * self.per_rank

    def __iter__(self):
        for b in range(self.start_step, self.steps):
            for a in range(self.accum):
                first = self.first_index(b, a)
                yield list(range(first, first + self.per_rank))

    def __len__(self) -> int:
        return max(self.steps - self.start_step, 0) * self.accum


# --------------------------------------------------------------------------- the run context
@dataclass
class Run:
    """Everything one training run holds; built by :func:`setup`."""

    cfg: TrainConfig
    record: TrainRecord
    task: Task
    device: torch.device
    rank: int
    world: int
    out: Path
    model: nn.Module  # the plain model (checkpoints, validation, evaluation)
    forward: nn.Module  # what the loop calls: the model, DDP-wrapped and/or compiled
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    precision: str  # float32 | bfloat16 | float16
    schedule: Schedule
    steps_per_epoch: int
    train_set: Any
    val_set: Any | None
    eval_sets: dict | None
    counters: dict = field(default_factory=lambda: {"step": 0, "epoch": 0, "step_in_epoch": 0})
    writer: Any = None
    log_file: Any = None
    metrics_lines: int = 0
    last: dict = field(default_factory=lambda: {"loss": float("nan")})
    last_checkpoint: Path | None = None
    attention: str = "sdpa"  # sdpa | manual (explicit matmuls), resolved from TrainConfig.attention

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        """The forward's context: autocast in ``precision`` and, for ``attention="manual"``, matmul attention."""
        dtype = _DTYPES[self.precision]
        stack = ExitStack()
        stack.enter_context(torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None))
        if self.attention == "manual":
            stack.enter_context(matmul_attention_enabled())
        return stack

    def finished(self) -> bool:
        c, cfg = self.counters, self.cfg
        return c["epoch"] >= cfg.epochs or (cfg.max_steps is not None and c["step"] >= cfg.max_steps)

    def log(self, rec: dict) -> None:
        """One record to ``metrics.jsonl`` and TensorBoard (rank 0)."""
        if self.log_file:
            self.log_file.write(json.dumps(rec) + "\n")
            self.log_file.flush()
            self.metrics_lines += 1
        if self.writer:
            for k, v in rec.items():
                if k not in ("step", "epoch") and isinstance(v, (int, float)) and math.isfinite(v):
                    self.writer.add_scalar(f"val/{k}" if k.startswith("val") else f"train/{k}", v, rec["step"])

    def save(self) -> Path | None:
        """Write a checkpoint (rank 0) of the current counters; all ranks wait for it."""
        path = None
        if self.is_main:
            path = save_training_checkpoint(self.out, self.model, self.optimizer, self.scaler, self.counters,
                                            self.record, self.cfg.keep_checkpoints, self.metrics_lines)
        if self.world > 1:
            dist.barrier()
        self.last_checkpoint = path
        return path

    def say(self, text: str) -> None:
        if self.is_main:
            print(f"[train] {text}", flush=True)


# --------------------------------------------------------------------------- train()
def train(cfg: TrainConfig, model_overrides: dict | None = None, resume: str | Path | bool | None = None,
          stop_after_steps: int | None = None, *, model_cfg: Any | None = None, accept_changes: bool = False,
          task: Callable[[TrainConfig, Any], Task] | None = None) -> dict:
    """Train with ``cfg``; returns a summary (status, steps, final losses, checkpoint path, eval scores).

    The model config is ``model_cfg`` (default: the preset ``cfg.model``) with ``model_overrides``.
    ``resume``: True for the newest checkpoint in ``output_dir``, or a checkpoint folder; settings that
    differ from the checkpoint's record raise ValueError naming them unless ``accept_changes`` (then the
    new values are used). ``stop_after_steps`` stops *as if interrupted* (a checkpoint is written).
    ``task``: the task class or factory ``(cfg, model_cfg) -> Task`` (default: the architecture's).
    """
    run = setup(cfg, model_overrides, resume, model_cfg, accept_changes, task)
    stop = {"flag": False}
    old_handlers = _install_signal_handlers(stop)
    try:
        while not run.finished():
            if train_epoch(run, stop, stop_after_steps) == "interrupted":
                run.say(f"stopped at step {run.counters['step']}; resume with --resume ({run.last_checkpoint})")
                return {"status": "interrupted", "step": run.counters["step"], "loss": run.last["loss"],
                        "checkpoint": str(run.last_checkpoint) if run.last_checkpoint else None}
            end_of_epoch(run)
    finally:
        _restore_signal_handlers(old_handlers)
        for f in (run.log_file, run.writer):
            if f:
                f.close()
    return finish(run)


def train_epoch(run: Run, stop: dict, stop_after_steps: int | None = None) -> str | None:
    """Train until the epoch ends (or ``max_steps``); returns ``"interrupted"`` after a stop request."""
    cfg, c = run.cfg, run.counters
    sampler, loader = _epoch_loader(run)
    bar = tqdm(total=run.steps_per_epoch, initial=min(c["step_in_epoch"], run.steps_per_epoch),
               disable=not run.is_main, desc=f"epoch {c['epoch'] + 1}/{cfg.epochs}", unit="step", dynamic_ncols=True)
    t0, seen, micro = time.perf_counter(), 0, 0
    for batch in loader:
        if micro == 0:
            # Official lr lag: the scheduler is stepped after each update with the pre-increment counter,
            # so update k runs at the lr of k - 1 (the first two updates both at warmup_lr).
            lr = run.schedule.apply(run.optimizer, max(c["step"] - 1, 0))
            run.task.on_step(StepContext(c["step"], c["epoch"], c["step_in_epoch"], run.steps_per_epoch,
                                         run.schedule.total_steps, lr))
        batch = _to_device(batch, run.device)
        last_micro = micro == cfg.grad_accum - 1
        with run.forward.no_sync() if (run.world > 1 and not last_micro) else nullcontext():
            with run.autocast():
                loss, terms = run.task(run.forward, batch)
            _check_finite(run, loss, terms, sampler.first_index(c["step_in_epoch"], micro), micro)
            run.scaler.scale(loss / cfg.grad_accum).backward()
        seen += sampler.per_rank * run.world
        micro = (micro + 1) % cfg.grad_accum
        if not last_micro:
            continue
        grad_norm = _optimizer_step(run)
        c["step"] += 1
        c["step_in_epoch"] += 1
        run.last["loss"] = loss.item()
        _log_step(run, bar, lr, terms, grad_norm, seen / max(time.perf_counter() - t0, 1e-9))
        stop_now = _any_rank(stop["flag"], run) or (stop_after_steps is not None and c["step"] >= stop_after_steps)
        if stop_now or (cfg.checkpoint_every_steps and c["step"] % cfg.checkpoint_every_steps == 0):
            run.save()
        if stop_now:
            bar.close()
            return "interrupted"
        if cfg.max_steps is not None and c["step"] >= cfg.max_steps:
            break
    bar.close()
    return None


def end_of_epoch(run: Run) -> None:
    """Advance the epoch counters when the epoch is complete; validate and checkpoint when due."""
    cfg, c = run.cfg, run.counters
    epoch_done = c["step_in_epoch"] >= run.steps_per_epoch
    if epoch_done:
        c["epoch"] += 1
        c["step_in_epoch"] = 0
    finished = run.finished()
    if run.val_set is not None and (finished or (epoch_done and c["epoch"] % cfg.val_every == 0)):
        run.last["val_loss"] = validate(run)
        run.say(f"epoch {c['epoch']} step {c['step']}: val loss {run.last['val_loss']:.4f}")
        if run.is_main:
            run.log({"step": c["step"], "val_loss": run.last["val_loss"]})
    if finished or (epoch_done and c["epoch"] % cfg.checkpoint_every == 0):
        run.save()


@torch.no_grad()
def validate(run: Run) -> float:
    """Mean validation loss (the task's loss, model in eval mode) over ``run.val_set``, averaged over ranks."""
    cfg, world = run.cfg, run.world
    run.model.eval()
    batch = max(world, (cfg.batch_size // cfg.grad_accum) // world * world)
    steps = max(1, len(run.val_set) // batch)
    loader = DataLoader(run.val_set, batch_sampler=RankBatches(steps, batch, 1, run.rank, world),
                        collate_fn=run.task.collate, num_workers=cfg.num_workers,
                        generator=torch.Generator().manual_seed(cfg.seed))
    total = torch.zeros(2, device=run.device)
    for b in loader:
        with run.autocast():
            loss, _ = run.task(run.model, _to_device(b, run.device))
        total += torch.stack([loss.detach().float(), torch.ones((), device=run.device)])
    if world > 1:
        dist.all_reduce(total)
    run.model.train()
    return (total[0] / total[1]).item()


def finish(run: Run) -> dict:
    """Final weights, the end-of-training tracker evaluation and the summary."""
    final = run.out / "model_final.safetensors"
    if run.is_main:
        hub.save_checkpoint(run.model, final, contents="full")
    run.say(f"done: {run.counters['step']} steps, final loss {run.last['loss']:.4f}; weights in {final}")
    scores = evaluate_after_training(run) if run.eval_sets else {}
    n_train = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
    return {"status": "finished", "step": run.counters["step"], "loss": run.last["loss"],
            "val_loss": run.last.get("val_loss"), "checkpoint": str(final), "trainable_params": n_train,
            "total_params": sum(p.numel() for p in run.model.parameters()), "eval": scores}


def evaluate_after_training(run: Run) -> dict:
    """Track ``cfg.eval_benchmarks`` with the task's tracker (sequences sharded over ranks) and score them.

    Raw results go to ``<output_dir>/eval/``; returns ``{benchmark: overall metrics}`` on rank 0.
    """
    from ..eval.runner import evaluate, summarize

    out = run.out / "eval"
    tracker = run.task.tracker(run.model, run.device)  # tracks a copy: the trained model stays as is
    evaluate(tracker, run.eval_sets, out, "final", rank=run.rank, world_size=run.world, progress=run.is_main)
    if run.world > 1:
        dist.barrier()
    if not run.is_main:
        return {}
    scores = {name: s["mean"] for name, s in summarize(run.eval_sets, out, "final").items()}
    for name, s in scores.items():
        run.say(f"{name}: " + ", ".join(f"{k} {v:.2f}" for k, v in s.items()
                                         if k in ("auc", "precision", "norm_precision", "ao")))
    atomic_write_text(out / "scores.json", json.dumps(scores, indent=1))
    return scores


# --------------------------------------------------------------------------- set-up and resume
def setup(cfg: TrainConfig, model_overrides: dict | None, resume, model_cfg: Any | None, accept_changes: bool,
          task_factory: Callable[[TrainConfig, Any], Task] | None) -> Run:
    """Validate the recipe, build model, task, optimizer, data and logs; restore a checkpoint if asked."""
    cfg = cfg.validate()
    device, rank, world = setup_device_and_ranks(cfg.device)
    try:
        precision = resolve_precision(cfg.amp, device)
    except ValueError as e:
        raise ValueError(f"amp={cfg.amp}: {e}") from None
    out = Path(cfg.output_dir)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    ckpt = latest_checkpoint(out) if resume is True else (Path(resume) if resume else None)
    if ckpt is not None and not (ckpt / "state.pt").is_file():
        raise FileNotFoundError(f"not a training checkpoint (no state.pt): {ckpt}")
    if resume is True and ckpt is None and rank == 0:
        print(f"[train] no checkpoint in {out / 'checkpoints'}; starting from scratch")
    eval_sets = _load_eval_benchmarks(cfg)  # now, so a bad name or root fails before training, not after
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)

    overrides = dict(model_overrides or {})
    new_name = overrides.pop("name", None)  # resolve_config's first parameter is also called name
    model_cfg = resolve_config(model_cfg if model_cfg is not None else get_preset(cfg.model), **overrides)
    model_cfg = replace(model_cfg, name=new_name) if new_name is not None else model_cfg
    model = _build_model(cfg, model_cfg, device)
    record = TrainRecord(cfg, model.cfg)
    if ckpt is not None:  # refuse changed settings before any state is touched
        changes = check_resume(checkpoint_record(ckpt), record, ckpt, accept_changes)
        if changes and rank == 0:
            print(f"[train] resuming with changed settings (new values used): {'; '.join(changes)}")
    task = (task_factory or import_path(get_arch(model.cfg).task))(cfg, model.cfg)
    if cfg.teacher and task.teacher is None:
        raise ValueError(f"TrainConfig.teacher={cfg.teacher!r} is set but {type(task).__name__} uses no teacher")
    task.to(device)

    groups = param_groups(model, cfg.weight_decay, cfg.layer_decay)
    optimizer = torch.optim.AdamW([{k: v for k, v in g.items() if k != "names"} for g in groups], lr=cfg.lr,
                                  betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "float16")
    train_set, val_set = task.build_datasets()
    steps_per_epoch = cfg.samples_per_epoch // cfg.batch_size
    schedule = Schedule(cfg.lr, steps_per_epoch * cfg.epochs, int(round(cfg.warmup_epochs * steps_per_epoch)),
                        cfg.warmup_lr, cfg.min_lr)
    forward = model
    if world > 1:
        forward = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, static_graph=True,
            gradient_as_bucket_view=True, bucket_cap_mb=100, find_unused_parameters=False)
    forward = torch.compile(forward) if cfg.compile else forward
    attention = (choose_training_attention(device, precision, token_count(model)) if cfg.attention == "auto"
                 else cfg.attention)
    run = Run(cfg, record, task, device, rank, world, out, model, forward, optimizer, scaler, precision, schedule,
              steps_per_epoch, train_set, val_set, eval_sets, attention=attention)
    _resume_and_open_logs(run, ckpt)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())
    run.say(f"{model.cfg.name} ({type(task).__name__}): {n_train / 1e6:.3f} M trainable of {n_total / 1e6:.2f} M "
            f"parameters ({100 * n_train / n_total:.2f} %), {world} process(es) on {device}, precision "
            f"{precision}, attention {attention}, {steps_per_epoch} steps/epoch")
    return run


def _build_model(cfg: TrainConfig, model_cfg: Any, device: torch.device) -> nn.Module:
    """The model: a previous checkpoint (``init_checkpoint``, lorat files carry their own config) or the
    architecture's backbone weights (``pretrained``) + a fresh head; then PEFT/freezing; train mode."""
    if cfg.init_checkpoint:
        model = hub.load_checkpoint(cfg.init_checkpoint, name=model_cfg, pretrained=cfg.pretrained)
    else:
        model = create_model(model_cfg, pretrained=cfg.pretrained)
    return model.to(device).train()


def _resume_and_open_logs(run: Run, ckpt: Path | None) -> None:
    """Restore ``ckpt`` (weights, optimizer, scaler, RNG, counters); cut the logs back to it; open them."""
    purge_step = 1  # a fresh start: anything TensorBoard holds from an earlier run in this folder goes
    if ckpt is not None:
        loaded = load_training_checkpoint(ckpt, run.model, run.optimizer, run.scaler)
        run.counters = loaded["counters"]
        if run.is_main:
            purge_step = truncate_metrics(run.out / METRICS_FILE, run.counters["step"], loaded["metrics_lines"])
        run.say(f"resumed from {ckpt} at step {run.counters['step']}")
    elif run.is_main and (run.out / METRICS_FILE).is_file():
        truncate_metrics(run.out / METRICS_FILE, 0, 0)  # a fresh start replaces a previous run's log
    if not run.is_main:
        return
    run.record.write(run.out / RECORD_FILE)
    path = run.out / METRICS_FILE
    run.metrics_lines = len(path.read_text().splitlines()) if path.is_file() else 0
    run.log_file = open(path, "a")
    run.writer = _summary_writer(run.out, purge_step)


def _load_eval_benchmarks(cfg: TrainConfig) -> dict | None:
    if not cfg.eval_benchmarks:
        return None
    from ..eval.runner import load_benchmarks

    try:
        return load_benchmarks(cfg.eval_benchmarks, cfg.roots())
    except (ValueError, FileNotFoundError, KeyError) as e:
        raise type(e)(f"TrainConfig.eval_benchmarks={list(cfg.eval_benchmarks)}: {e}") from None


# --------------------------------------------------------------------------- small helpers
def _epoch_loader(run: Run) -> tuple[RankBatches, DataLoader]:
    cfg, c = run.cfg, run.counters
    run.train_set.set_epoch(c["epoch"])
    sampler = RankBatches(run.steps_per_epoch, cfg.batch_size, cfg.grad_accum, run.rank, run.world,
                          start_step=c["step_in_epoch"])
    # A private generator: creating the loader must not consume the global RNG, or a resumed run
    # (which creates one more loader) would draw different drop-path masks than an uninterrupted one.
    loader = DataLoader(run.train_set, batch_sampler=sampler, collate_fn=run.task.collate,
                        num_workers=cfg.num_workers, pin_memory=run.device.type == "cuda",
                        generator=torch.Generator().manual_seed(cfg.seed * 1000 + c["epoch"]))
    return sampler, loader


def _to_device(batch: Any, device: torch.device) -> Any:
    """Tensors of a (nested) dict/list/tuple batch to ``device``; other values as they are."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _check_finite(run: Run, loss: torch.Tensor, terms: dict, first_index: int, micro: int) -> None:
    """Stop before a non-finite loss is back-propagated: save a checkpoint (the state before this step)
    and raise :class:`NonFiniteLossError` naming the batch and the terms. Agreed over ranks."""
    bad = not bool(torch.isfinite(loss.detach()).all())
    if not _any_rank(bad, run):
        return
    c = run.counters
    run.save()
    where = (f"step {c['step'] + 1} (epoch {c['epoch']}, micro-batch {micro}, rank {run.rank}: samples "
             f"{first_index}..{first_index + run.cfg.batch_size // (run.cfg.grad_accum * run.world) - 1} of "
             f"epoch {c['epoch']})")
    values = ", ".join(f"{k}={float(v):.4g}" for k, v in terms.items() if torch.is_tensor(v) and v.numel() == 1)
    culprits = [k for k, v in terms.items() if torch.is_tensor(v) and not bool(torch.isfinite(v).all())]
    raise NonFiniteLossError(
        f"non-finite loss {float(loss.detach().float()):.4g} at {where}; non-finite terms: {culprits or 'none'} "
        f"({values}). The step was not applied; checkpoint {run.last_checkpoint or 'written by rank 0'} holds "
        "the state before it")


def _optimizer_step(run: Run) -> torch.Tensor:
    """Unscale, clip (global L2 norm), step, update the scaler; returns the gradient norm."""
    run.scaler.unscale_(run.optimizer)
    params = [p for p in run.model.parameters() if p.grad is not None]
    if run.cfg.clip_grad > 0:
        norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.clip_grad)
    else:
        norm = torch.stack([p.grad.detach().norm() for p in params]).norm() if params else torch.zeros(())
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    return norm


def _log_step(run: Run, bar, lr: float, terms: dict, grad_norm: torch.Tensor, rate: float) -> None:
    if not run.is_main:
        return
    c = run.counters
    bar.update(1)
    bar.set_postfix(loss=f"{run.last['loss']:.4f}", lr=f"{lr:.2e}", sps=f"{rate:.1f}")
    if c["step"] % run.cfg.log_every == 0 or c["step"] == 1:
        run.log({"step": c["step"], "epoch": c["epoch"], "lr": lr, "loss": run.last["loss"],
                 **{f"loss_{k}": float(v) for k, v in terms.items()}, "grad_norm": float(grad_norm),
                 "samples_per_s": rate})


def _any_rank(flag: bool, run: Run) -> bool:
    if run.world == 1:
        return flag
    t = torch.tensor([float(flag)], device=run.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _install_signal_handlers(stop: dict):
    def handler(signum, frame):
        if stop["flag"]:  # second signal: give up immediately
            raise KeyboardInterrupt
        stop["flag"] = True
        print(f"\n[train] signal {signum}: finishing this step, then saving a checkpoint", flush=True)
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            pass
    return old


def _restore_signal_handlers(old: dict) -> None:
    for sig, h in old.items():
        signal.signal(sig, h)


def _summary_writer(out: Path, purge_step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an optional extra: metrics.jsonl always has the numbers
        return None
    # purge_step: events at or after it (written before a crash, now recomputed) are dropped by TensorBoard
    return SummaryWriter(str(out / "tensorboard"), purge_step=purge_step)


# The CLI lives in train/command.py; re-exported here because `lorat.cli` names this module.
from .command import add_train_arguments, run_train  # noqa: E402

__all__ = ["train", "setup", "train_epoch", "end_of_epoch", "validate", "finish", "evaluate_after_training", "Run",
           "RankBatches", "NonFiniteLossError", "setup_device_and_ranks", "latest_checkpoint",
           "save_training_checkpoint", "load_training_checkpoint", "add_train_arguments", "run_train"]
