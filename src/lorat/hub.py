"""Checkpoint formats: DINOv2 backbones (facebookresearch, timm, Hugging Face), official LoRAT files, ours.

Reading never unpickles: safetensors is read with ``safetensors``; a PyTorch file (``.pth``, zip) only with
``torch.load(weights_only=True)``. Files are recognised by content, not by name: official LoRAT releases
are safetensors named ``.bin``.

Our format is safetensors with a ``__metadata__`` header: ``format=lorat``, ``lorat_version``, ``config``
(the ModelConfig as JSON), ``contents`` (``full`` | ``trainable`` | ``merged``).

LoRA scaling and official files: the official saver drops ``lora_alpha``, and the official merge-on-load
then uses scale 1.0 whatever alpha/r was in training. We use ``alpha / r`` from the config (or the file's
``lora_alpha`` when present), which is what the trained model computed. ``official_lora_scaling=True``
reproduces the official evaluation instead (scale 1 when the file has no ``lora_alpha``).
"""
from __future__ import annotations

import json
import math
import pickle
import re
import struct
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from . import __version__
from .config import ModelConfig, from_dict, to_dict
from .files import atomic_path
from .models.peft import has_lora, lora_modules


class CheckpointError(ValueError):
    """A weights file that cannot be used, with the file name and what is wrong in the message."""


# --------------------------------------------------------------------------- reading files
def read_state_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a weights file into ``(tensors, metadata)``, choosing the reader from the file's content.

    Raises FileNotFoundError for a missing file and CheckpointError for a truncated, corrupt or
    non-weights (e.g. arbitrary pickle) file.
    """
    path = Path(path)
    header = _safetensors_header(path)
    if header is None:
        return _read_torch(path), {}
    try:
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: cannot read safetensors data ({e})") from None
    return tensors, dict(header.get("__metadata__") or {})


def read_state_metadata(path: str | Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors weights file, read without its tensors; ``{}`` for a PyTorch file.

    Same errors as :func:`read_state_file` for a missing, raw-pickle, truncated or corrupt-header file (a
    PyTorch file is not opened: it has no metadata).
    """
    header = _safetensors_header(Path(path))
    return {} if header is None else dict(header.get("__metadata__") or {})


def _safetensors_header(path: Path) -> dict | None:
    """The parsed safetensors header of ``path``, or None for a PyTorch zip file; CheckpointError otherwise."""
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] == b"PK\x03\x04":
        return None
    if head[:1] == b"\x80":
        raise CheckpointError(f"{path}: is a raw pickle file; lorat never unpickles files "
                              "(save it with safetensors or torch.save instead)")
    if len(head) < 8:
        raise CheckpointError(f"{path}: file is too short ({size} bytes) to be a weights file")
    (header_len,) = struct.unpack("<Q", head[:8])
    if header_len <= 0 or header_len > size - 8 or head[8:9] != b"{":
        raise CheckpointError(f"{path}: not a safetensors or PyTorch weights file (unrecognised header)")
    with open(path, "rb") as f:
        f.seek(8)
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: corrupt safetensors header ({e})") from None
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError, AttributeError):
        raise CheckpointError(f"{path}: corrupt safetensors header (a tensor entry without data_offsets)") from None
    if 8 + header_len + end > size:
        raise CheckpointError(f"{path}: truncated file: header promises {8 + header_len + end} bytes, "
                              f"file has {size}")
    return header


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as first:
        # Official training checkpoints (OSTrack's ``.pth.tar``: ``net`` next to a pickled ``settings``
        # object) hold foreign globals: read only the tensors with the restricted, non-executing reader.
        from .models.mae import WeightsFileError, read_torch_weights

        try:
            return read_torch_weights(path)
        except WeightsFileError as e:
            why = str(e).removeprefix(f"{path}: ")
            raise CheckpointError(f"{path}: cannot be read as a PyTorch weights file with weights_only=True "
                                  f"({type(first).__name__}); the restricted reader: {why}") from None
    except Exception as e:
        raise CheckpointError(f"{path}: cannot be read as a PyTorch weights file with weights_only=True "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    # Unwrap common containers: {"model": sd}, {"state_dict": sd}, {"teacher": sd}, {"net": sd}.
    while isinstance(obj, dict) and len(obj) >= 1 and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = [k for k in ("model", "state_dict", "module", "teacher", "net") if isinstance(obj.get(k), dict)]
        if not inner:
            break
        obj = obj[inner[0]]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: does not contain a flat dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path,
                            metadata: dict[str, str] | None = None) -> None:
    """Write safetensors to a temp file in the same folder, then rename: a crash never leaves half a file."""
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)


# --------------------------------------------------------------------------- DINOv2 layouts
_BLOCK_FB = r"blocks\.\d+\.(norm1|norm2)\.(weight|bias)|blocks\.\d+\.attn\.(qkv|proj)\.(weight|bias)|" \
            r"blocks\.\d+\.ls[12]\.gamma|blocks\.\d+\.mlp\.(fc1|fc2|w12|w3)\.(weight|bias)"
_LAYOUTS: dict[str, dict] = {
    "facebook": dict(
        patterns=[r"cls_token", r"pos_embed", r"mask_token", r"patch_embed\.proj\.(weight|bias)",
                  r"norm\.(weight|bias)", _BLOCK_FB],
        required=["pos_embed", "patch_embed.proj.weight", "mask_token", "blocks.0.attn.qkv.weight",
                  "blocks.0.ls1.gamma", "norm.weight"]),
    "timm": dict(
        patterns=[r"cls_token", r"pos_embed", r"patch_embed\.proj\.(weight|bias)", r"norm\.(weight|bias)",
                  _BLOCK_FB.replace("|w12|w3", ""), r"head\.(weight|bias)", r"fc_norm\.(weight|bias)"],
        required=["pos_embed", "cls_token", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight",
                  "blocks.0.ls1.gamma", "norm.weight"]),
    "huggingface": dict(
        patterns=[r"embeddings\.(cls_token|mask_token|position_embeddings)",
                  r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"layernorm\.(weight|bias)",
                  r"encoder\.layer\.\d+\.(norm1|norm2)\.(weight|bias)",
                  r"encoder\.layer\.\d+\.attention\.attention\.(query|key|value)\.(weight|bias)",
                  r"encoder\.layer\.\d+\.attention\.output\.dense\.(weight|bias)",
                  r"encoder\.layer\.\d+\.layer_scale[12]\.lambda1",
                  r"encoder\.layer\.\d+\.mlp\.(fc1|fc2|weights_in|weights_out)\.(weight|bias)"],
        required=["embeddings.position_embeddings", "embeddings.patch_embeddings.projection.weight",
                  "encoder.layer.0.attention.attention.query.weight", "encoder.layer.0.layer_scale1.lambda1",
                  "layernorm.weight"]),
}


def _strip_hf_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Dinov2ForImageClassification and friends nest the backbone under "dinov2.".
    if any(k.startswith("dinov2.") for k in sd):
        return {k.removeprefix("dinov2."): v for k, v in sd.items() if k.startswith("dinov2.")}
    return sd


def detect_dinov2_layout(sd: dict[str, torch.Tensor], source: str = "state dict") -> str:
    """Return ``facebook``, ``timm`` or ``huggingface``; raise CheckpointError with the closest layout,
    its missing keys and the unexpected keys when nothing matches."""
    sd = _strip_hf_prefix(sd)
    scored = []
    for name, spec in _LAYOUTS.items():
        regex = re.compile("|".join(f"(?:{p})" for p in spec["patterns"]) + "$")
        unexpected = sorted(k for k in sd if not regex.match(k))
        missing = [k for k in spec["required"] if k not in sd]
        scored.append((len(unexpected) + len(missing), name, missing, unexpected))
        if not missing and not unexpected:
            return name
    _, name, missing, unexpected = min(scored)
    raise CheckpointError(
        f"{source}: matches no known DINOv2 layout; closest is {name!r} with missing keys {missing} and "
        f"{len(unexpected)} unexpected keys {unexpected[:10]}")


def _is_packed_swiglu(sd: dict[str, torch.Tensor], fc1: str, fc2: str) -> bool:
    return sd[fc1].shape[0] == 2 * sd[fc2].shape[1]


def timm_to_facebook(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm ``vit_*_patch14_dinov2``: same names except SwiGLU ``fc1/fc2`` (= ``w12/w3``) and no mask token."""
    out = {k: v for k, v in sd.items() if not k.startswith(("head.", "fc_norm."))}
    for k in list(out):
        m = re.match(r"(blocks\.\d+\.mlp\.)fc1\.weight$", k)
        if m and _is_packed_swiglu(sd, k, f"{m[1]}fc2.weight"):
            for p in ("weight", "bias"):
                out[f"{m[1]}w12.{p}"] = out.pop(f"{m[1]}fc1.{p}")
                out[f"{m[1]}w3.{p}"] = out.pop(f"{m[1]}fc2.{p}")
    if "mask_token" not in out:  # timm drops it; LoRAT never uses it
        out["mask_token"] = torch.zeros(1, sd["pos_embed"].shape[-1], dtype=sd["pos_embed"].dtype)
    return out


def facebook_to_timm(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of ``timm_to_facebook`` (drops ``mask_token``)."""
    out = {}
    for k, v in sd.items():
        if k == "mask_token":
            continue
        out[k.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2.")] = v
    return out


_HF_RENAMES = [  # (facebook suffix inside a block, HF suffix inside a layer)
    ("norm1", "norm1"), ("norm2", "norm2"), ("attn.proj", "attention.output.dense"),
    ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2"), ("mlp.w12", "mlp.weights_in"), ("mlp.w3", "mlp.weights_out"),
]


def huggingface_to_facebook(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``transformers`` Dinov2Model: separate query/key/value are fused into qkv (rows q|k|v)."""
    sd = _strip_hf_prefix(sd)
    out = {
        "cls_token": sd["embeddings.cls_token"],
        "pos_embed": sd["embeddings.position_embeddings"],
        "patch_embed.proj.weight": sd["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": sd["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": sd["layernorm.weight"],
        "norm.bias": sd["layernorm.bias"],
    }
    if "embeddings.mask_token" in sd:
        out["mask_token"] = sd["embeddings.mask_token"].reshape(1, -1)
    else:
        out["mask_token"] = torch.zeros(1, out["pos_embed"].shape[-1], dtype=out["pos_embed"].dtype)
    depth = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.layer."))
    for i in range(depth):
        h, f = f"encoder.layer.{i}.", f"blocks.{i}."
        for p in ("weight", "bias"):
            out[f"{f}attn.qkv.{p}"] = torch.cat(
                [sd[f"{h}attention.attention.{n}.{p}"] for n in ("query", "key", "value")])
            for fb, hf in _HF_RENAMES:
                if f"{h}{hf}.{p}" in sd:
                    out[f"{f}{fb}.{p}"] = sd[f"{h}{hf}.{p}"]
        out[f"{f}ls1.gamma"] = sd[f"{h}layer_scale1.lambda1"]
        out[f"{f}ls2.gamma"] = sd[f"{h}layer_scale2.lambda1"]
    return out


def facebook_to_huggingface(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of ``huggingface_to_facebook``."""
    out = {
        "embeddings.cls_token": sd["cls_token"],
        "embeddings.mask_token": sd["mask_token"].reshape(1, -1),
        "embeddings.position_embeddings": sd["pos_embed"],
        "embeddings.patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"],
        "layernorm.weight": sd["norm.weight"],
        "layernorm.bias": sd["norm.bias"],
    }
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    for i in range(depth):
        h, f = f"encoder.layer.{i}.", f"blocks.{i}."
        for p in ("weight", "bias"):
            for n, part in zip(("query", "key", "value"), sd[f"{f}attn.qkv.{p}"].chunk(3)):
                out[f"{h}attention.attention.{n}.{p}"] = part
            for fb, hf in _HF_RENAMES:
                if f"{f}{fb}.{p}" in sd:
                    out[f"{h}{hf}.{p}"] = sd[f"{f}{fb}.{p}"]
        out[f"{h}layer_scale1.lambda1"] = sd[f"{f}ls1.gamma"]
        out[f"{h}layer_scale2.lambda1"] = sd[f"{f}ls2.gamma"]
    return out


def convert_dinov2(sd: dict[str, torch.Tensor], source: str = "state dict") -> dict[str, torch.Tensor]:
    """Any supported DINOv2 layout -> the facebookresearch layout, as float32."""
    layout = detect_dinov2_layout(sd, source)
    if layout == "timm":
        sd = timm_to_facebook(sd)
    elif layout == "huggingface":
        sd = huggingface_to_facebook(sd)
    # Released weights may be fp16 (and the test fixture is): the official model runs them in fp32.
    return {k: v.float() for k, v in sd.items()}


def load_dinov2(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a DINOv2 backbone file of any supported layout; returns the facebookresearch layout (fp32)."""
    tensors, _ = read_state_file(path)
    return convert_dinov2(tensors, source=str(path))


def export_dinov2(model: nn.Module, path: str | Path) -> None:
    """Write a LoRAT model's backbone as a DINOv2 file (facebookresearch layout, LoRA merged).

    The position grid is stored with a zero CLS row; loading it into a model of the same search size
    resizes the grid to its own size, which bicubic interpolation leaves unchanged. Used by the demo to
    turn a backbone trained on one domain into the "pretrained" starting point of LoRA adaptation.
    """
    import copy

    plain = copy.deepcopy(model)
    if has_lora(plain):
        plain.merge_lora()
    sd = {k: v for k, v in plain.state_dict().items() if k.startswith(("patch_embed.", "blocks.", "norm."))}
    pos = plain.pos_embed.detach()
    sd["pos_embed"] = torch.cat([torch.zeros_like(pos[:, :1]), pos], dim=1)
    sd["cls_token"] = torch.zeros(1, 1, pos.shape[-1])
    sd["mask_token"] = torch.zeros(1, pos.shape[-1])
    atomic_save_safetensors(sd, path, {"format": "dinov2", "exported_by": f"lorat {__version__}"})


# --------------------------------------------------------------------------- LoRAT checkpoints
def infer_arch(sd: dict[str, torch.Tensor]) -> dict[str, int]:
    """Architecture numbers a LoRAT state dict reveals: embed_dim, depth and (with LoRA) lora_r."""
    info: dict[str, int] = {}
    if "token_type_embed" in sd:
        info["embed_dim"] = int(sd["token_type_embed"].shape[1])
    blocks = {int(m[1]) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))}
    if blocks:
        info["depth"] = max(blocks) + 1
    a = next((v for k, v in sd.items() if k.endswith(".lora.A")), None)
    if a is not None:
        info["lora_r"] = int(a.shape[0])
    return info


def check_fits(cfg, found: dict[str, int], source: str, error: type[Exception] = CheckpointError) -> None:
    """Raise ``error`` when the numbers a checkpoint reveals (``found``: field -> value) differ from ``cfg``;
    the message names each field and the ``key=value`` overrides that would fit the file."""
    bad = {k: (v, getattr(cfg, k)) for k, v in found.items() if getattr(cfg, k) != v}
    if bad:
        detail = ", ".join(f"{k}: file {f} vs config {c}" for k, (f, c) in bad.items())
        fix = " ".join(f"{k}={f}" for k, (f, _) in bad.items())
        raise error(f"{source}: checkpoint does not fit config {cfg.name!r} ({detail}); override with {fix}")


def _check_arch(cfg: ModelConfig, sd: dict[str, torch.Tensor], source: str) -> None:
    check_fits(cfg, infer_arch(sd), source)


_RESOLUTION_IN_NAME = re.compile(r"(?<!\d)(224|378)(?!\d)")


def geometry_line(cfg: ModelConfig) -> str:
    """``geometry: template 112px, search 224px, grid 16`` for a config."""
    return f"geometry: template {cfg.template_size}px, search {cfg.search_size}px, grid {cfg.search_feat}"


def _check_geometry(cfg: ModelConfig, sd: dict[str, torch.Tensor], source: str, official: bool) -> None:
    """Refuse a file whose position grid contradicts ``cfg``; warn when only its name does; print the geometry.

    A full official file carries ``pos_embed`` (1, g*g, C): its grid ``g`` must equal the search grid. A
    trainable-only file has no tensor that depends on the geometry (LoRA, token types and the per-token head
    are the same at 224 and 378 px), so the released names (``LoRAT-B-224.bin``, ``...-378.bin``) are the
    only signal: a resolution in the name that differs from the preset's search size is warned about.
    """
    pos = sd.get("pos_embed")
    if pos is not None and pos.ndim == 3:
        g = math.isqrt(int(pos.shape[1]))
        if g * g == int(pos.shape[1]) and g != cfg.search_feat:
            raise CheckpointError(
                f"{source}: position grid is {g}x{g} (search {g * cfg.patch_size}px) but config {cfg.name!r} "
                f"has search {cfg.search_size}px (grid {cfg.search_feat}); pick the preset of the file's "
                f"resolution (e.g. a -{g * cfg.patch_size} preset)")
    if official:
        found = sorted({int(m) for m in _RESOLUTION_IN_NAME.findall(Path(source).name)})
        if found and cfg.search_size not in found:
            warnings.warn(f"{source}: the file name says {'/'.join(map(str, found))}px but preset {cfg.name!r} "
                          f"searches at {cfg.search_size}px; the file does not record its geometry, so it loads "
                          f"as {cfg.name!r} - pass the preset of the file's resolution if this is wrong",
                          stacklevel=3)
    print(f"[lorat] {Path(source).name} as {cfg.name!r}: {geometry_line(cfg)}")


def load_lorat_state(model: nn.Module, sd: dict[str, torch.Tensor], source: str = "state dict",
                     backbone_loaded: bool = False, official_lora_scaling: bool = False) -> None:
    """Load a LoRAT state dict into ``model`` with strict semantics.

    Accepts the official trainable-only file (37 keys for a depth-2 model: LoRA, token types, head), the
    official full training state dict (adds frozen tensors, ``lora_alpha``, ``use_rslora``), and merged
    state dicts (plain fused ``qkv``) when ``model`` is merged. Unexpected keys, wrong shapes and missing
    trainable keys are errors; missing frozen keys are allowed only when ``backbone_loaded`` (they come
    from the DINOv2 file). ``lora_alpha`` in the file overrides the config's alpha.
    """
    sd = dict(sd)
    alpha = sd.pop("lora_alpha", None)
    rslora = sd.pop("use_rslora", None)
    own = model.state_dict()
    unexpected = sorted(set(sd) - set(own))
    if unexpected:
        raise CheckpointError(f"{source}: {len(unexpected)} keys the model does not have, e.g. {unexpected[:8]}")
    wrong = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in sd.items() if v.shape != own[k].shape]
    if wrong:
        raise CheckpointError(f"{source}: shape mismatch (key, file, model): {wrong[:8]}")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    missing = set(own) - set(sd)
    missing_trainable = sorted(missing & trainable)
    if missing_trainable:
        raise CheckpointError(f"{source}: missing trainable keys {missing_trainable[:8]}")
    if missing and not backbone_loaded:
        raise CheckpointError(
            f"{source}: holds only {len(sd)} of {len(own)} tensors (trainable parameters only, as the official "
            f"saver writes them); the frozen backbone must come from the DINOv2 weights: pass pretrained=...")
    model.load_state_dict(sd, strict=False)
    loras = lora_modules(model)
    if alpha is not None:
        for lora in loras:
            if abs(lora.alpha - float(alpha)) > 1e-9:
                warnings.warn(f"{source}: lora_alpha={float(alpha)} from the file overrides config alpha={lora.alpha}",
                              stacklevel=2)
            lora.alpha = float(alpha)
    elif official_lora_scaling:
        for lora in loras:  # the official merge-on-load uses scale 1 when the file has no lora_alpha
            lora.alpha = float(lora.r) if not lora.rslora else float(lora.r) ** 0.5
    if rslora is not None:
        for lora in loras:
            lora.rslora = bool(rslora)


def save_checkpoint(model: nn.Module, path: str | Path, contents: str = "full",
                    extra_metadata: dict[str, str] | None = None) -> None:
    """Save ``model`` in lorat's format (safetensors + config header), atomically.

    ``contents``: ``full`` (every tensor: self-contained), ``trainable`` (what PEFT trains and the buffers,
    like the official saver: needs the backbone to load). A merged model is saved as ``merged``.
    """
    cfg: ModelConfig = model.cfg
    merged = cfg.peft == "lora" and not has_lora(model)
    if contents not in ("full", "trainable"):
        raise ValueError(f"contents={contents!r}; expected 'full' or 'trainable'")
    sd = model.state_dict()
    if contents == "trainable":
        keep = {n for n, p in model.named_parameters() if p.requires_grad}
        # plus the buffers (BatchNorm running statistics of OSTrack's head): training updates them too, so
        # a resumed run needs them; LoRAT models have none
        keep |= set(sd) - {n for n, _ in model.named_parameters()}
        sd = {k: v for k, v in sd.items() if k in keep}
    meta = {"format": "lorat", "lorat_version": __version__, "config": json.dumps(to_dict(cfg)),
            "contents": "merged" if merged else contents, **(extra_metadata or {})}
    atomic_save_safetensors(sd, path, meta)


def load_checkpoint(path: str | Path, name: str | ModelConfig | None = None,
                    pretrained: str | Path | dict | None = None, merge: bool = False, **options) -> nn.Module:
    """Load a model of any registered architecture from any supported checkpoint.

    * lorat files carry their config; ``pretrained`` is needed only for ``trainable`` contents.
    * official files (LoRAT, SPMTrack, OSTrack, ...) need the preset ``name`` (and overrides for reduced
      models) and, for trainable-only files, the backbone ``pretrained``.
    ``options`` are config field overrides, plus the architecture loader's own keyword options (for LoRAT
    ``official_lora_scaling``, see the module docstring). ``merge=True`` folds PEFT weights for inference.
    """
    from .models.registry import get_arch, resolve_config

    tensors, meta = read_state_file(path)
    source = str(path)
    if meta.get("format") == "lorat":
        try:
            saved = json.loads(meta["config"])
            arch = get_arch(saved.get("arch", "lorat"))
            cfg = from_dict(arch.config_cls, saved)
        except (KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"{source}: lorat header has an unreadable config ({e})") from None
        contents = meta.get("contents", "full")
    else:
        if name is None:
            raise CheckpointError(f"{source}: an official checkpoint has no config; pass the preset name "
                                  "(e.g. name='lorat-b-224') and the backbone weights (pretrained=...)")
        cfg = resolve_config(name)
        arch = get_arch(cfg)
        contents = "official"
    known = set(arch.config_cls.__dataclass_fields__)
    cfg = resolve_config(cfg, **{k: v for k, v in options.items() if k in known})
    loader_options = {k: v for k, v in options.items() if k not in known}
    return arch.from_checkpoint(cfg, tensors, contents, source, pretrained, merge=merge, **loader_options)


def lorat_from_checkpoint(cfg: ModelConfig, tensors: dict[str, torch.Tensor], contents: str, source: str,
                          pretrained: str | Path | dict | None, merge: bool = False,
                          official_lora_scaling: bool = False) -> nn.Module:
    """Build a LoRAT model for ``cfg`` and load checkpoint ``tensors`` into it (``Arch.from_checkpoint``).

    ``contents``: ``full`` / ``trainable`` / ``merged`` for lorat files, ``official`` for headerless ones
    (then the merged layout is recognised by its fused ``qkv`` weight next to ``token_type_embed``).
    """
    from .models.registry import create_model

    _check_geometry(cfg, tensors, source, official=contents == "official")
    if contents == "official":
        if "token_type_embed" not in tensors and "head.cls_mlp.layers.0.weight" not in tensors:
            detect_dinov2_layout(tensors, source)  # a backbone file: say so clearly
            raise CheckpointError(f"{source}: is a DINOv2 backbone, not a LoRAT checkpoint; pass it as "
                                  "pretrained=... (or --pretrained)")
        if "blocks.0.attn.qkv.weight" in tensors and "token_type_embed" in tensors:
            contents = "merged"
        _check_arch(cfg, tensors, source)
    model = create_model(cfg, pretrained=pretrained)
    if contents == "merged":
        model.merge_lora()
    load_lorat_state(model, tensors, source, backbone_loaded=pretrained is not None,
                     official_lora_scaling=official_lora_scaling)
    if merge:
        model.merge_lora()
    return model
