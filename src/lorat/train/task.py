"""The training-task seam: what a method (LoRAT, SPMTrack, a distillation) tells the generic loop.

The loop in ``train/trainer.py`` knows nothing about a method. It asks the task of the model config
(``Arch.task`` in the architecture registry, a ``"module:Class"`` path) for:

* the data: ``build_datasets() -> (train, val | None)``; datasets with ``len()``, integer keys and
  ``set_epoch(epoch)``, whose items :meth:`Task.collate` batches into a dict of tensors;
* the loss: ``loss, terms = task(model, batch)``, a 0-d ``loss`` to back-propagate and detached 0-d
  ``terms`` to log (the same call serves validation, under ``no_grad`` with the model in eval mode);
* a per-step hook: ``on_step(ctx)`` with a :class:`StepContext` (epoch, step, lr), e.g. for loss weight
  warm-ups, called before every optimizer step;
* a frozen ``teacher`` (optional): never wrapped in DDP, never in the optimizer, always in eval mode with
  ``requires_grad=False``; the loop moves it to the device with :meth:`Task.to`;
* the end-of-training tracker: ``tracker(model)``;
* ``distill_task`` (optional): the subclass ``TaskClass(cfg, model_cfg)`` builds instead when
  ``TrainConfig.teacher`` is set, so one ``Arch.task`` path serves plain and distillation training.

Tasks are built with ``TaskClass(cfg, model_cfg)``: the :class:`~lorat.config.TrainConfig` (which also
carries ``teacher``, a checkpoint path) and the model config of the run.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import TrainConfig

Batch = dict[str, Any]


@dataclass(frozen=True)
class StepContext:
    """Where the run is when an optimizer step starts (what :meth:`Task.on_step` receives).

    ``step`` counts the optimizer steps already done (0 for the first), ``step_in_epoch`` likewise within
    ``epoch`` (0-based); ``lr`` is the base learning rate of this step (before layer decay).
    """

    step: int
    epoch: int
    step_in_epoch: int
    steps_per_epoch: int
    total_steps: int
    lr: float

    @property
    def epoch_progress(self) -> float:
        """Fractional epoch, e.g. 2.5 half-way through the third epoch."""
        return self.epoch + self.step_in_epoch / max(self.steps_per_epoch, 1)


class Task:
    """Base class of a training task (see the module docstring for the contract).

    Subclasses implement :meth:`build_datasets` and :meth:`__call__`; the defaults of the other methods
    suit a single-model method. ``teacher`` is ``None`` unless :meth:`set_teacher` installed one.
    """

    teacher: nn.Module | None = None
    distill_task: str | None = None
    """``"module:Class"`` of the subclass built instead when ``TrainConfig.teacher`` is set (distillation)."""

    def __new__(cls, cfg: TrainConfig | None = None, *args: Any, **kwargs: Any) -> Task:
        # With a teacher configured, an architecture's task class hands over to its distillation subclass
        # (e.g. OSTrackTask -> LoReTrackTask), so one Arch.task path serves both; Python then runs that
        # subclass's __init__ because it is an instance of cls.
        if cls.distill_task and cfg is not None and getattr(cfg, "teacher", None):
            from ..models.registry import import_path

            sub = import_path(cls.distill_task)
            if not (isinstance(sub, type) and issubclass(sub, cls)):
                raise TypeError(f"{cls.__name__}.distill_task={cls.distill_task!r} is not a subclass of {cls.__name__}")
            cls = sub
        return super().__new__(cls)

    def __init__(self, cfg: TrainConfig, model_cfg: Any) -> None:
        self.cfg = cfg
        self.model_cfg = model_cfg
        self.teacher = None

    # ---------------------------------------------------------------- data
    def build_datasets(self) -> tuple[Any, Any | None]:
        """``(train, val or None)`` datasets of this method for ``self.cfg`` / ``self.model_cfg``."""
        raise NotImplementedError

    def collate(self, items: list[dict]) -> Batch:
        """Batch dataset items into one dict of tensors (``DataLoader(collate_fn=task.collate)``)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- loss
    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Forward ``batch`` through ``model`` (and the teacher); return ``(loss, terms)``.

        ``model`` is what the loop trains (possibly DDP-wrapped or compiled) or, for validation, the
        plain model in eval mode. The loop runs this inside autocast; compute the loss in float32.
        """
        raise NotImplementedError

    def on_step(self, ctx: StepContext) -> None:
        """Called before every optimizer step (before its first micro-batch); default: nothing."""

    # ---------------------------------------------------------------- teacher
    def set_teacher(self, teacher: nn.Module) -> nn.Module:
        """Install a frozen teacher: eval mode, ``requires_grad=False``, its ``train()`` disabled."""
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        teacher.train = lambda mode=True: teacher  # a later .train() (e.g. by a parent) must not unfreeze it
        self.teacher = teacher
        return teacher

    def __getstate__(self) -> dict:
        # DataLoader workers started with spawn/forkserver pickle ``collate``'s task: without the teacher
        state = self.__dict__.copy()
        state["teacher"] = None
        return state

    def to(self, device: torch.device) -> Task:
        """Move what the task owns (the teacher) to ``device``."""
        if self.teacher is not None:
            self.teacher.to(device)
        return self

    # ---------------------------------------------------------------- after training
    def tracker(self, model: nn.Module, device: torch.device | str | None = None):
        """The tracker that evaluates ``model`` after training (the architecture's registered tracker), on
        ``device`` (default: the model's). It works on a copy of the model: the trained model stays as it is.
        """
        from ..models.registry import get_arch, import_path
        from ..track.tracker import TrackConfig

        cls = import_path(get_arch(self.model_cfg).tracker)
        if device is None:
            device = next(model.parameters()).device
        return cls(model, TrackConfig(device=str(device), copy_model=True))


def train_val_datasets(cfg: Any, make: Callable[[list, int, int, list | None], Any],
                       negatives: bool = False) -> tuple[Any, Any | None]:
    """``(train, val or None)`` from a TrainConfig's datasets, roots, weights and validation settings.

    ``make(sequence_sets, samples, seed, weights)`` builds one dataset (pairs, tuplets, ...): the training one
    from ``cfg.datasets`` (``samples_per_epoch``, ``seed``, ``dataset_weights``), the validation one from
    ``cfg.val_dataset`` (``val_samples``, ``seed + 1``, no weights), read as a training split when its name
    ends in ``_train``, else as a benchmark. ``negatives``: ``make`` honours ``cfg.negative_pair_prob`` and the
    method's loss takes negative pairs (no positive cell); otherwise a recipe with it above 0 is refused.
    """
    from ..data.datasets import load_benchmark, load_training_dataset

    if cfg.negative_pair_prob > 0 and not negatives:
        raise ValueError(f"TrainConfig.negative_pair_prob={cfg.negative_pair_prob}: this method's training targets "
                         "need the target in the search crop; negative pairs are supported by LoRAT's task only")

    roots = cfg.roots()
    train = make([load_training_dataset(name, roots.get(name)) for name in cfg.datasets], cfg.samples_per_epoch,
                 cfg.seed, list(cfg.dataset_weights) or None)
    val = None
    if cfg.val_dataset and cfg.val_samples > 0:
        name = cfg.val_dataset
        reader = load_training_dataset if name.endswith("_train") else load_benchmark
        val = make([reader(name, roots.get(name))], cfg.val_samples, cfg.seed + 1, None)
    return train, val


def pair_datasets(cfg: Any, transform: Any, negatives: bool = False) -> tuple[Any, Any | None]:
    """:func:`train_val_datasets` of template/search pairs (``data/sampler.PairDataset``) with ``transform``.

    ``negatives``: the caller's loss takes negative pairs (see :func:`train_val_datasets`).
    """
    from ..data.sampler import PairDataset

    return train_val_datasets(cfg, lambda sets, samples, seed, weights: PairDataset(
        sets, transform, samples, seed, weights=weights, max_gap=cfg.max_pair_gap,
        negative_prob=cfg.negative_pair_prob), negatives=negatives)


class LoRATTask(Task):
    """LoRAT: template/search pairs (``data/sampler.PairDataset`` + ``data/transforms.SiameseTrainTransform``),
    ``model(z, x, z_feat_mask) -> {"score_map", "boxes"}`` and the IoU-aware BCE + GIoU loss
    (``train/losses.lorat_loss``). With ``TrainConfig.teacher``: ``train/lorat_distill_task.LoRATDistillTask``."""

    distill_task = "lorat.train.lorat_distill_task:LoRATDistillTask"

    def build_datasets(self) -> tuple[Any, Any | None]:
        from ..data.transforms import SiameseTrainTransform

        transform = SiameseTrainTransform.from_model_config(self.model_cfg, **self.cfg.augment_overrides())
        return pair_datasets(self.cfg, transform, negatives=True)  # the loss takes all-background samples

    def collate(self, items: list[dict]) -> Batch:
        from ..data.transforms import collate_pairs

        return collate_pairs(items)

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from .losses import lorat_loss

        out = model(batch["z"], batch["x"], batch["z_feat_mask"])  # score_map (B, H, W), boxes (B, H, W, 4)
        return lorat_loss(out["score_map"], out["boxes"], batch)  # terms: bce, giou, num_positive_samples


__all__ = ["Batch", "StepContext", "Task", "LoRATTask", "train_val_datasets", "pair_datasets"]
