"""The LoRAT tracker: one object per sequence, many sequences per forward pass.

Inference follows the official one-stream pipeline (spec §5, ``pipelines/one_stream``) step by step:

frame 0 (:meth:`Tracker.initialize`)
    template crop of the given box with ``template_area_factor`` (2) and the SiamFC context rule, padded
    with the frame's channel mean; ``/255``, ImageNet normalisation; the template foreground mask is the
    box mapped through the *adjusted* crop parameters and rasterised with stride ``template_size /
    template_feat``. The template, its mask and the frame-0 channel mean are cached per sequence. The model
    is not run; the frame-0 result is the given box with confidence 1.
frame t (:meth:`Tracker.track`)
    1. the last accepted box, enlarged about its centre to >= ``min_box_size`` px per side (for cropping
       only), gives the search crop (``search_area_factor`` 4 or 5), padded with the *frame-0* mean;
    2. one forward on ``(template, search, mask)``;
    3. ``p = sigmoid(score)``, ``q = (1 - 0.45) p + 0.45 hann`` (``periodic=False`` outer product),
       ``idx = argmax q``, confidence = ``p[idx]`` (un-penalised), box = ``boxes[idx] * search size``;
    4. the box goes back to the image with the adjusted crop parameters and is clipped to the image: that
       is the reported result, whatever it looks like;
    5. it replaces the state only if it has positive width and height and overlaps the image.

There is no score threshold, template update, smoothing or re-detection.

Batching: every call takes a list of sequence ids; all active sequences go through *one* forward
(:meth:`Tracker.track_many`), sharing every line of pre- and post-processing with the single-sequence
methods, which are just the one-element case. The crop is :func:`lorat.data.transforms.crop_and_resize`, the
function training uses.

The model: the tracker puts it in eval mode, merges LoRA (``TrackConfig.merge_lora``: merged weights are
exactly as accurate and 16-24 % faster), moves it to the device and, for bf16/fp16 off CUDA, casts the
weights (faster than autocast on CPU, which re-casts fp32 weights every call). These changes are made **in
place** on the model you pass, unless ``TrackConfig.copy_model`` is set (use that when the model is still
being trained, e.g. for an evaluation during training).
"""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import boxes as bx
from ..data import transforms as T

__all__ = ["TrackConfig", "Tracker", "BatchTracker", "SequenceState", "hann_window_2d", "decode_prediction",
           "check_image", "check_init_box", "resolve_device", "prepare_model"]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_SINGLE = "__single__"  # sequence id used by initialize()/track()


@dataclass
class TrackConfig:
    """Inference settings of :class:`Tracker` (the crop geometry comes from the model's ``cfg``).

    Attributes:
        device: ``cpu``, ``cuda`` (or ``cuda:N``), ``mps`` or ``auto`` (CUDA, else MPS, else CPU; under
            torchrun CUDA picks ``cuda:$LOCAL_RANK``).
        dtype: ``float32``, ``bfloat16`` or ``float16``. On CUDA the two half types run under autocast with
            fp32 weights (the official evaluation uses fp16 autocast); elsewhere the weights are cast once.
            float16 is refused on CPU (no fast kernels there).
        window_penalty: weight of the Hann window in the additive penalty (official 0.45).
        min_box_size: minimum side (px) of the state box when computing the search crop (official 10).
        merge_lora: fold LoRA into the weights before tracking.
        copy_model: prepare (merge/cast/move) a deep copy instead of the model passed in.
    """

    device: str = "auto"
    dtype: str = "float32"
    window_penalty: float = 0.45
    min_box_size: float = 10.0
    merge_lora: bool = True
    copy_model: bool = False

    def validate(self) -> TrackConfig:
        """Raise ValueError naming the bad field."""
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype={self.dtype!r}; expected one of {', '.join(_DTYPES)}")
        if not (self.device in ("auto", "cpu", "mps") or self.device.startswith("cuda")):
            raise ValueError(f"device={self.device!r}; expected cpu, cuda, cuda:N, mps or auto")
        if not 0.0 <= self.window_penalty <= 1.0:
            raise ValueError(f"window_penalty={self.window_penalty} must lie in [0, 1]")
        if not self.min_box_size >= 0:
            raise ValueError(f"min_box_size={self.min_box_size} must be >= 0")
        return self


# ============================================================================ device / model
def resolve_device(name: str) -> torch.device:
    """``auto`` -> ``cuda[:LOCAL_RANK]`` / ``mps`` / ``cpu``; a named device that is absent is a ValueError."""
    import os

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} requested but CUDA is not available (use --device cpu)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device={name!r} requested but MPS is not available (use --device cpu)")
    return dev


def prepare_model(model: nn.Module, cfg: TrackConfig, device: torch.device) -> nn.Module:
    """Eval mode, LoRA merged, on ``device``, weights cast for half precision off CUDA (see module doc)."""
    from ..models.peft import has_lora

    dtype = _DTYPES[cfg.dtype]
    if dtype == torch.float16 and device.type == "cpu":
        raise ValueError("dtype='float16' is not supported on CPU (no fp16 kernels); use 'bfloat16'")
    if cfg.copy_model:
        model = copy.deepcopy(model)
    model.eval()
    if cfg.merge_lora and has_lora(model):
        if hasattr(model, "merge_lora"):
            model.merge_lora()
        else:
            from ..models.peft import merge_lora
            merge_lora(model)
    model.to(device)
    if dtype != torch.float32 and device.type != "cuda":
        model.to(dtype)  # bf16 weights: ~1.6-2x fp32 on AVX512-BF16 CPUs, autocast only ~1.3x
    return model


# ============================================================================ input checks
def check_image(image: Any, what: str = "image") -> np.ndarray:
    """Return ``image`` if it is an ``(H, W, 3)`` uint8 numpy array with H, W > 0, else raise ValueError."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{what} must be a numpy array (H, W, 3) uint8 RGB, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{what} must have shape (H, W, 3) with H, W > 0, got {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 (0-255 RGB), got dtype {image.dtype}")
    return image


def check_init_box(box_xywh: Any, width: int, height: int) -> np.ndarray:
    """Validate an initial ``x, y, w, h`` box for a ``width x height`` image; returns it as xyxy float64.

    Raises ValueError naming the box when it is not 4 numbers, has a NaN/inf, a side <= 0, or does not
    overlap the image. A box partly outside the image is fine (the crop pads).
    """
    try:
        b = np.asarray(box_xywh, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"initial box {box_xywh!r} is not 4 numbers x, y, w, h") from None
    if b.shape != (4,):
        raise ValueError(f"initial box {box_xywh!r} must have 4 numbers x, y, w, h, got {b.size}")
    shown = "(" + ", ".join(f"{v:g}" for v in b) + ")"
    if not np.isfinite(b).all():
        raise ValueError(f"initial box {shown} contains NaN or infinity")
    if b[2] <= 0 or b[3] <= 0:
        raise ValueError(f"initial box {shown} has zero or negative size (w={b[2]:g}, h={b[3]:g})")
    xyxy = bx.xywh_to_xyxy(b)
    if not bx.intersects_image(xyxy, width, height):
        raise ValueError(f"initial box {shown} (x, y, w, h) lies outside the {width}x{height} image")
    return xyxy


# ============================================================================ post-processing
def hann_window_2d(h: int, w: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``(h, w)`` float32 window ``outer(hann(h), hann(w))`` with ``periodic=False`` (official definition)."""
    return torch.outer(torch.hann_window(h, periodic=False, dtype=torch.float32, device=device),
                       torch.hann_window(w, periodic=False, dtype=torch.float32, device=device))


def decode_prediction(score_map: torch.Tensor, boxes: torch.Tensor, window: torch.Tensor | None,
                      window_penalty: float, search_size: tuple[int, int]
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pick one box per sample from the model output (spec §5.2 step 4).

    Args:
        score_map: ``(B, H, W)`` logits.
        boxes: ``(B, H, W, 4)`` normalised xyxy boxes relative to the search crop.
        window: ``(H, W)`` Hann window (:func:`hann_window_2d`), or None for no penalty.
        window_penalty: ``q = p * (1 - window_penalty) + window * window_penalty``.
        search_size: ``(W_s, H_s)`` of the search crop in pixels.

    Returns:
        ``(box (B, 4) float32 xyxy in search-crop pixels, confidence (B,) = sigmoid score at the chosen cell,
        not penalised, index (B,) int64 flat row-major cell index)``.
    """
    B, H, W = score_map.shape
    p = score_map.float().sigmoid().reshape(B, H * W)
    q = p
    if window is not None and window_penalty:
        q = p * (1 - window_penalty) + window.reshape(1, H * W).to(p) * window_penalty
    idx = q.argmax(dim=1)  # first maximum on ties, as torch.argmax documents
    confidence = p.gather(1, idx[:, None])[:, 0]
    chosen = boxes.float().reshape(B, H * W, 4)[torch.arange(B, device=idx.device), idx]
    ws, hs = search_size
    scale = torch.tensor([ws, hs, ws, hs], dtype=chosen.dtype, device=chosen.device)
    return chosen * scale, confidence, idx


# ============================================================================ tracker
@dataclass
class SequenceState:
    """What the tracker keeps per sequence between frames."""

    z: torch.Tensor
    """``(3, Hz, Wz)`` normalised template crop on the device, in the model's input dtype."""
    z_mask: torch.Tensor
    """``(Hz', Wz')`` int64 template foreground mask (token types 0/1) on the device."""
    pad: torch.Tensor
    """``(3,)`` float32 channel mean of frame 0 (0-255): pads every search crop of this sequence."""
    box: np.ndarray
    """``(4,)`` float64 xyxy last accepted box in image pixels (the crop centre for the next frame)."""
    frame: int = 0
    """Frames processed so far after the first."""


class Tracker:
    """LoRAT tracker over one or many sequences (see the module docstring for the algorithm).

    Single sequence::

        tracker = Tracker(model)                       # model from lorat.create_model / load_checkpoint
        tracker.initialize(frame0, (x, y, w, h))       # frames: (H, W, 3) uint8 RGB numpy arrays
        box_xywh, score = tracker.track(frame1)

    Many sequences, one forward per frame for all of them::

        tracker.initialize_many(["a", "b"], [fa0, fb0], [box_a, box_b])
        results = tracker.track_many(["a", "b"], [fa1, fb1])   # [(box_xywh, score), ...]
        tracker.remove(["a"])

    Args:
        model: a LoRAT-like module: ``model(z, x, z_feat_mask) -> {"score_map", "boxes"}`` with ``model.cfg``
            giving ``template_size``, ``search_size``, ``template_area_factor``, ``search_area_factor``,
            ``template_feat``. Prepared in place (see :func:`prepare_model`).
        cfg: inference settings; default :class:`TrackConfig`.
    """

    def __init__(self, model: nn.Module, cfg: TrackConfig | None = None) -> None:
        self.cfg = (cfg or TrackConfig()).validate()
        self.device = resolve_device(self.cfg.device)
        self.dtype = _DTYPES[self.cfg.dtype]
        self.model = prepare_model(model, self.cfg, self.device)
        mc = self.model.cfg
        self.template_size = (int(mc.template_size), int(mc.template_size))
        self.search_size = (int(mc.search_size), int(mc.search_size))
        self.template_feat = (int(mc.template_feat), int(mc.template_feat))
        self.template_area_factor = float(mc.template_area_factor)
        self.search_area_factor = float(mc.search_area_factor)
        # Inputs are cast to the weights' dtype off CUDA; on CUDA autocast handles half precision.
        self._autocast = self.device.type == "cuda" and self.dtype != torch.float32
        self._input_dtype = torch.float32 if self._autocast else self.dtype
        self._windows: dict[tuple[int, int], torch.Tensor] = {}
        self.states: dict[Hashable, SequenceState] = {}

    # ------------------------------------------------------------------ single sequence
    def initialize(self, image: np.ndarray, box_xywh: Sequence[float]) -> None:
        """Start (or restart) the single tracked sequence on ``image`` with the box ``(x, y, w, h)``."""
        self.initialize_many([_SINGLE], [image], [box_xywh])

    def track(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Track the single sequence in the next frame: ``(box (4,) float64 x, y, w, h, confidence)``."""
        if _SINGLE not in self.states:
            raise ValueError("call initialize(image, box) before track(image)")
        return self.track_many([_SINGLE], [image])[0]

    # ------------------------------------------------------------------ many sequences
    @property
    def active_ids(self) -> list[Hashable]:
        """Ids of the sequences currently tracked (single-sequence use shows ``'__single__'``)."""
        return list(self.states)

    def initialize_many(self, ids: Sequence[Hashable], images: Sequence[np.ndarray],
                        boxes_xywh: Sequence[Sequence[float]]) -> None:
        """Start sequences ``ids`` (an id already active is restarted). No model call, as officially."""
        if not (len(ids) == len(images) == len(boxes_xywh)):
            raise ValueError(f"initialize_many needs as many images and boxes as ids: {len(ids)} ids, "
                             f"{len(images)} images, {len(boxes_xywh)} boxes")
        _check_unique(ids)
        new = {}
        for sid, image, box in zip(ids, images, boxes_xywh):  # validate everything before changing state
            what = "image" if sid == _SINGLE else f"image of sequence {sid!r}"
            check_image(image, what)
            h, w = image.shape[:2]
            try:
                xyxy = check_init_box(box, w, h)
            except ValueError as e:
                raise (e if sid == _SINGLE else ValueError(f"sequence {sid!r}: {e}")) from None
            new[sid] = self._init_state(image, xyxy)
        self.states.update(new)

    def track_many(self, ids: Sequence[Hashable], images: Sequence[np.ndarray]) -> list[tuple[np.ndarray, float]]:
        """Track the next frame of each sequence in ``ids`` with one batched forward.

        Returns ``[(box (4,) float64 x, y, w, h, confidence), ...]`` in the order of ``ids``.
        """
        if len(ids) != len(images):
            raise ValueError(f"track_many needs one image per id: {len(ids)} ids, {len(images)} images")
        if not ids:
            return []
        _check_unique(ids)
        missing = [sid for sid in ids if sid not in self.states]
        if missing:
            raise ValueError(f"sequence ids {missing} were not initialised (call initialize_many first)")
        for sid, image in zip(ids, images):
            check_image(image, "image" if sid == _SINGLE else f"image of sequence {sid!r}")
        states = [self.states[sid] for sid in ids]
        # 1-2. search crops around the last boxes, padded with each sequence's frame-0 mean
        crops = [self._search_crop(image, st) for image, st in zip(images, states)]
        x = torch.stack([c[0] for c in crops]).to(self.device, self._input_dtype, non_blocking=True)
        z = torch.stack([st.z for st in states])
        z_mask = torch.stack([st.z_mask for st in states])
        # 3. one forward for every sequence
        score_map, boxes = self._forward(z, x, z_mask)
        # 4. window penalty + argmax, box in crop pixels
        box_crop, confidence, _ = decode_prediction(score_map, boxes, self._window(score_map.shape[-2:]),
                                                    self.cfg.window_penalty, self.search_size)
        box_crop = box_crop.double().cpu().numpy()
        confidence = confidence.cpu().numpy()
        # 5-7. back to the image, clip, report, update
        out = []
        for i, (image, st) in enumerate(zip(images, states)):
            h, w = image.shape[:2]
            box = self._update(st, box_crop[i], crops[i][1], crops[i][2], w, h)
            out.append((bx.xyxy_to_xywh(box), float(confidence[i])))
        return out

    def remove(self, ids: Iterable[Hashable]) -> None:
        """Forget sequences (their cached templates are freed)."""
        for sid in ids:
            self.states.pop(sid, None)

    def reset(self) -> None:
        """Forget every sequence."""
        self.states.clear()

    # ------------------------------------------------------------------ steps shared by all paths
    def _normalise(self, crop: torch.Tensor) -> torch.Tensor:
        # (3, H, W) 0-255 float32 -> /255 -> ImageNet normalisation, as the official transform
        return T.normalize(crop.div_(255.0))

    def _init_state(self, image: np.ndarray, box: np.ndarray) -> SequenceState:
        """Template crop, its foreground mask and the frame-0 mean (spec §5.1)."""
        pad = T.image_mean(image)
        scale, translation = T.siamfc_crop_params(box, self.template_area_factor, self.template_size)
        crop, scale, translation = T.crop_and_resize(image, scale, translation, self.template_size, pad_color=pad)
        z_box = T.boxes_to_crop(box, scale, translation)  # adjusted parameters (spec §1.3)
        mask = T.template_foreground_mask(z_box, self.template_size, self.template_feat)
        return SequenceState(
            z=self._normalise(crop).to(self.device, self._input_dtype),
            z_mask=torch.from_numpy(mask).to(self.device),
            pad=pad,
            box=np.asarray(box, dtype=np.float64),
        )

    def _search_crop(self, image: np.ndarray, st: SequenceState) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """``(normalised crop (3, Hx, Wx), actual scale (2,), actual translation (2,))`` for the next frame."""
        centre_box = bx.enlarge_to_min_size(st.box, self.cfg.min_box_size)  # only for cropping
        scale, translation = T.siamfc_crop_params(centre_box, self.search_area_factor, self.search_size)
        crop, scale, translation = T.crop_and_resize(image, scale, translation, self.search_size, pad_color=st.pad)
        return self._normalise(crop), scale, translation

    def _forward(self, z: torch.Tensor, x: torch.Tensor, z_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ctx = (torch.autocast(self.device.type, dtype=self.dtype) if self._autocast else contextlib.nullcontext())
        with torch.inference_mode(), ctx:
            out = self.model(z, x, z_mask)
        return out["score_map"].float(), out["boxes"].float()  # (B, H, W), (B, H, W, 4)

    def _window(self, hw: Sequence[int]) -> torch.Tensor:
        key = (int(hw[0]), int(hw[1]))
        if key not in self._windows:
            self._windows[key] = hann_window_2d(*key, device=self.device)
        return self._windows[key]

    @staticmethod
    def _update(st: SequenceState, box_crop: np.ndarray, scale: np.ndarray, translation: np.ndarray,
                width: int, height: int) -> np.ndarray:
        """Crop box -> image (adjusted params) -> clip; the state moves only to a valid, overlapping box."""
        box = bx.clip_to_image(T.boxes_from_crop(box_crop, scale, translation), width, height)
        if bool(bx.is_valid(box)) and bool(bx.intersects_image(box, width, height)):
            st.box = box
        st.frame += 1
        return box


BatchTracker = Tracker
"""Alias: :class:`Tracker` batches natively (``initialize_many`` / ``track_many``)."""


def _check_unique(ids: Sequence[Hashable]) -> None:
    seen = set()
    dup = [sid for sid in ids if sid in seen or seen.add(sid)]
    if dup:
        raise ValueError(f"duplicate sequence ids in one call: {dup}")
