"""Parameter groups and the LR schedule follow the official recipe (no-decay rules, layer decay, warm-up +
cosine with the official per-group semantics)."""
from __future__ import annotations

import math

import pytest
import torch

import lorat
from lorat.train.optim import Schedule, layer_id, lr_at, param_groups


def _groups_by_name(model, **kw):
    return {n: g for g in param_groups(model, 0.1, **kw) for n in g["names"]}


def test_lora_weight_decay_groups(tiny_cfg):
    model = lorat.create_model(tiny_cfg)
    by = _groups_by_name(model)
    assert set(by) == set(model.trainable_names())
    no_decay = {n for n, g in by.items() if g["weight_decay"] == 0.0}
    decay = {n for n, g in by.items() if g["weight_decay"] == 0.1}
    # (1, C) weight squeezes to 1-D: exempt, like every bias and the token-type embedding (/embed/)
    assert {"head.cls_mlp.layers.2.weight", "token_type_embed", "head.cls_mlp.layers.0.bias"} <= no_decay
    assert "head.reg_mlp.layers.2.weight" in decay and "head.cls_mlp.layers.0.weight" in decay
    assert all(n in decay for n in by if ".lora." in n)
    assert all(g["lr_scale"] == 1.0 for g in by.values())


def test_full_finetune_groups_and_layer_decay(tiny_cfg):
    model = lorat.create_model(tiny_cfg, peft="full")
    by = _groups_by_name(model, layer_decay=0.7)
    L = tiny_cfg.depth
    assert by["patch_embed.proj.weight"]["weight_decay"] == 0.0  # matches /embed/
    assert by["blocks.0.norm1.weight"]["weight_decay"] == 0.0 and by["blocks.0.ls1.gamma"]["weight_decay"] == 0.0
    assert by["blocks.1.attn.qkv.weight"]["weight_decay"] == 0.1
    assert by["pos_embed"]["weight_decay"] == 0.0
    assert math.isclose(by["patch_embed.proj.weight"]["lr_scale"], 0.7 ** (L + 1))
    for i in range(L):
        assert math.isclose(by[f"blocks.{i}.attn.qkv.weight"]["lr_scale"], 0.7 ** (L - i))
    for n in ("pos_embed", "token_type_embed", "norm.weight", "head.reg_mlp.layers.0.weight"):
        assert by[n]["lr_scale"] == 1.0
    assert layer_id("blocks.11.mlp.fc1.weight", 12) == 12 and layer_id("head.x", 12) is None


def test_lr_schedule_warmup_prefix_cosine():
    spe, epochs = 1024, 170
    total, warm = spe * epochs, 2 * spe
    assert lr_at(0, 1e-4, total, warm) == pytest.approx(1e-7)
    assert lr_at(warm // 2, 1e-4, total, warm) == pytest.approx(1e-7 + 0.5 * (1e-4 - 1e-7))
    assert lr_at(warm, 1e-4, total, warm) == pytest.approx(1e-4)
    # the cosine spans total steps *after* warm-up: at the last of 170 epochs it has not reached 1e-6
    last = lr_at(total - 1, 1e-4, total, warm)
    assert 1e-6 < last < 1.1e-6
    mid = lr_at(warm + total // 2, 1e-4, total, warm)
    assert mid == pytest.approx(1e-6 + 0.5 * (1e-4 - 1e-6))
    lrs = [lr_at(s, 1e-4, total, warm) for s in range(warm, total, 997)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_layer_decay_groups_keep_absolute_warmup_start_and_floor(tiny_cfg):
    model = lorat.create_model(tiny_cfg, peft="full")
    groups = param_groups(model, 0.1, layer_decay=0.7)
    scales = sorted({g["lr_scale"] for g in groups})
    assert len(scales) == tiny_cfg.depth + 2  # patch_embed, each block, the rest
    opt = torch.optim.AdamW([{k: v for k, v in g.items() if k != "names"} for g in groups], lr=1e-4)
    total, warm = 1000, 100
    sched = Schedule(1e-4, total, warm, warmup_lr=1e-7, min_lr=1e-6)
    assert sched.apply(opt, 0) == 1e-7
    assert all(g["lr"] == 1e-7 for g in opt.param_groups)  # warm-up starts at the same absolute value
    sched.apply(opt, warm)
    for g in opt.param_groups:  # the peak is each group's own lr
        assert g["lr"] == pytest.approx(1e-4 * g["lr_scale"])
    sched.apply(opt, warm + total)
    assert all(g["lr"] == 1e-6 for g in opt.param_groups)  # the floor is absolute too
    mid = warm + total // 2
    sched.apply(opt, mid)
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(1e-6 + 0.5 * (1e-4 * g["lr_scale"] - 1e-6))
    sched.apply(opt, warm // 2)
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(1e-7 + 0.5 * (1e-4 * g["lr_scale"] - 1e-7))


def test_trainer_sets_layer_decay_group_lrs_from_the_schedule(tmp_path):
    from lorat.train.checkpoint import latest_checkpoint
    from lorat.train.trainer import train
    from train_helpers import TINY, make_synth_root, small_cfg

    root = make_synth_root(tmp_path / "synth")
    cfg = small_cfg(root, tmp_path / "run", layer_decay=0.7, val_dataset=None, warmup_epochs=0.5)
    train(cfg, dict(TINY, peft="full"), stop_after_steps=3)
    state = torch.load(latest_checkpoint(tmp_path / "run") / "state.pt", weights_only=True)
    groups = state["optimizer"]["param_groups"]
    assert len({g["lr_scale"] for g in groups}) > 2
    # the third update ran at the schedule's lr of step 1 (official lag): half-way through the 2-step warm-up,
    # from the absolute warmup_lr to each group's own peak (not warmup_lr * lr_scale)
    for g in groups:
        assert g["lr"] == pytest.approx(1e-7 + 0.5 * (1e-3 * g["lr_scale"] - 1e-7), rel=1e-12)
