"""Parameter groups and the LR schedule follow the official recipe (spec section 4.6)."""
from __future__ import annotations

import math

import pytest

import lorat
from lorat.train.optim import layer_id, lr_at, param_groups


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
