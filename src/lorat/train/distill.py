"""LoReTrack distillation: a low-resolution OSTrack student learns from a frozen high-resolution teacher.

One training step (official ``OSTrackActor`` of ``lib/train/actors/ostrack_lora.py``):

1. the frozen teacher runs (eval mode) on the high-resolution crops, e.g. 384 / 192;
2. the student inputs are the **same tensors** bilinearly resized (``align_corners=False``, no antialias)
   to the student size, e.g. 256 / 128: same crop, same augmentation; boxes are shared unchanged;
3. the student runs (train mode); its task loss is OSTrack's (focal + 2 GIoU + 5 L1, heat map on the
   student grid);
4. **QKV-KD**: q, k, v of the last block (fused Linear output of LN1(x), with bias, before the attention
   scale; column slices q = [0, C), k = [C, 2C), v = [2C, 3C), which equal the official head-split order),
   search tokens only, arranged (B, C, g, g); the student maps are upsampled to the teacher grid (bilinear,
   ``align_corners=False``); ``KL(softmax_c(t / T) || softmax_c(s / T)) * T^2 / B`` summed over batch,
   positions and channels (``DistillKL``), summed over q, k, v;
5. **Disc-KD**: on the final-norm search features (the head input), energy ``E = mean_c F_t^2`` of the
   teacher, mask ``M = E >= 0.2``; ``0.6 * KL(M F_s, M F_t) + 0.4 * KL((1-M) F_s, (1-M) F_t)`` with the
   same ``DistillKL`` (a zeroed position contributes exactly 0);
6. ``total = task + 0.01 * disc + 0.01 * qkv``.

Paper-text variants are options of :class:`LoReTrackLossConfig`: ``distance='mse'`` (mean squared error
instead of KL, for both terms) and ``energy_norm='minmax'`` (per-sample min-max normalised energy before
the threshold). See docs/loretrack.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .ostrack_loss import OSTrackLossConfig, ostrack_loss


@dataclass
class LoReTrackLossConfig:
    """Constants of the LoReTrack objective; defaults are the public code's."""

    temperature: float = 4.0
    qkv_weight: float = 0.01
    disc_weight: float = 0.01
    tau: float = 0.2  # Disc-KD energy threshold (absolute, >=)
    alpha: float = 0.6  # weight of the discriminative region (M = 1)
    beta: float = 0.4  # weight of the rest
    distance: str = "kl"  # "kl" (code) or "mse" (paper text)
    energy_norm: str = "none"  # "none" (code) or "minmax" (paper text: per-sample min-max before tau)
    antialias: bool = False  # student input resize; the official torchvision 0.11 Resize has none
    align_corners: bool = False  # grid upsampling of the student maps
    task: OSTrackLossConfig = field(default_factory=OSTrackLossConfig)

    def validate(self) -> LoReTrackLossConfig:
        if self.distance not in ("kl", "mse"):
            raise ValueError(f"distance={self.distance!r}; expected 'kl' or 'mse'")
        if self.energy_norm not in ("none", "minmax"):
            raise ValueError(f"energy_norm={self.energy_norm!r}; expected 'none' or 'minmax'")
        if self.temperature <= 0:
            raise ValueError(f"temperature={self.temperature} must be > 0")
        return self


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a DDP (``.module``) or ``torch.compile`` (``._orig_mod``) wrapper: for reading
    its ``cfg`` and hooking its layers; the forward still goes through the wrapper (gradient sync)."""
    while not hasattr(model, "cfg") and (hasattr(model, "module") or hasattr(model, "_orig_mod")):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def distill_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """``DistillKL``: KL(softmax(t/T) || softmax(s/T)) over dim 1 (channels), summed, ``* T^2 / B``."""
    log_p_s = F.log_softmax(student / temperature, dim=1)
    p_t = F.softmax(teacher / temperature, dim=1)
    return F.kl_div(log_p_s, p_t, reduction="sum") * temperature ** 2 / student.shape[0]


def _distance(s: torch.Tensor, t: torch.Tensor, cfg: LoReTrackLossConfig) -> torch.Tensor:
    return distill_kl(s, t, cfg.temperature) if cfg.distance == "kl" else F.mse_loss(s, t)


def resize_to(x: torch.Tensor, size: int, antialias: bool = False) -> torch.Tensor:
    """Bilinear resize (``align_corners=False``) of (B, C, H, W) to (size, size)."""
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)


def split_qkv(qkv: torch.Tensor, n_search: int, grid: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    """Fused qkv output (B, N, 3C) -> q, k, v search maps, each (B, C, gh, gw) (token = row * gw + col)."""
    B, _, C3 = qkv.shape
    C = C3 // 3
    x = qkv[:, -n_search:]  # search tokens follow the template tokens
    return tuple(x[..., i * C:(i + 1) * C].transpose(1, 2).reshape(B, C, *grid) for i in range(3))


def upsample_to(x: torch.Tensor, grid: tuple[int, int], align_corners: bool = False) -> torch.Tensor:
    """Student map (B, C, h, w) -> teacher grid, bilinear; identity when already that size."""
    if tuple(x.shape[-2:]) == tuple(grid):
        return x
    return F.interpolate(x, size=grid, mode="bilinear", align_corners=align_corners)


def qkv_kd(student_qkv: tuple[torch.Tensor, ...], teacher_qkv: tuple[torch.Tensor, ...],
           cfg: LoReTrackLossConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """QKV-KD over (q, k, v) maps (B, C, h, w) / (B, C, H, W): sum of the three distances."""
    grid = tuple(teacher_qkv[0].shape[-2:])
    parts = {n: _distance(upsample_to(s, grid, cfg.align_corners), t, cfg)
             for n, s, t in zip("qkv", student_qkv, teacher_qkv)}
    return parts["q"] + parts["k"] + parts["v"], parts


def disc_energy(teacher_feat: torch.Tensor, norm: str = "none") -> torch.Tensor:
    """Teacher energy map (B, H*W) = mean over channels of F_t^2; ``minmax``: per-sample normalised to [0, 1]."""
    e = teacher_feat.flatten(2).pow(2).mean(dim=1)
    if norm == "minmax":
        lo, hi = e.min(dim=1, keepdim=True).values, e.max(dim=1, keepdim=True).values
        e = (e - lo) / (hi - lo).clamp_min(1e-12)
    return e


def disc_kd(student_feat: torch.Tensor, teacher_feat: torch.Tensor, cfg: LoReTrackLossConfig
            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Disc-KD on final-norm search features (student (B,C,h,w), teacher (B,C,H,W)).

    Returns the loss and ``energy`` (B, HW), ``mask`` (B, HW) bool, ``alpha_term``, ``beta_term``,
    ``coverage`` (mean fraction of positions with M = 1).
    """
    grid = tuple(teacher_feat.shape[-2:])
    fs = upsample_to(student_feat, grid, cfg.align_corners).flatten(2)  # (B, C, HW)
    ft = teacher_feat.flatten(2)
    energy = disc_energy(teacher_feat, cfg.energy_norm)
    mask = energy >= cfg.tau
    m = mask.to(fs.dtype).unsqueeze(1)  # broadcast over channels
    a = _distance(fs * m, ft * m, cfg)
    b = _distance(fs * (1 - m), ft * (1 - m), cfg)
    loss = cfg.alpha * a + cfg.beta * b
    return loss, {"energy": energy, "mask": mask, "alpha_term": a, "beta_term": b,
                  "coverage": mask.float().mean().detach()}


def _qkv_maps(out: dict[str, torch.Tensor], grid: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    return split_qkv(out["qkv"], grid[0] * grid[1], grid)


def loretrack_loss(student: nn.Module, teacher: nn.Module, teacher_template: torch.Tensor,
                   teacher_search: torch.Tensor, search_anno: torch.Tensor,
                   cfg: LoReTrackLossConfig | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """LoReTrack objective for one batch (see the module docstring).

    Args:
        student: OSTrack model at the low resolution (its mode is left as is: train mode for training).
        teacher: frozen OSTrack model at the high resolution; run in eval mode without gradients (its mode
            is restored afterwards).
        teacher_template, teacher_search: normalised high-resolution crops (B,3,Tt,Tt), (B,3,St,St).
        search_anno: (B, 4) target box, xywh normalised by the search crop (shared by both resolutions).

    Returns ``(total, terms)``; terms: ``focal``, ``giou``, ``l1``, ``qkv``, ``disc`` (attached to the graph),
    plus ``qkv_q/k/v``, ``disc_alpha_term``, ``disc_beta_term``, ``disc_coverage``, ``iou``, ``task`` and the
    tensors ``disc_mask``/``disc_energy``, ``student_out`` / ``teacher_out`` (the two output dicts).
    """
    cfg = (cfg or LoReTrackLossConfig()).validate()
    scfg = unwrap(student).cfg
    was_training = teacher.training
    teacher.eval()
    with torch.no_grad():
        t_out = teacher(teacher_template, teacher_search, return_qkv=True)
    teacher.train(was_training)
    z = resize_to(teacher_template, scfg.template_size, cfg.antialias)
    x = resize_to(teacher_search, scfg.search_size, cfg.antialias)
    s_out = student(z, x, return_qkv=True)
    task, tt = ostrack_loss(s_out, search_anno, scfg.search_size, cfg.task)
    t_grid = tuple(t_out["opt_feat"].shape[-2:])
    s_grid = tuple(s_out["opt_feat"].shape[-2:])
    qkv, qparts = qkv_kd(_qkv_maps(s_out, s_grid), _qkv_maps(t_out, t_grid), cfg)
    disc, dparts = disc_kd(s_out["opt_feat"], t_out["opt_feat"], cfg)
    total = task + cfg.disc_weight * disc + cfg.qkv_weight * qkv
    terms = {"focal": tt["focal"], "giou": tt["giou"], "l1": tt["l1"], "qkv": qkv, "disc": disc,
             "qkv_q": qparts["q"], "qkv_k": qparts["k"], "qkv_v": qparts["v"],
             "disc_alpha_term": dparts["alpha_term"], "disc_beta_term": dparts["beta_term"],
             "disc_coverage": dparts["coverage"], "disc_mask": dparts["mask"], "disc_energy": dparts["energy"],
             "iou": tt["iou"], "task": task, "student_out": s_out, "teacher_out": t_out}
    return total, terms


# --------------------------------------------------------------------------- LoRAT students (patch 14)
def lorat_kd_forward(model: nn.Module, z: torch.Tensor, x: torch.Tensor, z_mask: torch.Tensor
                     ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Run a LoRAT model and capture what the KD terms need, without changing the model.

    Returns ``(out, qkv, feat)``: the model's output dict, the last block's qkv projection output
    (B, N, 3C) (q | k | v columns, with bias and the LoRA update: the fused Linear, or the split q/k/v
    LoRA linears concatenated) and the final-norm search features (B, C, g, g), which are the head's input.
    """
    captured: dict[str, torch.Tensor] = {}
    plain = unwrap(model)  # hooks on the layers; the call below goes through a DDP/compile wrapper
    h1 = plain.blocks[-1].attn.qkv.register_forward_hook(lambda m, i, o: captured.__setitem__("qkv", o))
    h2 = plain.norm.register_forward_hook(lambda m, i, o: captured.__setitem__("norm", o))
    try:
        out = model(z, x, z_mask)
    finally:
        h1.remove()
        h2.remove()
    g = plain.cfg.search_feat
    tokens = captured["norm"][:, -g * g:]
    feat = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], g, g)
    return out, captured["qkv"], feat


def lorat_distill_loss(student: nn.Module, teacher: nn.Module, teacher_template: torch.Tensor,
                       teacher_search: torch.Tensor, teacher_z_mask: torch.Tensor, student_z_mask: torch.Tensor,
                       targets: dict[str, torch.Tensor], cfg: LoReTrackLossConfig | None = None
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """LoReTrack's QKV-KD and Disc-KD on a LoRAT (DINOv2, patch 14) teacher/student pair.

    The student inputs are the teacher crops resized to the student sizes (as in :func:`loretrack_loss`);
    ``teacher_z_mask`` / ``student_z_mask`` are the template foreground masks on each template grid
    (B, h, w) int64; ``targets`` are LoRAT training targets on the **student** grid (see
    :func:`lorat.train.losses.lorat_loss`). ``total = lorat task loss + disc_weight * disc + qkv_weight * qkv``.
    The task weights of ``cfg.task`` do not apply (LoRAT's BCE + GIoU weights are 1 / 1). ``tau`` = 0.2 was
    calibrated on OSTrack's final norm; for DINOv2's frozen final norm choose it from the logged coverage.

    Returns ``(total, terms)``: ``bce``, ``giou``, ``task``, ``qkv``, ``qkv_q/k/v``, ``disc``,
    ``disc_alpha_term``, ``disc_beta_term``, ``disc_coverage``, ``disc_mask``, ``student_out``.
    """
    from .losses import lorat_loss

    cfg = (cfg or LoReTrackLossConfig()).validate()
    scfg = unwrap(student).cfg
    was_training = teacher.training
    teacher.eval()
    with torch.no_grad():
        _, t_qkv, t_feat = lorat_kd_forward(teacher, teacher_template, teacher_search, teacher_z_mask)
    teacher.train(was_training)
    z = resize_to(teacher_template, scfg.template_size, cfg.antialias)
    x = resize_to(teacher_search, scfg.search_size, cfg.antialias)
    s_out, s_qkv, s_feat = lorat_kd_forward(student, z, x, student_z_mask)
    task, tt = lorat_loss(s_out["score_map"], s_out["boxes"], targets)
    t_grid, s_grid = tuple(t_feat.shape[-2:]), tuple(s_feat.shape[-2:])
    qkv, qparts = qkv_kd(split_qkv(s_qkv, s_grid[0] * s_grid[1], s_grid),
                         split_qkv(t_qkv, t_grid[0] * t_grid[1], t_grid), cfg)
    disc, dparts = disc_kd(s_feat, t_feat, cfg)
    total = task + cfg.disc_weight * disc + cfg.qkv_weight * qkv
    terms = {"bce": tt["bce"], "giou": tt["giou"], "task": task, "qkv": qkv, "qkv_q": qparts["q"],
             "qkv_k": qparts["k"], "qkv_v": qparts["v"], "disc": disc, "disc_alpha_term": dparts["alpha_term"],
             "disc_beta_term": dparts["beta_term"], "disc_coverage": dparts["coverage"],
             "disc_mask": dparts["mask"], "student_out": s_out}
    return total, terms


__all__ = ["LoReTrackLossConfig", "loretrack_loss", "distill_kl", "qkv_kd", "disc_kd", "disc_energy",
           "split_qkv", "resize_to", "upsample_to", "lorat_kd_forward", "lorat_distill_loss", "unwrap"]
