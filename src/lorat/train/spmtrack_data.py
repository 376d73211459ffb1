"""SPMTrack training samples: tuplets of 3 templates + 2 search frames, cropped and augmented like LoRAT's pairs.

:class:`TupletDataset` is LoRAT's :class:`lorat.data.sampler.PairDataset` (same epoch plan, dataset weights,
sampling units, per-item generators and rejection redraws) with the frame choice replaced by
:func:`lorat.train.spmtrack_sampler.sample_tuplet` (the ±200 template window, the 400-frame search window,
auto-extend, the random sort direction; single-frame COCO tracks give 5 x frame 0).

:class:`TupletTransform` is :class:`lorat.data.transforms.SiameseTrainTransform` for 5 images, in this order
of random draws:

1. search crop parameters of ``x_0`` then ``x_1`` (area 4/5, scale jitter 0.25, translation jitter 3, the
   minimum-size and ratio checks); templates use area 2 with no jitter and no check;
2. horizontal flip per image (``z_0, z_1, z_2, x_0, x_1``), then colour jitter per image in the same order;
3. DeiT-III 3-augment **shared** by all 5 images (one op, one radius);
4. per image: boxes clipped to the crop; a template's foreground mask and a search frame's positive cells are
   computed from its own box. No negatives: a search frame without a positive cell rejects the tuplet.

The order within steps 1-3 follows LoRAT's pair transform (template draws before search draws); the official
SPMTrack transform was not available to check the interleaving, so it is lorat's reading of "as LoRAT".
"""
from __future__ import annotations

from collections.abc import Sequence as Seq
from typing import Any

import numpy as np
import torch

from .. import boxes as bx
from ..data import transforms as T
from ..data.sampler import PairDataset
from .spmtrack_sampler import TupletSamplingConfig, TupletSamplingError, sample_tuplet


class TupletTransform:
    """``(z_images, z_boxes, x_images, x_boxes, rng) -> sample dict | None`` (None: rejected, redraw).

    Frames are (H, W, 3) uint8 RGB, boxes xyxy image pixels (clipped to the image). The sample holds:

    * ``z`` (T, 3, Hz, Wz) float32 normalised templates; ``z_feat_mask`` (T, Hz/14, Wz/14) int64;
    * ``x`` (S, 3, Hx, Wx) float32 normalised search crops;
    * ``gt_box`` (S, 4) float32 search boxes normalised by the search size, xyxy;
    * ``positive_indices``: list of S (P_k,) int64 flat response-map indices;
    * ``z_box`` (T, 4) / ``x_box`` (S, 4) float32 boxes in crop pixels after augmentation and clipping.
    """

    def __init__(self, config: T.TransformConfig | None = None) -> None:
        self.config = config or T.TransformConfig()

    @classmethod
    def from_model_config(cls, cfg: Any, **overrides: Any) -> TupletTransform:
        """Geometry (sizes, stride, area factors) from a model config; ``overrides`` set other fields."""
        return cls(T.TransformConfig.from_model_config(cfg, **overrides))

    def __call__(self, z_images: Seq[np.ndarray], z_boxes: Seq[np.ndarray], x_images: Seq[np.ndarray],
                 x_boxes: Seq[np.ndarray], rng: np.random.Generator) -> dict[str, Any] | None:
        c = self.config
        z_boxes = [np.asarray(b, dtype=np.float64) for b in z_boxes]
        x_boxes = [np.asarray(b, dtype=np.float64) for b in x_boxes]
        if not all(bx.is_valid(b) for b in (*z_boxes, *x_boxes)):
            return None
        x_params = []
        for b in x_boxes:  # only the searches are jittered and checked
            p = T.search_crop_params(b, c.search_area_factor, c.search_size, rng, c.scale_jitter,
                                     c.translation_jitter, c.min_object_size, float("inf"), 0.0,
                                     c.max_object_ratio, c.max_attempts)
            if p is None:
                return None
            x_params.append(p)
        images, boxes = [], []
        for img, b in zip(z_images, z_boxes):
            crop, s, t = T.crop_and_resize(img, *T.siamfc_crop_params(b, c.template_area_factor, c.template_size),
                                           c.template_size)
            images.append(crop.div_(255.0))
            boxes.append(T.boxes_to_crop(b, s, t))
        for img, b, p in zip(x_images, x_boxes, x_params):
            crop, s, t = T.crop_and_resize(img, *p, c.search_size)
            images.append(crop.div_(255.0))
            boxes.append(T.boxes_to_crop(b, s, t))
        if c.flip_prob > 0:
            for i in range(len(images)):
                if rng.random() < c.flip_prob:
                    images[i], boxes[i] = T.hflip(images[i], boxes[i])
        if c.brightness or c.contrast or c.saturation:
            images = [T.color_jitter(im, rng, c.brightness, c.contrast, c.saturation) for im in images]
        if c.deit3:
            images, _ = T.deit3_augment(images, rng)
        nz = len(z_images)
        zw, zh = T._wh(c.template_size)
        xw, xh = T._wh(c.search_size)
        boxes = [bx.clip_to_image(b, zw, zh) if i < nz else bx.clip_to_image(b, xw, xh) for i, b in enumerate(boxes)]
        if not all(bx.is_valid(b) for b in boxes):
            return None
        positives = [T.positive_cell_indices(b, c.search_size, c.search_feat_size) for b in boxes[nz:]]
        if any(p.size == 0 for p in positives):
            return None
        norm = [T.normalize(im, c.mean, c.std).contiguous() for im in images]
        gt = np.stack([(b[0] / xw, b[1] / xh, b[2] / xw, b[3] / xh) for b in boxes[nz:]]).astype(np.float32)
        return {
            "z": torch.stack(norm[:nz]),
            "x": torch.stack(norm[nz:]),
            "z_feat_mask": torch.stack([torch.from_numpy(T.template_foreground_mask(b, c.template_size,
                                                                                   c.template_feat_size))
                                        for b in boxes[:nz]]),
            "gt_box": torch.from_numpy(gt),
            "positive_indices": [torch.from_numpy(p) for p in positives],
            "z_box": torch.from_numpy(np.stack(boxes[:nz]).astype(np.float32)),
            "x_box": torch.from_numpy(np.stack(boxes[nz:]).astype(np.float32)),
        }


class TupletDataset(PairDataset):
    """Training tuplets; ``len()`` = ``samples_per_epoch``. Arguments as :class:`PairDataset`, with
    ``transform`` a :class:`TupletTransform` and ``sampling`` the tuplet settings (``max_gap`` is unused).

    Items are the transform's dict plus ``frames``: int64 ``(dataset, sequence, z_0, z_1, z_2, x_0, x_1)``. A
    track no tuplet can be drawn from (:class:`TupletSamplingError`) or a rejected tuplet is redrawn from a random
    dataset (by weight) and unit with the item's generator, as rejected pairs are.
    """

    def __init__(self, datasets, transform, samples_per_epoch: int, seed: int = 42,
                 sampling: TupletSamplingConfig | None = None, **kwargs: Any) -> None:
        super().__init__(datasets, transform, samples_per_epoch, seed, **kwargs)
        self.sampling = sampling or TupletSamplingConfig()

    def _tuplet(self, d: int, s: int, sequence: Any, rng: np.random.Generator) -> dict | None:
        try:
            zf, xf = sample_tuplet(self.masks[d][s], rng, self.sampling, f"{sequence.dataset}/{sequence.name}")
        except TupletSamplingError:
            return None
        loaded: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for f in (*zf, *xf):  # each distinct frame decoded once
            if f not in loaded:
                loaded[f] = self._load(sequence, f)
        sample = self.transform([loaded[f][0] for f in zf], [loaded[f][1] for f in zf],
                                [loaded[f][0] for f in xf], [loaded[f][1] for f in xf], rng)
        if sample is not None:
            sample["frames"] = torch.tensor([d, s, *zf, *xf], dtype=torch.int64)
        return sample

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        return self.draw(key, self._tuplet, "tuplet",
                         "check the boxes, the track lengths and the transform's size limits")


def collate_tuplets(samples: Seq[dict[str, Any]]) -> dict[str, Any]:
    """Batch :class:`TupletTransform` samples: ``z`` (B, T, 3, Hz, Wz), ``z_feat_mask`` (B, T, h, w), ``x``
    (B, S, 3, Hx, Wx) and ``targets``, one :func:`lorat.train.spmtrack_loss.frame_targets`-layout dict per search
    frame (``positive_sample_batch_dim_indices``, ``positive_sample_map_dim_indices``, ``boxes`` (B, 4),
    ``num_positive_samples`` (1,)). ``z_box``, ``x_box`` and ``frames`` are stacked as well."""
    if not samples:
        raise ValueError("cannot collate an empty batch")
    num_search = samples[0]["x"].shape[0]
    targets = []
    for k in range(num_search):
        pos = [s["positive_indices"][k] for s in samples]
        targets.append({
            "positive_sample_batch_dim_indices": torch.cat(
                [torch.full((len(p),), i, dtype=torch.long) for i, p in enumerate(pos)]),
            "positive_sample_map_dim_indices": torch.cat([p.to(torch.long) for p in pos]),
            "boxes": torch.stack([s["gt_box"][k] for s in samples]).to(torch.float32),
            "num_positive_samples": torch.tensor([float(sum(len(p) for p in pos))], dtype=torch.float32),
        })
    out: dict[str, Any] = {key: torch.stack([s[key] for s in samples])
                           for key in ("z", "z_feat_mask", "x", "z_box", "x_box") if key in samples[0]}
    if "frames" in samples[0]:
        out["frames"] = torch.stack([s["frames"] for s in samples])
    out["targets"] = targets
    return out


TupletDataset.collate = staticmethod(collate_tuplets)  # DataLoader(collate_fn=dataset.collate)

__all__ = ["TupletTransform", "TupletDataset", "collate_tuplets"]
