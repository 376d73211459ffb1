"""LoRAT distillation task: a low-resolution LoRAT student learns from a frozen high-resolution LoRAT teacher.

Chosen automatically for a LoRAT model when ``TrainConfig.teacher`` is set
(``lorat train --preset lorat-s-112 --teacher lorat-b-224.safetensors --model-set search_area_factor=4``):

* data: LoRAT's pair sampler and transform at the **teacher's** geometry (its sizes, patch 14 grid and crop
  factors); :class:`StudentTargets` adds the student's labels of the same crop: the boxes scaled by
  ``student size / teacher size``, the positive response cells on the student grid and the template
  foreground mask on the student template grid;
* loss: :func:`lorat.train.distill.lorat_distill_loss` (LoRAT's BCE + GIoU on the student grid, plus
  LoReTrack's QKV-KD and Disc-KD), the student inputs being the teacher crops bilinearly downsampled.

Student and teacher must use the same crop factors: the ``lorat-*-168/112`` presets have the 378 teacher's
(2 / 5); a ``lorat-b-224`` teacher (factor 4) needs ``--model-set search_area_factor=4``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .ostrack_task import attach_teacher, terms_for_log
from .task import Batch, LoRATTask, pair_datasets


class StudentTargets:
    """Wraps the teacher-geometry transform: adds ``student_z_feat_mask`` (h, w) int64 and
    ``student_positive_indices`` (P,) int64 for the student's sizes; rejects a pair (``None``) whose box
    covers no student cell."""

    def __init__(self, transform: Any, student_cfg: Any) -> None:
        from ..data.transforms import TransformConfig

        self.transform = transform
        self.teacher = transform.config
        self.student = TransformConfig.from_model_config(student_cfg)

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor] | None:
        from ..data.transforms import _wh, positive_cell_indices, template_foreground_mask

        sample = self.transform(*args, **kwargs)
        if sample is None:
            return None
        t, s = self.teacher, self.student
        x_ratio = _wh(s.search_size) / _wh(t.search_size)  # (sx, sy)
        z_ratio = _wh(s.template_size) / _wh(t.template_size)
        xb = sample["x_box"].double().numpy() * np.tile(x_ratio, 2)  # xyxy in student search pixels
        zb = sample["z_box"].double().numpy() * np.tile(z_ratio, 2)
        positives = positive_cell_indices(xb, s.search_size, s.search_feat_size)
        if positives.size == 0:
            return None
        sample["student_positive_indices"] = torch.from_numpy(positives)
        sample["student_z_feat_mask"] = torch.from_numpy(template_foreground_mask(zb, s.template_size,
                                                                                  s.template_feat_size))
        return sample


class LoRATDistillTask(LoRATTask):
    """LoRAT student + frozen LoRAT teacher (see the module docstring)."""

    def __init__(self, cfg: Any, model_cfg: Any, loss_cfg: Any = None) -> None:
        super().__init__(cfg, model_cfg)
        attach_teacher(self, loss_cfg)

    def build_datasets(self) -> tuple[Any, Any | None]:
        from ..data.transforms import SiameseTrainTransform

        transform = SiameseTrainTransform.from_model_config(self.teacher_cfg, **self.cfg.augment_overrides())
        return pair_datasets(self.cfg, StudentTargets(transform, self.model_cfg))

    def collate(self, items: list[dict]) -> Batch:
        """Teacher batch (``collate_pairs``) plus ``student``: the LoRAT targets on the student grid."""
        from ..data.transforms import collate_pairs

        batch = collate_pairs(items)
        student = collate_pairs([{**it, "positive_indices": it["student_positive_indices"],
                                  "z_feat_mask": it["student_z_feat_mask"]} for it in items])
        batch["student"] = {k: student[k] for k in ("positive_sample_batch_dim_indices",
                                                    "positive_sample_map_dim_indices", "boxes",
                                                    "num_positive_samples", "z_feat_mask")}
        return batch

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from .distill import lorat_distill_loss

        st = batch["student"]
        loss, terms = lorat_distill_loss(model, self.teacher, batch["z"], batch["x"], batch["z_feat_mask"],
                                         st["z_feat_mask"], st, self.loss_cfg)
        return loss, terms_for_log(terms)  # bce, giou, task, qkv, disc and their parts


__all__ = ["LoRATDistillTask", "StudentTargets"]
