"""LoReTrack distillation for LoRAT (DINOv2, patch 14) teachers and students, and the low-resolution presets."""
from __future__ import annotations

import copy

import pytest
import torch

import lorat
from lorat.models.registry import get_preset
from lorat.train.distill import LoReTrackLossConfig, lorat_distill_loss, lorat_kd_forward, split_qkv

KW = dict(embed_dim=32, depth=2, num_heads=2, lora_r=4, lora_alpha=8.0)


def _models():
    torch.manual_seed(0)
    teacher = lorat.create_model("lorat-b-378", template_size=56, search_size=112, **KW)
    with torch.no_grad():  # a trained-like LoRA update (B is zero at init)
        for n, p in teacher.named_parameters():
            if n.endswith("lora.B"):
                p.normal_(0, 0.05)
        teacher.norm.weight.normal_(1.0, 0.5)  # a non-trivial final-norm affine: token energies differ
        teacher.norm.bias.normal_(0.0, 0.3)
    teacher.requires_grad_(False)
    student = lorat.create_model("lorat-b-112", template_size=28, search_size=56, **KW).train()
    return teacher, student


def _targets():
    return {"positive_sample_batch_dim_indices": torch.tensor([0, 0, 1]),
            "positive_sample_map_dim_indices": torch.tensor([5, 6, 10]),
            "boxes": torch.tensor([[0.3, 0.3, 0.55, 0.6], [0.4, 0.45, 0.7, 0.8]]),
            "num_positive_samples": torch.tensor([3.0])}


def test_low_resolution_presets():
    for v in ("s", "b", "l", "g"):
        for s in (112, 168):
            cfg = get_preset(f"lorat-{v}-{s}")
            assert (cfg.template_size, cfg.search_size, cfg.search_area_factor) == (s // 2, s, 5.0)
            assert cfg.template_area_factor == 2.0 and cfg.arch == "lorat" and cfg.patch_size == 14
    assert get_preset("lorat-s-112").search_feat == 8 and get_preset("lorat-b-168").template_feat == 6


def test_captured_qkv_includes_lora_and_matches_merged_model():
    teacher, _ = _models()
    z, x = torch.randn(2, 3, 56, 56), torch.randn(2, 3, 112, 112)
    mask = torch.zeros(2, 4, 4, dtype=torch.long)
    mask[:, 1:3, 1:3] = 1
    teacher.eval()
    with torch.no_grad():
        out, qkv, feat = lorat_kd_forward(teacher, z, x, mask)
        merged = copy.deepcopy(teacher).merge_lora()
        out_m, qkv_m, feat_m = lorat_kd_forward(merged, z, x, mask)
        plain = copy.deepcopy(teacher)
        for n, p in plain.named_parameters():
            if n.endswith("lora.B"):
                p.zero_()
        _, qkv_0, _ = lorat_kd_forward(plain, z, x, mask)
    assert qkv.shape == (2, 16 + 64, 96) and feat.shape == (2, 32, 8, 8)
    assert torch.allclose(qkv, qkv_m, atol=1e-4) and torch.allclose(feat, feat_m, atol=1e-4)
    assert not torch.allclose(qkv, qkv_0, atol=1e-3)  # the LoRA update is part of q/k/v
    q, k, v = split_qkv(qkv, 64, (8, 8))
    assert torch.equal(q[:, :, 0, 1], qkv[:, 16 + 1, :32]) and torch.equal(v[:, :, 1, 0], qkv[:, 16 + 8, 64:])
    assert torch.allclose(out["score_map"], out_m["score_map"], atol=1e-4)


def test_lorat_distill_loss_terms_and_gradients():
    teacher, student = _models()
    z, x = torch.randn(2, 3, 56, 56), torch.randn(2, 3, 112, 112)
    tmask, smask = torch.zeros(2, 4, 4, dtype=torch.long), torch.zeros(2, 2, 2, dtype=torch.long)
    tmask[:, 1:3, 1:3] = 1
    smask[:, :, :] = 1
    cfg = LoReTrackLossConfig(tau=1.0)
    total, t = lorat_distill_loss(student, teacher, z, x, tmask, smask, _targets(), cfg)
    assert torch.allclose(total, t["task"] + 0.01 * t["disc"] + 0.01 * t["qkv"])
    assert t["qkv"] > 0 and t["disc"] > 0 and 0 < t["disc_coverage"] < 1
    assert torch.allclose(t["qkv"], t["qkv_q"] + t["qkv_k"] + t["qkv_v"])
    total.backward()
    lora_grads = [p.grad for n, p in student.named_parameters() if n.endswith("lora.A")]
    assert lora_grads and all(g is not None and g.abs().sum() > 0 for g in lora_grads)
    assert all(p.grad is None for p in teacher.parameters())


def test_student_equal_to_teacher_has_zero_kd():
    teacher, _ = _models()
    student = copy.deepcopy(teacher).requires_grad_(True).train()
    z, x = torch.randn(2, 3, 56, 56), torch.randn(2, 3, 112, 112)
    mask = torch.zeros(2, 4, 4, dtype=torch.long)
    t = {**_targets(), "positive_sample_map_dim_indices": torch.tensor([20, 21, 40])}
    _, terms = lorat_distill_loss(student, teacher, z, x, mask, mask, t)
    assert terms["qkv"].abs() < 1e-3 and terms["disc"].abs() < 1e-3


@pytest.mark.parametrize("bad", ["distance", "energy_norm"])
def test_config_validation(bad):
    with pytest.raises(ValueError, match=bad):
        LoReTrackLossConfig(**{bad: "nope"}).validate()
