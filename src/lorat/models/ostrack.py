"""OSTrack (non-CE ViT one-stream tracker with a CENTER head) and its LoReTrack low-resolution presets.

Forward (official ``OSTrack`` with ``vit_base_patch16_224``, ``cat_mode='direct'``, no candidate elimination):

1. ``z = PatchEmbed(template) + pos_embed_z``, ``x = PatchEmbed(search) + pos_embed_x``; no CLS token;
2. ``t = [z; x]`` (B, N_z + N_x, C) through pre-norm blocks ``t += proj(attn(LN1 t))``, ``t += mlp(LN2 t)``
   (no LayerScale), then the final ``LayerNorm(eps=1e-6)``;
3. the last N_x tokens, arranged (B, C, H_x, W_x) row-major (``opt_feat``), go to the CENTER head.

``pos_embed_z`` / ``pos_embed_x`` are separate trainable tensors made once from the pretrained 14x14 grid by
bicubic interpolation (:func:`split_pos_embed`); ``cls_token`` and ``pos_embed`` stay in the state dict
unused, so keys equal OSTrack's (``backbone.*``, ``box_head.*``) and official checkpoints load strictly.

Presets: ``ostrack-b-256`` (128/256, search factor 4), ``ostrack-b-384`` (192/384, factor 5) and the
LoReTrack students ``loretrack-b-256/192/128/96`` (template = search/2, factors 2/5: the teacher's crop).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .center_head import CenterHead
from .mae import WeightsFileError, check_mae_layout, mae_depth, read_mae
from .vit import Mlp  # fc1 -> exact GELU -> fc2, the same block MLP as timm and OSTrack

StateDict = dict[str, torch.Tensor]


@dataclass
class OSTrackConfig:
    """Architecture and geometry of an OSTrack / LoReTrack model (square crops)."""

    name: str = "ostrack-b-256"
    arch: str = "ostrack"
    # ViT-B/16 (MAE)
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    pretrain_img_size: int = 224  # 224 / 16 = 14x14 pretrained position grid
    # stochastic depth (max rate of timm's linear schedule). Official training uses 0.1; 0 keeps the training
    # forward deterministic (set drop_path=0.1 to train as the paper does).
    drop_path: float = 0.0
    # geometry
    template_size: int = 128
    search_size: int = 256
    template_area_factor: float = 2.0
    search_area_factor: float = 4.0
    # CENTER head width (official 256)
    head_channels: int = 256
    # everything is trained (OSTrack fine-tunes the whole network); kept for the checkpoint writer
    peft: str = "full"

    @property
    def template_feat(self) -> int:
        return self.template_size // self.patch_size

    @property
    def search_feat(self) -> int:
        return self.search_size // self.patch_size

    @property
    def pretrain_grid(self) -> int:
        return self.pretrain_img_size // self.patch_size

    def validate(self) -> OSTrackConfig:
        """Raise ValueError naming the bad field."""
        for f in ("template_size", "search_size", "pretrain_img_size"):
            v = getattr(self, f)
            if v <= 0 or v % self.patch_size:
                raise ValueError(f"{self.name}: {f}={v} must be a positive multiple of patch_size={self.patch_size}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"{self.name}: embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")
        if self.depth < 1:
            raise ValueError(f"{self.name}: depth={self.depth} must be >= 1")
        if self.head_channels < 8 or self.head_channels % 8:
            raise ValueError(f"{self.name}: head_channels={self.head_channels} must be a positive multiple of 8")
        if not 0.0 <= self.drop_path < 1.0:
            raise ValueError(f"{self.name}: drop_path={self.drop_path} must lie in [0, 1)")
        if self.peft != "full":
            raise ValueError(f"{self.name}: peft={self.peft!r}; OSTrack supports only 'full'")
        return self


# --------------------------------------------------------------------------- backbone
class Attention(nn.Module):
    """timm ViT attention; ``forward(x, keep_qkv)`` can keep the fused ``qkv`` Linear output (B, N, 3C)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, keep_qkv: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, N, C = x.shape
        qkv_out = self.qkv(x)  # (B, N, 3C): columns q | k | v, head-major inside each
        qkv = qkv_out.reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, heads, N, d), q before the d^-0.5 scale
        attn = (q @ k.transpose(-2, -1)) * (C // self.num_heads) ** -0.5
        out = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(out), (qkv_out if keep_qkv else None)


class Block(nn.Module):
    """timm ViT pre-norm block without LayerScale; per-sample drop path on both residual branches."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = drop_path

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_path == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_path
        return x * x.new_empty((x.shape[0], 1, 1)).bernoulli_(keep) / keep

    def forward(self, x: torch.Tensor, keep_qkv: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, qkv = self.attn(self.norm1(x), keep_qkv)
        x = x + self._drop(a)
        return x + self._drop(self.mlp(self.norm2(x))), qkv


class PatchEmbed(nn.Module):
    """16x16 stride-16 conv; tokens flattened row-major: (B, H/16 * W/16, C)."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def split_pos_embed(pos_embed: torch.Tensor, grid: int, size: int) -> torch.Tensor:
    """OSTrack's ``finetune_track`` resize: (1, 1+G*G, C) pretrained table -> (1, size*size, C).

    Row 0 (CLS) is dropped; rows 1.. are the G x G grid row-major, arranged (1, C, G, G) and resized with
    ``F.interpolate(mode='bicubic', align_corners=False)`` to (size, size), then flattened row-major.
    """
    patch = pos_embed[:, 1:, :]
    if patch.shape[1] != grid * grid:
        raise ValueError(f"pos_embed has {patch.shape[1]} grid rows; expected {grid}x{grid} = {grid * grid}")
    patch = patch.transpose(1, 2)  # (1, C, G*G)
    patch = patch.reshape(1, patch.shape[1], grid, grid)
    out = F.interpolate(patch, size=(size, size), mode="bicubic", align_corners=False)
    return out.flatten(2).transpose(1, 2)


class OSTrackViT(nn.Module):
    """The ViT backbone of OSTrack (``backbone.*`` keys)."""

    def __init__(self, cfg: OSTrackConfig) -> None:
        super().__init__()
        C, g = cfg.embed_dim, cfg.pretrain_grid
        self.patch_size = cfg.patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + g * g, C))
        self.patch_embed = PatchEmbed(cfg.patch_size, C)
        rates = torch.linspace(0, cfg.drop_path, cfg.depth).tolist()  # timm's stochastic-depth schedule
        self.blocks = nn.ModuleList(Block(C, cfg.num_heads, cfg.mlp_ratio, r) for r in rates)
        self.norm = nn.LayerNorm(C, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=1e-6)
        self.pos_embed_z = nn.Parameter(torch.zeros(1, cfg.template_feat ** 2, C))
        self.pos_embed_x = nn.Parameter(torch.zeros(1, cfg.search_feat ** 2, C))
        self.reset_pos_embed(cfg)

    @torch.no_grad()
    def reset_pos_embed(self, cfg: OSTrackConfig) -> None:
        """Make ``pos_embed_z/x`` from ``pos_embed`` (after loading a pretrained backbone)."""
        g = cfg.pretrain_grid
        self.pos_embed_z.copy_(split_pos_embed(self.pos_embed, g, cfg.template_feat))
        self.pos_embed_x.copy_(split_pos_embed(self.pos_embed, g, cfg.search_feat))

    def forward(self, z: torch.Tensor, x: torch.Tensor, keep_qkv: bool = False,
                probes: dict | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B,3,Hz,Wz), (B,3,Hx,Wx) -> final-norm tokens (B, N_z+N_x, C) and the last block's qkv output.

        ``probes``: if a dict, filled with the intermediate token tensors (for debugging against fixtures).
        """
        z = self.patch_embed(z)
        x = self.patch_embed(x)
        if probes is not None:
            probes.update(patch_embed_z=z, patch_embed_x=x)
        t = torch.cat([z + self.pos_embed_z, x + self.pos_embed_x], dim=1)
        if probes is not None:
            probes["tokens_in"] = t
        qkv = None
        last = len(self.blocks) - 1
        for i, blk in enumerate(self.blocks):
            t, q = blk(t, keep_qkv and i == last)
            qkv = q if q is not None else qkv
            if probes is not None:
                probes[f"block{i}_out"] = t
        t = self.norm(t)
        if probes is not None:
            probes["norm_out"] = t
        return t, qkv


# --------------------------------------------------------------------------- model
class OSTrack(nn.Module):
    """OSTrack: ``model(template, search) -> dict`` (see :meth:`forward`). Build with ``lorat.create_model``."""

    def __init__(self, cfg: OSTrackConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.backbone = OSTrackViT(cfg)
        self.box_head = CenterHead(cfg.embed_dim, cfg.head_channels)

    def forward(self, template: torch.Tensor, search: torch.Tensor, return_qkv: bool = False,
                probes: dict | None = None) -> dict[str, torch.Tensor]:
        """Inputs: normalised crops (B,3,T,T) and (B,3,S,S).

        Returns ``score_map`` (B,1,H,W) probabilities, ``size_map`` (B,2,H,W) (w, h) / S, ``offset_map``
        (B,2,H,W) in cells, ``pred_boxes`` (B,1,4) normalised (cx, cy, w, h), ``opt_feat`` (B,C,H,W) (the
        head input), and with ``return_qkv`` the last block's fused qkv output ``qkv`` (B, N_z+N_x, 3C)
        (q | k | v columns, with bias, before the attention scale) for distillation.
        """
        tokens, qkv = self.backbone(template, search, keep_qkv=return_qkv, probes=probes)
        B, _, C = tokens.shape
        H, W = search.shape[-2] // self.cfg.patch_size, search.shape[-1] // self.cfg.patch_size
        opt_feat = tokens[:, -H * W:].transpose(1, 2).reshape(B, C, H, W)
        score_map, size_map, offset_map, boxes = self.box_head(opt_feat)
        out = {"score_map": score_map, "size_map": size_map, "offset_map": offset_map,
               "pred_boxes": boxes.view(B, 1, 4), "opt_feat": opt_feat}
        if return_qkv:
            out["qkv"] = qkv
        return out

    @torch.no_grad()
    def load_backbone(self, sd: StateDict, source: str = "pretrained backbone") -> None:
        """Load MAE / timm ViT weights into ``backbone`` (every backbone tensor must be in the file) and
        re-derive ``pos_embed_z/x`` from its ``pos_embed``. Raises WeightsFileError on depth/width mismatch."""
        sd = check_mae_layout(sd, source)
        depth = mae_depth(sd)
        if depth != self.cfg.depth:
            raise WeightsFileError(f"{source}: backbone has {depth} blocks but {self.cfg.name!r} has "
                                   f"depth={self.cfg.depth}; pick the matching preset or override depth={depth}")
        own = {k: v for k, v in self.backbone.state_dict().items() if not k.startswith("pos_embed_")}
        missing = sorted(set(own) - set(sd))
        if missing:
            raise WeightsFileError(f"{source}: missing backbone keys {missing[:8]}")
        wrong = [(k, tuple(sd[k].shape), tuple(v.shape)) for k, v in own.items() if sd[k].shape != v.shape]
        if wrong:
            raise WeightsFileError(f"{source}: shape mismatch (key, file, model) {wrong[:6]}; check embed_dim="
                                   f"{self.cfg.embed_dim} / pretrain_img_size={self.cfg.pretrain_img_size}")
        for k, v in own.items():
            v.copy_(sd[k].to(v.dtype))
        self.backbone.reset_pos_embed(self.cfg)


def build_ostrack(cfg: OSTrackConfig, pretrained: StateDict | None = None) -> OSTrack:
    """Build OSTrack; with ``pretrained`` (a MAE/timm ViT state dict) the backbone is loaded from it."""
    model = OSTrack(cfg)
    if pretrained is not None:
        model.load_backbone(pretrained)
    return model


# --------------------------------------------------------------------------- checkpoints
def infer_ostrack_arch(sd: StateDict) -> dict[str, int]:
    """Config numbers an OSTrack state dict reveals (embed_dim, depth, head_channels, template/search size)."""
    info: dict[str, int] = {}
    w = sd.get("backbone.patch_embed.proj.weight")
    if w is not None:
        info["embed_dim"] = int(w.shape[0])
        p = int(w.shape[-1])
        for key, field in (("backbone.pos_embed_z", "template_size"), ("backbone.pos_embed_x", "search_size")):
            if key in sd:
                g = int(round(sd[key].shape[1] ** 0.5))
                info[field] = g * p
    blocks = {int(k.split(".")[2]) for k in sd if k.startswith("backbone.blocks.")}
    if blocks:
        info["depth"] = max(blocks) + 1
    h = sd.get("box_head.conv1_ctr.0.weight")
    if h is not None:
        info["head_channels"] = int(h.shape[0])
    return info


def claims_ostrack(sd: StateDict) -> bool:
    """Whether a headerless state dict is an OSTrack checkpoint (``backbone.*`` and a CENTER ``box_head.*``)."""
    return any(k.startswith("backbone.") for k in sd) and "box_head.conv5_ctr.weight" in sd


def ostrack_from_checkpoint(cfg: OSTrackConfig, tensors: StateDict, contents: str, source: str,
                            pretrained: str | Path | StateDict | None = None, merge: bool = False) -> OSTrack:
    """Build OSTrack for ``cfg`` and load an OSTrack state dict with strict semantics (``Arch.from_checkpoint``).

    ``tensors`` are the ``net`` state dict of an official checkpoint (or a lorat ``full`` file). Every key
    must match in name and shape; a LoRAT file, a MAE backbone or a checkpoint of another size is refused
    with the fix in the message. ``pretrained`` is not needed (the checkpoint is complete); ``merge`` is a
    no-op (nothing to fold).
    """
    from ..hub import check_fits
    from .registry import create_model

    if contents not in ("official", "full"):
        raise WeightsFileError(f"{source}: OSTrack checkpoints must be complete; got contents={contents!r}")
    if "token_type_embed" in tensors or any(k.startswith("head.") for k in tensors):
        raise WeightsFileError(f"{source}: is a LoRAT/SPMTrack checkpoint (token_type_embed / head.*), not OSTrack; "
                               "load it with a lorat-* preset name")
    if not claims_ostrack(tensors):
        if "pos_embed" in tensors and "patch_embed.proj.weight" in tensors:
            raise WeightsFileError(f"{source}: is a ViT backbone (MAE/timm layout), not an OSTrack checkpoint; "
                                   "pass it as pretrained=... to lorat.create_model")
        raise WeightsFileError(f"{source}: not an OSTrack checkpoint (no backbone.* / box_head.conv5_ctr.* keys); "
                               f"found e.g. {sorted(tensors)[:6]}")
    check_fits(cfg, infer_ostrack_arch(tensors), source, error=WeightsFileError)
    model = create_model(cfg, pretrained=pretrained)
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise WeightsFileError(f"{source}: keys differ from {cfg.name!r}: missing {missing[:8]}, "
                               f"unexpected {unexpected[:8]}")
    wrong = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in tensors.items() if v.shape != own[k].shape]
    if wrong:
        raise WeightsFileError(f"{source}: shape mismatch (key, file, model): {wrong[:6]}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()}, strict=True)
    return model


def load_ostrack_checkpoint(path: str | Path, name: str | OSTrackConfig = "ostrack-b-256", **overrides) -> OSTrack:
    """Read an OSTrack / LoReTrack checkpoint of any form (``.pth.tar`` with a ``net`` entry, a bare state
    dict, safetensors) safely and load it strictly; ``overrides`` are config fields."""
    from .mae import read_weights
    from .registry import resolve_config

    return ostrack_from_checkpoint(resolve_config(name, **overrides), read_weights(path), "official", str(path))


# --------------------------------------------------------------------------- registry
def _presets() -> list[OSTrackConfig]:
    out = [OSTrackConfig(name="ostrack-b-256", template_size=128, search_size=256, search_area_factor=4.0),
           OSTrackConfig(name="ostrack-b-384", template_size=192, search_size=384, search_area_factor=5.0)]
    for s in (256, 192, 128, 96):  # LoReTrack students: the teacher's factors 2 / 5, template = search / 2
        out.append(OSTrackConfig(name=f"loretrack-b-{s}", template_size=s // 2, search_size=s,
                                 search_area_factor=5.0))
    return out


def _register() -> None:
    from .registry import Arch, register_arch, register_preset

    register_arch(Arch(name="ostrack", config_cls=OSTrackConfig, build=build_ostrack, read_pretrained=read_mae,
                       from_checkpoint=ostrack_from_checkpoint, claims=claims_ostrack,
                       tracker="lorat.track.ostrack:OSTrackTracker", task="lorat.train.ostrack_task:OSTrackTask"))
    for cfg in _presets():
        register_preset(cfg)


_register()

__all__ = ["OSTrackConfig", "OSTrack", "OSTrackViT", "build_ostrack", "split_pos_embed", "ostrack_from_checkpoint",
           "load_ostrack_checkpoint", "infer_ostrack_arch", "claims_ostrack"]
