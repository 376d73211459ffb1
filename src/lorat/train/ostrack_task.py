"""Training tasks of the OSTrack architecture: plain OSTrack and LoReTrack distillation (``Arch.task``).

``OSTrackTask`` (``lorat train --preset ostrack-b-256``):

* data: the shared pair sampler (``data/sampler.PairDataset``) and crop/jitter transform
  (``data/transforms.SiameseTrainTransform``) at the model's geometry: template factor 2 without jitter,
  search factor 4 with centre jitter 3 / scale jitter 0.25 (factor 5: 4.5 / 0.5), as OSTrack's yamls; the
  augmentation is OSTrack's (horizontal flip 0.5, brightness jitter 0.2, no contrast/saturation, no 3-augment);
* labels: the search box (B, 4) normalised ``x, y, w, h`` (``search_anno``); the Gaussian centre heat map is
  made from it inside the loss (``train/ostrack_loss.generate_heatmap``);
* loss: :func:`lorat.train.ostrack_loss.ostrack_loss` (focal + 2 GIoU + 5 L1).

``LoReTrackTask`` (chosen automatically when ``TrainConfig.teacher`` is set,
``lorat train --preset loretrack-b-128 --teacher teacher.safetensors``): the frozen teacher is loaded from
``TrainConfig.teacher``; the crops are cut at the **teacher's** geometry and the student sees them bilinearly
downsampled (inside :func:`lorat.train.distill.loretrack_loss`), as the official method. The student and the
teacher must use the same crop factors (a student tracks with its own factors).

``TrainConfig.teacher``: a lorat checkpoint (it names its architecture and config), or ``PRESET=PATH`` for an
official file without a config (e.g. ``ostrack-b-384=OSTrack_ep0300.pth.tar``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .task import Batch, Task, pair_datasets

_OSTRACK_AUG = dict(deit3=False, brightness=0.2, contrast=0.0, saturation=0.0)
"""OSTrack's training augmentation in :class:`lorat.data.transforms.TransformConfig` terms."""


def ostrack_jitter(geometry: Any) -> dict[str, float]:
    """OSTrack's search-crop jitter for a geometry: centre 3 / scale 0.25 with search factor 4 (the 256
    yaml), 4.5 / 0.5 with factor 5 (the 384 yaml, also LoReTrack's, whose students see the teacher crop)."""
    if float(geometry.search_area_factor) >= 5.0:
        return {"translation_jitter": 4.5, "scale_jitter": 0.5}
    return {"translation_jitter": 3.0, "scale_jitter": 0.25}


def terms_for_log(terms: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The 0-d tensors of a loss's terms, detached (what the loop logs); maps and output dicts are dropped."""
    return {k: v.detach() for k, v in terms.items() if torch.is_tensor(v) and v.dim() == 0}


def load_teacher(spec: str, student_cfg: Any) -> nn.Module:
    """Load the teacher named by ``TrainConfig.teacher``: a lorat file or ``PRESET=PATH`` (official file).

    Raises FileNotFoundError / ValueError naming the value when the file is missing, has no config, or is
    of another architecture than the student.
    """
    from ..hub import load_checkpoint

    preset, path = None, spec
    if not Path(spec).is_file() and "=" in spec:
        preset, path = spec.split("=", 1)
    if not Path(path).is_file():
        raise FileNotFoundError(f"TrainConfig.teacher={spec!r}: teacher checkpoint not found: {path}")
    try:
        teacher = load_checkpoint(path, name=preset, merge=True)
    except ValueError as e:
        raise ValueError(f"TrainConfig.teacher={spec!r}: {e} (official files: --teacher PRESET=PATH)") from None
    if teacher.cfg.arch != student_cfg.arch:
        raise ValueError(f"TrainConfig.teacher={spec!r} is a {teacher.cfg.arch!r} model but the student "
                         f"{student_cfg.name!r} is {student_cfg.arch!r}")
    return teacher


def check_same_crop(teacher_cfg: Any, student_cfg: Any) -> None:
    """The student sees the teacher's crop downsampled, so both must use the same area factors."""
    for f in ("template_area_factor", "search_area_factor"):
        t, s = float(getattr(teacher_cfg, f)), float(getattr(student_cfg, f))
        if t != s:
            raise ValueError(f"teacher {teacher_cfg.name!r} has {f}={t:g} but the student {student_cfg.name!r} "
                             f"has {s:g}: the student sees the teacher's crop, so they must agree "
                             f"(--model-set {f}={t:g})")
    if student_cfg.search_size > teacher_cfg.search_size:
        raise ValueError(f"student search_size={student_cfg.search_size} exceeds the teacher's "
                         f"{teacher_cfg.search_size}: distillation goes from high to low resolution")


def attach_teacher(task: Task, loss_cfg: Any = None) -> None:
    """Give a distillation task its frozen teacher: ``TrainConfig.teacher`` loaded (:func:`load_teacher`),
    checked to crop as the student does (:func:`check_same_crop`), set with ``task.set_teacher``; also sets
    ``task.teacher_cfg`` and ``task.loss_cfg`` (a ``LoReTrackLossConfig``, validated)."""
    from .distill import LoReTrackLossConfig

    if not task.cfg.teacher:
        raise ValueError(f"{type(task).__name__} needs a teacher: set TrainConfig.teacher (--teacher PATH)")
    teacher = load_teacher(task.cfg.teacher, task.model_cfg)
    check_same_crop(teacher.cfg, task.model_cfg)
    task.set_teacher(teacher)
    task.teacher_cfg = teacher.cfg
    task.loss_cfg = (loss_cfg or LoReTrackLossConfig()).validate()


class OSTrackTask(Task):
    """OSTrack training (see the module docstring); ``LoReTrackTask`` when a teacher is configured."""

    distill_task = "lorat.train.ostrack_task:LoReTrackTask"

    def geometry(self) -> Any:
        """The config whose sizes and factors the crops are cut with (the model's own)."""
        return self.model_cfg

    def build_datasets(self) -> tuple[Any, Any | None]:
        from ..data.transforms import SiameseTrainTransform

        geo = self.geometry()
        aug = {**ostrack_jitter(geo), **_OSTRACK_AUG, **self.cfg.augment_overrides()}  # TrainConfig.augment wins
        return pair_datasets(self.cfg, SiameseTrainTransform.from_model_config(geo, **aug))

    def collate(self, items: list[dict]) -> Batch:
        """LoRAT's pair batch plus ``search_anno`` (B, 4): the normalised search box as ``x, y, w, h``."""
        from ..data.transforms import collate_pairs

        batch = collate_pairs(items)
        b = batch["boxes"]  # (B, 4) normalised xyxy
        batch["search_anno"] = torch.cat([b[:, :2], b[:, 2:] - b[:, :2]], dim=1)
        return batch

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from .ostrack_loss import ostrack_loss

        out = model(batch["z"], batch["x"])
        out = {k: v.float() for k, v in out.items()}  # the loss in float32 under autocast
        loss, terms = ostrack_loss(out, batch["search_anno"].float(), self.model_cfg.search_size)
        return loss, terms_for_log(terms)  # focal, giou, l1, iou


class LoReTrackTask(OSTrackTask):
    """LoReTrack: the OSTrack student learns from a frozen high-resolution OSTrack teacher
    (:func:`lorat.train.distill.loretrack_loss`: task loss + 0.01 QKV-KD + 0.01 Disc-KD)."""

    def __init__(self, cfg: Any, model_cfg: Any, loss_cfg: Any = None) -> None:
        super().__init__(cfg, model_cfg)
        attach_teacher(self, loss_cfg)

    def geometry(self) -> Any:
        """Crops at the teacher's sizes; the student's inputs are their bilinear downsample."""
        return self.teacher_cfg

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from .distill import loretrack_loss

        loss, terms = loretrack_loss(model, self.teacher, batch["z"], batch["x"], batch["search_anno"].float(),
                                     self.loss_cfg)
        return loss, terms_for_log(terms)  # focal, giou, l1, qkv, disc, their parts, iou, task


__all__ = ["OSTrackTask", "LoReTrackTask", "ostrack_jitter", "load_teacher", "check_same_crop", "attach_teacher",
           "terms_for_log"]
