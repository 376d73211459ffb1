"""The training loop: one function, ``train``, that reads top to bottom.

One step: sample pairs (``data/sampler.py``) -> crop, augment, label (``data/transforms.py``) ->
forward (``models/lorat.py``) -> IoU-aware BCE + GIoU (``train/losses.py``) -> AdamW step with the
official groups and schedule (``train/optim.py``).

Runs as one process on CPU or one GPU; under ``torchrun`` it uses DDP (NCCL on GPU, Gloo on CPU) with no
code change: each rank takes its slice of every global batch. Every sample is a pure function of
(seed, epoch, index), so data order survives worker counts, world sizes and restarts, and ``resume``
continues exactly (same data, RNG, optimizer and scaler state).

Checkpoints (``<output_dir>/checkpoints/step_XXXXXXXX/``) hold the trainable weights (safetensors) and
``state.pt`` (optimizer, scaler, counters, RNG; read back with ``weights_only=True``); each is written to a
temporary folder and renamed, so a crash never leaves a half checkpoint. SIGINT/SIGTERM save one and stop.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from .. import hub
from ..config import TrainConfig, apply_overrides, from_dict, to_dict
from ..files import atomic_path, atomic_write_text
from ..models.registry import create_model, get_preset
from .losses import lorat_loss
from .optim import lr_at, param_groups


# --------------------------------------------------------------------------- distributed set-up
def setup_device_and_ranks(device: str = "auto") -> tuple[torch.device, int, int]:
    """Pick the device and join the process group when launched by torchrun. Returns (device, rank, world)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device(device)
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

    def __iter__(self):
        micro = self.batch // self.accum
        for b in range(self.start_step, self.steps):
            for a in range(self.accum):
                first = b * self.batch + a * micro + self.rank * self.per_rank
                yield list(range(first, first + self.per_rank))

    def __len__(self) -> int:
        return (self.steps - self.start_step) * self.accum


# --------------------------------------------------------------------------- checkpoints
def _atomic_torch_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_training_checkpoint(out: Path, model: nn.Module, optimizer, scaler, counters: dict, cfg: TrainConfig,
                             keep: int) -> Path:
    """Write ``checkpoints/step_N`` (trainable weights + optimizer/scaler/RNG/counters) atomically."""
    root = out / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{counters['step']:08d}"
    tmp = root / f".tmp_step_{counters['step']:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    hub.save_checkpoint(model, tmp / "model.safetensors", contents="trainable")
    state = {
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "counters": dict(counters),
        "train_config": json.dumps(to_dict(cfg)),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    _atomic_torch_save(state, tmp / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in sorted(root.glob("step_*"))[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint folder under ``out`` (temporary folders are ignored)."""
    done = sorted(p for p in (out / "checkpoints").glob("step_*") if (p / "state.pt").is_file())
    return done[-1] if done else None


def load_training_checkpoint(path: Path, model: nn.Module, optimizer, scaler) -> dict:
    """Restore weights, optimizer, scaler and RNG from ``path``; returns the saved counters."""
    if not (path / "state.pt").is_file():
        raise FileNotFoundError(f"not a training checkpoint (no state.pt): {path}")
    tensors, _ = hub.read_state_file(path / "model.safetensors")
    hub.load_lorat_state(model, tensors, str(path / "model.safetensors"), backbone_loaded=True)
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng_cpu"])
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    return dict(state["counters"])


# --------------------------------------------------------------------------- data
def build_datasets(cfg: TrainConfig, model_cfg):
    """Training and validation pair datasets from the configured dataset names and roots."""
    from ..data.datasets import load_benchmark, load_training_dataset
    from ..data.sampler import PairDataset
    from ..data.transforms import SiameseTrainTransform

    roots = dict(item.split("=", 1) for item in cfg.dataset_roots)
    train_sets = [load_training_dataset(name, roots.get(name)) for name in cfg.datasets]
    weights = list(cfg.dataset_weights) or None
    transform = SiameseTrainTransform.from_model_config(model_cfg)
    train = PairDataset(train_sets, transform, cfg.samples_per_epoch, cfg.seed, weights=weights,
                        max_gap=cfg.max_pair_gap)
    val = None
    if cfg.val_dataset and cfg.val_samples > 0:
        name = cfg.val_dataset
        seqs = load_benchmark(name, roots.get(name)) if not name.endswith("_train") else load_training_dataset(
            name, roots.get(name))
        val = PairDataset([seqs], transform, cfg.val_samples, cfg.seed + 1, max_gap=cfg.max_pair_gap)
    return train, val


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "auto":
        amp = "fp16" if device.type == "cuda" else "none"
    if amp == "fp16" and device.type == "cpu":
        raise ValueError("amp=fp16 needs a GPU; use amp=bf16 or amp=none on CPU")
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "none": None}[amp]


@torch.no_grad()
def validate(model: nn.Module, val, cfg: TrainConfig, device, rank: int, world: int, amp_dtype) -> float:
    """Mean validation loss over ``val`` (model in eval mode), averaged over ranks."""
    model.eval()
    batch = max(world, (cfg.batch_size // cfg.grad_accum) // world * world)
    steps = max(1, len(val) // batch)
    loader = DataLoader(val, batch_sampler=RankBatches(steps, batch, 1, rank, world), collate_fn=val.collate,
                        num_workers=cfg.num_workers, generator=torch.Generator().manual_seed(cfg.seed))
    total = torch.zeros(2, device=device)
    for b in loader:
        b = _to_device(b, device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out = model(b["z"], b["x"], b["z_feat_mask"])
        loss, _ = lorat_loss(out["score_map"], out["boxes"], b)
        total += torch.stack([loss.detach().float(), torch.ones((), device=device)])
    if world > 1:
        dist.all_reduce(total)
    model.train()
    return (total[0] / total[1]).item()


# --------------------------------------------------------------------------- the loop
def train(cfg: TrainConfig, model_overrides: dict | None = None, resume: str | Path | bool | None = None,
          stop_after_steps: int | None = None) -> dict:
    """Train a model with ``cfg``; returns a summary (final losses, steps, checkpoint path).

    ``resume``: True for the newest checkpoint in ``output_dir``, or a checkpoint folder.
    ``stop_after_steps`` pauses the run after that many steps *as if interrupted* (a checkpoint is written);
    tests use it to check that a resumed run equals an uninterrupted one.
    """
    device, rank, world = setup_device_and_ranks(cfg.device)
    out = Path(cfg.output_dir)
    is_main = rank == 0
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)

    # ---- model: preset + overrides, DINOv2 backbone or a previous checkpoint, then LoRA/freezing
    model_cfg = replace(get_preset(cfg.model), **(model_overrides or {}))
    if cfg.init_checkpoint:  # continue from trained weights (lorat files carry their own config)
        model = hub.load_checkpoint(cfg.init_checkpoint, name=model_cfg, pretrained=cfg.pretrained)
        model_cfg = model.cfg
    else:
        model = create_model(model_cfg, pretrained=cfg.pretrained)
    model.to(device).train()
    raw_model = model
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())

    # ---- optimizer, AMP
    groups = param_groups(model, cfg.weight_decay, cfg.layer_decay)
    optimizer = torch.optim.AdamW([{k: v for k, v in g.items() if k != "names"} for g in groups], lr=cfg.lr,
                                  betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    amp_dtype = _amp_dtype(cfg.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    # ---- data
    train_set, val_set = build_datasets(cfg, model_cfg)
    steps_per_epoch = cfg.samples_per_epoch // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"samples_per_epoch={cfg.samples_per_epoch} is smaller than batch_size={cfg.batch_size}")
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))

    # ---- resume
    counters = {"step": 0, "epoch": 0, "step_in_epoch": 0}
    ckpt = latest_checkpoint(out) if resume is True else (Path(resume) if resume else None)
    if resume is True and ckpt is None and is_main:
        print(f"[train] no checkpoint in {out / 'checkpoints'}; starting from scratch")
    if ckpt is not None:
        counters = load_training_checkpoint(ckpt, model, optimizer, scaler)
        if is_main:
            print(f"[train] resumed from {ckpt} at step {counters['step']}")

    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, static_graph=True,
            gradient_as_bucket_view=True, bucket_cap_mb=100, find_unused_parameters=False)
    forward = torch.compile(model) if cfg.compile else model

    # ---- logging
    writer = _summary_writer(out) if is_main else None
    log_file = open(out / "metrics.jsonl", "a") if is_main else None
    if is_main:
        atomic_write_text(out / "train_config.json", json.dumps(to_dict(cfg), indent=1))
        print(f"[train] {model_cfg.name}: {n_train / 1e6:.3f} M trainable of {n_total / 1e6:.2f} M parameters "
              f"({100 * n_train / n_total:.2f} %), {world} process(es) on {device}, {steps_per_epoch} steps/epoch")

    stop = {"flag": False}
    old_handlers = _install_signal_handlers(stop)
    last = {"loss": float("nan")}
    last_ckpt = None
    try:
        while counters["epoch"] < cfg.epochs:
            epoch = counters["epoch"]
            train_set.set_epoch(epoch)
            sampler = RankBatches(steps_per_epoch, cfg.batch_size, cfg.grad_accum, rank, world,
                                  start_step=counters["step_in_epoch"])
            # A private generator: creating the loader must not consume the global RNG, or a resumed run
            # (which creates one more loader) would draw different drop-path masks than an uninterrupted one.
            loader = DataLoader(train_set, batch_sampler=sampler, collate_fn=train_set.collate,
                                num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
                                generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
            bar = tqdm(total=steps_per_epoch, initial=counters["step_in_epoch"], disable=not is_main,
                       desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step", dynamic_ncols=True)
            t0, seen = time.perf_counter(), 0
            micro = 0
            for batch in loader:
                batch = _to_device(batch, device)
                # Official lr lag: the scheduler is stepped after each update with the pre-increment counter,
                # so update k runs at lr_at(k - 1) (the first two updates both at warmup_lr).
                lr = lr_at(max(counters["step"] - 1, 0), cfg.lr, total_steps, warmup_steps, cfg.warmup_lr, cfg.min_lr)
                for g in optimizer.param_groups:
                    g["lr"] = lr * g["lr_scale"]

                last_micro = micro == cfg.grad_accum - 1
                sync = model.no_sync() if (world > 1 and not last_micro) else nullcontext()
                with sync:
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                        out_ = forward(batch["z"], batch["x"], batch["z_feat_mask"])
                    loss, terms = lorat_loss(out_["score_map"], out_["boxes"], batch)
                    scaler.scale(loss / cfg.grad_accum).backward()
                micro += 1
                seen += batch["z"].shape[0] * world
                if not last_micro:
                    continue
                micro = 0

                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.clip_grad) \
                    if cfg.clip_grad > 0 else _grad_norm(raw_model)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                counters["step"] += 1
                counters["step_in_epoch"] += 1
                last["loss"] = loss.item()

                if is_main:
                    rate = seen / max(time.perf_counter() - t0, 1e-9)
                    bar.update(1)
                    bar.set_postfix(loss=f"{last['loss']:.4f}", lr=f"{lr:.2e}", sps=f"{rate:.1f}")
                    if counters["step"] % cfg.log_every == 0 or counters["step"] == 1:
                        rec = {"step": counters["step"], "epoch": epoch, "lr": lr, "loss": last["loss"],
                               **{f"loss_{k}": float(v) for k, v in terms.items()},
                               "grad_norm": float(grad_norm), "samples_per_s": rate}
                        _log(writer, log_file, rec)

                stop_now = _any_rank(stop["flag"], device, world) or (
                    stop_after_steps is not None and counters["step"] >= stop_after_steps)
                done_by_max = cfg.max_steps is not None and counters["step"] >= cfg.max_steps
                if cfg.checkpoint_every_steps and counters["step"] % cfg.checkpoint_every_steps == 0 or stop_now:
                    last_ckpt = _save(is_main, out, raw_model, optimizer, scaler, counters, cfg, world)
                if stop_now:
                    bar.close()
                    if is_main:
                        print(f"[train] stopped at step {counters['step']}; resume with --resume ({last_ckpt})")
                    return {"status": "interrupted", "step": counters["step"], "loss": last["loss"],
                            "checkpoint": str(last_ckpt) if last_ckpt else None}
                if done_by_max:
                    break
            bar.close()
            epoch_done = counters["step_in_epoch"] >= steps_per_epoch
            if epoch_done:
                counters["epoch"] += 1
                counters["step_in_epoch"] = 0
            finished = counters["epoch"] >= cfg.epochs or (cfg.max_steps is not None and counters["step"] >= cfg.max_steps)
            if val_set is not None and (finished or (epoch_done and counters["epoch"] % cfg.val_every == 0)):
                vloss = validate(raw_model, val_set, cfg, device, rank, world, amp_dtype)
                last["val_loss"] = vloss
                if is_main:
                    print(f"[train] epoch {counters['epoch']} step {counters['step']}: val loss {vloss:.4f}")
                    _log(writer, log_file, {"step": counters["step"], "val_loss": vloss})
            if finished or (epoch_done and counters["epoch"] % cfg.checkpoint_every == 0):
                last_ckpt = _save(is_main, out, raw_model, optimizer, scaler, counters, cfg, world)
            if finished:
                break
    finally:
        _restore_signal_handlers(old_handlers)
        if log_file:
            log_file.close()
        if writer:
            writer.close()

    final = out / "model_final.safetensors"
    if is_main:
        hub.save_checkpoint(raw_model, final, contents="full")
        print(f"[train] done: {counters['step']} steps, final loss {last['loss']:.4f}; weights in {final}")
    scores = evaluate_after_training(raw_model, cfg, device, rank, world) if cfg.eval_benchmarks else {}
    return {"status": "finished", "step": counters["step"], "loss": last["loss"], "val_loss": last.get("val_loss"),
            "checkpoint": str(final), "trainable_params": n_train, "total_params": n_total, "eval": scores}


def evaluate_after_training(model: nn.Module, cfg: TrainConfig, device: torch.device, rank: int, world: int) -> dict:
    """Track ``cfg.eval_benchmarks`` with the trained model (sequences sharded over ranks) and score them.

    Raw results go to ``<output_dir>/eval/``; returns ``{benchmark: overall metrics}`` on rank 0.
    """
    from ..eval.runner import evaluate, load_benchmarks, summarize
    from ..track.tracker import TrackConfig, Tracker

    roots = dict(item.split("=", 1) for item in cfg.dataset_roots)
    benchmarks = load_benchmarks(cfg.eval_benchmarks, roots)
    tracker = Tracker(model, TrackConfig(device=str(device), copy_model=True))  # the trained model stays as is
    out = Path(cfg.output_dir) / "eval"
    evaluate(tracker, benchmarks, out, "final", rank=rank, world_size=world, progress=rank == 0)
    if world > 1:
        dist.barrier()
    if rank != 0:
        return {}
    scores = {name: s["mean"] for name, s in summarize(benchmarks, out, "final").items()}
    for name, s in scores.items():
        print(f"[train] {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in s.items() if k in ("auc", "precision",
                                                                                        "norm_precision", "ao")))
    atomic_write_text(out / "scores.json", json.dumps(scores, indent=1))
    return scores


# --------------------------------------------------------------------------- small helpers
def _grad_norm(model: nn.Module) -> torch.Tensor:
    norms = [p.grad.detach().norm() for p in model.parameters() if p.grad is not None]
    return torch.stack(norms).norm() if norms else torch.zeros(())


def _any_rank(flag: bool, device, world: int) -> bool:
    if world == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _save(is_main: bool, out: Path, model, optimizer, scaler, counters, cfg, world: int):
    path = save_training_checkpoint(out, model, optimizer, scaler, counters, cfg, cfg.keep_checkpoints) \
        if is_main else None
    if world > 1:
        dist.barrier()
    return path


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


def _summary_writer(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an optional extra: metrics.jsonl always has the numbers
        return None
    return SummaryWriter(str(out / "tensorboard"))


def _log(writer, log_file, rec: dict) -> None:
    if log_file:
        log_file.write(json.dumps(rec) + "\n")
        log_file.flush()
    if writer:
        for k, v in rec.items():
            if k not in ("step", "epoch") and isinstance(v, (int, float)) and math.isfinite(v):
                writer.add_scalar(f"train/{k}" if not k.startswith("val") else f"val/{k}", v, rec["step"])


# --------------------------------------------------------------------------- CLI
def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``lorat train``."""
    p.add_argument("--preset", default=None, help="model preset (default: the train config's, lorat-b-224)")
    p.add_argument("--pretrained", default=None, help="DINOv2 backbone weights (facebookresearch/timm/HF layout)")
    p.add_argument("--output", default=None, help="output folder (checkpoints, logs, final weights)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a TrainConfig field, e.g. --set epochs=10 --set batch_size=32")
    p.add_argument("--model-set", dest="model_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a ModelConfig field, e.g. --model-set lora_r=16")
    p.add_argument("--got10k-protocol", action="store_true",
                   help="GOT-10k-only protocol: train on the full GOT-10k train split for 100 epochs")
    p.add_argument("--resume", nargs="?", const=True, default=None,
                   help="continue from the newest checkpoint in --output (or from the given folder)")
    p.add_argument("--config", default=None, help="a train_config.json to start from (e.g. of a previous run)")


def run_train(args: argparse.Namespace) -> int:
    """Entry point of ``lorat train``."""
    cfg = TrainConfig()
    if args.config:
        cfg = from_dict(TrainConfig, json.loads(Path(args.config).read_text()))
    if args.got10k_protocol:
        cfg = replace(cfg, datasets=("got10k_train",), epochs=100)
    if args.preset:
        cfg = replace(cfg, model=args.preset)
    if args.pretrained:
        cfg = replace(cfg, pretrained=args.pretrained)
    if args.output:
        cfg = replace(cfg, output_dir=args.output)
    cfg = apply_overrides(cfg, args.overrides)
    model_cfg = apply_overrides(get_preset(cfg.model), args.model_overrides)
    overrides = {k: getattr(model_cfg, k) for k in (o.split("=", 1)[0].strip() for o in args.model_overrides)}
    summary = train(cfg, overrides, resume=args.resume)
    return 0 if summary["status"] == "finished" else 130
