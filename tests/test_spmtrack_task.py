"""SPMTrack training through the task seam: tuplet items and labels, a few steps on tiny generated data, exact
resume, the GIoU warm-up, and a clean stop on an injected NaN."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lorat.data.datasets import load_training_dataset
from lorat.models.registry import get_arch, import_path, resolve_config
from lorat.train.checkpoint import latest_checkpoint
from lorat.train.spmtrack_data import TupletDataset, TupletTransform, collate_tuplets
from lorat.train.spmtrack_loss import frame_targets
from lorat.train.spmtrack_task import SPMTrackTask, official_recipe
from lorat.train.task import StepContext
from lorat.train.trainer import train
from train_helpers import (
    assert_same_weights,
    assert_stopped_before_step_3,
    losses,
    make_synth_root,
    metrics,
    small_cfg,
    weights,
)

TINY = dict(embed_dim=32, depth=2, num_heads=2, template_size=28, search_size=56, tmoe_r=4, tmoe_alpha=8.0,
            tmoe_experts=2, pretrain_img_size=56, drop_path=0.1)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return make_synth_root(tmp_path_factory.mktemp("synth"))


def _cfg(root, out, **kw):
    return small_cfg(root, out, model="spmtrack-b-224", **kw)


def test_registry_names_the_spmtrack_task():
    assert import_path(get_arch(resolve_config("spmtrack-b-378")).task) is SPMTrackTask


def test_official_recipe():
    b, g, got = official_recipe("spmtrack-b-378"), official_recipe("spmtrack-g-378"), official_recipe(
        "spmtrack-l-378", got10k_only=True)
    assert (b.batch_size, g.batch_size, got.batch_size) == (128, 32, 64)
    assert (b.epochs, got.epochs, got.datasets) == (170, 100, ("got10k_train",))
    assert b.samples_per_epoch == 131072 and b.lr == 1e-4 and b.weight_decay == 0.1


def test_tuplet_items_labels_and_determinism(synth_root):
    model_cfg = resolve_config("spmtrack-b-224", **TINY)
    seqs = load_training_dataset("got10k_train", str(synth_root))
    ds = TupletDataset([seqs], TupletTransform.from_model_config(model_cfg), 16, seed=3)
    items = [ds[i] for i in range(8)]
    again = ds[5]
    for k in ("z", "x", "z_feat_mask", "frames"):
        assert torch.equal(items[5][k], again[k])  # a pure function of (seed, epoch, index)
    directions = set()
    for it in items:
        assert it["z"].shape == (3, 3, 28, 28) and it["x"].shape == (2, 3, 56, 56)
        assert it["z_feat_mask"].shape == (3, 2, 2) and it["z_feat_mask"].sum() > 0
        f = it["frames"][2:].tolist()
        assert f == sorted(f) or f == sorted(f, reverse=True)  # templates precede searches in time order
        directions.add(f == sorted(f))
        assert len(it["positive_indices"]) == 2 and all(len(p) > 0 for p in it["positive_indices"])
    assert directions == {True, False} or len(items) < 4
    batch = collate_tuplets(items)
    assert batch["z"].shape == (8, 3, 3, 28, 28) and batch["x"].shape == (8, 2, 3, 56, 56)
    for k in range(2):  # per-frame labels: those frame_targets builds from each frame's own box
        want = frame_targets(batch["x_box"][:, k], 56, 4)
        for key, value in want.items():
            torch.testing.assert_close(batch["targets"][k][key], value)
    # the two search frames of a tuplet differ (different frames and jitter), so their labels do too
    assert not torch.equal(batch["targets"][0]["boxes"], batch["targets"][1]["boxes"])


def test_giou_warmup_follows_the_epoch():
    cfg = resolve_config("spmtrack-b-224", **TINY, giou_warmup_epochs=2)
    task = SPMTrackTask(official_recipe("spmtrack-b-224"), cfg)
    weights_by_epoch = []
    for epoch in range(4):
        task.on_step(StepContext(step=epoch * 10, epoch=epoch, step_in_epoch=0, steps_per_epoch=10,
                                 total_steps=40, lr=1e-4))
        weights_by_epoch.append(task.giou_weight)
    assert weights_by_epoch == [10.0, 10.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="giou_warmup_epochs"):
        resolve_config("spmtrack-b-224", giou_warmup_epochs=-1).validate()


def test_few_steps_and_exact_resume(synth_root, tmp_path):
    clean = train(_cfg(synth_root, tmp_path / "clean"), TINY)
    assert clean["status"] == "finished" and clean["step"] == 8 and np.isfinite(clean["loss"])
    recs = [r for r in metrics(tmp_path / "clean") if "loss" in r]
    assert {"loss_bce_0", "loss_giou_1", "loss_loss_1", "loss_num_positive_samples_0"} <= set(recs[0])
    for r in recs:  # the loss is the sum over both search frames
        assert r["loss"] == pytest.approx(r["loss_loss_0"] + r["loss_loss_1"], rel=1e-5)
    assert clean["val_loss"] is not None and np.isfinite(clean["val_loss"])
    part = train(_cfg(synth_root, tmp_path / "resumed"), TINY, stop_after_steps=3)
    part_checkpoint = latest_checkpoint(tmp_path / "resumed")
    assert part["status"] == "interrupted" and part_checkpoint.name == "step_00000003"
    done = train(_cfg(synth_root, tmp_path / "resumed"), TINY, resume=True)
    assert done["status"] == "finished" and done["step"] == 8
    assert losses(tmp_path / "resumed") == losses(tmp_path / "clean")
    a = assert_same_weights(tmp_path / "clean" / "model_final.safetensors",
                            tmp_path / "resumed" / "model_final.safetensors")
    step3 = weights(part_checkpoint / "model.safetensors")
    assert any(".tmoe." in k for k in step3) and "track_query" in step3 and "head.cls_mlp.layers.0.weight" in step3
    assert not any(k.startswith("blocks.") and ".tmoe." not in k for k in step3)  # the backbone is frozen
    assert not torch.equal(step3["track_query"], a["track_query"])  # steps 4-8 moved the state query


class NaNAtStep3(SPMTrackTask):
    """Injects a NaN into the second search frame's GIoU term at the third step."""

    def on_step(self, ctx: StepContext) -> None:
        super().on_step(ctx)
        self.step = ctx.step

    def __call__(self, model, batch):
        loss, terms = super().__call__(model, batch)
        if self.step == 2:
            terms = dict(terms, giou_1=terms["giou_1"] * float("nan"))
            loss = loss + terms["giou_1"]
        return loss, terms


def test_injected_nan_stops_with_a_checkpoint(synth_root, tmp_path):
    out = tmp_path / "nan"
    assert_stopped_before_step_3(out, "giou_1", lambda: train(_cfg(synth_root, out), TINY, task=NaNAtStep3))


def test_single_frame_coco_tracks_give_five_copies_of_the_image(tmp_path):
    import fake_datasets as F

    F.make_fake_coco(tmp_path / "coco")
    seqs = load_training_dataset("coco2017_train", str(tmp_path / "coco"))
    model_cfg = resolve_config("spmtrack-b-224", **TINY)
    # no augmentation: the 3 templates (and the 2 searches up to their jitter) are crops of one image
    transform = TupletTransform.from_model_config(model_cfg, flip_prob=0.0, brightness=0.0, contrast=0.0,
                                                  saturation=0.0, deit3=False)
    ds = TupletDataset([seqs], transform, 6, seed=1)
    for i in range(6):
        item = ds[i]
        assert item["frames"][2:].tolist() == [0] * 5
        assert torch.equal(item["z"][0], item["z"][1]) and torch.equal(item["z"][0], item["z"][2])
