"""Model registry: architecture name -> builder, and preset name -> config.

``create_model("lorat-b-224", pretrained="dinov2_vitb14_pretrain.pth", lora_r=16)`` builds the preset's
architecture with overrides applied; ``list_models()`` names every preset.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..config import PRESETS, ModelConfig, get_preset

Builder = Callable[[ModelConfig, "dict[str, torch.Tensor] | None"], nn.Module]
_ARCHS: dict[str, Builder] = {}


def register_arch(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder(cfg, pretrained_state_dict_or_None) -> nn.Module`` under ``name``."""
    def deco(fn: Builder) -> Builder:
        if name in _ARCHS:
            raise ValueError(f"architecture {name!r} is already registered")
        _ARCHS[name] = fn
        return fn
    return deco


def list_models(pattern: str = "") -> list[str]:
    """Names of all presets (optionally only those containing ``pattern``)."""
    return sorted(n for n in PRESETS if pattern in n)


def create_model(name: str | ModelConfig, pretrained: str | Path | dict | None = None, **overrides) -> nn.Module:
    """Build a model from a preset name (or a ``ModelConfig``) with field overrides.

    ``pretrained``: a DINOv2 backbone (path in the facebookresearch, timm or Hugging Face layout, or an
    already converted state dict). Without it the backbone is randomly initialised.
    """
    cfg = get_preset(name) if isinstance(name, str) else replace(name)
    cfg = replace(cfg, **overrides) if overrides else cfg
    if cfg.arch not in _ARCHS:
        raise KeyError(f"unknown architecture {cfg.arch!r}; registered: {sorted(_ARCHS)}")
    if isinstance(pretrained, (str, Path)):
        from ..hub import load_dinov2
        pretrained = load_dinov2(pretrained)
    return _ARCHS[cfg.arch](cfg, pretrained)


@register_arch("lorat")
def _build_lorat(cfg: ModelConfig, pretrained: dict | None) -> nn.Module:
    from .lorat import build_lorat
    return build_lorat(cfg, pretrained)
