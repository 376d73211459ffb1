"""Optimizer parameter groups and the learning-rate schedule of the official LoRAT recipe.

Parameter groups (official ``per_parameter_options``): no weight decay for parameters whose
``squeeze().ndim <= 1`` (biases, LayerScale, and ``head.cls_mlp.layers.2.weight`` whose (1, C) shape
squeezes to 1-D), for parameters of norm layers, and for names containing ``embed``
(``token_type_embed``, ``pos_embed``, ``patch_embed.*``). Everything else decays.

Layer-wise lr decay (full fine-tuning baseline): block i of L gets ``lr * rho**(L - i)``,
``patch_embed`` gets ``lr * rho**(L + 1)``, everything else the base lr.

Schedule (timm ``CosineLRScheduler`` with ``warmup_prefix=True``, stepped per iteration): linear warm-up
from ``warmup_lr`` over ``warmup_steps``, then a cosine from ``lr`` to ``min_lr`` over the *full*
``total_steps`` counted after the warm-up (so it never quite reaches ``min_lr``).

With layer decay each group's schedule runs to and from its *own* peak ``lr * lr_scale``, while the warm-up
start ``warmup_lr`` and the floor ``min_lr`` are the same absolute values for every group: timm's scheduler
keeps one ``base_value`` per group (the group's initial lr) but a single ``warmup_lr_init`` and ``lr_min``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from torch import nn


def _is_norm_param(model: nn.Module, name: str) -> bool:
    owner = name.rsplit(".", 1)[0] if "." in name else ""
    try:
        module = model.get_submodule(owner) if owner else model
    except AttributeError:
        return False
    return isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d))


def no_weight_decay(model: nn.Module, name: str, param: nn.Parameter) -> bool:
    """True when the official rules exempt ``name`` from weight decay."""
    return param.squeeze().ndim <= 1 or _is_norm_param(model, name) or "embed" in name


def layer_id(name: str, depth: int) -> int | None:
    """Depth index for layer-wise lr decay: patch_embed -> 0, blocks.i -> i + 1, others -> None (base lr)."""
    if name.startswith("patch_embed."):
        return 0
    m = re.match(r"blocks\.(\d+)\.", name)
    return int(m[1]) + 1 if m else None


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float | None = None) -> list[dict]:
    """AdamW parameter groups for the trainable parameters of ``model``.

    Each group carries ``lr_scale`` (1.0 unless layer decay applies); the trainer sets
    ``group["lr"] = lr * group["lr_scale"]`` every step.
    """
    depth = len(getattr(model, "blocks", []))
    groups: dict[tuple[float, float], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        wd = 0.0 if no_weight_decay(model, name, p) else weight_decay
        scale = 1.0
        if layer_decay is not None:
            lid = layer_id(name, depth)
            if lid is not None:
                # block i (0-based) -> rho**(L - i); patch_embed -> rho**(L + 1)
                scale = layer_decay ** (depth + 1 - lid)
        key = (wd, scale)
        if key not in groups:
            groups[key] = {"params": [], "names": [], "weight_decay": wd, "lr_scale": scale}
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return list(groups.values())


def lr_at(step: int, lr: float, total_steps: int, warmup_steps: int, warmup_lr: float = 1e-7,
          min_lr: float = 1e-6) -> float:
    """Learning rate after ``step`` optimizer updates (warm-up prefix, then cosine over ``total_steps``)."""
    if step < warmup_steps:
        return warmup_lr + step * (lr - warmup_lr) / warmup_steps
    t = step - warmup_steps
    if t >= total_steps:
        return min_lr
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t / total_steps))


@dataclass(frozen=True)
class Schedule:
    """The per-iteration schedule of a run; :meth:`apply` sets every parameter group's lr."""

    lr: float
    total_steps: int
    warmup_steps: int
    warmup_lr: float = 1e-7
    min_lr: float = 1e-6

    def at(self, step: int, scale: float = 1.0) -> float:
        """lr after ``step`` updates of a group whose peak is ``lr * scale`` (warm-up start and floor absolute)."""
        return lr_at(step, self.lr * scale, self.total_steps, self.warmup_steps, self.warmup_lr, self.min_lr)

    def apply(self, optimizer, step: int) -> float:
        """Set ``group["lr"]`` of every group (from its ``lr_scale``) for ``step``; returns the base lr."""
        for g in optimizer.param_groups:
            g["lr"] = self.at(step, g.get("lr_scale", 1.0))
        return self.at(step)
