"""LoRAT: a one-stream DINOv2 ViT tracker with decoupled input embeddings and an MLP head.

Token construction (official ``LoRAT_DINOv2``):
  template = PatchEmbed(z) + pos[top-left Hz x Wz block of the search grid] + type[z_feat_mask]
  search   = PatchEmbed(x) + pos[whole grid]                                  + type[2]
with one shared position grid (the pretrained 37x37 DINOv2 grid bicubic-resized to the search grid)
and three token-type embeddings (0 template background, 1 template foreground, 2 search).
``[template; search]`` runs through all blocks and the final norm; the search tokens go to the head.

State-dict keys equal the official ones (``patch_embed.*``, ``blocks.N.*``, ``norm.*``, ``pos_embed``,
``token_type_embed``, ``head.*``; with LoRA ``blocks.N.attn.qkv.q.lora.A`` ...), so official checkpoints
load with strict semantics.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import PRESETS, ModelConfig
from .head import MlpAnchorFreeHead
from .peft import attach_lora, has_lora, merge_lora
from .vit import Block, PatchEmbed, interpolate_pos_grid


class LoRAT(nn.Module):
    """The LoRAT model. Build it with ``lorat.create_model`` (which also loads weights and adds LoRA)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        C, hx = cfg.embed_dim, cfg.search_feat
        self.patch_embed = PatchEmbed(cfg.patch_size, 3, C)
        self.blocks = nn.ModuleList(
            Block(C, cfg.num_heads, cfg.mlp_ratio, cfg.ffn, drop_path=cfg.drop_path) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(C, eps=1e-6)
        # Shared position grid for the search region; filled from DINOv2 by ``load_backbone``.
        self.pos_embed = nn.Parameter(torch.zeros(1, hx * hx, C))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.token_type_embed = nn.Parameter(torch.empty(3, C))
        nn.init.trunc_normal_(self.token_type_embed, std=0.02)
        self.head = MlpAnchorFreeHead(C, (hx, hx), cfg.head_layers)

    # ------------------------------------------------------------------ weights
    @torch.no_grad()
    def load_backbone(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Copy DINOv2 weights (facebookresearch layout, see ``hub.convert_dinov2``) into the backbone.

        ``pos_embed`` is resized from the pretrained grid (``interpolate_pos_grid``); ``cls_token`` and
        ``mask_token`` are not used. Works before or after LoRA is attached (fused qkv rows are split
        into q/k/v). Raises KeyError/ValueError naming any missing key or mismatched shape.
        """
        depth = 1 + max((int(k.split(".")[1]) for k in state_dict if k.startswith("blocks.")), default=-1)
        if depth != self.cfg.depth:
            raise ValueError(f"pretrained backbone has {depth} blocks but the model has depth={self.cfg.depth}; "
                             f"pick the matching preset or override depth={depth}")
        own = dict(self.named_parameters())
        used = {"cls_token", "mask_token"}
        hx = self.cfg.search_feat
        pos = interpolate_pos_grid(state_dict["pos_embed"].float(), (hx, hx), has_cls=True)
        _copy_checked(own["pos_embed"], pos, "pos_embed")
        used.add("pos_embed")
        for name, p in own.items():
            if not (name.startswith(("patch_embed.", "blocks.", "norm.")) and ".lora." not in name):
                continue
            src_name, rows = _plain_name(name, p.shape[0])
            if src_name not in state_dict:
                raise KeyError(f"pretrained backbone has no {src_name!r} (needed for {name})")
            src = state_dict[src_name]
            _copy_checked(p, src[rows] if rows is not None else src, src_name)
            used.add(src_name)
        unused = sorted(set(state_dict) - used)
        if unused:
            raise KeyError(f"pretrained backbone has {len(unused)} keys this model does not use, e.g. {unused[:5]}; "
                           f"is depth={self.cfg.depth} / ffn={self.cfg.ffn!r} right for this file?")

    def configure_peft(self) -> None:
        """Attach LoRA and freeze the backbone (``peft='lora'``), or make everything trainable (``'full'``).

        LoRA mode trains LoRA, ``token_type_embed`` and the head; the patch embedding, blocks, final norm
        and ``pos_embed`` are frozen (official ``freeze_vit_backbone_`` + ``enable_lora_``).
        """
        cfg = self.cfg
        if cfg.peft == "full":
            self.requires_grad_(True)
            return
        for m in (self.patch_embed, self.blocks, self.norm):
            m.requires_grad_(False)
        self.pos_embed.requires_grad_(False)
        if not has_lora(self):
            attach_lora(self.blocks, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_rslora,
                        cfg.lora_init, cfg.lora_targets)

    def merge_lora(self) -> LoRAT:
        """Fold LoRA into the frozen weights (float32) for inference; returns self."""
        merge_lora(self.blocks)
        return self

    # ------------------------------------------------------------------ forward
    def template_pos(self) -> torch.Tensor:
        """Top-left (Hz, Wz) block of the search position grid, flattened: (1, Hz*Wz, C)."""
        hx, hz = self.cfg.search_feat, self.cfg.template_feat
        grid = self.pos_embed.view(1, hx, hx, -1)[:, :hz, :hz]
        return grid.reshape(1, hz * hz, -1)

    def embed(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor) -> torch.Tensor:
        """Input tokens ``[template; search]``: (B, Nz+Nx, C).

        z: (B,3,Hz*14,Wz*14) normalised template crop; x: (B,3,Hx*14,Wx*14) search crop;
        z_feat_mask: (B,Hz,Wz) int64, 1 where the template cell overlaps the target box.
        """
        z_tok = self.patch_embed(z) + self.template_pos() + self.token_type_embed[z_feat_mask.flatten(1).long()]
        x_tok = self.patch_embed(x) + self.pos_embed + self.token_type_embed[2]
        return torch.cat([z_tok, x_tok], dim=1)

    def forward(self, z: torch.Tensor, x: torch.Tensor, z_feat_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Returns ``score_map`` (B,Hx,Wx) logits and ``boxes`` (B,Hx,Wx,4) normalised xyxy."""
        tokens = self.embed(z, x, z_feat_mask)
        for blk in self.blocks:
            tokens = blk(tokens)
        tokens = self.norm(tokens)
        return self.head(tokens[:, -self.pos_embed.shape[1]:])

    # ------------------------------------------------------------------ parameters
    def trainable_names(self) -> list[str]:
        """Names of the parameters PEFT trains (LoRA, token types, head; everything for full fine-tuning)."""
        return [n for n, p in self.named_parameters() if p.requires_grad]


def _plain_name(name: str, rows: int) -> tuple[str, slice | None]:
    """Map a (possibly LoRA-wrapped) parameter name to its DINOv2 name and the qkv row slice it takes."""
    for i, part in enumerate(("q", "k", "v")):
        tag = f".attn.qkv.{part}.linear."
        if tag in name:
            return name.replace(tag, ".attn.qkv."), slice(i * rows, (i + 1) * rows)
    return name.replace(".linear.", "."), None


def _copy_checked(dst: torch.Tensor, src: torch.Tensor, src_name: str) -> None:
    if tuple(dst.shape) != tuple(src.shape):
        raise ValueError(f"shape mismatch for {src_name!r}: file has {tuple(src.shape)}, model expects "
                         f"{tuple(dst.shape)}")
    dst.copy_(src.to(dst.dtype))


def build_lorat(cfg: ModelConfig, pretrained: dict[str, torch.Tensor] | None = None) -> LoRAT:
    """Build LoRAT: plain ViT -> (optional) DINOv2 weights -> LoRA / freezing per ``cfg.peft``."""
    model = LoRAT(cfg)
    if pretrained is not None:
        model.load_backbone(pretrained)
    model.configure_peft()
    return model


def _claims_lorat(sd: dict[str, torch.Tensor]) -> bool:
    # LoRAT files have token-type embeddings and an MLP head; SPMTrack's also carry the state-token query.
    return "token_type_embed" in sd and "track_query" not in sd


def _register() -> None:
    from ..hub import load_dinov2, lorat_from_checkpoint
    from .registry import Arch, register_arch, register_preset

    register_arch(Arch(name="lorat", config_cls=ModelConfig, build=build_lorat, read_pretrained=load_dinov2,
                       from_checkpoint=lorat_from_checkpoint, claims=_claims_lorat,
                       tracker="lorat.track.tracker:Tracker", task="lorat.train.task:LoRATTask"))
    for cfg in PRESETS.values():
        register_preset(cfg)


_register()
