"""OSTrack model against the official fixtures (set A), weight loading and bad-input errors."""
from __future__ import annotations

import pickle

import pytest
import torch

import lorat
from lorat.models.mae import WeightsFileError, read_mae, read_torch_weights
from lorat.models.ostrack import OSTrackConfig, claims_ostrack, load_ostrack_checkpoint
from lorat.models.registry import get_arch, get_preset, list_models
from ostrack_fixtures import (
    assert_close,
    build_student,
    build_teacher,
    file_with_role,
    fixture_dirs,
    ids,
    manifest,
    student_overrides,
    teacher_overrides,
    tensors,
    tol,
)

DIRS = fixture_dirs()
MAPS = ("score_map", "size_map", "offset_map")


def test_presets_registered_with_official_geometry():
    for name, (t, s, f) in {"ostrack-b-256": (128, 256, 4.0), "ostrack-b-384": (192, 384, 5.0),
                            "loretrack-b-256": (128, 256, 5.0), "loretrack-b-128": (64, 128, 5.0),
                            "loretrack-b-96": (48, 96, 5.0)}.items():
        cfg = get_preset(name)
        assert name in list_models("track")
        assert isinstance(cfg, OSTrackConfig) and cfg.arch == "ostrack"
        assert (cfg.template_size, cfg.search_size, cfg.search_area_factor) == (t, s, f)
        assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.head_channels, cfg.patch_size) == (768, 12, 12, 256, 16)
        assert cfg.template_area_factor == 2.0 and cfg.pretrain_grid == 14
    assert get_arch("ostrack").tracker == "lorat.track.ostrack:OSTrackTracker"
    from lorat.models.registry import import_path
    from lorat.train.ostrack_task import OSTrackTask

    assert import_path(get_arch("ostrack").task) is OSTrackTask


def test_state_dict_keys_equal_official():
    model = lorat.create_model("ostrack-b-256", depth=2, embed_dim=64, num_heads=2, head_channels=16)
    keys = set(model.state_dict())
    assert {"backbone.cls_token", "backbone.pos_embed", "backbone.pos_embed_z", "backbone.pos_embed_x",
            "box_head.conv1_ctr.1.num_batches_tracked", "box_head.conv5_offset.bias"} <= keys
    assert model.state_dict()["backbone.pos_embed"].shape == (1, 197, 64)
    assert model.state_dict()["backbone.pos_embed_z"].shape == (1, 64, 64)


@pytest.mark.parametrize("d", DIRS, ids=ids())
def test_keys_match_manifest(d):
    model = build_student(d)
    ref = manifest(d)["state_dicts"]["student"]["keys"]
    sd = model.state_dict()
    assert set(sd) == set(ref)
    for k, meta in ref.items():
        assert list(sd[k].shape) == meta["shape"], k


@pytest.mark.parametrize("d", DIRS, ids=ids())
def test_pos_embed_bit_exact(d):
    model = build_student(d)
    for k, v in tensors(d, "state_dict_extras").items():
        assert torch.equal(model.state_dict()[k], v), k


@pytest.mark.parametrize("d", DIRS, ids=ids())
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_forward_matches_official(d, mode):
    A = tensors(d, "io")
    model = build_student(d)
    model.train(mode == "train")
    probes: dict = {}
    with torch.no_grad():
        out = model(A["input.template"], A["input.search"], probes=probes)
    prefix = "output." if mode == "eval" else "output_train."
    for k in MAPS:
        assert_close(out[k], A[prefix + k], tol("map"), prefix + k)
    assert_close(out["pred_boxes"], A[prefix + "pred_boxes"], tol("box"), prefix + "pred_boxes")
    assert out["score_map"].min() >= 1e-4 and out["score_map"].max() <= 1 - 1e-4
    if mode == "eval":
        names = {k.split(".")[1] for k in A if k.startswith("probe.")}
        assert names, "fixture has no probes"
        for n in names:
            assert_close(probes[n][:, :4], A[f"probe.{n}.first4"], tol("probe"), n)
            assert_close(probes[n][:, -4:], A[f"probe.{n}.last4"], tol("probe"), n)


@pytest.mark.parametrize("d", DIRS, ids=ids())
def test_teacher_checkpoint_loads_strictly(d):
    teacher = build_teacher(d)
    ref = tensors(d, "teacher_checkpoint")
    sd = teacher.state_dict()
    assert set(sd) == set(ref)
    for k, v in ref.items():
        assert torch.equal(sd[k], v.to(sd[k].dtype)), k
    assert claims_ostrack(ref)
    assert not get_arch("lorat").claims(ref)


def _official_like_pth(path, net, settings_cls):
    torch.save({"epoch": 300, "net": net, "net_type": "OSTrack", "settings": settings_cls(),
                "stats": {"loss": 1.0}}, path)


class Settings:  # stands for the training code's lib.train.admin.Settings (a foreign global)
    def __init__(self):
        self.lr = 4e-4

    def __reduce__(self):  # unpickling this would run os.system; the safe reader must not
        import os
        return (os.system, ("echo SHOULD-NOT-RUN > pwned.txt",))


@pytest.mark.parametrize("d", DIRS, ids=ids())
def test_official_pth_tar_with_foreign_objects(d, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = tensors(d, "teacher_checkpoint")
    path = tmp_path / "OSTrack_ep0300.pth.tar"
    _official_like_pth(path, net, Settings)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # what the official file does to a plain safe load
    sd = read_torch_weights(path)
    assert not (tmp_path / "pwned.txt").exists()
    assert set(sd) == set(net)
    model = load_ostrack_checkpoint(path, name="ostrack-b-384", **teacher_overrides(d))
    assert not (tmp_path / "pwned.txt").exists()
    for k, v in net.items():
        assert torch.equal(model.state_dict()[k], v.to(model.state_dict()[k].dtype)), k


def test_load_checkpoint_reads_official_pth_tar(tmp_path, monkeypatch):
    """lorat.load_checkpoint (the hub path every CLI command uses) on an official-style OSTrack .pth.tar."""
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    small = dict(embed_dim=32, depth=2, num_heads=2, head_channels=16)
    net = lorat.create_model("ostrack-b-256", **small).state_dict()
    net = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in net.items()}
    path = tmp_path / "OSTrack_ep0300.pth.tar"
    _official_like_pth(path, {f"module.{k}": v for k, v in net.items()}, Settings)  # DataParallel prefix too
    model = lorat.load_checkpoint(path, name="ostrack-b-256", **small)
    assert not (tmp_path / "pwned.txt").exists()  # the pickled settings object did not run
    assert type(model).__name__ == "OSTrack" and model.cfg.head_channels == 16
    for k, v in net.items():
        assert torch.equal(model.state_dict()[k], v), k
    tracker = lorat.Tracker(model, lorat.TrackConfig(device="cpu", dtype="float32", verbose=False))
    assert type(tracker).__name__ == "OSTrackTracker"
    # a file with only foreign objects names what it found; a wrong preset names the override
    junk = tmp_path / "junk.pth.tar"
    torch.save({"settings": Settings(), "epoch": 3}, junk)
    with pytest.raises(ValueError, match="junk.pth.tar.*no state dict"):
        lorat.load_checkpoint(junk, name="ostrack-b-256")
    with pytest.raises(ValueError, match="embed_dim=32"):
        lorat.load_checkpoint(path, name="ostrack-b-256")
    assert not (tmp_path / "pwned.txt").exists()


@pytest.mark.parametrize("d", DIRS, ids=ids())
def test_mae_pth_with_model_entry(d, tmp_path):
    mae = tensors(d, "pretrained")
    path = tmp_path / "mae_pretrain_vit_base.pth"
    torch.save({"model": {k: v.half() for k, v in mae.items()}}, path)
    sd = read_mae(path)
    assert set(sd) == set(mae) and all(sd[k].dtype == torch.float32 for k in sd)
    a = lorat.create_model("loretrack-b-256", pretrained=path, **student_overrides(d))
    b = lorat.create_model("loretrack-b-256", pretrained=file_with_role(d, "pretrained"), **student_overrides(d))
    for k, v in b.backbone.state_dict().items():
        assert torch.equal(a.backbone.state_dict()[k], v), k


@pytest.mark.parametrize("d", DIRS, ids=ids())
def test_wrong_files_give_clear_errors(d, tmp_path):
    ov = student_overrides(d)
    depth = ov.pop("depth")
    with pytest.raises(WeightsFileError, match=f"has {depth} blocks.*depth={depth + 1}"):
        lorat.create_model("loretrack-b-256", pretrained=file_with_role(d, "pretrained"), depth=depth + 1, **ov)
    # an OSTrack checkpoint given as the MAE backbone
    with pytest.raises(WeightsFileError, match="OSTrack checkpoint"):
        lorat.create_model("ostrack-b-384", pretrained=file_with_role(d, "teacher_checkpoint"),
                           **teacher_overrides(d))
    # the MAE backbone given as an OSTrack checkpoint
    with pytest.raises(WeightsFileError, match="pass it as pretrained"):
        lorat.load_checkpoint(file_with_role(d, "pretrained"), name="ostrack-b-256", **student_overrides(d))
    # teacher checkpoint with the student geometry: the message names the override
    with pytest.raises(WeightsFileError, match="search_size"):
        lorat.load_checkpoint(file_with_role(d, "teacher_checkpoint"), name="ostrack-b-384",
                              **student_overrides(d))


def test_lorat_checkpoint_refused_by_ostrack(tmp_path):
    from lorat.hub import save_checkpoint

    path = tmp_path / "lorat.safetensors"
    lorat_model = lorat.create_model("lorat-b-224", embed_dim=32, depth=2, num_heads=2, lora_r=4,
                                     template_size=28, search_size=56)
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in lorat_model.state_dict().items()}, str(path))
    with pytest.raises(WeightsFileError, match="LoRAT"):
        lorat.load_checkpoint(path, name="ostrack-b-256", embed_dim=32, depth=2, num_heads=2)
    assert save_checkpoint  # (import check)


def test_lorat_format_roundtrip(tmp_path):
    from lorat.hub import save_checkpoint

    model = lorat.create_model("loretrack-b-128", embed_dim=32, depth=1, num_heads=2, head_channels=16)
    with torch.no_grad():
        model.backbone.pos_embed_x.normal_()
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path)
    back = lorat.load_checkpoint(path)
    assert back.cfg == model.cfg
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_bad_config_values():
    with pytest.raises(ValueError, match="search_size=250"):
        lorat.create_model("ostrack-b-256", search_size=250)
    with pytest.raises(ValueError, match="head_channels"):
        lorat.create_model("ostrack-b-256", head_channels=12)
    with pytest.raises(KeyError, match="no field"):
        lorat.create_model("ostrack-b-256", lora_r=4)
