"""SPMTrack: LoRAT's one-stream DINOv2 tracker with TMoE, several reference templates and a target-state token.

Per search frame (official ``SPMTrack._multi_frame_predict``)::

    q      = [state +] track_query + query_embed                          (B, 1, C)  no pos / type embedding
    z_t    = PatchEmbed(z_t) + pos[top-left Hz x Wz] + type[mask_t]        (B, Nz, C) for each template t
    x      = PatchEmbed(x)   + pos                   + type[2]            (B, Nx, C)
    tokens = blocks([q; z_0; ...; z_{T-1}; x]) -> final norm
    h      = tokens[:, 0]                     the new target state (B, C), detached when fed to the next frame
    X'     = tokens[:, -Nx:]
    U      = X' * (X' . h)                    each search token scaled by its dot product with h (B, Nx, C)
    head(U) -> score_map (B, H, W) logits, boxes (B, H, W, 4) normalised xyxy

Training feeds two search frames in sequence: the first with ``state=None``, the second with the first
frame's ``h`` (stop-gradient). The backbone (patch embedding, blocks, ``pos_embed``, final norm) is frozen; the
trainable parameters are TMoE, ``track_query``, ``query_embed``, ``token_type_embed`` and the head. State-dict
keys equal the official ones, so official checkpoints (trainable only, often named ``.bin``) load strictly.
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from ..config import GEOMETRIES, VIT_VARIANTS, ModelConfig
from .lorat import LoRAT
from .tmoe import TMOE_INITS, attach_tmoe, has_tmoe, tmoe_modules

# Official global batch per backbone for the -378 configs (B, L-378 and g-378 mixins).
SPMTRACK_BATCH = {"s": 128, "b": 128, "l": 64, "g": 32}
# Scalars the original SPMTrack repository's state_dict() appends to the tensors (like LoRAT's lora_alpha).
_SCALAR_KEYS = ("expert_alpha", "use_rsexpert")


@dataclass
class SPMTrackConfig(ModelConfig):
    """Architecture, geometry and TMoE settings of an SPMTrack model (the ``lora_*`` fields are unused).

    ``peft``: ``"tmoe"`` (frozen backbone + TMoE, official) or ``"full"`` (everything trainable, no TMoE).
    ``num_templates`` / ``num_search_frames``: the training tuplet (3 + 2 officially); the model itself accepts
    any number of templates. ``train_batch_size``: the official global batch of this variant;
    ``giou_warmup_epochs``: the optional GIoU warm-up of training (read by
    :class:`lorat.train.spmtrack_task.SPMTrackTask`).
    """

    name: str = "spmtrack-b-378"
    arch: str = "spmtrack"
    template_size: int = 196
    search_size: int = 378
    search_area_factor: float = 5.0
    peft: str = "tmoe"
    tmoe_r: int = 64
    tmoe_alpha: float = 64.0
    tmoe_experts: int = 4
    tmoe_dropout: float = 0.0
    tmoe_rs: bool = False  # alpha / sqrt(r) instead of alpha / r (official use_rsexpert)
    tmoe_init: str = "bert"  # bert (official) | lora | gaussian
    tmoe_shared_expert: bool = False
    tmoe_route_compression: bool = False
    num_templates: int = 3
    num_search_frames: int = 2
    train_batch_size: int = 128
    giou_warmup_epochs: int = 0  # GIoU weight x10 for the first N epochs (official large_378_warmup: 2)

    def validate(self) -> SPMTrackConfig:
        """Raise ValueError naming the field when the config is inconsistent."""
        ModelConfig.validate(replace(self, peft="full"))  # the ViT / geometry checks
        if self.peft not in ("tmoe", "full"):
            raise ValueError(f"peft={self.peft!r}; SPMTrack expects 'tmoe' or 'full'")
        if self.tmoe_r <= 0 or self.tmoe_experts <= 0:
            raise ValueError(f"tmoe_r={self.tmoe_r} and tmoe_experts={self.tmoe_experts} must be positive")
        if self.tmoe_init not in TMOE_INITS:
            raise ValueError(f"tmoe_init={self.tmoe_init!r}; expected one of {TMOE_INITS}")
        if self.giou_warmup_epochs < 0:
            raise ValueError(f"giou_warmup_epochs={self.giou_warmup_epochs} must be >= 0")
        if self.num_templates <= 0 or self.num_search_frames <= 0:
            raise ValueError(f"num_templates={self.num_templates} and num_search_frames={self.num_search_frames} "
                             "must be positive")
        return self


class SPMTrack(LoRAT):
    """The SPMTrack model. Build it with ``lorat.create_model("spmtrack-b-378", pretrained=...)``."""

    def __init__(self, cfg: SPMTrackConfig) -> None:
        super().__init__(cfg)
        C = cfg.embed_dim
        self.track_query = nn.Parameter(torch.empty(1, C))
        self.query_embed = nn.Parameter(torch.empty(1, C))
        nn.init.trunc_normal_(self.track_query, std=0.02)  # the LoRAT-repo port's init (SPM-repo: uninitialised)
        nn.init.trunc_normal_(self.query_embed, std=0.02)

    # ------------------------------------------------------------------ weights
    @torch.no_grad()
    def load_backbone(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Copy DINOv2 weights into the backbone (see ``LoRAT.load_backbone``); works with TMoE attached."""
        wrappers = [m for m in self.modules() if hasattr(m, "tmoe") and m.tmoe is not None]
        saved = [w.tmoe for w in wrappers]
        for w in wrappers:  # hide the experts: they are not backbone weights
            w.tmoe = None
        try:
            super().load_backbone(state_dict)
        finally:
            for w, t in zip(wrappers, saved):
                w.tmoe = t

    def configure_peft(self) -> None:
        """Freeze the whole backbone (incl. ``pos_embed`` and the final norm), then attach TMoE (``peft='tmoe'``).

        Trainable afterwards: TMoE, ``track_query``, ``query_embed``, ``token_type_embed``, head. ``'full'``
        makes everything trainable and attaches nothing.
        """
        cfg: SPMTrackConfig = self.cfg
        if cfg.peft == "full":
            self.requires_grad_(True)
            return
        for m in (self.patch_embed, self.blocks, self.norm):
            m.requires_grad_(False)
        self.pos_embed.requires_grad_(False)
        if not has_tmoe(self):
            attach_tmoe(self.blocks, cfg.tmoe_r, cfg.tmoe_alpha, cfg.tmoe_experts, cfg.tmoe_dropout, cfg.tmoe_rs,
                        cfg.tmoe_init, cfg.tmoe_shared_expert, cfg.tmoe_route_compression)

    def merge_lora(self) -> SPMTrack:
        """No-op: TMoE's input-dependent mixture cannot be folded into the weights (the official inference
        model keeps the experts too). Present so generic inference code can call it."""
        return self

    # ------------------------------------------------------------------ forward
    def query_token(self, state: torch.Tensor | None, batch: int) -> torch.Tensor:
        """``[stopgrad(state) +] track_query + query_embed`` as (B, 1, C); ``state`` (B, C) or (B, 1, C)."""
        q = self.track_query + self.query_embed  # (1, C)
        if state is None:
            return q.unsqueeze(0).expand(batch, -1, -1)
        state = state.detach().reshape(batch, 1, -1)
        return state + self.track_query + self.query_embed  # same summation order as the official code

    def embed_templates(self, z: torch.Tensor, z_feat_mask: torch.Tensor) -> torch.Tensor:
        """Template tokens ``[z_0; ...; z_{T-1}]``: (B, T*Nz, C); each template with its own type embedding."""
        B, T = z.shape[:2]
        tok = self.patch_embed(z.flatten(0, 1))  # (B*T, Nz, C)
        tok = tok + self.template_pos() + self.token_type_embed[z_feat_mask.flatten(0, 1).flatten(1).long()]
        return tok.reshape(B, T * tok.shape[1], -1)

    def example_inputs(self, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Random inputs of one tracking step: ``(z (B,T,3,Hz,Wz), z_feat_mask (B,T,hz,wz), x, state (B,C))``.

        ``num_templates`` templates with a centred square foreground mask and a zero state (a first frame: the
        query token is then ``track_query + query_embed``); what ``lorat bench`` and the runtimes feed.
        """
        cfg = self.cfg
        g = torch.Generator().manual_seed(seed)
        T, hz, t = cfg.num_templates, cfg.template_feat, cfg.template_size
        z = torch.randn(batch, T, 3, t, t, generator=g)
        x = torch.randn(batch, 3, cfg.search_size, cfg.search_size, generator=g)
        mask = torch.zeros(batch, T, hz, hz, dtype=torch.long)
        mask[..., hz // 4: hz - hz // 4, hz // 4: hz - hz // 4] = 1
        return z, mask, x, torch.zeros(batch, cfg.embed_dim)

    def forward(self, z: torch.Tensor, z_feat_mask: torch.Tensor, x: torch.Tensor,
                state: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One search frame.

        Args:
            z: (B, T, 3, Hz*14, Wz*14) normalised template crops.
            z_feat_mask: (B, T, Hz, Wz) int64 foreground masks (1 where the cell overlaps the target box).
            x: (B, 3, Hx*14, Wx*14) normalised search crop.
            state: (B, C) the previous frame's ``state`` output, or None for the first frame.

        Returns ``score_map`` (B, Hx, Wx) logits, ``boxes`` (B, Hx, Wx, 4) normalised xyxy and ``state`` (B, C).
        A 5-D ``x`` (B, S, 3, H, W) runs :meth:`forward_frames` and returns its list of S dicts (the training
        forward in one module call, so a DDP wrapper sees a single forward per step).
        """
        if x.ndim == 5:
            return self.forward_frames(z, z_feat_mask, x, state)
        if z.ndim != 5 or z_feat_mask.ndim != 4 or z.shape[:2] != z_feat_mask.shape[:2]:
            raise ValueError(f"SPMTrack expects z (B,T,3,H,W) and z_feat_mask (B,T,h,w); got {tuple(z.shape)} and "
                             f"{tuple(z_feat_mask.shape)}")
        B = x.shape[0]
        x_tok = self.patch_embed(x) + self.pos_embed + self.token_type_embed[2]
        tokens = torch.cat([self.query_token(state, B), self.embed_templates(z, z_feat_mask), x_tok], dim=1)
        for blk in self.blocks:
            tokens = blk(tokens)
        tokens = self.norm(tokens)
        h = tokens[:, :1]  # (B, 1, C)
        search = tokens[:, -x_tok.shape[1]:]  # (B, Nx, C)
        attn = search @ h.transpose(1, 2)  # (B, Nx, 1)
        out = self.head(search * attn)
        out["state"] = h.squeeze(1)
        return out

    def forward_frames(self, z: torch.Tensor, z_feat_mask: torch.Tensor, xs: list[torch.Tensor] | torch.Tensor,
                       state: torch.Tensor | None = None) -> list[dict[str, torch.Tensor]]:
        """The training forward: search frames in order, each fed the previous frame's (detached) state.

        ``xs``: a list of (B, 3, H, W) crops or a (B, S, 3, H, W) tensor. Returns one output dict per frame.
        """
        frames = list(xs.unbind(1)) if isinstance(xs, torch.Tensor) else list(xs)
        outs = []
        for x in frames:
            out = self(z, z_feat_mask, x, state)
            state = out["state"]
            outs.append(out)
        return outs


def build_spmtrack(cfg: SPMTrackConfig, pretrained: dict[str, torch.Tensor] | None = None) -> SPMTrack:
    """Build SPMTrack: plain ViT -> (optional) DINOv2 weights -> freeze + TMoE per ``cfg.peft``."""
    model = SPMTrack(cfg)
    if pretrained is not None:
        model.load_backbone(pretrained)
    model.configure_peft()
    return model


# --------------------------------------------------------------------------- checkpoints
def infer_spmtrack_arch(sd: dict[str, torch.Tensor]) -> dict[str, int]:
    """Architecture numbers an SPMTrack state dict reveals: embed_dim, depth, tmoe_r, tmoe_experts."""
    info: dict[str, int] = {}
    if "track_query" in sd:
        info["embed_dim"] = int(sd["track_query"].shape[-1])
    blocks = {int(m[1]) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))}
    if blocks:
        info["depth"] = max(blocks) + 1
    a = next((v for k, v in sd.items() if k.endswith(".tmoe.compress_expert")), None)
    if a is not None:
        info["tmoe_r"] = int(a.shape[0])
    g = next((v for k, v in sd.items() if k.endswith(".tmoe.expert_route.weight")), None)
    if g is not None:
        info["tmoe_experts"] = int(g.shape[0])
    return info


def _pop_scalars(sd: dict[str, torch.Tensor], source: str) -> dict[str, float | bool]:
    """Remove ``expert_alpha`` / ``use_rsexpert`` (top level or per module) and return their (single) values."""
    found: dict[str, set] = {}
    for key in [k for k in sd if k.rsplit(".", 1)[-1] in _SCALAR_KEYS]:
        t = sd.pop(key)
        if t.numel() != 1:
            from ..hub import CheckpointError
            raise CheckpointError(f"{source}: {key!r} should be a scalar, has shape {tuple(t.shape)}")
        found.setdefault(key.rsplit(".", 1)[-1], set()).add(t.item())
    out: dict[str, float | bool] = {}
    for name, values in found.items():
        if len(values) != 1:
            from ..hub import CheckpointError
            raise CheckpointError(f"{source}: inconsistent {name} values {sorted(values)}")
        v = values.pop()
        out[name] = bool(v) if name == "use_rsexpert" else float(v)
    return out


def load_spmtrack_state(model: SPMTrack, sd: dict[str, torch.Tensor], source: str = "state dict",
                        backbone_loaded: bool = False) -> None:
    """Load an SPMTrack state dict into ``model`` with strict semantics.

    Unexpected keys, wrong shapes and missing trainable keys are errors naming ``source``; missing frozen keys
    are allowed only when ``backbone_loaded`` (they come from the DINOv2 file). Call :func:`_pop_scalars` first
    for files of the original SPMTrack repository.
    """
    from ..hub import CheckpointError

    own = model.state_dict()
    unexpected = sorted(set(sd) - set(own))
    if unexpected:
        raise CheckpointError(f"{source}: {len(unexpected)} keys the SPMTrack model does not have, "
                              f"e.g. {unexpected[:8]}")
    wrong = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in sd.items() if v.shape != own[k].shape]
    if wrong:
        raise CheckpointError(f"{source}: shape mismatch (key, file, model): {wrong[:8]}")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    missing = set(own) - set(sd)
    if missing & trainable:
        raise CheckpointError(f"{source}: missing trainable keys {sorted(missing & trainable)[:8]}")
    if missing and not backbone_loaded:
        raise CheckpointError(
            f"{source}: holds only {len(sd)} of {len(own)} tensors (trainable parameters only, as the official "
            f"saver writes them); the frozen backbone must come from the DINOv2 weights: pass pretrained=...")
    model.load_state_dict(sd, strict=False)


def spmtrack_from_checkpoint(cfg: SPMTrackConfig, tensors: dict[str, torch.Tensor], contents: str, source: str,
                             pretrained: str | Path | dict | None, merge: bool = False) -> SPMTrack:
    """``Arch.from_checkpoint`` for SPMTrack: build the model for ``cfg`` and load ``tensors`` strictly.

    ``contents``: ``official`` (headerless: official trainable-only files, full training state dicts, files of
    the original SPMTrack repository with ``expert_alpha`` / ``use_rsexpert``, which then set ``tmoe_alpha`` /
    ``tmoe_rs``), or ``full`` / ``trainable`` for lorat files. ``merge`` is accepted and ignored: TMoE does not
    merge.
    """
    from ..hub import CheckpointError, check_fits, detect_dinov2_layout
    from .registry import create_model

    tensors = dict(tensors)
    if contents == "official":
        if "track_query" not in tensors:
            if "token_type_embed" not in tensors and "head.cls_mlp.layers.0.weight" not in tensors:
                detect_dinov2_layout(tensors, source)
                raise CheckpointError(f"{source}: is a DINOv2 backbone, not an SPMTrack checkpoint; pass it as "
                                      "pretrained=...")
            raise CheckpointError(f"{source}: has no 'track_query': not an SPMTrack checkpoint (a LoRAT one? "
                                  "load it with a lorat-* preset)")
        check_fits(cfg, infer_spmtrack_arch(tensors), source)
    scalars = _pop_scalars(tensors, source)
    if "expert_alpha" in scalars and not math.isclose(scalars["expert_alpha"], cfg.tmoe_alpha):
        warnings.warn(f"{source}: expert_alpha={scalars['expert_alpha']} from the file overrides config "
                      f"tmoe_alpha={cfg.tmoe_alpha}", stacklevel=2)
        cfg = replace(cfg, tmoe_alpha=scalars["expert_alpha"])
    if "use_rsexpert" in scalars:
        cfg = replace(cfg, tmoe_rs=scalars["use_rsexpert"])
    model = create_model(cfg, pretrained=pretrained)
    load_spmtrack_state(model, tensors, source, backbone_loaded=pretrained is not None)
    for t in tmoe_modules(model):  # the config is the single source of the scaling
        t.alpha, t.rs = float(cfg.tmoe_alpha), bool(cfg.tmoe_rs)
    return model


def _claims_spmtrack(sd: dict[str, torch.Tensor]) -> bool:
    return "track_query" in sd


def _spmtrack_preset(variant: str, res: int) -> SPMTrackConfig:
    return SPMTrackConfig(name=f"spmtrack-{variant}-{res}", **VIT_VARIANTS[variant], **GEOMETRIES[res],
                          train_batch_size=SPMTRACK_BATCH[variant])


PRESETS: dict[str, SPMTrackConfig] = {
    f"spmtrack-{v}-{r}": _spmtrack_preset(v, r) for v in ("b", "l", "g") for r in (378, 224)
}


def _register() -> None:
    from ..hub import load_dinov2
    from .registry import Arch, register_arch, register_preset

    register_arch(Arch(name="spmtrack", config_cls=SPMTrackConfig, build=build_spmtrack,
                       read_pretrained=load_dinov2, from_checkpoint=spmtrack_from_checkpoint,
                       claims=_claims_spmtrack, tracker="lorat.track.spmtrack:SPMTrackTracker",
                       task="lorat.train.spmtrack_task:SPMTrackTask"))
    for cfg in PRESETS.values():
        register_preset(cfg)


_register()

__all__ = ["SPMTrackConfig", "SPMTrack", "build_spmtrack", "spmtrack_from_checkpoint", "load_spmtrack_state",
           "infer_spmtrack_arch", "PRESETS", "SPMTRACK_BATCH"]
