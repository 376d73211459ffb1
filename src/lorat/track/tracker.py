"""Trackers: the shared batched tracking loop, with LoRAT's official inference as the default steps.

:class:`Tracker` runs N sequences at once (``initialize_many`` / ``track_many``; ``initialize`` / ``track``
are the N = 1 case). Every frame of every active sequence goes through the same five steps, each a
documented method a subclass may override (the *tracker contract*, ``docs/DESIGN.md``):

=====================================  ==============================================================
``new_state(image, box, seq_id)``      frame 0: build the per-sequence :class:`SequenceState`
``crop_search(state, image)``          frame t: the normalised search crop and its :class:`SearchCrop`
``batch_templates(states)``            the template side of the model input, batched over sequences
``forward(templates, x, states)``      one model call for the whole batch -> output dict
``decode(outputs, crops, states)``     output -> one box (image pixels, xyxy) and score per sequence
``update(state, box, score, image)``   move the sequence's state (memory, carried tokens, ...)
``release(seq_id)``                    forget a sequence
=====================================  ==============================================================

``lorat.Tracker(model)`` picks the tracker class the model's architecture registered
(``Arch.tracker``, a ``"module:Class"`` path): LoRAT models get this class, other architectures get their
own subclass, so nothing here knows an architecture by name.

LoRAT's steps follow the official one-stream pipeline (``docs/tracking.md`` describes every step):

frame 0
    template crop of the given box with ``template_area_factor`` (2) and the SiamFC context rule, padded
    with the frame's channel mean; ``/255``, ImageNet normalisation; the template foreground mask is the
    box mapped through the *adjusted* crop parameters and rasterised with stride ``template_size /
    template_feat``. The template, its mask and the frame-0 channel mean are cached per sequence. The model
    is not run; the frame-0 result is the given box with confidence 1.
frame t
    1. the last accepted box, enlarged about its centre to >= ``min_box_size`` px per side (for cropping
       only), gives the search crop (``search_area_factor`` 4 or 5), padded with the *frame-0* mean;
    2. one forward on ``(template, search, mask)``;
    3. ``p = sigmoid(score)``, ``q = (1 - 0.45) p + 0.45 hann`` (``periodic=False`` outer product),
       ``idx = argmax q``, confidence = ``p[idx]`` (un-penalised), box = ``boxes[idx] * search size``;
    4. the box goes back to the image with the adjusted crop parameters and is clipped to the image: that
       is the reported result, whatever it looks like;
    5. it replaces the state only if it has positive width and height and overlaps the image.

There is no score threshold, template update, smoothing or re-detection.

Precision (``TrackConfig.dtype``, the vocabulary of :mod:`lorat.device`): ``auto`` (default) is fp16
autocast on CUDA, as the official evaluation runs, bf16 on CPUs with native bf16 instructions where a
one-off measurement shows bf16 faster than fp32 (:func:`lorat.device.cpu_prefers_bf16`), fp32 otherwise.
Half precision uses autocast with fp32 weights on CUDA; elsewhere the weights are cast once (faster than CPU
autocast, which re-casts fp32 weights every call). The tracker prints what it chose.

The model: the tracker puts it in eval mode, merges LoRA (``TrackConfig.merge_lora``: merged weights are
exactly as accurate and 16-24 % faster), moves it to the device and casts it as above. These changes are
made **in place** on the model you pass, unless ``TrackConfig.copy_model`` is set (use that when the model
is still being trained, e.g. for an evaluation during training).
"""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import boxes as bx
from ..data import transforms as T
from ..device import PRECISIONS, canonical_precision, cpu_precision_reason, resolve_device, resolve_precision
from ..runtime import host_threads
from .decode import decode_prediction, hann_window_2d

__all__ = ["TrackConfig", "Tracker", "BatchTracker", "SequenceState", "SearchCrop", "hann_window_2d",
           "decode_prediction", "check_image", "check_init_box", "resolve_device", "prepare_model",
           "tracker_class_for", "describe_precision"]

_SINGLE = "__single__"  # sequence id used by initialize()/track()
_IMAGENET_MEAN = torch.tensor(T.IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
_IMAGENET_STD = torch.tensor(T.IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)


@dataclass
class TrackConfig:
    """Inference settings of :class:`Tracker` (the crop geometry comes from the model's ``cfg``).

    Attributes:
        device: ``cpu``, ``cuda`` (or ``cuda:N``), ``mps`` or ``auto`` (CUDA, else MPS, else CPU; under
            torchrun CUDA picks ``cuda:$LOCAL_RANK``); see :func:`lorat.device.resolve_device`.
        dtype: ``auto`` (default), ``float32``, ``bfloat16`` or ``float16`` (aliases ``fp32``/``none``,
            ``bf16``, ``fp16``). ``auto``: fp16 autocast on CUDA (the official evaluation), bf16 on CPUs
            where bf16 is measured faster (:func:`lorat.device.cpu_prefers_bf16`), float32 otherwise.
            float16 is refused on CPU (no fast kernels there).
        window_penalty: weight of the Hann window in the additive penalty (official 0.45).
        min_box_size: minimum side (px) of the state box when computing the search crop (official 10).
        size_lr: share of the predicted box size taken into the state each frame, in (0, 1]:
            ``size = (1 - size_lr) * previous + size_lr * predicted``, centre from the prediction (SiamFC /
            SiamRPN-style size smoothing). Only the state (the next search crop) is smoothed; the reported
            box is the prediction. 1.0 (default) is the official behaviour: the state is the prediction.
        merge_lora: fold LoRA into the weights before tracking.
        copy_model: prepare (merge/cast/move) a deep copy instead of the model passed in.
        verbose: print the tracker class, device, precision and runtime once, when the tracker is built.
        runtime: the forward step's inference runtime (:mod:`lorat.runtime`): ``eager`` (default: the
            prepared model is called directly), ``compile`` (torch.compile), ``int8`` (CPU: W8A8 PyTorch
            linears), ``onnx`` (onnxruntime fp32) or ``onnx-int8``. ONNX runtimes run float32 (``dtype=auto``
            resolves to it).
        runtime_options: extra ``lorat.runtime.make_runtime`` keywords (``attention``, ``onnx_path``,
            ``cache_dir``, ...); given with ``eager`` they build an eager runtime too.
    """

    device: str = "auto"
    dtype: str = "auto"
    window_penalty: float = 0.45
    min_box_size: float = 10.0
    size_lr: float = 1.0
    merge_lora: bool = True
    copy_model: bool = False
    verbose: bool = True
    runtime: str = "eager"
    runtime_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> TrackConfig:
        """Raise ValueError naming the bad field."""
        try:
            canonical_precision(self.dtype)
        except ValueError as e:
            raise ValueError(f"dtype={self.dtype!r}: {e}") from None
        if not (self.device in ("auto", "cpu", "mps") or self.device.startswith("cuda")):
            raise ValueError(f"device={self.device!r}; expected cpu, cuda, cuda:N, mps or auto")
        if not 0.0 <= self.window_penalty <= 1.0:
            raise ValueError(f"window_penalty={self.window_penalty} must lie in [0, 1]")
        if not self.min_box_size >= 0:
            raise ValueError(f"min_box_size={self.min_box_size} must be >= 0")
        from ..runtime import RUNTIMES

        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime={self.runtime!r}; expected one of {', '.join(RUNTIMES)}")
        if not 0.0 < self.size_lr <= 1.0:
            raise ValueError(f"size_lr={self.size_lr} must lie in (0, 1] (1.0: official, no size smoothing)")
        return self


# ============================================================================ device / precision / model
def describe_precision(requested: str, precision: str, device: torch.device, runtime: str = "eager") -> str:
    """One line saying which precision runs and why, e.g. ``bfloat16 (auto: CPU with native bf16, measured 2.1x
    fp32), weights cast``.

    ``runtime``: the runtime's name; the ONNX runtimes run float32 whatever the CPU, which the line says.
    """
    how = "" if precision == "float32" else (", autocast" if device.type == "cuda" else ", weights cast")
    if canonical_precision(requested) != "auto":
        return f"{precision}{how}"
    if runtime.startswith("onnx"):
        why = f"the {runtime} runtime runs float32"
    elif device.type == "cuda":
        why = "CUDA, as the official evaluation"
    elif device.type == "cpu":
        why = cpu_precision_reason(precision)
    else:
        why = device.type.upper()
    return f"{precision} (auto: {why}){how}"


def prepare_model(model: nn.Module, cfg: TrackConfig, device: torch.device, precision: str | None = None) -> nn.Module:
    """Eval mode, LoRA merged, on ``device``, weights cast for half precision off CUDA (see module doc).

    ``precision``: a concrete name (``float32``/``bfloat16``/``float16``); default resolved from ``cfg.dtype``.
    """
    from ..models.peft import fold_lora

    precision = precision or resolve_precision(cfg.dtype, device)
    dtype = PRECISIONS[precision]
    if cfg.copy_model:
        model = copy.deepcopy(model)
    model.eval()
    if cfg.merge_lora:
        fold_lora(model)
    model.to(device)
    if dtype != torch.float32 and device.type != "cuda":
        model.to(dtype)  # bf16 weights: ~1.6-2x fp32 on AVX512-BF16 CPUs, autocast only ~1.3x
    return model


def tracker_class_for(model: nn.Module) -> type[Tracker]:
    """The tracker class registered for ``model.cfg``'s architecture (``Arch.tracker``).

    A model without a ``cfg.arch`` gets :class:`Tracker` (LoRAT's inference); an unknown architecture or a
    registered path that is not a :class:`Tracker` subclass is an error naming it.
    """
    cfg = getattr(model, "cfg", None)
    if cfg is None or not hasattr(cfg, "arch"):
        return Tracker
    from ..models.registry import get_arch, import_path

    path = get_arch(cfg).tracker
    cls = import_path(path)
    if not (isinstance(cls, type) and issubclass(cls, Tracker)):
        raise TypeError(f"architecture {cfg.arch!r} registers tracker {path!r}, which is not a lorat Tracker subclass")
    return cls


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


# ============================================================================ per-sequence state
@dataclass
class SequenceState:
    """What the tracker keeps per sequence between frames.

    Subclasses either put their own per-sequence data in ``extra`` (a free dict: a template memory, a
    carried state token, ...) or subclass this dataclass with more fields (all with defaults).
    """

    z: torch.Tensor | None
    """``(3, Hz, Wz)`` normalised template crop on the device, in the model's input dtype."""
    z_mask: torch.Tensor | None
    """``(Hz', Wz')`` int64 template foreground mask (token types 0/1) on the device."""
    pad: torch.Tensor
    """``(3,)`` float32 channel mean of frame 0 (0-255): pads every search crop of this sequence."""
    box: np.ndarray
    """``(4,)`` float64 xyxy last accepted box in image pixels (the crop centre for the next frame)."""
    frame: int = 0
    """Frames processed so far after the first."""
    seq_id: Hashable = None
    """The id the sequence was started under."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free slot for subclasses (nothing in the shared code reads it)."""


@dataclass
class SearchCrop:
    """How a search crop was cut, for mapping its boxes back to the image (LoRAT's crop parameters).

    ``scale``/``translation``: the *actual* (pixel-aligned) parameters :func:`lorat.data.transforms.crop_and_resize`
    used: ``crop = image * scale + translation``. A subclass with another crop rule may return any object
    from :meth:`Tracker.crop_search`; only its own :meth:`Tracker.decode` reads it.
    """

    scale: np.ndarray
    translation: np.ndarray
    image_size: tuple[int, int]
    """``(width, height)`` of the frame (the result is clipped to it)."""


# ============================================================================ tracker
class Tracker:
    """Batched tracker over one or many sequences; LoRAT's official inference unless a subclass overrides it.

    Single sequence::

        tracker = lorat.Tracker(model)                 # model from lorat.create_model / load_checkpoint
        tracker.initialize(frame0, (x, y, w, h))       # frames: (H, W, 3) uint8 RGB numpy arrays
        box_xywh, score = tracker.track(frame1)

    Many sequences, one forward per frame for all of them::

        tracker.initialize_many(["a", "b"], [fa0, fb0], [box_a, box_b])
        results = tracker.track_many(["a", "b"], [fa1, fb1])   # [(box_xywh, score), ...]
        tracker.remove(["a"])

    ``Tracker(model)`` returns an instance of the class the model's architecture registered
    (:func:`tracker_class_for`); calling a subclass directly always gives that subclass.

    **Contract for subclasses** (override only the steps that differ; the public methods, input checks,
    batching and the frame loop stay shared). Per frame ``t >= 1``, for the batch of active sequences::

        crops     = [crop_search(state, image) for each sequence]   # (x (3,Hx,Wx) float32, crop info)
        templates = batch_templates(states)                          # e.g. (z (B,3,Hz,Wz), mask (B,Hz',Wz'))
        outputs   = forward(templates, x (B,3,Hx,Wx), states)        # dict of batched tensors
        boxes, scores = decode(outputs, [crop info], states)         # (B,4) xyxy image px, (B,)
        update(state, box, score, image) for each sequence           # may ignore an invalid box

    and ``new_state(image, box_xyxy, seq_id)`` at frame 0, ``release(seq_id)`` when a sequence ends.
    A reference-frame memory (SPMTrack) lives in ``SequenceState.extra`` and is read by
    ``batch_templates`` (several templates and masks per sequence) and written by ``update``; a carried
    state token is stored by ``forward`` into each state and passed back on the next frame. A different
    crop rule and head (OSTrack) override ``crop_search`` and ``decode``. Helpers for subclasses:
    :meth:`run_model` (inference mode + the precision policy), :meth:`normalise`, :meth:`window`, and the
    geometry attributes read from ``model.cfg``.

    Args:
        model: a module with ``model.cfg`` giving ``template_size``, ``search_size``,
            ``template_area_factor``, ``search_area_factor`` (and ``template_feat`` for LoRAT's mask); LoRAT:
            ``model(z, x, z_feat_mask) -> {"score_map" (B,H,W), "boxes" (B,H,W,4)}``. Prepared in place
            (see :func:`prepare_model`).
        cfg: inference settings; default :class:`TrackConfig`.
    """

    host_threads: int = 1
    """torch threads for the pre/post-processing around the forward (:func:`lorat.runtime.host_threads`)."""

    def __new__(cls, model: nn.Module | None = None, *args: Any, **kwargs: Any) -> Tracker:
        # Called on the base class: dispatch to the architecture's registered tracker. Python then runs that
        # class's __init__ because the returned object is an instance of Tracker.
        if cls is Tracker and model is not None:
            cls = tracker_class_for(model)
        return super().__new__(cls)

    def __init__(self, model: nn.Module, cfg: TrackConfig | None = None) -> None:
        self.cfg = (cfg or TrackConfig()).validate()
        self.device = resolve_device(self.cfg.device)
        from ..runtime import make_runtime, resolve_runtime_precision

        self.precision = resolve_runtime_precision(self.cfg.runtime, self.cfg.dtype, self.device)
        """Concrete precision name in use (``float32``/``bfloat16``/``float16``)."""
        self.dtype = PRECISIONS[self.precision]
        self.model = prepare_model(model, self.cfg, self.device, self.precision)
        self.runtime = None
        """The :class:`lorat.runtime.Runtime` that :meth:`run_model` calls, or None (eager: ``self.model``)."""
        if self.cfg.runtime != "eager" or self.cfg.runtime_options:
            self.runtime = make_runtime(self.model, self.cfg.runtime, self.precision, self.device, copy_model=False,
                                        merge_lora=self.cfg.merge_lora, **self.cfg.runtime_options)
        mc = self.model.cfg
        self.template_size = (int(mc.template_size), int(mc.template_size))
        self.search_size = (int(mc.search_size), int(mc.search_size))
        feat = getattr(mc, "template_feat", None)
        self.template_feat = (int(feat), int(feat)) if feat is not None else None
        self.template_area_factor = float(mc.template_area_factor)
        self.search_area_factor = float(mc.search_area_factor)
        # Inputs are cast to the weights' dtype off CUDA; on CUDA autocast handles half precision.
        self._autocast = self.device.type == "cuda" and self.dtype != torch.float32
        self.input_dtype = torch.float32 if self._autocast else self.dtype
        """dtype of the crops fed to the model."""
        self._windows: dict[tuple[int, int], torch.Tensor] = {}
        self.states: dict[Hashable, SequenceState] = {}
        if self.cfg.verbose:
            print(f"[lorat] {self.describe()}")

    def describe(self) -> str:
        """One line: tracker class, device, precision and runtime (printed at construction unless ``verbose=False``)."""
        how = "eager"
        if getattr(self, "runtime", None) is not None:
            rt = self.runtime.describe()
            how = ", ".join([rt["runtime"]] + [f"{k} {rt[k]}" for k in ("attention", "weights") if rt.get(k)])
        return (f"tracker {type(self).__name__} on {self.device}: precision "
                f"{describe_precision(self.cfg.dtype, self.precision, self.device, self.cfg.runtime)}; runtime {how}")

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
        """Start sequences ``ids`` (an id already active is restarted) through :meth:`new_state`."""
        if not (len(ids) == len(images) == len(boxes_xywh)):
            raise ValueError(f"initialize_many needs as many images and boxes as ids: {len(ids)} ids, "
                             f"{len(images)} images, {len(boxes_xywh)} boxes")
        _check_unique(ids)
        checked = []
        for sid, image, box in zip(ids, images, boxes_xywh):  # validate everything before changing state
            what = "image" if sid == _SINGLE else f"image of sequence {sid!r}"
            check_image(image, what)
            h, w = image.shape[:2]
            try:
                checked.append(check_init_box(box, w, h))
            except ValueError as e:
                raise (e if sid == _SINGLE else ValueError(f"sequence {sid!r}: {e}")) from None
        with host_threads(self.host_threads):
            new = {sid: self.new_state(image, xyxy, sid) for sid, image, xyxy in zip(ids, images, checked)}
        for sid in new:
            if sid in self.states:
                self.release(sid)
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
        # Pre/post-processing on one torch thread (see lorat.runtime.host_threads); the forward gets them all.
        with host_threads(self.host_threads):
            crops = [self.crop_search(st, image) for st, image in zip(states, images)]
            x = torch.stack([c[0] for c in crops]).to(self.device, self.input_dtype, non_blocking=True)
            templates = self.batch_templates(states)
        outputs = self.forward(templates, x, states)
        with host_threads(self.host_threads):
            boxes, scores = self.decode(outputs, [c[1] for c in crops], states)
            out = []
            for st, image, box, score in zip(states, images, boxes, scores):
                self.update(st, box, float(score), image)
                out.append((bx.xyxy_to_xywh(np.asarray(box, dtype=np.float64)), float(score)))
        return out

    def remove(self, ids: Iterable[Hashable]) -> None:
        """Forget sequences (through :meth:`release`; their cached templates are freed)."""
        for sid in list(ids):
            if sid in self.states:
                self.release(sid)

    def reset(self) -> None:
        """Forget every sequence."""
        self.remove(list(self.states))

    # ------------------------------------------------------------------ override points (LoRAT's steps)
    def new_state(self, image: np.ndarray, box: np.ndarray, seq_id: Hashable) -> SequenceState:
        """Frame 0: template crop of ``box`` (xyxy float64, validated), its foreground mask, the frame's mean.

        LoRAT runs no model here. The returned state is stored under ``seq_id``.
        """
        pad = T.image_mean(image)
        z, z_mask = self.crop_template(image, box, pad)
        return SequenceState(z=z, z_mask=z_mask, pad=pad, box=np.asarray(box, dtype=np.float64), seq_id=seq_id)

    def crop_template(self, image: np.ndarray, box: np.ndarray, pad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z (3,Hz,Wz) normalised on the device, mask (Hz',Wz') int64)`` for ``box`` in ``image``.

        The mask is the box mapped through the *adjusted* (actually used) crop parameters, so it sits where
        the crop really put the target. SPMTrack-like memories call this for every new reference frame.
        """
        scale, translation = T.siamfc_crop_params(box, self.template_area_factor, self.template_size)
        crop, scale, translation = T.crop_and_resize(image, scale, translation, self.template_size, pad_color=pad)
        z_box = T.boxes_to_crop(box, scale, translation)
        mask = T.template_foreground_mask(z_box, self.template_size, self.template_feat)
        return (self.normalise(crop).to(self.device, self.input_dtype), torch.from_numpy(mask).to(self.device))

    def crop_search(self, state: SequenceState, image: np.ndarray) -> tuple[torch.Tensor, Any]:
        """``(normalised crop (3, Hx, Wx) float32, SearchCrop)`` around ``state.box`` for this frame.

        The box is enlarged to ``min_box_size`` for cropping only; padding is the sequence's frame-0 mean.
        """
        centre_box = bx.enlarge_to_min_size(state.box, self.cfg.min_box_size)
        scale, translation = T.siamfc_crop_params(centre_box, self.search_area_factor, self.search_size)
        crop, scale, translation = T.crop_and_resize(image, scale, translation, self.search_size,
                                                     pad_color=state.pad)
        h, w = image.shape[:2]
        return self.normalise(crop), SearchCrop(scale, translation, (w, h))

    def batch_templates(self, states: Sequence[SequenceState]) -> tuple[torch.Tensor, ...]:
        """The template inputs of one forward: LoRAT ``(z (B,3,Hz,Wz), z_feat_mask (B,Hz',Wz'))``."""
        return torch.stack([st.z for st in states]), torch.stack([st.z_mask for st in states])

    def forward(self, templates: tuple[torch.Tensor, ...], x: torch.Tensor,
                states: Sequence[SequenceState]) -> dict[str, torch.Tensor]:
        """One model call for the batch: LoRAT ``model(z, x, z_feat_mask)`` -> ``score_map``, ``boxes``.

        A subclass carrying a token between frames reads it from ``states`` here and stores the new one.
        """
        z, z_mask = templates
        return self.run_model(z, x, z_mask)

    def decode(self, outputs: dict[str, torch.Tensor], crops: Sequence[Any],
               states: Sequence[SequenceState]) -> tuple[np.ndarray, np.ndarray]:
        """``(boxes (B, 4) float64 xyxy in image pixels, clipped; scores (B,) float64)``.

        LoRAT: Hann-window penalty + argmax (:func:`decode_prediction`), then back through each crop's
        adjusted parameters and clipped to the image; that box is the reported result.
        """
        score_map, boxes = outputs["score_map"].float(), outputs["boxes"].float()  # (B, H, W), (B, H, W, 4)
        box_crop, confidence, _ = decode_prediction(score_map, boxes, self.window(score_map.shape[-2:]),
                                                    self.cfg.window_penalty, self.search_size)
        box_crop = box_crop.double().cpu().numpy()
        out = np.empty((len(crops), 4), dtype=np.float64)
        for i, c in enumerate(crops):
            out[i] = bx.clip_to_image(T.boxes_from_crop(box_crop[i], c.scale, c.translation), *c.image_size)
        return out, confidence.double().cpu().numpy()

    def update(self, state: SequenceState, box: np.ndarray, score: float, image: np.ndarray) -> None:
        """Move the state to the reported ``box`` only if it is valid and overlaps the image; count the frame.

        With ``TrackConfig.size_lr < 1`` the state keeps the box's centre but a size blended with the previous
        state's (clipped to the image again); the reported ``box`` is not changed.
        """
        h, w = image.shape[:2]
        if bool(bx.is_valid(box)) and bool(bx.intersects_image(box, w, h)):
            box = np.asarray(box, dtype=np.float64)
            lr = self.cfg.size_lr
            if lr < 1.0:
                centre = (box[:2] + box[2:]) / 2
                size = (1.0 - lr) * (state.box[2:] - state.box[:2]) + lr * (box[2:] - box[:2])
                smoothed = bx.clip_to_image(np.concatenate([centre - size / 2, centre + size / 2]), w, h)
                box = smoothed if bool(bx.is_valid(smoothed)) else box
            state.box = box
        state.frame += 1

    def release(self, seq_id: Hashable) -> None:
        """Forget one sequence (a subclass frees what it holds for it, then calls this)."""
        self.states.pop(seq_id, None)

    # ------------------------------------------------------------------ helpers for subclasses
    def run_model(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """``self.model(*args, **kwargs)`` under inference mode and the tracker's precision (autocast on CUDA).

        With a runtime (``TrackConfig.runtime``), ``self.runtime(*args)`` instead: float32 outputs.
        """
        if getattr(self, "runtime", None) is not None:
            if kwargs:
                raise ValueError(f"runtime {self.runtime.name!r} takes the model's inputs positionally; "
                                 f"{type(self).__name__}.forward passed keywords {sorted(kwargs)}")
            return self.runtime(*args)
        ctx = torch.autocast(self.device.type, dtype=self.dtype) if self._autocast else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            return self.model(*args, **kwargs)

    def normalise(self, crop: torch.Tensor) -> torch.Tensor:
        """``(3, H, W)`` 0-255 float32 -> ``/255`` -> ImageNet normalisation (the official transform), in place.

        The same three float32 operations as ``T.normalize(crop / 255)`` (divide, subtract mean, divide by
        std), so the result is bit-identical, without allocating two more crops.
        """
        dev = crop.device
        return crop.div_(255.0).sub_(_IMAGENET_MEAN.to(dev)).div_(_IMAGENET_STD.to(dev))

    def window(self, hw: Sequence[int]) -> torch.Tensor:
        """Cached ``(H, W)`` Hann window (:func:`hann_window_2d`) on the device."""
        key = (int(hw[0]), int(hw[1]))
        if key not in self._windows:
            self._windows[key] = hann_window_2d(*key, device=self.device)
        return self._windows[key]


BatchTracker = Tracker
"""Alias: :class:`Tracker` batches natively (``initialize_many`` / ``track_many``)."""


def _check_unique(ids: Sequence[Hashable]) -> None:
    seen: set = set()
    dup = [sid for sid in ids if sid in seen or seen.add(sid)]
    if dup:
        raise ValueError(f"duplicate sequence ids in one call: {dup}")
