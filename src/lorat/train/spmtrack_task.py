"""SPMTrack's training task: tuplets in, the loss summed over both search frames out (the ``Task`` seam).

* data: :class:`lorat.train.spmtrack_data.TupletDataset` over the configured datasets (3 templates + 2 search
  frames per item, sampled by :func:`lorat.train.spmtrack_sampler.sample_tuplet`, cropped and augmented by
  :class:`lorat.train.spmtrack_data.TupletTransform`), validation on the same kind of tuplets;
* forward: ``model(z (B,3,3,Hz,Wz), z_feat_mask (B,3,h,w), x (B,2,3,Hx,Wx))`` runs the two search frames in
  order, the second fed the first's (stop-gradient) state token; one module call, so DDP sees one forward;
* loss: :func:`lorat.train.spmtrack_loss.spmtrack_loss`, ``sum_k BCE_k + GIoU_k`` each normalised by its own
  positive count; logged terms ``bce_k``, ``giou_k``, ``loss_k``, ``num_positive_samples_k``;
* GIoU warm-up: ``SPMTrackConfig.giou_warmup_epochs`` (0 officially, 2 in ``large_378_warmup``) multiplies the
  GIoU weight by 10 during those epochs; :meth:`SPMTrackTask.on_step` sets it from the step's epoch, so a resumed
  run continues with the right weight.

The generic loop's NaN guard applies unchanged: a non-finite loss stops the step before backward, writes a
checkpoint and raises ``NonFiniteLossError`` naming the batch and the non-finite terms (e.g. ``giou_1``).
:func:`official_recipe` gives the official training settings of a preset.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ..config import TrainConfig
from .spmtrack_loss import giou_weight_for_epoch, spmtrack_loss
from .spmtrack_sampler import TupletSamplingConfig
from .task import Batch, StepContext, Task, train_val_datasets


class SPMTrackTask(Task):
    """The SPMTrack training task (see the module docstring); built by the loop as ``SPMTrackTask(cfg, model_cfg)``."""

    def __init__(self, cfg: TrainConfig, model_cfg: Any) -> None:
        super().__init__(cfg, model_cfg)
        self.sampling = TupletSamplingConfig(num_templates=int(getattr(model_cfg, "num_templates", 3)),
                                             num_search_frames=int(getattr(model_cfg, "num_search_frames", 2)))
        self.warmup_epochs = int(getattr(model_cfg, "giou_warmup_epochs", 0))
        self.giou_weight = giou_weight_for_epoch(0, self.warmup_epochs)
        """GIoU weight of the current step (10 during the warm-up epochs, else 1)."""

    def build_datasets(self) -> tuple[Any, Any | None]:
        from .spmtrack_data import TupletDataset, TupletTransform

        transform = TupletTransform.from_model_config(self.model_cfg, **self.cfg.augment_overrides())
        return train_val_datasets(self.cfg, lambda sets, samples, seed, weights: TupletDataset(
            sets, transform, samples, seed, sampling=self.sampling, weights=weights))

    def collate(self, items: list[dict]) -> Batch:
        from .spmtrack_data import collate_tuplets

        return collate_tuplets(items)

    def on_step(self, ctx: StepContext) -> None:
        """Set the GIoU weight of this step's epoch (the optional warm-up)."""
        self.giou_weight = giou_weight_for_epoch(ctx.epoch, self.warmup_epochs)

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        outs = model(batch["z"], batch["z_feat_mask"], batch["x"])  # list of S dicts (5-D x: forward_frames)
        return spmtrack_loss(outs, batch["targets"], giou_weight=self.giou_weight)


def official_recipe(preset: str = "spmtrack-b-378", got10k_only: bool = False, **overrides: Any) -> TrainConfig:
    """The official SPMTrack training settings of ``preset`` as a :class:`TrainConfig`.

    As LoRAT's recipe (AdamW, lr 1e-4, weight decay 0.1, 2 warm-up epochs, cosine to 1e-6, clip 1.0, 131,072
    samples per epoch, the four training sets with equal weight) with the variant's global batch
    (``SPMTrackConfig.train_batch_size``: 128 / 64 / 32 for B / L / g) and 170 epochs; ``got10k_only``: the
    GOT-10k protocol (GOT-10k train only, 100 epochs). ``overrides`` set any other field.
    """
    from ..models.registry import get_preset

    model_cfg = get_preset(preset)
    base = TrainConfig(model=preset, batch_size=int(getattr(model_cfg, "train_batch_size", 128)), epochs=170,
                       output_dir=f"runs/{preset}")
    if got10k_only:
        base = replace(base, datasets=("got10k_train",), epochs=100)
    return replace(base, **overrides)


__all__ = ["SPMTrackTask", "official_recipe"]
