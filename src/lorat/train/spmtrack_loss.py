"""SPMTrack training labels and loss: LoRAT's criterion applied to each search frame and summed.

``L = sum_k [ BCE_k + GIoU_k ]`` over the search frames ``k`` (two officially), each term normalised by that
frame's own number of positive cells. Labels are built per frame exactly as for LoRAT (every response cell the
clipped ground-truth box overlaps is positive; the IoU-aware classification target is computed in the loss).
There is no auxiliary (load-balance) loss for the experts. The optional GIoU warm-up multiplies the GIoU weight
by 10 for the first ``warmup_epochs`` epochs (official ``large_378_warmup``; 0 epochs by default).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from lorat import boxes as bx
from lorat.data.transforms import positive_cell_indices
from lorat.train.losses import lorat_loss

GIOU_WARMUP_FACTOR = 10.0


def frame_targets(gt_boxes_px: Sequence[Sequence[float]] | np.ndarray | torch.Tensor, search_size: int,
                  feat_size: int) -> dict[str, torch.Tensor]:
    """Loss targets of one search frame for a batch, in the layout :func:`lorat.train.losses.lorat_loss` reads.

    Args:
        gt_boxes_px: (B, 4) ground-truth boxes, xyxy in search-crop pixels (clipped to the crop here).
        search_size: search crop side in pixels (224 / 378).
        feat_size: response-map side (search_size / 14).

    Returns ``positive_sample_batch_dim_indices`` (P,) int64, ``positive_sample_map_dim_indices`` (P,) int64
    (flat ``row * W + col``, samples concatenated in batch order), ``boxes`` (B, 4) float32 = clipped gt /
    search_size and ``num_positive_samples`` (1,) float32 = P.
    """
    gt = np.asarray(torch.as_tensor(gt_boxes_px, dtype=torch.float64).cpu().numpy(), dtype=np.float64)
    if gt.ndim != 2 or gt.shape[1] != 4:
        raise ValueError(f"gt_boxes_px must be (B, 4) xyxy, got shape {gt.shape}")
    clipped = np.stack([bx.clip_to_image(b, search_size, search_size) for b in gt])
    positives = [positive_cell_indices(b, search_size, feat_size) for b in clipped]
    return {
        "positive_sample_batch_dim_indices": torch.cat(
            [torch.full((len(p),), i, dtype=torch.long) for i, p in enumerate(positives)]),
        "positive_sample_map_dim_indices": torch.from_numpy(np.concatenate(positives).astype(np.int64)),
        "boxes": torch.from_numpy((clipped / search_size).astype(np.float32)),
        "num_positive_samples": torch.tensor([float(sum(len(p) for p in positives))], dtype=torch.float32),
    }


def giou_weight_for_epoch(epoch: int, warmup_epochs: int = 0, weight: float = 1.0,
                          factor: float = GIOU_WARMUP_FACTOR) -> float:
    """The GIoU weight at 0-based ``epoch``: ``weight * factor`` during the first ``warmup_epochs``, then ``weight``."""
    return weight * factor if epoch < warmup_epochs else weight


def spmtrack_loss(outputs: Sequence[dict[str, torch.Tensor]], targets: Sequence[dict[str, torch.Tensor]],
                  bce_weight: float = 1.0, giou_weight: float = 1.0
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sum of the LoRAT criterion over the search frames.

    Args:
        outputs: one model output per search frame (``score_map`` (B,H,W), ``boxes`` (B,H,W,4)), as returned by
            :meth:`lorat.models.spmtrack.SPMTrack.forward_frames`.
        targets: one :func:`frame_targets` dict per search frame (same order).
        bce_weight, giou_weight: term weights (official 1 / 1; see :func:`giou_weight_for_epoch`).

    Returns ``(total, terms)``: ``terms`` holds detached 0-d ``bce_{k}``, ``giou_{k}`` (the official ``Loss/iou``
    of frame k), ``num_positive_samples_{k}`` and the frame totals ``loss_{k}``.
    """
    if len(outputs) != len(targets) or not outputs:
        raise ValueError(f"need one target per search frame: {len(outputs)} outputs, {len(targets)} targets")
    total = None
    terms: dict[str, torch.Tensor] = {}
    for k, (out, tgt) in enumerate(zip(outputs, targets)):
        frame_total, t = lorat_loss(out["score_map"], out["boxes"], tgt, bce_weight, giou_weight)
        terms[f"bce_{k}"], terms[f"giou_{k}"] = t["bce"], t["giou"]
        terms[f"num_positive_samples_{k}"] = t["num_positive_samples"]
        terms[f"loss_{k}"] = frame_total.detach()
        total = frame_total if total is None else total + frame_total
    return total, terms


__all__ = ["GIOU_WARMUP_FACTOR", "frame_targets", "giou_weight_for_epoch", "spmtrack_loss"]
