"""OSTrack / LoReTrack inference (official ``lib/test/tracker/ostrack.py``), math kept in small functions.

frame 0 (``initialize``): template crop ``sample_target(frame, box, template_area_factor -> template_size)``,
    normalised once and kept; the state is the given box. The model is not run.
frame t (``track``):
    1. ``sample_target(frame, state, search_area_factor -> search_size)``: square crop of side
       ``ceil(sqrt(w h) * factor)`` centred on the state (Python ``round``), zero padding, bilinear resize;
    2. ``/255`` and ImageNet normalisation; one forward;
    3. ``response = hann2d * score_map``; :func:`lorat.models.center_head.cal_bbox` on the response
       (the window only picks the cell; size and offset come from the raw maps at that cell);
    4. ``box * search_size / resize_factor`` (float32), :func:`map_box_back` around the previous centre,
       :func:`clip_box` with margin 10: that is both the output and the new state.

The returned confidence is the (un-windowed) score at the chosen cell. There is no template update.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from ..models.center_head import cal_bbox
from .tracker import TrackConfig, check_image, check_init_box, prepare_model, resolve_device

_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
_SINGLE = "__single__"


# ============================================================================ the official math
def sample_target(image: np.ndarray, box_xywh: Sequence[float], area_factor: float,
                  output_size: int) -> tuple[np.ndarray, float]:
    """Square crop of ``image`` (H, W, 3) uint8 around ``box_xywh``, zero-padded, resized to ``output_size``.

    Returns ``(crop (output_size, output_size, 3) uint8, resize_factor = output_size / crop_sz)``.
    The right/bottom pad is ``max(x2 - W + 1, 0)`` (the official +1).
    """
    x, y, w, h = (float(v) for v in box_xywh)
    crop_sz = math.ceil(math.sqrt(w * h) * area_factor)
    if crop_sz < 1:
        raise ValueError(f"box {tuple(box_xywh)} is too small to crop (crop side {crop_sz})")
    x1 = round(x + 0.5 * w - crop_sz * 0.5)
    y1 = round(y + 0.5 * h - crop_sz * 0.5)
    x2, y2 = x1 + crop_sz, y1 + crop_sz
    x1_pad, y1_pad = max(0, -x1), max(0, -y1)
    x2_pad, y2_pad = max(x2 - image.shape[1] + 1, 0), max(y2 - image.shape[0] + 1, 0)
    crop = image[y1 + y1_pad:y2 - y2_pad, x1 + x1_pad:x2 - x2_pad, :]
    if crop.shape[0] <= 0 or crop.shape[1] <= 0:  # the box left the frame entirely: all padding
        padded = np.zeros((crop_sz, crop_sz, 3), dtype=image.dtype)
    else:
        padded = cv2.copyMakeBorder(crop, y1_pad, y2_pad, x1_pad, x2_pad, cv2.BORDER_CONSTANT)
    return cv2.resize(padded, (output_size, output_size)), output_size / crop_sz


def preprocess(crop: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float32: ``(x / 255 - mean) / std`` (ImageNet)."""
    t = torch.tensor(crop).float().permute(2, 0, 1).unsqueeze(0)
    return ((t / 255.0) - _MEAN) / _STD


def hann1d(n: int) -> torch.Tensor:
    """Centred Hann window ``0.5 * (1 - cos(2 pi k / (n + 1)))``, k = 1..n (no zero ends)."""
    return 0.5 * (1 - torch.cos((2 * math.pi / (n + 1)) * torch.arange(1, n + 1).float()))


def hann2d(h: int, w: int) -> torch.Tensor:
    """(1, 1, h, w) outer product of :func:`hann1d` windows."""
    return hann1d(h).reshape(1, 1, -1, 1) * hann1d(w).reshape(1, 1, 1, -1)


def decode(score_map: torch.Tensor, size_map: torch.Tensor, offset_map: torch.Tensor,
           window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Windowed argmax decode: ``(boxes (B,4) cxcywh normalised, flat cell index (B,), raw score (B,))``."""
    response = window * score_map
    boxes = cal_bbox(response, size_map, offset_map)
    idx = response.flatten(1).argmax(dim=1)
    score = score_map.flatten(1).gather(1, idx[:, None]).squeeze(1)
    return boxes, idx, score


def box_to_pixels(box_crop: torch.Tensor, search_size: int, resize_factor: float) -> list[float]:
    """One normalised (cx, cy, w, h) crop box (4,) -> crop pixels of the original frame scale (float32 math)."""
    return (box_crop * search_size / resize_factor).tolist()


def map_box_back(pred_box: Sequence[float], prev_state: Sequence[float], search_size: int,
                 resize_factor: float) -> list[float]:
    """Crop-relative (cx, cy, w, h) px -> frame (x, y, w, h): the crop is centred on the previous state."""
    cx_prev = prev_state[0] + 0.5 * prev_state[2]
    cy_prev = prev_state[1] + 0.5 * prev_state[3]
    cx, cy, w, h = pred_box
    half = 0.5 * search_size / resize_factor
    cx_real, cy_real = cx + (cx_prev - half), cy + (cy_prev - half)
    return [cx_real - 0.5 * w, cy_real - 0.5 * h, w, h]


def clip_box(box: Sequence[float], H: int, W: int, margin: float = 10) -> list[float]:
    """Official ``clip_box``: x2 is taken before clipping x1; sides are at least ``margin``."""
    x1, y1, w, h = box
    x2, y2 = x1 + w, y1 + h
    x1 = min(max(0, x1), W - margin)
    x2 = min(max(margin, x2), W)
    y1 = min(max(0, y1), H - margin)
    y2 = min(max(margin, y2), H)
    return [x1, y1, max(margin, x2 - x1), max(margin, y2 - y1)]


# ============================================================================ the tracker
@dataclass
class _State:
    z: torch.Tensor  # (1, 3, T, T) normalised template
    box: list[float]  # (x, y, w, h) frame pixels
    frame: int = 0


class OSTrackTracker:
    """Track with an OSTrack / LoReTrack model (``model.cfg`` gives the crop sizes and area factors).

    Single sequence: ``initialize(image, box_xywh)`` then ``track(image) -> (box_xywh (4,) float64, score)``.
    Many sequences, one forward per frame: ``initialize_many(ids, images, boxes)`` /
    ``track_many(ids, images) -> [(box, score), ...]`` (``images`` first, ids last is accepted too).
    ``cfg`` (a :class:`lorat.TrackConfig`): only ``device``, ``dtype`` and ``copy_model`` apply.
    """

    margin: float = 10.0

    def __init__(self, model: nn.Module, cfg: TrackConfig | None = None) -> None:
        self.cfg = (cfg or TrackConfig()).validate()
        self.device = resolve_device(self.cfg.device)
        self.dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[self.cfg.dtype]
        self.model = prepare_model(model, self.cfg, self.device)
        mc = self.model.cfg
        self.template_size, self.search_size = int(mc.template_size), int(mc.search_size)
        self.template_factor, self.search_factor = float(mc.template_area_factor), float(mc.search_area_factor)
        feat = self.search_size // int(mc.patch_size)
        self.window = hann2d(feat, feat).to(self.device)
        self._autocast = self.device.type == "cuda" and self.dtype != torch.float32
        self._input_dtype = torch.float32 if self._autocast else self.dtype
        self.states: dict[Hashable, _State] = {}

    # ------------------------------------------------------------------ single sequence
    def initialize(self, image: np.ndarray, box_xywh: Sequence[float]) -> None:
        """Start (or restart) the single sequence on ``image`` with the box (x, y, w, h)."""
        self.initialize_many([_SINGLE], [image], [box_xywh])

    def track(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Next frame of the single sequence: ``(box (4,) float64 x, y, w, h, score)``."""
        if _SINGLE not in self.states:
            raise ValueError("call initialize(image, box) before track(image)")
        return self.track_many([_SINGLE], [image])[0]

    # ------------------------------------------------------------------ many sequences
    @staticmethod
    def _order(a, b, c=None):
        # Accept (ids, images[, boxes]) and (images[, boxes], ids).
        if len(a) and isinstance(a[0], np.ndarray):
            return (c, a, b) if c is not None else (b, a, None)
        return (a, b, c)

    def initialize_many(self, ids, images, boxes=None) -> None:
        """Start sequences ``ids`` on ``images`` with ``boxes`` (x, y, w, h); no model call."""
        ids, images, boxes = self._order(ids, images, boxes)
        if boxes is None or not (len(ids) == len(images) == len(boxes)):
            raise ValueError("initialize_many needs as many images and boxes as ids")
        new = {}
        for sid, image, box in zip(ids, images, boxes):
            check_image(image, "image" if sid == _SINGLE else f"image of sequence {sid!r}")
            h, w = image.shape[:2]
            b = [float(v) for v in np.asarray(box, dtype=np.float64).reshape(-1)] if np.size(box) == 4 else box
            check_init_box(b, w, h)
            crop, _ = sample_target(image, b, self.template_factor, self.template_size)
            new[sid] = _State(z=preprocess(crop).to(self.device, self._input_dtype), box=list(b))
        self.states.update(new)

    def track_many(self, ids, images) -> list[tuple[np.ndarray, float]]:
        """Track the next frame of every sequence in ``ids`` with one batched forward."""
        ids, images, _ = self._order(ids, images)
        if len(ids) != len(images):
            raise ValueError(f"track_many needs one image per id: {len(ids)} ids, {len(images)} images")
        missing = [sid for sid in ids if sid not in self.states]
        if missing:
            raise ValueError(f"sequence ids {missing} were not initialised (call initialize_many first)")
        if not ids:
            return []
        states = [self.states[sid] for sid in ids]
        crops = []
        for sid, image, st in zip(ids, images, states):
            check_image(image, "image" if sid == _SINGLE else f"image of sequence {sid!r}")
            crops.append(sample_target(image, st.box, self.search_factor, self.search_size))
        x = torch.cat([preprocess(c) for c, _ in crops]).to(self.device, self._input_dtype)
        z = torch.cat([st.z for st in states])
        out = self._forward(z, x)
        boxes, _, scores = decode(out["score_map"], out["size_map"], out["offset_map"], self.window)
        boxes, scores = boxes.cpu(), scores.cpu()
        results = []
        for i, (image, st) in enumerate(zip(images, states)):
            rf = crops[i][1]
            pred = box_to_pixels(boxes[i], self.search_size, rf)
            st.box = clip_box(map_box_back(pred, st.box, self.search_size, rf), image.shape[0], image.shape[1],
                              self.margin)
            st.frame += 1
            results.append((np.asarray(st.box, dtype=np.float64), float(scores[i])))
        return results

    def remove(self, ids) -> None:
        """Forget sequences."""
        for sid in ids:
            self.states.pop(sid, None)

    def _forward(self, z: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        ctx = torch.autocast(self.device.type, dtype=self.dtype) if self._autocast else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            out = self.model(z, x)
        return {k: out[k].float() for k in ("score_map", "size_map", "offset_map")}


__all__ = ["OSTrackTracker", "sample_target", "preprocess", "hann1d", "hann2d", "decode", "box_to_pixels",
           "map_box_back", "clip_box"]
