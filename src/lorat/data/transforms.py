"""SiamFC cropping, training augmentation, labels and the template foreground mask.

One crop function, :func:`crop_and_resize`, serves training *and* tracking. Everything else
here is the training transform of the official LoRAT pipeline (``docs/datasets.md``, training pairs), reproduced
operation by operation, in the official order and with the official order of random draws:

    template crop params (no jitter)  ->  search crop params (jitter, validity, up to 12 attempts)
    -> crop both (pad = each image's mean)  -> /255
    -> horizontal flip (per image)  -> colour jitter (per image)  -> DeiT-III 3-augment (shared)
    -> clip boxes to the crop  -> ImageNet normalisation  -> positive cells + template mask

Conventions: sizes are ``(W, H)`` (an ``int`` means square); boxes are ``xyxy`` continuous pixels;
images enter as decoded frames, ``(H, W, 3)`` uint8 RGB numpy arrays; crops are ``(3, H, W)`` float32
torch tensors. The only deviation from the official pipeline is that PIL is not used: the three DeiT-III
operations are re-implemented in numpy to PIL's integer arithmetic (:mod:`lorat.data.deit3`, re-exported
here); they agree with Pillow 13 bit for bit on every image tried, including the box-blur edge handling.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from lorat import boxes as bx
from lorat.config import GEOMETRIES  # the one geometry table (config owns ModelConfig's sizes)
from lorat.data.deit3 import DEIT3_OPS, deit3_augment, pil_gaussian_blur, pil_grayscale, pil_solarize

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _wh(size: int | Sequence[int]) -> np.ndarray:
    """``int`` or ``(W, H)`` -> int64 array ``(W, H)``."""
    if np.isscalar(size):
        return np.array((int(size), int(size)), dtype=np.int64)
    w, h = size
    return np.array((int(w), int(h)), dtype=np.int64)


# ================================================================================ crop parameters
def siamfc_scale(box: np.ndarray, area_factor: float, output_size: int | Sequence[int]) -> np.ndarray:
    """Scale ``(2,)`` (equal on both axes) of the SiamFC context rule.

    The crop region is ``(w + p) x (h + p)`` with context ``p = (f - 1)(w + h) / 2``, and the scale maps its
    area onto the output area: ``s = sqrt(W_out H_out / ((w + p)(h + p)))``. For a square box the crop side
    is ``f * w``; for non-square boxes it is *not* OSTrack's ``f * sqrt(w h)``.
    """
    wh = bx.box_size(np.asarray(box, dtype=np.float64))
    region = wh + (area_factor - 1) * (wh.sum() * 0.5)
    s = np.sqrt(_wh(output_size).prod() / region.prod())
    return np.repeat(s, 2)


def siamfc_crop_params(box: np.ndarray, area_factor: float, output_size: int | Sequence[int]
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Un-jittered crop parameters ``(scale (2,), translation (2,))`` centring ``box`` in the output.

    A point ``p`` of the image lands at ``p * scale + translation`` in the crop.
    """
    scale = siamfc_scale(box, area_factor, output_size)
    translation = _wh(output_size) / 2.0 - bx.box_center(np.asarray(box, dtype=np.float64)) * scale
    return scale, translation


def jittered_crop_params(box: np.ndarray, area_factor: float, output_size: int | Sequence[int],
                         scale_jitter: float, translation_jitter: float, rng: np.random.Generator
                         ) -> tuple[np.ndarray, np.ndarray]:
    """One draw of jittered search-crop parameters.

    * scale: ``s / exp(N(0, 1) * scale_jitter)``, drawn independently for x and y (aspect changes too);
    * translation: centred with the jittered scale, then ``+ U(-1, 1) * M`` per axis with
      ``M = 0.5 * translation_jitter * (w * s_x + h * s_y)`` (one scalar for both axes).

    Draw order (``standard_normal(2)`` then ``uniform(-1, 1, 2)``) is the official one.
    """
    box = np.asarray(box, dtype=np.float64)
    scale = siamfc_scale(box, area_factor, output_size)
    scale = scale / np.exp(rng.standard_normal(2, dtype=np.float64) * scale_jitter)
    translation = _wh(output_size) / 2.0 - bx.box_center(box) * scale
    max_shift = (bx.box_size(box) * scale).sum() * 0.5 * translation_jitter
    translation = rng.uniform(low=-1, high=1, size=2) * max_shift + translation
    return scale, translation


def search_crop_params(box: np.ndarray, area_factor: float, output_size: int | Sequence[int],
                       rng: np.random.Generator, scale_jitter: float = 0.25, translation_jitter: float = 3.0,
                       min_object_size: float | Sequence[float] = 10.0,
                       max_object_size: float | Sequence[float] = float("inf"),
                       min_object_ratio: float = 0.0, max_object_ratio: float = 1.0,
                       max_attempts: int = 12) -> tuple[np.ndarray, np.ndarray] | None:
    """Jittered search-crop parameters that pass the validity checks, or ``None`` (sample rejected).

    An attempt fails when the mapped box does not overlap the crop, or (after clipping it to the crop) a
    side is below ``min_object_size`` / above ``max_object_size`` or its area ratio falls outside
    ``[min_object_ratio, max_object_ratio]``. The official loop makes 12 attempts (``retry_count=10``).
    Without jitter the centred parameters are returned unchecked, as in the official code.
    """
    if scale_jitter == 0 and translation_jitter == 0:
        return siamfc_crop_params(box, area_factor, output_size)
    out_wh = _wh(output_size)
    min_wh = np.broadcast_to(np.asarray(min_object_size, dtype=np.float64), (2,))
    max_wh = np.broadcast_to(np.asarray(max_object_size, dtype=np.float64), (2,))
    out_area = float(out_wh.prod())
    for _ in range(max_attempts):
        scale, translation = jittered_crop_params(box, area_factor, output_size, scale_jitter,
                                                  translation_jitter, rng)
        mapped = bx.scale_and_translate(box, scale, translation)
        if not bx.intersects_image(mapped, out_wh[0], out_wh[1]):
            continue
        wh = bx.box_size(bx.clip_to_image(mapped, out_wh[0], out_wh[1]))
        area = float(np.prod(wh))
        if (np.any(wh < min_wh) or np.any(wh > max_wh) or area > out_area * max_object_ratio
                or area < out_area * min_object_ratio):
            continue
        return scale, translation
    return None


# =============================================================================== crop and resize
class CropResult(NamedTuple):
    """Output of :func:`crop_and_resize` (unpacks as ``crop, scale, translation``)."""

    image: torch.Tensor
    """``(3, H_out, W_out)`` float32, values on the input's 0-255 scale, on the input's device."""
    scale: np.ndarray
    """``(2,)`` float64 *actual* scale (x, y) implied by the integer rectangles that were resampled."""
    translation: np.ndarray
    """``(2,)`` float64 *actual* translation: image point ``p`` is at ``p * scale + translation`` in the crop."""


def image_mean(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Per-channel mean ``(3,)`` float32 of a whole image (the crop's pad colour).

    ``(H, W, 3)`` numpy arrays are averaged in float64 and rounded to float32; ``(3, H, W)`` tensors with
    ``torch.mean`` (the official path; the two differ by float32 rounding only, < 1e-4 on the 0-255 scale).
    A uint8 frame (what the loaders decode) goes through ``cv2.mean``: its channel sums are exact integers, as
    numpy's float64 ones are, so the result is the same to the bit, ~18x faster (two calls per training pair).
    """
    if isinstance(image, torch.Tensor):
        return image.float().mean(dim=(-2, -1))
    image = np.asarray(image)
    if image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3 and image.flags.c_contiguous:
        import cv2

        return torch.tensor(cv2.mean(image)[:3], dtype=torch.float64).float()
    flat = image.reshape(-1, image.shape[-1])
    return torch.from_numpy(flat.mean(axis=0, dtype=np.float64).astype(np.float32))


def crop_and_resize(image: np.ndarray | torch.Tensor, scale: np.ndarray, translation: np.ndarray,
                    output_size: int | Sequence[int], pad_color: np.ndarray | torch.Tensor | None = None
                    ) -> CropResult:
    """Resample ``image`` through ``p -> p * scale + translation`` into an ``output_size`` canvas.

    Pixel-aligned, as the official ``scale_and_translate``:

    1. map the image rectangle ``[0, w] x [0, h]`` into the output, clip it to the canvas, rasterise it
       (floor start, ``floor(end + 1 - 1e-4)`` end);
    2. map that integer rectangle back to the image, rasterise again and clip to the image;
    3. resize the integer source sub-rectangle onto the integer output sub-rectangle with
       ``F.interpolate(mode="bilinear", align_corners=False)``, no antialias;
    4. everything else is ``pad_color``.

    Because of step 1-2 the effective transform differs slightly from the requested one; the *actual*
    scale and translation (computed in float32 from the integer rectangles, as officially) are returned
    and are the ones to map boxes with (:func:`boxes_to_crop`, :func:`boxes_from_crop`). When the image
    does not reach the canvas at all, the crop is pure pad colour and the requested parameters come back.

    Args:
        image: ``(H, W, 3)`` numpy frame (uint8 RGB as decoded, or float), or a ``(3, H, W)`` float tensor
            on any device (values 0-255).
        scale: ``(2,)`` requested scale (x, y), e.g. from :func:`siamfc_crop_params`.
        translation: ``(2,)`` requested translation (x, y).
        output_size: ``int`` or ``(W, H)`` of the crop.
        pad_color: ``(3,)`` fill value (0-255 scale). Default: this image's mean (:func:`image_mean`),
            which is what training uses; the tracker passes the *template frame's* mean for search crops.

    Returns:
        :class:`CropResult` ``(image (3, H_out, W_out) float32 0-255, scale (2,), translation (2,))``.
    """
    out_w, out_h = (int(v) for v in _wh(output_size))
    is_tensor = isinstance(image, torch.Tensor)
    if is_tensor:
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"tensor image must be (3, H, W), got {tuple(image.shape)}")
        h, w = image.shape[-2:]
        device = image.device
    else:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"numpy image must be (H, W, 3), got {image.shape}")
        h, w = image.shape[:2]
        device = torch.device("cpu")
    if pad_color is None:
        pad_color = image_mean(image)
    pad = torch.as_tensor(pad_color, dtype=torch.float32, device=device).reshape(3, 1, 1)
    canvas = pad.expand(3, out_h, out_w).clone()

    scale = np.asarray(scale, dtype=np.float64)
    translation = np.asarray(translation, dtype=np.float64)
    # 1. image rectangle -> output, clipped, rasterised (kept as float for the way back)
    out_rect = bx.scale_and_translate(np.array((0.0, 0.0, w, h)), scale, translation)
    out_rect = bx.rasterize(bx.clip_to_image(out_rect, out_w, out_h)).astype(np.float64)
    # 2. back to the image with the inverse parameters, rasterised, clipped
    inv_s, inv_t = bx.invert_scale_and_translation(scale, translation)
    in_rect = bx.clip_to_image(bx.rasterize(bx.scale_and_translate(out_rect, inv_s, inv_t)), w, h)
    ox0, oy0, ox1, oy1 = (int(v) for v in out_rect)
    ix0, iy0, ix1, iy1 = (int(v) for v in in_rect)
    if not (ox0 < ox1 and oy0 < oy1 and ix0 < ix1 and iy0 < iy1):
        return CropResult(canvas, scale.copy(), translation.copy())

    # 3. bilinear resize of the integer sub-rectangle. Only the sub-rectangle is converted to float; the
    #    result equals slicing a full float image (bilinear never reads outside the slice it is given).
    if is_tensor:
        src = image[:, iy0:iy1, ix0:ix1].float()
    else:
        # One uint8 copy into CHW order, then one float conversion (not: copy, convert, copy again).
        src = torch.from_numpy(np.ascontiguousarray(image[iy0:iy1, ix0:ix1].transpose(2, 0, 1))).float()
    src = src.contiguous().unsqueeze(0)  # (1, 3, h_in, w_in), NCHW-contiguous like the official path
    canvas[:, oy0:oy1, ox0:ox1] = F.interpolate(src, size=(oy1 - oy0, ox1 - ox0), mode="bilinear",
                                                align_corners=False)[0]

    # 4. actual parameters implied by the two integer rectangles (float32 arithmetic, as officially)
    o = out_rect.astype(np.float32)
    i = in_rect.astype(np.float32)
    real_scale = (o[2:] - o[:2]) / (i[2:] - i[:2])
    real_translation = o[:2] - i[:2] * real_scale
    return CropResult(canvas, real_scale.astype(np.float64), real_translation.astype(np.float64))


def boxes_to_crop(boxes: np.ndarray, scale: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Image-pixel xyxy boxes -> crop-pixel boxes (use the *actual* parameters from :func:`crop_and_resize`)."""
    return bx.scale_and_translate(boxes, scale, translation)


def boxes_from_crop(boxes: np.ndarray, scale: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Crop-pixel xyxy boxes -> image pixels: ``x_img = (x_crop - t_x) / s_x`` (likewise y)."""
    inv_s, inv_t = bx.invert_scale_and_translation(scale, translation)
    return bx.scale_and_translate(boxes, inv_s, inv_t)


# =============================================================================== augmentations
def hflip(image: torch.Tensor, box: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """Mirror a ``(C, H, W)`` image and its xyxy box (``x -> W - x``)."""
    return image.flip(-1), bx.hflip(box, image.shape[-1])


def rgb_to_grayscale(image: torch.Tensor) -> torch.Tensor:
    """``(..., 3, H, W)`` float -> ``(..., 1, H, W)`` luma, torchvision's tensor formula and op order."""
    r, g, b = image.unbind(dim=-3)
    return (0.2989 * r + 0.587 * g + 0.114 * b).to(image.dtype).unsqueeze(dim=-3)


def _blend(img1: torch.Tensor, img2: torch.Tensor, ratio: float) -> torch.Tensor:
    # torchvision ``_blend`` for float images: clamp to [0, 1]
    ratio = float(ratio)
    return (ratio * img1 + (1.0 - ratio) * img2).clamp(0, 1.0).to(img1.dtype)


def adjust_brightness(image: torch.Tensor, factor: float) -> torch.Tensor:
    """torchvision ``adjust_brightness`` on a float ``(3, H, W)`` image in [0, 1].

    torchvision blends with a zero image; ``(1 - f) * 0`` adds exactly nothing, so it is skipped.
    """
    return (float(factor) * image).clamp(0, 1.0)


def adjust_contrast(image: torch.Tensor, factor: float) -> torch.Tensor:
    """torchvision ``adjust_contrast``: blend with the mean of the grayscale image."""
    mean = torch.mean(rgb_to_grayscale(image), dim=(-3, -2, -1), keepdim=True)
    return _blend(image, mean, factor)


def adjust_saturation(image: torch.Tensor, factor: float) -> torch.Tensor:
    """torchvision ``adjust_saturation``: blend with the grayscale image."""
    return _blend(image, rgb_to_grayscale(image), factor)


def color_jitter(image: torch.Tensor, rng: np.random.Generator, brightness: float = 0.4,
                 contrast: float = 0.4, saturation: float = 0.4) -> torch.Tensor:
    """Official ``ColorJitter`` (no hue): factors ``U(1 - v, 1 + v)`` applied in a random order.

    Draws, in order: ``permutation(4)`` (slot 3 = hue, unused), then the brightness, contrast and saturation
    factors (each only when enabled). Every op clamps to [0, 1].
    """
    order = rng.permutation(4)
    factors: dict[int, float] = {}
    for slot, v in enumerate((brightness, contrast, saturation)):
        if v:
            factors[slot] = float(rng.uniform(max(1.0 - v, 0.0), 1.0 + v))
    ops = {0: adjust_brightness, 1: adjust_contrast, 2: adjust_saturation}
    for slot in order:
        slot = int(slot)
        if slot in factors:
            image = ops[slot](image, factors[slot])
    return image


def normalize(image: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """``(image - mean) / std`` per channel on a ``(3, H, W)`` float image in [0, 1] (torchvision order)."""
    m = torch.as_tensor(mean, dtype=image.dtype, device=image.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=image.dtype, device=image.device).view(-1, 1, 1)
    return (image - m) / s


# ======================================================================================= labels
def positive_cell_indices(box: np.ndarray, search_size: int | Sequence[int],
                          feat_size: int | Sequence[int]) -> np.ndarray:
    """Flat row-major indices ``(P,)`` int64 of every response cell the crop box overlaps.

    ``box`` is xyxy in search-crop pixels (clipped to the crop). It is multiplied by
    ``feat_size / search_size`` (1/14 per axis) and rasterised (:func:`lorat.boxes.rasterize`); cells
    ``rows y1..y2-1, cols x1..x2-1`` are positive, index ``row * W_feat + col``. Empty when the box misses.
    """
    fw, fh = (int(v) for v in _wh(feat_size))
    ratio = _wh(feat_size) / _wh(search_size)
    scaled = np.array(box, dtype=np.float64, copy=True)
    scaled[0::2] = scaled[0::2] * ratio[0]
    scaled[1::2] = scaled[1::2] * ratio[1]
    x0, y0, x1, y1 = bx.rasterize(scaled)
    x0, x1 = np.clip((x0, x1), 0, fw)
    y0, y1 = np.clip((y0, y1), 0, fh)
    return np.arange(fw * fh, dtype=np.int64).reshape(fh, fw)[y0:y1, x0:x1].reshape(-1)


def template_foreground_mask(box: np.ndarray, template_size: int | Sequence[int],
                             feat_size: int | Sequence[int]) -> np.ndarray:
    """``(H_feat, W_feat)`` int64 mask: 1 on every template cell the box overlaps, else 0.

    ``box`` is xyxy in template-crop pixels. It is clipped to the crop, divided by the stride
    ``template_size / feat_size`` and rasterised; the same function serves training and tracking.
    """
    tw, th = _wh(template_size)
    fw, fh = (int(v) for v in _wh(feat_size))
    stride = (tw / fw, th / fh)
    b = bx.clip_to_image(np.asarray(box, dtype=np.float64), tw, th)
    b = np.array((b[0] / stride[0], b[1] / stride[1], b[2] / stride[0], b[3] / stride[1]))
    x0, y0, x1, y1 = bx.rasterize(b)
    mask = np.zeros((fh, fw), dtype=np.int64)
    mask[max(y0, 0):min(y1, fh), max(x0, 0):min(x1, fw)] = 1
    return mask


# ===================================================================================== pipeline
@dataclass(frozen=True)
class TransformConfig:
    """Every number of the training transform; defaults are LoRAT-*-224 (``config/LoRAT/run.yaml``)."""

    template_size: int | tuple[int, int] = 112
    search_size: int | tuple[int, int] = 224
    stride: int = 14
    template_area_factor: float = 2.0
    search_area_factor: float = 4.0
    scale_jitter: float = 0.25
    translation_jitter: float = 3.0
    min_object_size: float = 10.0
    max_object_ratio: float = 1.0
    max_attempts: int = 12
    flip_prob: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    deit3: bool = True
    mean: tuple[float, float, float] = field(default=IMAGENET_MEAN)
    std: tuple[float, float, float] = field(default=IMAGENET_STD)

    @property
    def template_feat_size(self) -> np.ndarray:
        """``(W, H)`` of the template token grid (112 / 14 = 8)."""
        return _wh(self.template_size) // self.stride

    @property
    def search_feat_size(self) -> np.ndarray:
        """``(W, H)`` of the response map (224 / 14 = 16)."""
        return _wh(self.search_size) // self.stride

    @classmethod
    def for_resolution(cls, search_size: int, **overrides: Any) -> TransformConfig:
        """Official geometry from :data:`lorat.config.GEOMETRIES`: 224 -> (112, 224, factor 4),
        378 -> (196, 378, factor 5)."""
        if search_size not in GEOMETRIES:
            raise ValueError(f"no official geometry for search size {search_size} (known: {sorted(GEOMETRIES)}); "
                             f"pass sizes explicitly")
        return cls(**{**GEOMETRIES[search_size], **overrides})

    @classmethod
    def from_model_config(cls, cfg: Any, **overrides: Any) -> TransformConfig:
        """Take sizes, stride and area factors from a :class:`lorat.config.ModelConfig`-like object."""
        return cls(**{"template_size": cfg.template_size, "search_size": cfg.search_size,
                      "stride": cfg.patch_size, "template_area_factor": cfg.template_area_factor,
                      "search_area_factor": cfg.search_area_factor, **overrides})

    def without_augmentation(self) -> TransformConfig:
        """Same geometry, no jitter, flip, colour jitter or 3-augment (deterministic crops)."""
        return replace(self, scale_jitter=0.0, translation_jitter=0.0, flip_prob=0.0, brightness=0.0,
                       contrast=0.0, saturation=0.0, deit3=False)


class SiameseTrainTransform:
    """(template frame, box, search frame, box, rng) -> one training sample, or None if rejected.

    Call with decoded ``(H, W, 3)`` uint8 RGB frames and xyxy image-pixel boxes (already clipped to the
    image). The result is a dict of tensors:

    * ``z``: ``(3, Hz, Wz)`` float32, ImageNet-normalised template crop;
    * ``x``: ``(3, Hx, Wx)`` float32, normalised search crop;
    * ``z_feat_mask``: ``(Hz/14, Wz/14)`` int64 template foreground mask (token types 0/1);
    * ``gt_box``: ``(4,)`` float32 search-crop box normalised by the search size, xyxy;
    * ``positive_indices``: ``(P,)`` int64 flat response-map indices of the positive cells;
    * ``z_box`` / ``x_box``: ``(4,)`` float32 boxes in crop pixels after augmentation and clipping.

    ``None`` means the search crop failed its checks in all attempts (or a box degenerated); the caller
    redraws the pair (:class:`lorat.data.sampler.PairDataset`). All randomness comes from ``rng``, in the
    official order.
    """

    def __init__(self, config: TransformConfig | None = None):
        self.config = config or TransformConfig()

    @classmethod
    def from_model_config(cls, cfg: Any, **overrides: Any) -> SiameseTrainTransform:
        """Transform with the geometry of a :class:`lorat.config.ModelConfig` (see
        :meth:`TransformConfig.from_model_config`); ``overrides`` set other :class:`TransformConfig` fields."""
        return cls(TransformConfig.from_model_config(cfg, **overrides))

    def __call__(self, z_image: np.ndarray, z_box: np.ndarray, x_image: np.ndarray, x_box: np.ndarray,
                 rng: np.random.Generator) -> dict[str, torch.Tensor] | None:
        c = self.config
        z_box = np.asarray(z_box, dtype=np.float64)
        x_box = np.asarray(x_box, dtype=np.float64)
        if not (bx.is_valid(z_box) and bx.is_valid(x_box)):
            return None
        # crop parameters: the template is never jittered nor checked; the search is jittered and checked
        z_s, z_t = siamfc_crop_params(z_box, c.template_area_factor, c.template_size)
        x_params = search_crop_params(x_box, c.search_area_factor, c.search_size, rng, c.scale_jitter,
                                      c.translation_jitter, c.min_object_size, float("inf"), 0.0,
                                      c.max_object_ratio, c.max_attempts)
        if x_params is None:
            return None
        z_crop, z_s, z_t = crop_and_resize(z_image, z_s, z_t, c.template_size)
        x_crop, x_s, x_t = crop_and_resize(x_image, *x_params, c.search_size)
        z, x = z_crop.div_(255.0), x_crop.div_(255.0)
        zb, xb = boxes_to_crop(z_box, z_s, z_t), boxes_to_crop(x_box, x_s, x_t)

        # augmentation: flip and colour jitter per image (template first), 3-augment shared
        if c.flip_prob > 0 and rng.random() < c.flip_prob:
            z, zb = hflip(z, zb)
        if c.flip_prob > 0 and rng.random() < c.flip_prob:
            x, xb = hflip(x, xb)
        if c.brightness or c.contrast or c.saturation:
            z = color_jitter(z, rng, c.brightness, c.contrast, c.saturation)
            x = color_jitter(x, rng, c.brightness, c.contrast, c.saturation)
        if c.deit3:
            (z, x), _ = deit3_augment([z, x], rng)

        zw, zh = _wh(c.template_size)
        xw, xh = _wh(c.search_size)
        zb, xb = bx.clip_to_image(zb, zw, zh), bx.clip_to_image(xb, xw, xh)
        if not (bx.is_valid(zb) and bx.is_valid(xb)):
            return None
        positives = positive_cell_indices(xb, c.search_size, c.search_feat_size)
        if positives.size == 0:
            return None
        gt = np.array((xb[0] / xw, xb[1] / xh, xb[2] / xw, xb[3] / xh)).astype(np.float32)
        return {
            "z": normalize(z, c.mean, c.std).contiguous(),
            "x": normalize(x, c.mean, c.std).contiguous(),
            "z_feat_mask": torch.from_numpy(template_foreground_mask(zb, c.template_size,
                                                                     c.template_feat_size)),
            "gt_box": torch.from_numpy(gt),
            "positive_indices": torch.from_numpy(positives),
            "z_box": torch.from_numpy(zb.astype(np.float32)),
            "x_box": torch.from_numpy(xb.astype(np.float32)),
        }


def collate_pairs(samples: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Batch samples of :class:`SiameseTrainTransform` into model inputs and loss targets.

    Returns ``z`` ``(B, 3, Hz, Wz)``, ``x``, ``z_feat_mask`` ``(B, Hz', Wz')``, and the targets
    ``positive_sample_batch_dim_indices`` / ``positive_sample_map_dim_indices`` ``(P,)`` int64 (samples
    concatenated in batch order), ``boxes`` ``(B, 4)`` float32 normalised xyxy and ``num_positive_samples``
    ``(1,)`` float32 = P, the *local* batch total. Any other key whose values are tensors of one shape
    (``z_box``, ``x_box``, ``pair``) is stacked as well.
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    positives = [s["positive_indices"] for s in samples]
    out: dict[str, torch.Tensor] = {
        "z": torch.stack([s["z"] for s in samples]),
        "x": torch.stack([s["x"] for s in samples]),
        "z_feat_mask": torch.stack([s["z_feat_mask"] for s in samples]),
        "positive_sample_batch_dim_indices": torch.cat(
            [torch.full((len(p),), i, dtype=torch.long) for i, p in enumerate(positives)]),
        "positive_sample_map_dim_indices": torch.cat([p.to(torch.long) for p in positives]),
        "boxes": torch.stack([s["gt_box"] for s in samples]).to(torch.float32),
        "num_positive_samples": torch.tensor([float(sum(len(p) for p in positives))], dtype=torch.float32),
    }
    for key, value in samples[0].items():
        if key in out or key in ("gt_box", "positive_indices") or not isinstance(value, torch.Tensor):
            continue
        values = [s[key] for s in samples]
        if all(isinstance(v, torch.Tensor) and v.shape == value.shape for v in values):
            out[key] = torch.stack(values)
    return out


__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "siamfc_scale", "siamfc_crop_params", "jittered_crop_params",
    "search_crop_params", "CropResult", "image_mean", "crop_and_resize", "boxes_to_crop", "boxes_from_crop",
    "hflip", "rgb_to_grayscale", "adjust_brightness", "adjust_contrast", "adjust_saturation", "color_jitter",
    "pil_grayscale", "pil_solarize", "pil_gaussian_blur", "DEIT3_OPS", "deit3_augment", "normalize",
    "positive_cell_indices", "template_foreground_mask", "TransformConfig", "SiameseTrainTransform",
    "collate_pairs",
]
