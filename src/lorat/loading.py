"""Model loading for the command line, shared by ``lorat track``, ``lorat eval`` and ``lorat export``.

``--checkpoint PATH`` (a lorat file carries its config; an official file also needs ``--preset``),
``--preset NAME`` of any registered architecture, ``--pretrained`` backbone, ``--device``, ``--dtype`` (the
precision vocabulary of :mod:`lorat.device`) and ``--set key=value``. Each ``--set`` key goes to
:class:`lorat.track.tracker.TrackConfig` when it is one of its fields, else to the config class of the
model's architecture (``get_arch(cfg).config_cls``), so a new architecture's fields work without changes
here.

Commands that also call :func:`lorat.runtime.add_runtime_argument` (``lorat track``, ``lorat eval``) get
``--runtime``/``--attention``/``--onnx``; :func:`model_from_args` puts them into ``TrackConfig.runtime`` and
``TrackConfig.runtime_options`` (a ``--runtime`` other than ``eager`` wins over ``--set runtime=...``).
"""
from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from .config import apply_overrides
from .device import canonical_precision

__all__ = ["add_model_arguments", "precision_arg", "checkpoint_arch", "split_overrides", "model_from_args"]


def precision_arg(text: str) -> str:
    """argparse ``type=`` for ``--dtype``: a canonical precision name (aliases accepted)."""
    try:
        return canonical_precision(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """``--checkpoint/--preset/--pretrained/--device/--dtype/--set`` (``lorat track``, ``eval``, ``export``)."""
    g = p.add_argument_group("model")
    g.add_argument("--checkpoint", metavar="PATH",
                   help="weights: a lorat checkpoint (carries its config) or an official release file "
                        "(then also --preset and, for trainable-only files, --pretrained)")
    g.add_argument("--preset", metavar="NAME", help="model preset of any architecture (lorat models lists "
                   "them); without --checkpoint the head is untrained (speed tests and demos only)")
    g.add_argument("--pretrained", metavar="BACKBONE",
                   help="backbone file (DINOv2: facebookresearch, timm or Hugging Face layout)")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default)")
    g.add_argument("--dtype", default="auto", type=precision_arg, metavar="PRECISION",
                   help="auto (default: fp16 autocast on CUDA as the official evaluation, bf16 on CPUs where "
                        "bf16 is measured faster, else float32), float32, bfloat16 or float16 (aliases fp32/none, "
                        "bf16, fp16)")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", nargs="+",
                   help="override a TrackConfig field (window_penalty, min_box_size, merge_lora) or a field "
                        "of the architecture's config (e.g. depth=2 for a reduced official checkpoint)")


def checkpoint_arch(path: str | Path) -> str | None:
    """The architecture a lorat-format checkpoint's header names (``None`` for other files).

    Reads only the safetensors header, not the tensors.
    """
    from .hub import read_state_metadata

    try:
        meta = read_state_metadata(path)
    except (OSError, ValueError):  # missing, corrupt, ...: hub.load_checkpoint reports it
        return None
    if meta.get("format") != "lorat":
        return None
    try:
        return json.loads(meta["config"]).get("arch", "lorat")
    except (KeyError, ValueError, AttributeError):
        return None


def split_overrides(items: Sequence[str], config_cls: type, track_cfg: Any = None) -> tuple[Any, dict[str, Any]]:
    """Route ``key=value`` strings to TrackConfig or ``config_cls``.

    Returns ``(TrackConfig with its overrides, {model field: typed value})``; an unknown key is a ValueError
    listing both classes' fields.
    """
    from .track.tracker import TrackConfig

    track_cfg = track_cfg if track_cfg is not None else TrackConfig()
    track_keys = {f.name for f in fields(track_cfg)}
    model_keys = {f.name for f in fields(config_cls)}
    track_items, model_items = [], []
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set {item!r} is not of the form key=value")
        key = item.split("=", 1)[0].strip()
        if key in ("device", "dtype"):
            raise ValueError(f"--set {key}=... : use --{key} instead")
        if key in track_keys:
            track_items.append(item)
        elif key in model_keys:
            model_items.append(item)
        else:
            raise ValueError(f"--set {item!r}: unknown key {key!r}; TrackConfig fields: "
                             f"{', '.join(sorted(track_keys))}; {config_cls.__name__} fields: "
                             f"{', '.join(sorted(model_keys))}")
    track_cfg = apply_overrides(track_cfg, track_items)
    typed = apply_overrides(config_cls(), model_items)
    keys = [it.split("=", 1)[0].strip() for it in model_items]
    return track_cfg, {k: getattr(typed, k) for k in keys}


def _flat(groups: Sequence[Any] | None) -> list[str]:
    return [item for group in (groups or []) for item in (group if isinstance(group, list) else [group])]


def _with_runtime(track_cfg: Any, args: argparse.Namespace) -> Any:
    """``--runtime``/``--attention``/``--onnx`` (when the command has them) -> the TrackConfig's runtime fields."""
    runtime = getattr(args, "runtime", None)
    options = dict(track_cfg.runtime_options)
    if getattr(args, "attention", "auto") != "auto":
        options["attention"] = args.attention
    if getattr(args, "onnx_path", None) is not None:
        if not Path(args.onnx_path).is_file():
            raise FileNotFoundError(f"--onnx file not found: {args.onnx_path}")
        options["onnx_path"] = args.onnx_path
    if runtime is not None and runtime != "eager":
        track_cfg = replace(track_cfg, runtime=runtime)
    return replace(track_cfg, runtime_options=options)


def model_from_args(args: argparse.Namespace):
    """Build ``(model, TrackConfig, default tracker name)`` from the :func:`add_model_arguments` options."""
    from .hub import load_checkpoint
    from .models.registry import create_model, get_arch, get_preset, import_path

    for opt in ("checkpoint", "pretrained"):
        value = getattr(args, opt, None)
        if value is not None and not Path(value).is_file():
            raise FileNotFoundError(f"--{opt} file not found: {value}")
    if args.preset:
        arch = get_arch(get_preset(args.preset))
    elif args.checkpoint:
        arch = get_arch(checkpoint_arch(args.checkpoint) or "lorat")
    else:
        raise ValueError("give --checkpoint PATH (and --preset NAME for an official file) or --preset NAME")
    # the tracker's own config class (e.g. SPMTrack's schedule / state options), TrackConfig by default
    track_cls = getattr(import_path(arch.tracker), "config_cls", None)
    track_cfg, model_overrides = split_overrides(_flat(args.overrides), arch.config_cls,
                                                 track_cls() if track_cls is not None else None)
    track_cfg = replace(track_cfg, device=args.device, dtype=canonical_precision(args.dtype))
    track_cfg = _with_runtime(track_cfg, args).validate()
    if args.checkpoint:
        model = load_checkpoint(args.checkpoint, name=args.preset, pretrained=args.pretrained, **model_overrides)
        name = Path(args.checkpoint).stem
    else:
        warnings.warn(f"no --checkpoint: {args.preset} has an untrained head, its boxes are meaningless "
                      "(fine for speed tests and demos)", stacklevel=2)
        model = create_model(args.preset, pretrained=args.pretrained, **model_overrides)
        name = args.preset
    return model, track_cfg, name
