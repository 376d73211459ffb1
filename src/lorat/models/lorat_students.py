"""Low-resolution LoRAT student presets for LoReTrack-style distillation (patch 14).

A student sees a bilinear downsample of the teacher's crop, so it keeps the teacher's crop factors
(template 2, search 5: the LoRAT-378 geometry) at a smaller size; template = search / 2:

| preset | template px | search px | grids (template / search) |
|---|---|---|---|
| ``lorat-{s,b,l,g}-168`` | 84 | 168 | 6x6 / 12x12 |
| ``lorat-{s,b,l,g}-112`` | 56 | 112 | 4x4 / 8x8 |

``lorat-b-224`` with ``search_area_factor=5.0`` is the 224 student of a ``lorat-b-378`` teacher.
"""
from __future__ import annotations

from ..config import VIT_VARIANTS, ModelConfig

STUDENT_SIZES = (168, 112)


def student_presets() -> list[ModelConfig]:
    """The low-resolution LoRAT presets (one per ViT variant and size)."""
    return [ModelConfig(name=f"lorat-{v}-{s}", **VIT_VARIANTS[v], template_size=s // 2, search_size=s,
                        search_area_factor=5.0) for v in VIT_VARIANTS for s in STUDENT_SIZES]


def _register() -> None:
    from .registry import get_arch, register_preset

    get_arch("lorat")  # the architecture must be registered first
    for cfg in student_presets():
        register_preset(cfg)


_register()
