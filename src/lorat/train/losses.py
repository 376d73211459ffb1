"""LoRAT training loss: IoU-aware BCE over the score map plus GIoU on the positive cells.

This is the official ``box_with_score_map`` criterion of LoRAT (see ``docs/DESIGN.md``, "Training"): the
classification target of a positive cell is the IoU of its predicted box with the ground truth, every other
cell's is 0; both terms are normalised by the number of positive cells averaged over ranks.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from lorat.boxes import bbox_overlaps

GIOU_EPS = 1e-6
"""Clamp of union and enclosing area in both IoU terms (the official criterion's eps)."""


def _mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """All-reduce mean across ranks when a process group is running (else unchanged)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value = value / dist.get_world_size()
    return value


def lorat_loss(score_map: torch.Tensor, boxes: torch.Tensor, targets: dict[str, torch.Tensor],
               bce_weight: float = 1.0, giou_weight: float = 1.0, return_details: bool = False
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Official ``box_with_score_map`` criterion (IoU-aware BCE + GIoU, both divided by N_pos).

    Args:
        score_map: ``(B, H, W)`` raw logits.
        boxes: ``(B, H, W, 4)`` predicted boxes, normalised xyxy relative to the search crop.
        targets: the batch from :func:`lorat.data.transforms.collate_pairs`; uses
            ``positive_sample_batch_dim_indices`` ``(P,)``, ``positive_sample_map_dim_indices`` ``(P,)``
            (flat ``row * W + col``), ``boxes`` ``(B, 4)`` normalised xyxy ground truth and
            ``num_positive_samples`` ``(1,)`` (local P).
        bce_weight, giou_weight: term weights (official 1.0 / 1.0).
        return_details: also return the intermediate tensors (for tests and debugging).

    Computation:

    * ``N = clamp(mean over ranks of num_positive_samples, min=1)``. The all-reduce runs only under an
      initialised ``torch.distributed`` group; unlike the official code the caller's tensor is not modified.
    * classification target ``T`` ``(B, H*W)``: 0 everywhere, ``IoU(gt, predicted box)`` at the positives,
      computed under ``no_grad`` (so detached), mmdet semantics with the union clamped at 1e-6;
    * ``bce = sum over all B*H*W cells of BCEWithLogits(score, T) / N``;
    * ``giou = sum over positives of (1 - GIoU(pred, gt)) / N`` (union and hull clamped at 1e-6);
    * ``total = bce_weight * bce + giou_weight * giou``.

    Returns:
        ``(total, terms)`` with 0-d tensors; ``terms`` holds detached ``bce`` and ``giou`` (unweighted),
        ``num_positive_samples`` (the normaliser N) and, with ``return_details``, ``cls_target_map``
        ``(B, H, W)``, ``bce_map`` ``(B, H, W)``, ``iou_per_positive`` ``(P,)`` and
        ``giou_loss_per_positive`` ``(P,)``.
    """
    score = score_map.float()
    pred = boxes.float()
    n, h, w = score.shape
    device = score.device

    num_pos = targets["num_positive_samples"].detach().to(device=device, dtype=torch.float32).reshape(-1)[:1]
    num_pos = _mean_over_ranks(num_pos).clamp(min=1.0).reshape(())

    batch_idx = targets["positive_sample_batch_dim_indices"].to(device=device, dtype=torch.long)
    map_idx = targets["positive_sample_map_dim_indices"].to(device=device, dtype=torch.long)
    gt_all = targets["boxes"].to(device=device, dtype=torch.float32)
    has_pos = batch_idx.numel() > 0

    pred_pos = pred.reshape(n, h * w, 4)[batch_idx, map_idx]  # (P, 4)
    gt_pos = gt_all[batch_idx]  # (P, 4): every positive cell regresses its sample's whole box

    with torch.no_grad():
        target_map = torch.zeros((n, h * w), dtype=torch.float32, device=device)
        iou = bbox_overlaps(gt_pos, pred_pos, mode="iou", is_aligned=True, eps=GIOU_EPS) if has_pos \
            else pred_pos.new_zeros((0,))
        target_map.index_put_((batch_idx, map_idx), iou)

    bce_map = F.binary_cross_entropy_with_logits(score.reshape(n, h * w), target_map, reduction="none")
    bce = bce_map.sum() / num_pos
    if has_pos:
        giou_per_pos = 1 - bbox_overlaps(pred_pos, gt_pos, mode="giou", is_aligned=True, eps=GIOU_EPS)
        giou = giou_per_pos.sum() / num_pos
    else:  # keeps the graph connected (DDP) without contributing
        giou_per_pos = pred_pos.new_zeros((0,))
        giou = pred.mean() * 0

    total = bce * bce_weight + giou * giou_weight
    terms: dict[str, torch.Tensor] = {"bce": bce.detach(), "giou": giou.detach(), "num_positive_samples": num_pos}
    if return_details:
        terms.update({
            "cls_target_map": target_map.reshape(n, h, w),
            "bce_map": bce_map.detach().reshape(n, h, w),
            "iou_per_positive": iou,
            "giou_loss_per_positive": giou_per_pos.detach(),
        })
    return total, terms


__all__ = ["GIOU_EPS", "lorat_loss"]
