"""Typed configs and named presets.

Every architecture and geometry number is a field, so reduced models (like the test fixtures') are just
presets with overrides::

    cfg = get_preset("lorat-b-224")                     # a ModelConfig
    cfg = replace(cfg, depth=2, lora_r=8)               # or create_model("lorat-b-224", depth=2, lora_r=8)
    cfg = apply_overrides(cfg, ["lora_r=8", "depth=2"]) # the CLI's --set key=value

Sizes are square (template 112/196 px, search 224/378 px); the official configs only ship square grids.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, fields, replace
from typing import Any

# ViT variants of DINOv2 (no registers). drop_path: official per-variant training value (uniform).
VIT_VARIANTS: dict[str, dict[str, Any]] = {
    "s": dict(embed_dim=384, depth=12, num_heads=6, ffn="mlp", drop_path=0.0),
    "b": dict(embed_dim=768, depth=12, num_heads=12, ffn="mlp", drop_path=0.0),
    "l": dict(embed_dim=1024, depth=24, num_heads=16, ffn="mlp", drop_path=0.1),
    "g": dict(embed_dim=1536, depth=40, num_heads=24, ffn="swiglu", drop_path=0.4),
}
# Input geometry per resolution: template px, search px, search area factor.
GEOMETRIES: dict[int, dict[str, Any]] = {
    224: dict(template_size=112, search_size=224, search_area_factor=4.0),
    378: dict(template_size=196, search_size=378, search_area_factor=5.0),
}


@dataclass
class ModelConfig:
    """Architecture, geometry and PEFT settings of a LoRAT model."""

    name: str = "lorat-b-224"
    arch: str = "lorat"
    # ViT
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    ffn: str = "mlp"  # "mlp" (S/B/L) or "swiglu" (g)
    patch_size: int = 14
    pretrain_img_size: int = 518  # DINOv2: 518 / 14 = 37x37 position grid
    drop_path: float = 0.0
    # geometry
    template_size: int = 112
    search_size: int = 224
    template_area_factor: float = 2.0
    search_area_factor: float = 4.0
    # head
    head_layers: int = 3
    # parameter-efficient fine-tuning: "lora" or "full" (everything trainable)
    peft: str = "lora"
    lora_r: int = 64
    lora_alpha: float = 64.0
    lora_dropout: float = 0.0
    lora_rslora: bool = False
    lora_init: str = "trunc_normal"  # trunc_normal (official) | kaiming | gaussian | zero_b
    lora_targets: tuple[str, ...] = ("q", "k", "v", "proj", "fc1", "fc2", "w12", "w3")

    @property
    def template_feat(self) -> int:
        """Template token grid side (112 px / 14 = 8)."""
        return self.template_size // self.patch_size

    @property
    def search_feat(self) -> int:
        """Search token grid side (224 px / 14 = 16): also the response-map side."""
        return self.search_size // self.patch_size

    def validate(self) -> ModelConfig:
        """Raise ValueError naming the field when the config is inconsistent."""
        for f in ("template_size", "search_size"):
            v = getattr(self, f)
            if v <= 0 or v % self.patch_size:
                raise ValueError(f"{f}={v} must be a positive multiple of patch_size={self.patch_size}")
        if self.template_feat > self.search_feat:
            raise ValueError("template grid larger than the search grid: the template reuses the search "
                             f"position grid's top-left block ({self.template_feat} > {self.search_feat})")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")
        if self.peft not in ("lora", "full"):
            raise ValueError(f"peft={self.peft!r}; expected 'lora' or 'full'")
        if self.ffn not in ("mlp", "swiglu"):
            raise ValueError(f"ffn={self.ffn!r}; expected 'mlp' or 'swiglu'")
        return self


@dataclass
class TrainConfig:
    """The training recipe (official LoRAT defaults, full protocol). Every field is a CLI ``--set``.

    ``batch_size`` is the global batch (split over ranks and ``grad_accum`` micro-steps);
    ``samples_per_epoch / batch_size`` optimizer steps make an epoch.
    """

    model: str = "lorat-b-224"
    pretrained: str | None = None  # DINOv2 backbone file (any supported layout)
    init_checkpoint: str | None = None  # start from these weights (e.g. a lorat checkpoint) instead
    datasets: tuple[str, ...] = ("got10k_vottrain", "lasot_train", "trackingnet_train", "coco2017_train")
    dataset_weights: tuple[float, ...] = ()  # empty: equal weight per dataset (25 % each in the full protocol)
    dataset_roots: tuple[str, ...] = ()  # name=path pairs overriding the configured roots
    val_dataset: str | None = "got10k_val"
    val_samples: int = 4096
    val_every: int = 1  # epochs
    epochs: int = 170
    samples_per_epoch: int = 131072
    batch_size: int = 128
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.1
    betas: tuple[float, ...] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_epochs: float = 2.0
    warmup_lr: float = 1e-7
    min_lr: float = 1e-6
    layer_decay: float | None = None  # full fine-tuning: 0.7 (S/B), 0.8 (L), 0.9 (g)
    clip_grad: float = 1.0
    # autocast precision: auto (float16 on CUDA, bfloat16 on CPUs where bf16 is measured faster, else float32) |
    # float32 |
    # bfloat16 | float16 (aliases fp32/none, bf16, fp16); float16 also enables the GradScaler
    amp: str = "auto"
    # attention in training: auto | sdpa (torch's fused kernels) | manual (lorat.models.vit.matmul_attention: q k^T,
    # softmax, times v as autocast ops, differentiated by autograd). auto = manual on CPU under bf16/fp16 autocast
    # at <= 512 tokens, where the fused CPU kernel's backward is slow (lorat.runtime.choose_training_attention)
    attention: str = "auto"
    compile: bool = False
    max_pair_gap: int = 100
    # share of negative pairs (search crop around another track's object, all cells background; LoRAT's
    # recipe has none): 0 = official sampling
    negative_pair_prob: float = 0.0
    num_workers: int = 4
    seed: int = 42
    device: str = "auto"
    output_dir: str = "runs/lorat"
    checkpoint_every: int = 10  # epochs
    checkpoint_every_steps: int = 0  # also every N steps (0: off)
    keep_checkpoints: int = 5
    log_every: int = 10  # steps
    max_steps: int | None = None  # stop early after this many optimizer steps (smoke runs, tests)
    # tracker evaluation after the last epoch; empty (`--set eval_benchmarks=`) for none. Names and roots are
    # checked before training starts.
    eval_benchmarks: tuple[str, ...] = ()
    teacher: str | None = None  # frozen teacher checkpoint for distillation tasks (unused by LoRAT)
    # training-transform overrides as field=value (lorat.data.transforms.TransformConfig), e.g. deit3=false
    # brightness=0.2; empty = the method's official augmentation
    augment: tuple[str, ...] = ()

    def augment_overrides(self) -> dict[str, Any]:
        """``augment`` parsed into typed ``TransformConfig`` overrides (a bad name or value is named).

        Only augmentation and sampling fields may be set; the geometry (sizes, stride, area factors) and the
        normalisation come from the model config.
        """
        from .data.transforms import TransformConfig

        geometry = {"template_size", "search_size", "stride", "template_area_factor", "search_area_factor",
                    "mean", "std"}
        allowed = {f.name: f.default for f in fields(TransformConfig) if f.name not in geometry}
        out: dict[str, Any] = {}
        for item in self.augment:
            name, sep, text = str(item).partition("=")
            name, text = name.strip(), text.strip().lower()
            if not sep or name not in allowed:
                raise ValueError(f"TrainConfig.augment entry {item!r}: expected field=value with a field of "
                                 f"{', '.join(sorted(allowed))}")
            default = allowed[name]
            try:
                if isinstance(default, bool):
                    if text not in ("true", "false", "1", "0"):
                        raise ValueError(text)
                    out[name] = text in ("true", "1")
                else:
                    out[name] = type(default)(text)
            except ValueError:
                raise ValueError(f"TrainConfig.augment entry {item!r}: bad value {text!r} for the "
                                 f"{type(default).__name__} field {name}") from None
        return out

    def roots(self) -> dict[str, str]:
        """``dataset_roots`` as ``{name: path}`` (a clear error names a malformed entry)."""
        out = {}
        for item in self.dataset_roots:
            name, sep, path = item.partition("=")
            if not sep or not name.strip() or not path.strip():
                raise ValueError(f"TrainConfig.dataset_roots entry {item!r} is not of the form name=path")
            out[name.strip()] = path.strip()
        return out

    def validate(self) -> TrainConfig:
        """Raise ValueError naming the field when the recipe is inconsistent (checked before any work)."""
        from .device import canonical_precision

        try:
            canonical_precision(self.amp)
        except ValueError as e:
            raise ValueError(f"TrainConfig.amp: {e}") from None
        if self.attention not in ("auto", "sdpa", "manual"):
            raise ValueError(f"TrainConfig.attention={self.attention!r}; expected auto, sdpa or manual")
        for f in ("epochs", "samples_per_epoch", "batch_size", "grad_accum", "log_every", "val_every"):
            if getattr(self, f) < 1:
                raise ValueError(f"TrainConfig.{f}={getattr(self, f)} must be >= 1")
        if self.samples_per_epoch < self.batch_size:
            raise ValueError(f"samples_per_epoch={self.samples_per_epoch} is smaller than "
                             f"batch_size={self.batch_size}")
        if self.dataset_weights and len(self.dataset_weights) != len(self.datasets):
            raise ValueError(f"TrainConfig.dataset_weights has {len(self.dataset_weights)} values for "
                             f"{len(self.datasets)} datasets")
        if any(not name or name.strip("[]() ") != name for name in self.eval_benchmarks):
            raise ValueError(f"TrainConfig.eval_benchmarks={list(self.eval_benchmarks)} has a malformed name; "
                             "use e.g. eval_benchmarks=lasot,got10k_val, or eval_benchmarks= for none")
        if not 0.0 <= self.negative_pair_prob < 1.0:
            raise ValueError(f"TrainConfig.negative_pair_prob={self.negative_pair_prob} must be in [0, 1)")
        self.roots()
        self.augment_overrides()
        return self


def _lorat_preset(variant: str, res: int) -> ModelConfig:
    return ModelConfig(name=f"lorat-{variant}-{res}", **VIT_VARIANTS[variant], **GEOMETRIES[res])


# The LoRAT presets; models/lorat.py registers them (models.registry.get_preset reads every architecture's).
PRESETS: dict[str, ModelConfig] = {
    f"lorat-{v}-{r}": _lorat_preset(v, r) for v in VIT_VARIANTS for r in GEOMETRIES
}


def _coerce(value: str, typ: Any) -> Any:
    """Parse a CLI string into the field's annotated type."""
    origin = typing.get_origin(typ)
    if typ is bool:
        low = value.lower()
        if low not in ("1", "0", "true", "false", "yes", "no"):
            raise ValueError(f"expected a boolean, got {value!r}")
        return low in ("1", "true", "yes")
    if origin is tuple:  # "a,b" or "[a, b]"; "", "[]", "()" and "none" are the empty tuple
        elem = (typing.get_args(typ) or (str,))[0]
        value = value.strip()
        if value[:1] + value[-1:] in ("[]", "()"):
            value = value[1:-1]
        if value.lower() in ("none", "null"):
            return ()
        return tuple(_coerce(v.strip().strip("'\""), elem) for v in value.split(",") if v.strip())
    if typ in (int, float, str):
        return typ(value)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value.lower() in ("none", "null", ""):
            return None
        return _coerce(value, args[0])
    return value


def apply_overrides(cfg: Any, items: list[str] | dict[str, Any]) -> Any:
    """Return a copy of dataclass ``cfg`` with ``key=value`` overrides applied (typed, validated names)."""
    if isinstance(items, dict):
        pairs = list(items.items())
    else:
        pairs = []
        for item in items:
            if "=" not in item:
                raise ValueError(f"override {item!r} is not of the form key=value")
            k, v = item.split("=", 1)
            pairs.append((k.strip(), v.strip()))
    hints = typing.get_type_hints(type(cfg))
    names = {f.name for f in fields(cfg)}
    changes = {}
    for k, v in pairs:
        if k not in names:
            raise KeyError(f"{type(cfg).__name__} has no field {k!r}; fields: {', '.join(sorted(names))}")
        try:
            changes[k] = _coerce(v, hints[k]) if isinstance(v, str) else v
        except ValueError as e:
            raise ValueError(f"bad value for {type(cfg).__name__}.{k}: {v!r} ({e})") from None
    return replace(cfg, **changes)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-JSON dict of a dataclass config (tuples become lists)."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Inverse of ``to_dict``; unknown keys are an error (they usually mean a version mismatch)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise KeyError(f"unknown {cls.__name__} keys {sorted(unknown)}")
    kwargs = {k: (tuple(v) if typing.get_origin(hints[k]) is tuple else v) for k, v in data.items()}
    return cls(**kwargs)


__all__ = ["ModelConfig", "TrainConfig", "PRESETS", "VIT_VARIANTS", "GEOMETRIES", "apply_overrides",
           "to_dict", "from_dict"]
