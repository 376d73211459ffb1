"""The training-task seam: the loop trains whatever task the registry (or the caller) names; NaN guard;
frozen teachers stay frozen; the step hook sees the schedule."""
from __future__ import annotations

import math

import pytest
import torch

import lorat
from lorat.models.registry import get_arch, import_path, resolve_config
from lorat.train.task import LoRATTask, StepContext, Task
from lorat.train.trainer import train
from train_helpers import TINY, assert_stopped_before_step_3, make_synth_root, metrics, small_cfg


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return make_synth_root(tmp_path_factory.mktemp("synth"))


def test_registry_names_the_lorat_task():
    cls = import_path(get_arch(resolve_config("lorat-s-224")).task)
    assert cls is LoRATTask and issubclass(cls, Task)


class NaNAtStep3(LoRATTask):
    """Injects a NaN into the GIoU term of the third step."""

    def on_step(self, ctx: StepContext) -> None:
        self.step = ctx.step

    def __call__(self, model, batch):
        loss, terms = super().__call__(model, batch)
        if self.step == 2:
            terms = dict(terms, giou=terms["giou"] * float("nan"))
            loss = terms["bce"] + terms["giou"]
        return loss, terms


def test_non_finite_loss_stops_with_a_checkpoint(synth_root, tmp_path):
    out = tmp_path / "nan"
    assert_stopped_before_step_3(out, "giou", lambda: train(small_cfg(synth_root, out), TINY, task=NaNAtStep3))


class Distill(LoRATTask):
    """A toy distillation task: the student's score map also matches a frozen teacher's."""

    def __init__(self, cfg, model_cfg):
        super().__init__(cfg, model_cfg)
        torch.manual_seed(123)
        self.set_teacher(lorat.create_model(model_cfg))
        self.initial = {k: v.clone() for k, v in self.teacher.state_dict().items()}
        self.contexts: list[StepContext] = []

    def on_step(self, ctx):
        self.contexts.append(ctx)

    def __call__(self, model, batch):
        assert not self.teacher.training and not any(p.requires_grad for p in self.teacher.parameters())
        loss, terms = super().__call__(model, batch)
        with torch.no_grad():
            target = self.teacher(batch["z"], batch["x"], batch["z_feat_mask"])["score_map"]
        student = model(batch["z"], batch["x"], batch["z_feat_mask"])["score_map"]
        distill = (student.float() - target.float()).pow(2).mean()
        return loss + distill, dict(terms, distill=distill.detach())


def test_a_task_with_a_frozen_teacher(synth_root, tmp_path):
    tasks = []

    def factory(cfg, model_cfg):
        tasks.append(Distill(cfg, model_cfg))
        return tasks[0]

    done = train(small_cfg(synth_root, tmp_path / "kd", epochs=1, val_samples=8), TINY, task=factory)
    assert done["status"] == "finished" and done["step"] == 4
    task = tasks[0]
    task.teacher.train()  # a stray .train() does not unfreeze it either
    assert not task.teacher.training
    for k, v in task.teacher.state_dict().items():
        assert torch.equal(v, task.initial[k]), k  # untouched: not in the optimizer
    assert all("loss_distill" in r for r in metrics(tmp_path / "kd") if "loss" in r)
    # the step hook saw every step with the schedule's base lr (warm-up over 2 steps from 1e-7)
    assert [c.step for c in task.contexts] == [0, 1, 2, 3] and task.contexts[0].lr == pytest.approx(1e-7)
    assert task.contexts[3].lr == pytest.approx(1e-3) and math.isclose(task.contexts[2].epoch_progress, 0.5)
    assert task.__getstate__()["teacher"] is None  # spawned data workers do not receive the teacher


def test_teacher_setting_needs_a_task_that_uses_one(synth_root, tmp_path):
    from lorat.train.task import LoRATTask

    class NoDistill(LoRATTask):
        distill_task = None  # a task without a distillation subclass

    with pytest.raises(ValueError, match="teacher='t.safetensors' is set but NoDistill uses no teacher"):
        train(small_cfg(synth_root, tmp_path / "t", teacher="t.safetensors"), TINY, task=NoDistill)
    # LoRAT itself hands over to its distillation task, which names the missing teacher file
    with pytest.raises(FileNotFoundError, match="teacher checkpoint not found: t.safetensors"):
        train(small_cfg(synth_root, tmp_path / "t", teacher="t.safetensors"), TINY)


def test_negative_pairs_reach_lorat_sampling_and_other_methods_refuse_them(synth_root, tmp_path):
    from dataclasses import replace

    from lorat.data.transforms import SiameseTrainTransform
    from lorat.train.task import pair_datasets

    cfg = small_cfg(synth_root, tmp_path, negative_pair_prob=0.25)
    train_set, _ = LoRATTask(cfg, resolve_config("lorat-s-224", **TINY)).build_datasets()
    assert train_set.negative_prob == 0.25
    assert LoRATTask(replace(cfg, negative_pair_prob=0.0), resolve_config("lorat-s-224", **TINY)
                     ).build_datasets()[0].negative_prob == 0.0
    with pytest.raises(ValueError, match="negative_pair_prob=0.25: .* LoRAT's task only"):
        pair_datasets(cfg, SiameseTrainTransform())  # e.g. OSTrack's heat-map targets need the target
    with pytest.raises(ValueError, match="negative_pair_prob=1.5 must be in"):
        replace(cfg, negative_pair_prob=1.5).validate()


def test_augment_overrides_reach_the_training_transform(synth_root, tmp_path):
    from dataclasses import replace

    cfg = small_cfg(synth_root, tmp_path, augment=("deit3=false", "brightness=0", "max_attempts=3"))
    assert cfg.augment_overrides() == {"deit3": False, "brightness": 0.0, "max_attempts": 3}
    task = LoRATTask(cfg, resolve_config("lorat-s-224", **TINY))
    train_set, _ = task.build_datasets()
    tc = train_set.transform.config
    assert (tc.deit3, tc.brightness, tc.max_attempts) == (False, 0.0, 3)
    assert tc.contrast == 0.4 and tc.search_size == 56  # others as the method sets them, geometry from the model
    default = LoRATTask(replace(cfg, augment=()), resolve_config("lorat-s-224", **TINY)).build_datasets()[0]
    assert default.transform.config.deit3 is True
    from lorat.config import apply_overrides

    assert apply_overrides(cfg, ["augment=deit3=false,brightness=0.2"]).augment == ("deit3=false", "brightness=0.2")
    for bad, match in [(("deit3=maybe",), "bad value 'maybe' for the bool field deit3"),
                       (("search_size=64",), "expected field=value with a field of"),
                       (("brightness",), "expected field=value")]:
        with pytest.raises(ValueError, match=match):
            replace(cfg, augment=bad).validate()
