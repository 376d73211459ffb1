"""``lorat train``: build the run's record from the command line, then :func:`lorat.train.trainer.train`.

Where the settings come from, in order (later wins):

1. the base record: ``--config train_config.json`` (train *and* model config of an earlier run), else with
   ``--resume`` the checkpoint's own record (so ``lorat train --output runs/x --resume`` needs nothing
   else), else the defaults (``TrainConfig()`` and the preset's ``ModelConfig``);
2. ``--got10k-protocol``, ``--preset``, ``--pretrained``, ``--output``, ``--teacher``, then ``--set``;
3. the model config: the base record's, or the preset's when the preset changed; then ``--model-set``.

With ``--resume`` a setting that then differs from the checkpoint's is an error naming it, unless
``--accept-changes`` (the new values are used). Output folder, dataset roots, workers, device, logging,
checkpoint cadence, ``max_steps`` and ``eval_benchmarks`` may always change.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config import TrainConfig, apply_overrides


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``lorat train``."""
    p.add_argument("--preset", default=None, help="model preset (default: the train config's, lorat-b-224)")
    p.add_argument("--pretrained", default=None, help="backbone weights (DINOv2: facebookresearch/timm/HF layout)")
    p.add_argument("--output", default=None, help="output folder (checkpoints, logs, final weights)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a TrainConfig field, e.g. --set epochs=10 --set batch_size=32 "
                        "(tuples: --set datasets=lasot_train,got10k_train; --set eval_benchmarks= for none)")
    p.add_argument("--model-set", dest="model_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model config field, e.g. --model-set lora_r=16")
    p.add_argument("--got10k-protocol", action="store_true",
                   help="GOT-10k-only protocol: train on the full GOT-10k train split for 100 epochs")
    p.add_argument("--teacher", default=None, help="frozen teacher checkpoint (distillation tasks)")
    p.add_argument("--resume", nargs="?", const=True, default=None,
                   help="continue from the newest checkpoint in --output (or from the given folder); the "
                        "checkpoint's settings are restored")
    p.add_argument("--accept-changes", action="store_true",
                   help="with --resume: continue with settings that differ from the checkpoint's (new values win)")
    p.add_argument("--config", default=None,
                   help="a train_config.json of an earlier run to start from (train and model config)")


def _base_record(args: argparse.Namespace) -> tuple[TrainConfig, Any | None]:
    from .checkpoint import checkpoint_record, latest_checkpoint
    from .record import TrainRecord

    if args.config:
        rec = TrainRecord.read(args.config)
        return rec.train, rec.model
    if args.resume:
        if args.resume is True:
            ckpt = latest_checkpoint(Path(args.output or TrainConfig().output_dir))
        else:
            ckpt = Path(args.resume)
        if ckpt is not None and ckpt.is_dir():
            rec = checkpoint_record(ckpt)
            return rec.train, rec.model
    return TrainConfig(), None


def build_config(args: argparse.Namespace) -> tuple[TrainConfig, Any]:
    """The TrainConfig and the full model config that ``lorat train`` ``args`` ask for."""
    from ..models.registry import get_preset

    cfg, model_cfg = _base_record(args)
    base_preset = cfg.model
    if args.got10k_protocol:
        cfg = replace(cfg, datasets=("got10k_train",), epochs=100)
    for name, value in (("model", args.preset), ("pretrained", args.pretrained), ("output_dir", args.output),
                        ("teacher", args.teacher)):
        if value is not None:
            cfg = replace(cfg, **{name: value})
    cfg = apply_overrides(cfg, args.overrides)
    if model_cfg is None or cfg.model != base_preset:
        model_cfg = get_preset(cfg.model)
    return cfg, apply_overrides(model_cfg, args.model_overrides)


def run_train(args: argparse.Namespace) -> int:
    """Entry point of ``lorat train``: 0 finished, 130 interrupted, 3 stopped on a non-finite loss."""
    from .trainer import NonFiniteLossError, train

    cfg, model_cfg = build_config(args)
    try:
        summary = train(cfg, model_cfg=model_cfg, resume=args.resume, accept_changes=args.accept_changes)
    except NonFiniteLossError as e:
        print(f"lorat train: error: {e}", file=sys.stderr)
        return 3
    return 0 if summary["status"] == "finished" else 130


__all__ = ["add_train_arguments", "build_config", "run_train"]
