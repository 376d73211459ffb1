"""Box utilities shared by data, training, tracking and evaluation.

Conventions (the official LoRAT ones, ``docs/tracking.md``):

* Boxes are ``xyxy`` in *continuous* pixel coordinates unless a name says otherwise; a box ``(x, y, w, h)``
  from a dataset becomes ``(x, y, x + w, y + h)`` (no ``-1``). The last axis always holds the 4 numbers,
  leading axes are batch axes.
* Functions accept numpy arrays or torch tensors and return the same kind (where both make sense).
* Continuous -> integer ("rasterise") uses ``floor(x1)``, ``floor(y1)``, ``floor(x2 + 1 - 1e-4)``,
  ``floor(y2 + 1 - 1e-4)`` with an exclusive end, i.e. every pixel/cell the box overlaps.
"""
from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

BoxArray = TypeVar("BoxArray", np.ndarray, torch.Tensor)
ArrayLike = np.ndarray | torch.Tensor

RASTERIZE_EPS = 1e-4
"""Tolerance of the exclusive end in :func:`rasterize` (official ``bbox_rasterize`` default)."""


def _stack(parts: list, like: ArrayLike) -> ArrayLike:
    if isinstance(like, torch.Tensor):
        return torch.stack(parts, dim=-1)
    return np.stack(parts, axis=-1)


def _as_float(boxes: ArrayLike) -> ArrayLike:
    if isinstance(boxes, torch.Tensor):
        return boxes if boxes.is_floating_point() else boxes.to(torch.get_default_dtype())
    boxes = np.asarray(boxes)
    return boxes if np.issubdtype(boxes.dtype, np.floating) else boxes.astype(np.float64)


# ----------------------------------------------------------------------------------------- formats
def xywh_to_xyxy(boxes: BoxArray) -> BoxArray:
    """``(x, y, w, h)`` -> ``(x1, y1, x2, y2)`` with ``x2 = x + w`` (continuous, no -1)."""
    b = _as_float(boxes)
    return _stack([b[..., 0], b[..., 1], b[..., 0] + b[..., 2], b[..., 1] + b[..., 3]], b)


def xyxy_to_xywh(boxes: BoxArray) -> BoxArray:
    """``(x1, y1, x2, y2)`` -> ``(x, y, w, h)``."""
    b = _as_float(boxes)
    return _stack([b[..., 0], b[..., 1], b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]], b)


def xyxy_to_cxcywh(boxes: BoxArray) -> BoxArray:
    """``(x1, y1, x2, y2)`` -> ``(cx, cy, w, h)``; ``cx = (x1 + x2) / 2`` as in the official code."""
    b = _as_float(boxes)
    return _stack([(b[..., 0] + b[..., 2]) / 2.0, (b[..., 1] + b[..., 3]) / 2.0,
                   b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]], b)


def cxcywh_to_xyxy(boxes: BoxArray) -> BoxArray:
    """``(cx, cy, w, h)`` -> ``(x1, y1, x2, y2)`` (``x1 = cx - w / 2``, ``x2 = cx + w / 2``)."""
    b = _as_float(boxes)
    w2 = b[..., 2] / 2
    h2 = b[..., 3] / 2
    return _stack([b[..., 0] - w2, b[..., 1] - h2, b[..., 0] + w2, b[..., 1] + h2], b)


def box_center(boxes: BoxArray) -> BoxArray:
    """``(..., 2)`` centre ``((x1 + x2) * 0.5, (y1 + y2) * 0.5)`` of xyxy boxes."""
    b = _as_float(boxes)
    return _stack([(b[..., 0] + b[..., 2]) * 0.5, (b[..., 1] + b[..., 3]) * 0.5], b)


def box_size(boxes: BoxArray) -> BoxArray:
    """``(..., 2)`` width and height of xyxy boxes (may be negative for malformed boxes)."""
    b = _as_float(boxes)
    return _stack([b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]], b)


def box_area(boxes: BoxArray) -> BoxArray:
    """``(...)`` signed area ``(x2 - x1) * (y2 - y1)`` of xyxy boxes."""
    b = _as_float(boxes)
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


# ---------------------------------------------------------------------------------------- validity
def is_valid(boxes: BoxArray) -> BoxArray:
    """``(...)`` bool: all four numbers finite and ``x1 < x2``, ``y1 < y2`` (official ``bbox_is_valid``)."""
    b = _as_float(boxes)
    if isinstance(b, torch.Tensor):
        return torch.isfinite(b).all(-1) & (b[..., 0] < b[..., 2]) & (b[..., 1] < b[..., 3])
    with np.errstate(invalid="ignore"):
        return np.isfinite(b).all(-1) & (b[..., 0] < b[..., 2]) & (b[..., 1] < b[..., 3])


def intersects_image(boxes: BoxArray, width: float, height: float) -> BoxArray:
    """``(...)`` bool: the box overlaps the image rectangle ``[0, width] x [0, height]`` with positive area."""
    b = _as_float(boxes)
    if isinstance(b, torch.Tensor):
        iw = b[..., 2].clamp(max=width) - b[..., 0].clamp(min=0)
        ih = b[..., 3].clamp(max=height) - b[..., 1].clamp(min=0)
    else:
        iw = np.minimum(b[..., 2], width) - np.maximum(b[..., 0], 0)
        ih = np.minimum(b[..., 3], height) - np.maximum(b[..., 1], 0)
    return (iw > 0) & (ih > 0)


# ------------------------------------------------------------------------------------- geometry ops
def clip_to_image(boxes: BoxArray, width: float, height: float) -> BoxArray:
    """Clip xyxy boxes to ``[0, width] x [0, height]`` (x to width, y to height). Returns a copy."""
    b = _as_float(boxes)
    if isinstance(b, torch.Tensor):
        return _stack([b[..., 0].clamp(0, width), b[..., 1].clamp(0, height),
                       b[..., 2].clamp(0, width), b[..., 3].clamp(0, height)], b)
    # one clip against (w, h, w, h) in the boxes' dtype: what four per-column clips and a stack give, in one call
    return np.clip(b, 0, np.array((width, height, width, height), dtype=b.dtype))


def rasterize(boxes: np.ndarray, eps: float = RASTERIZE_EPS) -> np.ndarray:
    """Continuous xyxy -> integer xyxy with an exclusive end (int64).

    ``x1 -> floor(x1)``, ``y1 -> floor(y1)``, ``x2 -> floor(x2 + 1 - eps)``, ``y2 -> floor(y2 + 1 - eps)``:
    the integer rectangle covers every pixel (or grid cell) the box overlaps; an end lying within ``eps``
    past a pixel boundary does not claim the next pixel. The addition is done in the input's float dtype
    (float64 for dataset boxes) exactly as the official ``bbox_rasterize``.
    """
    b = np.array(_as_float(np.asarray(boxes)), copy=True)
    b[..., 2] += 1 - eps
    b[..., 3] += 1 - eps
    return np.floor(b).astype(np.int64)


def hflip(boxes: BoxArray, width: float) -> BoxArray:
    """Mirror xyxy boxes in an image of the given width: ``x -> width - x`` (x1/x2 swap roles)."""
    b = _as_float(boxes)
    return _stack([width - b[..., 2], b[..., 1], width - b[..., 0], b[..., 3]], b)


def scale_and_translate(boxes: np.ndarray, scale: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Map xyxy boxes through ``p -> p * scale + translation`` per axis (scale/translation are ``(2,)`` x, y).

    This is how boxes go from image pixels into a crop (and, with :func:`invert_scale_and_translation`,
    back). Arithmetic is float64.
    """
    b = np.array(boxes, dtype=np.float64, copy=True)
    s = np.asarray(scale, dtype=np.float64)
    t = np.asarray(translation, dtype=np.float64)
    b[..., 0::2] *= s[..., 0:1]
    b[..., 0::2] += t[..., 0:1]
    b[..., 1::2] *= s[..., 1:2]
    b[..., 1::2] += t[..., 1:2]
    return b


def invert_scale_and_translation(scale: np.ndarray, translation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parameters of the inverse map: ``(1 / scale, -translation / scale)``."""
    s = np.asarray(scale, dtype=np.float64)
    t = np.asarray(translation, dtype=np.float64)
    return 1.0 / s, -t / s


def enlarge_to_min_size(boxes: np.ndarray, min_size: float | tuple[float, float]) -> np.ndarray:
    """Grow xyxy boxes symmetrically about their centre so that ``w >= min_w`` and ``h >= min_h``.

    Sides already large enough are unchanged up to the cxcywh round trip (the official tracker's
    ``_adjust_bbox_size``; used with 10 px before computing the search crop).
    """
    mw, mh = (min_size, min_size) if np.isscalar(min_size) else min_size
    c = xyxy_to_cxcywh(np.asarray(boxes, dtype=np.float64))
    c[..., 2] = np.maximum(c[..., 2], mw)
    c[..., 3] = np.maximum(c[..., 3], mh)
    return cxcywh_to_xyxy(c)


# ------------------------------------------------------------------------------------------ overlap
def bbox_overlaps(boxes1: torch.Tensor, boxes2: torch.Tensor, mode: str = "iou", is_aligned: bool = False,
                  eps: float = 1e-6) -> torch.Tensor:
    """IoU or GIoU of xyxy boxes with mmdet ``bbox_overlaps`` semantics (the official loss's choice).

    Args:
        boxes1: ``(..., M, 4)``.
        boxes2: ``(..., N, 4)``; with ``is_aligned`` ``N == M``.
        mode: ``"iou"`` or ``"giou"``.
        is_aligned: elementwise (``(..., M)``) instead of pairwise (``(..., M, N)``).
        eps: lower clamp of the union and (GIoU) of the enclosing area. The official criterion uses 1e-6.

    Malformed boxes (``x2 < x1``) have negative area; intersections are clamped at 0, exactly as mmdet.
    """
    if mode not in ("iou", "giou"):
        raise ValueError(f"mode={mode!r}; expected 'iou' or 'giou'")
    rows, cols = boxes1.shape[-2], boxes2.shape[-2]
    if is_aligned and rows != cols:
        raise ValueError(f"is_aligned needs equal counts, got {rows} and {cols}")
    if rows * cols == 0:
        shape = boxes1.shape[:-2] + ((rows,) if is_aligned else (rows, cols))
        return boxes1.new_zeros(shape)

    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])
    if is_aligned:
        lt = torch.max(boxes1[..., :2], boxes2[..., :2])
        rb = torch.min(boxes1[..., 2:], boxes2[..., 2:])
        union_base = area1 + area2
        if mode == "giou":
            enc_lt = torch.min(boxes1[..., :2], boxes2[..., :2])
            enc_rb = torch.max(boxes1[..., 2:], boxes2[..., 2:])
    else:
        lt = torch.max(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
        rb = torch.min(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
        union_base = area1[..., None] + area2[..., None, :]
        if mode == "giou":
            enc_lt = torch.min(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
            enc_rb = torch.max(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]
    eps_t = overlap.new_tensor([eps])
    union = torch.max(union_base - overlap, eps_t)
    ious = overlap / union
    if mode == "iou":
        return ious
    enc_wh = (enc_rb - enc_lt).clamp(min=0)
    enc_area = torch.max(enc_wh[..., 0] * enc_wh[..., 1], eps_t)
    return ious - (enc_area - union) / enc_area


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Pairwise IoU ``(M, N)`` of xyxy boxes (mmdet semantics, union clamped to ``eps``)."""
    return bbox_overlaps(boxes1, boxes2, "iou", is_aligned=False, eps=eps)


def elementwise_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """IoU of corresponding rows ``(..., N)`` of two ``(..., N, 4)`` xyxy tensors."""
    return bbox_overlaps(boxes1, boxes2, "iou", is_aligned=True, eps=eps)


def elementwise_giou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """GIoU of corresponding rows ``(..., N)`` (in ``[-1, 1]``) with union and hull clamped to ``eps``."""
    return bbox_overlaps(boxes1, boxes2, "giou", is_aligned=True, eps=eps)


def iou_numpy(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """Elementwise IoU of broadcastable float64 xyxy arrays; 0 where the union is not positive.

    The evaluation-style IoU (no eps): for metrics rather than losses.
    """
    a = np.asarray(boxes1, dtype=np.float64)
    b = np.asarray(boxes2, dtype=np.float64)
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    union = box_area(a) + box_area(b) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return out


__all__ = [
    "RASTERIZE_EPS", "xywh_to_xyxy", "xyxy_to_xywh", "xyxy_to_cxcywh", "cxcywh_to_xyxy", "box_center",
    "box_size", "box_area", "is_valid", "intersects_image", "clip_to_image", "rasterize", "hflip",
    "scale_and_translate", "invert_scale_and_translation", "enlarge_to_min_size", "bbox_overlaps",
    "box_iou", "elementwise_iou", "elementwise_giou", "iou_numpy",
]
