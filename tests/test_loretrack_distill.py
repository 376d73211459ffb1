"""LoReTrack distillation (set D): teacher, student inputs, q/k/v maps, Disc-KD energy/mask, every term,
total and gradients; plus the spec's unit properties of the KD terms and the paper-text variants."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lorat.train.distill import LoReTrackLossConfig, disc_kd, distill_kl, loretrack_loss, qkv_kd, resize_to, split_qkv
from ostrack_fixtures import (
    assert_close,
    assert_grad,
    assert_loss,
    build_student,
    build_teacher,
    fixture_dirs,
    ids,
    tensors,
    tol,
)

DIRS = fixture_dirs()


def _run(d):
    D = tensors(d, "distill")
    student, teacher = build_student(d).train(), build_teacher(d)
    total, terms = loretrack_loss(student, teacher, D["input.teacher_template"], D["input.teacher_search"],
                                  D["label.search_anno"])
    return D, student, teacher, total, terms


@pytest.mark.parametrize("d", DIRS, ids=ids())
def test_student_inputs_are_bilinear_downsample(d):
    A, D = tensors(d, "io"), tensors(d, "distill")
    z = resize_to(D["input.teacher_template"], A["input.template"].shape[-1])
    x = resize_to(D["input.teacher_search"], A["input.search"].shape[-1])
    assert torch.equal(z, A["input.template"]) and torch.equal(x, A["input.search"])


@pytest.mark.parametrize("d", DIRS, ids=ids())
def test_teacher_outputs_and_probes(d):
    D = tensors(d, "distill")
    teacher = build_teacher(d)
    probes: dict = {}
    with torch.no_grad():
        out = teacher(D["input.teacher_template"], D["input.teacher_search"], return_qkv=True, probes=probes)
    for k in ("score_map", "size_map", "offset_map"):
        assert_close(out[k], D[f"teacher.output.{k}"], tol("map"), k)
    assert_close(out["pred_boxes"], D["teacher.output.pred_boxes"], tol("box"), "pred_boxes")
    names = {k.split(".")[2] for k in D if k.startswith("teacher.probe.")}
    for n in names:
        assert_close(probes[n][:, :4], D[f"teacher.probe.{n}.first4"], tol("probe"), n)
        assert_close(probes[n][:, -4:], D[f"teacher.probe.{n}.last4"], tol("probe"), n)
    grid = tuple(D["qkv.teacher.q"].shape[-2:])
    for name, m in zip("qkv", split_qkv(out["qkv"], grid[0] * grid[1], grid)):
        assert_close(m, D[f"qkv.teacher.{name}"], tol("probe"), f"teacher {name}")
    assert_close(out["opt_feat"], D["disc.teacher_feat"], tol("probe"), "teacher feat")
    assert int(D["qkv.layer_index"]) == len(teacher.backbone.blocks) - 1


@pytest.mark.parametrize("d", DIRS, ids=ids())
def test_distillation_terms_total_and_gradients(d):
    D, student, _, total, t = _run(d)
    s_out = t["student_out"]
    grid = tuple(D["qkv.student.q"].shape[-2:])
    for name, m in zip("qkv", split_qkv(s_out["qkv"], grid[0] * grid[1], grid)):
        assert_close(m, D[f"qkv.student.{name}"], tol("probe"), f"student {name}")
    assert_close(s_out["opt_feat"], D["disc.student_feat"], tol("probe"), "student feat")
    assert torch.equal(t["disc_mask"], D["disc.mask"])
    assert_close(t["disc_energy"], D["disc.energy"], tol("probe"), "energy")
    for k in ("focal", "giou", "l1", "qkv", "disc", "qkv_q", "qkv_k", "qkv_v"):
        assert_loss(t[k], D[f"loss.{k}"], k)
    assert_loss(t["disc_alpha_term"], D["loss.disc_alpha_term"], "alpha term")
    assert_loss(t["disc_beta_term"], D["loss.disc_beta_term"], "beta term")
    assert_loss(total, D["loss.total"], "total")
    params = dict(student.named_parameters())
    for prefix, term in (("grad_qkv.", t["qkv"]), ("grad_disc.", t["disc"])):
        names = [k for k in D if k.startswith(prefix)]
        assert names
        grads = torch.autograd.grad(term, [params[k[len(prefix):]] for k in names], retain_graph=True,
                                    allow_unused=True)
        for k, g in zip(names, grads):
            assert_grad(g, D[k], k)
    total.backward()
    names = [k for k in D if k.startswith("grad.")]
    assert names
    for k in names:
        assert_grad(params[k[5:]].grad, D[k], k)
    assert all(p.grad is None for p in _teacher_params(d))


def _teacher_params(d):
    return list(build_teacher(d).parameters())


@pytest.mark.parametrize("d", DIRS, ids=ids())
def test_kd_terms_from_stored_inputs(d):
    D, cfg = tensors(d, "distill"), LoReTrackLossConfig()
    s = tuple(D[f"qkv.student.{n}"] for n in "qkv")
    te = tuple(D[f"qkv.teacher.{n}"] for n in "qkv")
    qkv, parts = qkv_kd(s, te, cfg)
    assert_loss(qkv, D["loss.qkv"], "qkv")
    for n in "qkv":
        assert_loss(parts[n], D[f"loss.qkv_{n}"], n)
    disc, dp = disc_kd(D["disc.student_feat"], D["disc.teacher_feat"], cfg)
    assert_loss(disc, D["loss.disc"], "disc")
    assert torch.equal(dp["mask"], D["disc.mask"])
    assert float(D["disc.threshold"]) == pytest.approx(cfg.tau)
    assert float(D["disc.alpha"]) == pytest.approx(cfg.alpha) and float(D["disc.beta"]) == pytest.approx(cfg.beta)


def test_kd_unit_properties():
    torch.manual_seed(0)
    cfg = LoReTrackLossConfig()
    t = torch.randn(2, 12, 6, 6)
    s = torch.randn(2, 12, 3, 3, requires_grad=True)
    same, _ = qkv_kd((t, t, t), (t, t, t), cfg)
    assert same.abs() < 1e-4  # float32 rounding of an exact 0
    up = F.interpolate(s, size=(6, 6), mode="bilinear", align_corners=False)
    plain = distill_kl(up, t, 4.0)
    ones = LoReTrackLossConfig(tau=-1.0)  # every position discriminative
    zeros = LoReTrackLossConfig(tau=1e9)
    assert torch.allclose(disc_kd(s, t, ones)[0], 0.6 * plain)
    assert torch.allclose(disc_kd(s, t, zeros)[0], 0.4 * plain)
    # a masked-out position contributes exactly 0 to the alpha term and gets no gradient from it
    _, parts = disc_kd(s, t, LoReTrackLossConfig(tau=1.0))  # about half the positions
    m = parts["mask"]
    assert m.any() and (~m).any()
    fs = up.flatten(2)
    a = distill_kl(fs * m.unsqueeze(1), t.flatten(2) * m.unsqueeze(1), 4.0)
    (g,) = torch.autograd.grad(a, fs)
    assert g.transpose(1, 2)[~m].abs().max() == 0


def test_paper_variants_are_options():
    torch.manual_seed(1)
    t, s = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 2, 2)
    kl, _ = qkv_kd((s,) * 3, (t,) * 3, LoReTrackLossConfig())
    mse, _ = qkv_kd((s,) * 3, (t,) * 3, LoReTrackLossConfig(distance="mse"))
    up = F.interpolate(s, size=(4, 4), mode="bilinear", align_corners=False)
    assert torch.allclose(mse, 3 * F.mse_loss(up, t)) and not torch.allclose(mse, kl)
    _, raw = disc_kd(s, t, LoReTrackLossConfig(tau=0.5))
    _, mm = disc_kd(s, t, LoReTrackLossConfig(tau=0.5, energy_norm="minmax"))
    assert mm["energy"].min() == 0 and torch.allclose(mm["energy"].amax(1), torch.ones(2))
    assert not torch.equal(raw["mask"], mm["mask"])
    with pytest.raises(ValueError, match="distance"):
        LoReTrackLossConfig(distance="l2").validate()


def test_teacher_mode_is_restored_and_not_trained():
    import lorat

    kw = dict(embed_dim=32, depth=2, num_heads=2, head_channels=16)
    teacher = lorat.create_model("ostrack-b-384", template_size=64, search_size=128, **kw).requires_grad_(False)
    student = lorat.create_model("loretrack-b-96", **kw).train()
    teacher.train()
    z, x = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 128, 128)
    total, t = loretrack_loss(student, teacher, z, x, torch.tensor([[0.4, 0.4, 0.2, 0.2], [0.3, 0.5, 0.3, 0.1]]))
    assert teacher.training  # restored; it ran in eval mode
    assert torch.isfinite(total) and set(t) >= {"focal", "giou", "l1", "qkv", "disc"}
    total.backward()
    assert student.backbone.blocks[0].attn.qkv.weight.grad is not None
