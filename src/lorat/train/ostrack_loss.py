"""OSTrack's training objective: Gaussian centre heat map + weighted focal loss, GIoU and L1 on the box.

``total = giou_weight * GIoU + l1_weight * L1 + focal_weight * focal`` with the official weights 2 / 5 / 1.

* Heat map (CenterNet): per box in cell units (box x feat_sz), centre = ``torch.round`` (half to even) of
  (x + w/2, y + h/2); CornerNet radius with min_overlap 0.7 (the "bug version" ``(b + sqrt(b^2 - 4ac)) / 2``
  for all three roots, without the division by ``a``), clamped at 0 and truncated to int; Gaussian
  ``exp(-(x^2 + y^2) / (2 sigma^2))`` with sigma = (2r + 1) / 6, values below ``eps * max`` zeroed (numpy
  float64 eps), pasted by element-wise max, truncated at the map border.
* Focal loss (alpha 2, beta 4) on the clamped score map: positives are cells equal to 1.
* GIoU / L1 between ``cxcywh_to_xyxy(pred)`` and ``xywh_to_xyxy(gt).clamp(0, 1)``; the DETR-style IoU
  has no eps (the official code turns a failing GIoU into 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class OSTrackLossConfig:
    """Weights of the OSTrack objective (official yaml: GIOU_WEIGHT 2, L1_WEIGHT 5; focal 1)."""

    giou_weight: float = 2.0
    l1_weight: float = 5.0
    focal_weight: float = 1.0
    stride: int = 16
    min_overlap: float = 0.7


# --------------------------------------------------------------------------- heat map
def gaussian_radius(wh: torch.Tensor, min_overlap: float = 0.7) -> torch.Tensor:
    """CornerNet radius (official "bug version") of boxes with sizes ``wh`` (N, 2) in cells -> (N,)."""
    w, h = wh[..., 0], wh[..., 1]
    b1 = h + w
    c1 = w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1 ** 2 - 4 * 1 * c1)) / 2
    a2, b2, c2 = 4, 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + torch.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + torch.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return torch.min(r1, torch.min(r2, r3))


def _gaussian_2d(radius: int) -> torch.Tensor:
    sigma = (2 * radius + 1) / 6
    y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    g = np.exp(-(x * x + y * y) / (2 * sigma * sigma))  # float64, as the official numpy code
    g[g < np.finfo(g.dtype).eps * g.max()] = 0
    return torch.tensor(g, dtype=torch.float32)


def _paste(fmap: torch.Tensor, cx: int, cy: int, radius: int) -> None:
    # Element-wise max of the Gaussian into fmap (H, W) around (cx, cy), cut at the border (official slicing).
    g = _gaussian_2d(radius)
    H, W = fmap.shape
    left, right = min(cx, radius), min(W - cx, radius + 1)
    top, bottom = min(cy, radius), min(H - cy, radius + 1)
    region = fmap[cy - top:cy + bottom, cx - left:cx + right]
    patch = g[radius - top:radius + bottom, radius - left:radius + right]
    if min(patch.shape) > 0 and min(region.shape) > 0:
        fmap[cy - top:cy + bottom, cx - left:cx + right] = torch.max(region, patch)


def generate_heatmap(search_anno: torch.Tensor, search_size: int, stride: int = 16,
                     min_overlap: float = 0.7) -> torch.Tensor:
    """Gaussian centre targets (B, 1, S/stride, S/stride) from boxes ``search_anno`` (B, 4) normalised xywh."""
    feat = search_size // stride
    boxes = search_anno.detach().float().cpu() * feat
    wh = boxes[:, 2:]
    centres = (boxes[:, :2] + wh / 2).round()  # round half to even
    radius = torch.clamp_min(gaussian_radius(wh, min_overlap), 0).to(torch.int).numpy()
    maps = torch.zeros(boxes.shape[0], feat, feat)
    for i in range(boxes.shape[0]):
        _paste(maps[i], int(centres[i, 0]), int(centres[i, 1]), int(radius[i]))
    return maps.unsqueeze(1).to(search_anno.device)


# --------------------------------------------------------------------------- losses
def focal_loss(pred: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0,
               return_parts: bool = False):
    """CenterNet focal loss ``-(pos + neg) / num_pos`` (``-neg`` when there is no positive cell).

    pred: probabilities (B,1,H,W) (clamped at 1e-12); target: Gaussian map of the same shape.
    With ``return_parts`` also returns ``(pos_sum, neg_sum, num_pos)``.
    """
    pos = target.eq(1).float()
    neg = target.lt(1).float()
    neg_w = torch.pow(1 - target, beta)
    pred = torch.clamp(pred, 1e-12)
    pos_sum = (torch.log(pred) * torch.pow(1 - pred, alpha) * pos).sum()
    neg_sum = (torch.log(1 - pred) * torch.pow(pred, alpha) * neg_w * neg).sum()
    num_pos = pos.sum()
    loss = -neg_sum if num_pos == 0 else -(pos_sum + neg_sum) / num_pos
    return (loss, (pos_sum, neg_sum, num_pos)) if return_parts else loss


def cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def xywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    x, y, w, h = b.unbind(-1)
    return torch.stack([x, y, x + w, y + h], dim=-1)


def generalized_box_iou(b1: torch.Tensor, b2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Element-wise DETR-style GIoU and IoU of xyxy boxes (N, 4), no eps -> ((N,), (N,))."""
    area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    area2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    lt = torch.max(b1[:, :2], b2[:, :2])
    rb = torch.min(b1[:, 2:], b2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = area1 + area2 - inter
    iou = inter / union
    lt = torch.min(b1[:, :2], b2[:, :2])
    rb = torch.max(b1[:, 2:], b2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    area = wh[:, 0] * wh[:, 1]
    return iou - (area - union) / area, iou


def ostrack_loss(out: dict[str, torch.Tensor], search_anno: torch.Tensor, search_size: int,
                 cfg: OSTrackLossConfig | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The OSTrack actor's loss from a model output dict and ``search_anno`` (B, 4) normalised xywh.

    Returns ``(total, terms)``; terms: ``focal``, ``giou``, ``l1``, ``iou`` (mean, detached), and the
    label/box tensors ``gaussian_map``, ``gt_xyxy``, ``pred_xyxy``, ``giou_per_sample``, ``iou_per_sample``.
    """
    cfg = cfg or OSTrackLossConfig()
    gauss = generate_heatmap(search_anno, search_size, cfg.stride, cfg.min_overlap)
    pred = out["pred_boxes"]  # (B, Nq, 4) cxcywh
    nq = pred.shape[1]
    pred_xyxy = cxcywh_to_xyxy(pred).view(-1, 4)
    gt_xyxy = xywh_to_xyxy(search_anno)[:, None, :].repeat(1, nq, 1).view(-1, 4).clamp(0.0, 1.0)
    try:
        giou, iou = generalized_box_iou(pred_xyxy, gt_xyxy)
        giou_loss = (1 - giou).mean()
    except Exception:  # the official actor turns a failing GIoU into 0
        giou = iou = torch.zeros(pred_xyxy.shape[0], device=pred.device)
        giou_loss = torch.tensor(0.0, device=pred.device)
    l1 = F.l1_loss(pred_xyxy, gt_xyxy)
    focal = focal_loss(out["score_map"], gauss)
    total = cfg.giou_weight * giou_loss + cfg.l1_weight * l1 + cfg.focal_weight * focal
    terms = {"focal": focal, "giou": giou_loss, "l1": l1, "iou": iou.detach().mean(), "gaussian_map": gauss,
             "gt_xyxy": gt_xyxy, "pred_xyxy": pred_xyxy, "giou_per_sample": giou, "iou_per_sample": iou}
    return total, terms


__all__ = ["OSTrackLossConfig", "generate_heatmap", "gaussian_radius", "focal_loss", "generalized_box_iou",
           "cxcywh_to_xyxy", "xywh_to_xyxy", "ostrack_loss"]
