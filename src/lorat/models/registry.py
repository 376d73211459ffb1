"""Model registry: architectures (config class, builder, weight loaders, tracker, training task) and presets.

Each architecture module registers itself once, at import, with :func:`register_arch` and its presets
with :func:`register_preset`; nothing outside that module knows the architecture by name::

    register_arch(Arch(name="lorat", config_cls=ModelConfig, build=build_lorat,
                       read_pretrained=load_dinov2, from_checkpoint=lorat_from_checkpoint, claims=...,
                       tracker="lorat.track.tracker:Tracker", task="lorat.train.task:LoRATTask"))
    register_preset(ModelConfig(name="lorat-b-224", ...))

``create_model("lorat-b-224", pretrained="dinov2_vitb14_pretrain.pth", lora_r=16)`` builds the preset's
architecture with overrides applied; ``list_models()`` names every preset.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

StateDict = dict[str, torch.Tensor]

# Modules that register architectures when imported (kept lazy so `import lorat` stays cheap and acyclic).
ARCH_MODULES: tuple[str, ...] = ("lorat.models.lorat", "lorat.models.lorat_students", "lorat.models.spmtrack",
                                  "lorat.models.ostrack")


@dataclass(frozen=True)
class Arch:
    """Everything the library needs to know about one architecture.

    ``build(cfg, pretrained_state_dict_or_None) -> nn.Module``: the model, backbone weights loaded and the
    trainable set configured. ``read_pretrained(path) -> state dict``: a backbone file (DINOv2, MAE, ...)
    in the layout ``build`` expects. ``from_checkpoint(cfg, tensors, contents, source, pretrained, merge=False,
    **options) -> nn.Module``: build the model and load a checkpoint's tensors with strict semantics (clear
    errors naming ``source``); ``contents`` is ``full``/``trainable``/``merged`` for lorat files and
    ``official`` for headerless ones.
    ``claims(tensors) -> bool``: whether a headerless (official) checkpoint belongs to this architecture.
    ``tracker`` and ``task`` are ``"module:attribute"`` paths, imported on first use: the tracker class
    and the training task class.
    """

    name: str
    config_cls: type
    build: Callable[[Any, StateDict | None], nn.Module]
    read_pretrained: Callable[[str | Path], StateDict]
    from_checkpoint: Callable[..., nn.Module]
    claims: Callable[[StateDict], bool]
    tracker: str
    task: str


_ARCHS: dict[str, Arch] = {}
_PRESETS: dict[str, Any] = {}
_loaded = False


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in ARCH_MODULES:
            importlib.import_module(module)


def register_arch(arch: Arch) -> Arch:
    """Register an architecture under ``arch.name`` (once)."""
    if arch.name in _ARCHS:
        raise ValueError(f"architecture {arch.name!r} is already registered")
    _ARCHS[arch.name] = arch
    return arch


def register_preset(cfg: Any) -> Any:
    """Register a named preset config (an instance of its architecture's ``config_cls``)."""
    if cfg.name in _PRESETS:
        raise ValueError(f"preset {cfg.name!r} is already registered")
    _PRESETS[cfg.name] = cfg
    return cfg


def get_arch(name_or_cfg: str | Any) -> Arch:
    """The :class:`Arch` of an architecture name or of a config (its ``arch`` field)."""
    _ensure_loaded()
    name = name_or_cfg if isinstance(name_or_cfg, str) else name_or_cfg.arch
    if name not in _ARCHS:
        raise KeyError(f"unknown architecture {name!r}; registered: {sorted(_ARCHS)}")
    return _ARCHS[name]


def list_archs() -> list[str]:
    """Names of all registered architectures."""
    _ensure_loaded()
    return sorted(_ARCHS)


def list_models(pattern: str = "") -> list[str]:
    """Names of all presets (optionally only those containing ``pattern``)."""
    _ensure_loaded()
    return sorted(n for n in _PRESETS if pattern in n)


def get_preset(name: str) -> Any:
    """Return a copy of the named preset config; a clear error lists the known names."""
    _ensure_loaded()
    if name not in _PRESETS:
        raise KeyError(f"unknown preset {name!r}; known presets: {', '.join(sorted(_PRESETS))}")
    return replace(_PRESETS[name])


def resolve_config(name: str | Any, **overrides) -> Any:
    """Preset name or config -> a validated copy with field overrides (unknown fields named in the error)."""
    cfg = get_preset(name) if isinstance(name, str) else replace(name)
    if overrides:
        known = {f.name for f in fields(cfg)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise KeyError(f"{type(cfg).__name__} ({cfg.arch}) has no field(s) {bad}; "
                           f"fields: {', '.join(sorted(known))}")
        cfg = replace(cfg, **overrides)
    return cfg


def create_model(name: str | Any, pretrained: str | Path | dict | None = None, **overrides) -> nn.Module:
    """Build a model from a preset name (or a config) with field overrides.

    ``pretrained``: the architecture's backbone weights (a path in any layout its ``read_pretrained``
    accepts, or an already converted state dict). Without it the backbone is randomly initialised.
    """
    cfg = resolve_config(name, **overrides)
    arch = get_arch(cfg)
    if isinstance(pretrained, (str, Path)):
        pretrained = arch.read_pretrained(pretrained)
    return arch.build(cfg, pretrained)


def import_path(path: str) -> Any:
    """Import ``"package.module:attribute"``."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)
