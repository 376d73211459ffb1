"""Training through the task seam: OSTrack, LoReTrack (OSTrack teacher -> student) and LoRAT distillation.

Tiny models on a small synthetic GOT-10k root: a few steps run, the frozen teacher gets no gradient and
does not change, and a resumed run ends with bit-identical weights to an uninterrupted one.
"""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import lorat
from lorat.models.registry import resolve_config
from lorat.train.lorat_distill_task import LoRATDistillTask
from lorat.train.ostrack_task import LoReTrackTask, OSTrackTask
from lorat.train.task import LoRATTask
from lorat.train.trainer import latest_checkpoint, train
from train_helpers import TINY, assert_same_weights, losses, make_synth_root, small_cfg

OST = dict(embed_dim=32, depth=2, num_heads=2, head_channels=16, pretrain_img_size=64, drop_path=0.1)
STUDENT = dict(OST, template_size=32, search_size=64)  # loretrack-b-128 geometry halved (factors 2 / 5)
LORAT_STUDENT = dict(TINY, template_size=14, search_size=28, search_area_factor=4.0, peft="lora")


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return make_synth_root(tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    torch.manual_seed(1)
    ost = lorat.create_model("ostrack-b-384", **dict(OST, drop_path=0.0), template_size=64, search_size=128)
    lorat.save_checkpoint(ost, root / "ostrack_teacher.safetensors")
    lor = lorat.create_model("lorat-s-224", **dict(TINY, drop_path=0.0))  # 28 / 56, factor 4
    lorat.save_checkpoint(lor, root / "lorat_teacher.safetensors")
    return {"ostrack": root / "ostrack_teacher.safetensors", "lorat": root / "lorat_teacher.safetensors"}


def _capture(holder: dict, cls):
    def factory(cfg, model_cfg):
        holder["task"] = cls(cfg, model_cfg)
        return holder["task"]
    return factory


def _assert_teacher_frozen(task, teacher_file):
    ref = lorat.load_checkpoint(teacher_file, merge=True).state_dict()  # the task loads teachers merged
    assert ref.keys() == task.teacher.state_dict().keys()
    assert all(not p.requires_grad and p.grad is None for p in task.teacher.parameters())
    assert not task.teacher.training
    sd = task.teacher.state_dict()
    for k, v in ref.items():
        assert torch.equal(sd[k], v), k


def test_task_dispatch_on_teacher(synth_root, tmp_path, teachers):
    base = small_cfg(synth_root, tmp_path)
    ost_cfg = resolve_config("loretrack-b-128", **STUDENT)
    assert type(OSTrackTask(base, ost_cfg)) is OSTrackTask
    assert type(OSTrackTask(replace(base, teacher=str(teachers["ostrack"])), ost_cfg)) is LoReTrackTask
    lor_cfg = resolve_config("lorat-s-112", **LORAT_STUDENT)
    assert type(LoRATTask(base, lor_cfg)) is LoRATTask
    assert type(LoRATTask(replace(base, teacher=str(teachers["lorat"])), lor_cfg)) is LoRATDistillTask
    # errors name the value and the fix
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        OSTrackTask(replace(base, teacher="nope.safetensors"), ost_cfg)
    with pytest.raises(ValueError, match="search_area_factor=4"):
        LoRATTask(replace(base, teacher=str(teachers["lorat"])), resolve_config("lorat-s-112", **TINY))
    with pytest.raises(ValueError, match="'lorat' model"):
        OSTrackTask(replace(base, teacher=str(teachers["lorat"])), ost_cfg)


def test_ostrack_task_trains(synth_root, tmp_path):
    cfg = small_cfg(synth_root, tmp_path / "ost", model="ostrack-b-256", epochs=1)
    summary = train(cfg, dict(OST, template_size=32, search_size=64))
    assert summary["status"] == "finished" and summary["step"] == 4
    recs = [r for r in __import__("train_helpers").metrics(tmp_path / "ost") if "loss" in r]
    assert {"loss_focal", "loss_giou", "loss_l1", "loss_iou"} <= set(recs[0])
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in recs)
    assert summary["val_loss"] is not None


def _distill_resume(synth_root, tmp_path, teacher_file, model, overrides, cls):
    cfg = small_cfg(synth_root, tmp_path / "clean", model=model, teacher=str(teacher_file))
    holder: dict = {}
    clean = train(cfg, overrides, task=_capture(holder, cls))
    assert clean["status"] == "finished" and clean["step"] == 8
    assert isinstance(holder["task"], cls)
    _assert_teacher_frozen(holder["task"], teacher_file)
    cfg2 = replace(cfg, output_dir=str(tmp_path / "resumed"))
    part = train(cfg2, overrides, stop_after_steps=3)  # through Arch.task and the teacher dispatch
    assert part["status"] == "interrupted" and latest_checkpoint(tmp_path / "resumed").name == "step_00000003"
    done = train(cfg2, overrides, resume=True)
    assert done["status"] == "finished" and done["step"] == 8
    assert losses(tmp_path / "resumed") == losses(tmp_path / "clean")
    assert_same_weights(tmp_path / "clean" / "model_final.safetensors",
                        tmp_path / "resumed" / "model_final.safetensors")
    return __import__("train_helpers").metrics(tmp_path / "clean")


def test_loretrack_distillation_resume_exact(synth_root, tmp_path, teachers):
    recs = _distill_resume(synth_root, tmp_path, teachers["ostrack"], "loretrack-b-128", STUDENT, LoReTrackTask)
    first = next(r for r in recs if "loss" in r)
    assert {"loss_focal", "loss_giou", "loss_l1", "loss_qkv", "loss_disc"} <= set(first)
    assert first["loss_qkv"] > 0 and first["loss_disc"] >= 0


def test_lorat_distillation_resume_exact(synth_root, tmp_path, teachers):
    recs = _distill_resume(synth_root, tmp_path, teachers["lorat"], "lorat-s-112", LORAT_STUDENT,
                           LoRATDistillTask)
    first = next(r for r in recs if "loss" in r)
    assert {"loss_bce", "loss_giou", "loss_qkv", "loss_disc"} <= set(first)
    assert first["loss_qkv"] > 0


def test_lorat_student_targets_follow_the_scaled_box(synth_root, tmp_path, teachers):
    cfg = small_cfg(synth_root, tmp_path, model="lorat-s-112", teacher=str(teachers["lorat"]))
    task = LoRATTask(cfg, resolve_config("lorat-s-112", **LORAT_STUDENT))
    train_set, _ = task.build_datasets()
    batch = task.collate([train_set[i] for i in range(4)])
    assert batch["x"].shape[-1] == 56 and batch["z_feat_mask"].shape[-1] == 2  # teacher crops 56 / 28
    st = batch["student"]
    assert st["z_feat_mask"].shape == (4, 1, 1) and int(st["positive_sample_map_dim_indices"].max()) < 4
    assert torch.equal(st["boxes"], batch["boxes"])  # normalised boxes are shared by both resolutions
    # the student's positives are the cells its scaled box overlaps: never more than the teacher's
    assert 0 < st["num_positive_samples"].item() <= batch["num_positive_samples"].item()


def test_cli_train_loretrack_with_teacher(synth_root, tmp_path, teachers):
    from lorat.cli import main

    out = tmp_path / "cli"
    args = ["train", "--preset", "loretrack-b-128", "--teacher", str(teachers["ostrack"]), "--output", str(out),
            "--set", "datasets=got10k_train", "--set", f"dataset_roots=got10k_train={synth_root}", "--set", "epochs=1",
            "--set", "samples_per_epoch=8", "--set", "batch_size=4", "--set", "num_workers=0",
            "--set", "device=cpu", "--set", "amp=float32", "--set", "val_samples=0"]
    for k, v in STUDENT.items():
        args += ["--model-set", f"{k}={v}"]
    assert main(args) == 0
    back = lorat.load_checkpoint(out / "model_final.safetensors")
    assert back.cfg.search_size == 64 and back.cfg.name == "loretrack-b-128"
    assert isinstance(lorat.Tracker(back, lorat.TrackConfig(device="cpu", verbose=False)),
                      lorat.track.ostrack.OSTrackTracker)


def test_ostrack_jitter_follows_the_yaml_of_the_geometry(synth_root, tmp_path, teachers):
    from lorat.train.ostrack_task import ostrack_jitter

    assert ostrack_jitter(resolve_config("ostrack-b-256")) == {"translation_jitter": 3.0, "scale_jitter": 0.25}
    assert ostrack_jitter(resolve_config("ostrack-b-384")) == {"translation_jitter": 4.5, "scale_jitter": 0.5}
    cfg = small_cfg(synth_root, tmp_path, model="loretrack-b-128", teacher=str(teachers["ostrack"]))
    task = OSTrackTask(cfg, resolve_config("loretrack-b-128", **STUDENT))
    train_set, _ = task.build_datasets()
    tc = train_set.transform.config
    assert (tc.search_size, tc.template_size, tc.stride) == (128, 64, 16)  # the teacher's crops
    assert (tc.translation_jitter, tc.scale_jitter, tc.deit3, tc.brightness) == (4.5, 0.5, False, 0.2)
    batch = task.collate([train_set[i] for i in range(3)])
    anno = batch["search_anno"]  # normalised x, y, w, h of the same box as the xyxy "boxes"
    assert torch.allclose(anno[:, :2] + anno[:, 2:], batch["boxes"][:, 2:]) and (anno[:, 2:] > 0).all()


def _ddp_distill_worker(rank: int, world: int, port: int, cfg, overrides: dict, teacher_file: str, result: dict):
    import os

    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    holder: dict = {}
    status = train(cfg, overrides, task=_capture(holder, LoRATDistillTask))["status"]
    task = holder["task"]
    _assert_teacher_frozen(task, teacher_file)  # raises in the worker, which fails the spawn
    result[rank] = (status, isinstance(task.teacher, DistributedDataParallel))
    torch.distributed.destroy_process_group()


def test_lorat_distillation_under_ddp_equals_one_process(synth_root, tmp_path, teachers):
    """Two gloo ranks train the student as one process does; each rank's teacher stays frozen, outside DDP."""
    import socket

    import torch.multiprocessing as mp

    overrides = dict(LORAT_STUDENT, drop_path=0.0)
    base = small_cfg(synth_root, tmp_path / "single", model="lorat-s-112", teacher=str(teachers["lorat"]),
                     epochs=1, samples_per_epoch=24, val_samples=0, val_dataset=None)
    assert train(base, overrides)["step"] == 3
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = mp.Manager().dict()
    mp.spawn(_ddp_distill_worker, args=(2, port, replace(base, output_dir=str(tmp_path / "ddp")), overrides,
                                        str(teachers["lorat"]), result), nprocs=2, join=True)
    assert dict(result) == {0: ("finished", False), 1: ("finished", False)}
    assert_same_weights(tmp_path / "single" / "model_final.safetensors", tmp_path / "ddp" / "model_final.safetensors",
                        atol=2e-6, rtol=1e-5)
    assert losses(tmp_path / "single").keys() == losses(tmp_path / "ddp").keys() == {1, 2, 3}
