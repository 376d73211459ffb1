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

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from .. import boxes as bx
from ..models.center_head import cal_bbox
from .tracker import SequenceState, TrackConfig, Tracker

_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


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
class OSTrackTracker(Tracker):
    """OSTrack / LoReTrack inference on the shared :class:`lorat.Tracker` loop (``lorat.Tracker(model)``
    returns one for an OSTrack-architecture model).

    Same public API as every tracker: ``initialize(image, box_xywh)`` / ``track(image) -> (box_xywh (4,)
    float64, score)``, batched ``initialize_many(ids, images, boxes)`` / ``track_many(ids, images)`` (one
    forward per frame for all sequences), ``remove(ids)``. Precision (``TrackConfig.dtype``, default
    ``auto``) and device come from the base class. Overridden steps: the template and search crops
    (:func:`sample_target`, zero padding), the forward ``model(z, x)``, the decode (Hann multiply +
    ``cal_bbox``, :func:`map_box_back`, :func:`clip_box` with :attr:`margin`) and the state update (the
    clipped box always becomes the state). ``TrackConfig.window_penalty`` and ``min_box_size`` do not apply
    (OSTrack multiplies by the window and has no minimum crop box).

    The per-sequence box is kept as the official ``[x, y, w, h]`` float list in ``state.extra["xywh"]`` (the
    crop side ``ceil(sqrt(w h) * factor)`` is computed from exactly those numbers); ``state.box`` holds the
    same box as xyxy for the shared code.
    """

    margin: float = 10.0
    """Minimum side (px) of the clipped box (official ``clip_box(..., margin=10)``)."""

    def __init__(self, model: nn.Module, cfg: TrackConfig | None = None) -> None:
        super().__init__(model, cfg)
        mc = self.model.cfg
        self.template_px, self.search_px = int(mc.template_size), int(mc.search_size)
        feat = self.search_px // int(mc.patch_size)
        self.hann = hann2d(feat, feat).to(self.device)
        """``(1, 1, feat, feat)`` OSTrack window (no zero ends), multiplied onto the score map."""

    # ------------------------------------------------------------------ override points
    def new_state(self, image: np.ndarray, box: np.ndarray, seq_id: Hashable) -> SequenceState:
        """Frame 0: the template ``sample_target(image, box, template factor -> template size)``, normalised."""
        xywh = [float(v) for v in bx.xyxy_to_xywh(np.asarray(box, dtype=np.float64))]
        crop, _ = sample_target(image, xywh, self.template_area_factor, self.template_px)
        z = preprocess(crop)[0].to(self.device, self.input_dtype)  # (3, T, T)
        return SequenceState(z=z, z_mask=None, pad=torch.zeros(3), box=np.asarray(box, dtype=np.float64),
                             seq_id=seq_id, extra={"xywh": xywh})

    def initialize_many(self, ids: Sequence[Hashable], images: Sequence[np.ndarray],
                        boxes_xywh: Sequence[Sequence[float]]) -> None:
        """Start sequences ``ids`` (see :meth:`lorat.Tracker.initialize_many`); the given ``x, y, w, h``
        numbers are kept exactly as the official state."""
        super().initialize_many(ids, images, boxes_xywh)
        for sid, box in zip(ids, boxes_xywh):  # exact user numbers (xyxy -> xywh may move the last bit)
            st = self.states[sid]
            st.extra["xywh"] = [float(v) for v in np.asarray(box, dtype=np.float64).reshape(-1)]

    def crop_search(self, state: SequenceState, image: np.ndarray) -> tuple[torch.Tensor, _Crop]:
        """``sample_target(image, state, search factor -> search size)``; crop info for :meth:`decode`."""
        prev = state.extra["xywh"]
        crop, resize_factor = sample_target(image, prev, self.search_area_factor, self.search_px)
        return preprocess(crop)[0], _Crop(resize_factor, list(prev), image.shape[0], image.shape[1])

    def batch_templates(self, states: Sequence[SequenceState]) -> tuple[torch.Tensor, ...]:
        """``(z (B, 3, T, T),)``: OSTrack has no template mask."""
        return (torch.stack([st.z for st in states]),)

    def forward(self, templates: tuple[torch.Tensor, ...], x: torch.Tensor,
                states: Sequence[SequenceState]) -> dict[str, torch.Tensor]:
        """``model(z, x)``; the three head maps as float32 (B, 1|2|2, H, W)."""
        out = self.run_model(templates[0], x)
        return {k: out[k].float() for k in ("score_map", "size_map", "offset_map")}

    def decode(self, outputs: dict[str, torch.Tensor], crops: Sequence[_Crop],
               states: Sequence[SequenceState]) -> tuple[np.ndarray, np.ndarray]:
        """Windowed ``cal_bbox``, back to the frame around the previous centre, ``clip_box``: (B, 4) xyxy, (B,)."""
        boxes, _, scores = decode(outputs["score_map"], outputs["size_map"], outputs["offset_map"], self.hann)
        boxes, scores = boxes.cpu(), scores.double().cpu().numpy()
        out = np.empty((len(crops), 4), dtype=np.float64)
        for i, (c, st) in enumerate(zip(crops, states)):
            pred = box_to_pixels(boxes[i], self.search_px, c.resize_factor)
            xywh = clip_box(map_box_back(pred, c.prev_xywh, self.search_px, c.resize_factor), c.height, c.width,
                            self.margin)
            st.extra["next_xywh"] = [float(v) for v in xywh]
            out[i] = bx.xywh_to_xyxy(np.asarray(xywh, dtype=np.float64))
        return out, scores

    def update(self, state: SequenceState, box: np.ndarray, score: float, image: np.ndarray) -> None:
        """The clipped box is the new state (always: ``clip_box`` keeps it inside with sides >= margin)."""
        state.extra["xywh"] = state.extra.pop("next_xywh")
        state.box = np.asarray(box, dtype=np.float64)
        state.frame += 1


@dataclass
class _Crop:
    """How one search crop was cut: what :meth:`OSTrackTracker.decode` needs to map its box back."""

    resize_factor: float
    prev_xywh: list[float]
    height: int
    width: int


__all__ = ["OSTrackTracker", "sample_target", "preprocess", "hann1d", "hann2d", "decode", "box_to_pixels",
           "map_box_back", "clip_box"]
