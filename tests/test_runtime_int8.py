"""The ``int8`` runtime's parts: W8A8 linears, the fused CENTER head, casting, the CPU-only rule.

Tolerances: an int8 linear's error against the fp32 linear is bounded by the quantisation steps, and the
fused head equals the CENTER head in eval mode to fp32 rounding (1e-5 of the output scale).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import lorat
from lorat.models.center_head import CenterHead, FusedCenterHead, im2col_channels_last
from lorat.runtime import make_runtime, resolve_runtime_precision
from lorat.runtime_int8 import Int8Linear, cast_except_int8, fuse_for_inference, quantize_linears


def _linear(k=96, n=64, seed=0):
    torch.manual_seed(seed)
    lin = nn.Linear(k, n)
    with torch.no_grad():
        lin.weight.mul_(torch.linspace(0.1, 3.0, n)[:, None])  # rows of very different scale: per-channel matters
    return lin


def test_int8_linear_follows_its_quantisation_formula():
    lin = _linear()
    q = Int8Linear(lin)
    x = torch.randn(5, 7, 96) * torch.logspace(-2, 1, 7)[None, :, None]  # tokens of different scale
    with torch.inference_mode():
        y = q(x)
    assert y.shape == (5, 7, 64) and y.dtype == torch.float32
    # the same quantiser written out in float64: symmetric per-channel weights, per-token activations
    w = lin.weight.double()
    sw = w.abs().amax(1) / 127
    qw = torch.round(w / sw[:, None])
    x2 = x.reshape(-1, 96).double()
    sx = x2.abs().amax(1, keepdim=True) / 127
    want = (torch.round(x2 / sx) @ qw.t()) * sx * sw + lin.bias.double()
    torch.testing.assert_close(y.reshape(-1, 64).double(), want, rtol=1e-5, atol=1e-5)
    assert torch.equal(q.weight_int8.double(), qw) and q.weight_int8.abs().max() == 127
    # and it is close to the float linear: each token's error is a few quantisation steps of its own scale
    ref = lin(x).detach()
    per_token = (y - ref).abs().amax(-1) / ref.abs().amax(-1)
    assert float(per_token.max()) < 0.03, per_token


def test_small_and_output_linears_stay_float():
    model = nn.Sequential(nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 4), nn.Linear(4, 64))
    assert quantize_linears(model) == 1
    assert isinstance(model[0], Int8Linear) and type(model[2]) is nn.Linear and type(model[3]) is nn.Linear


def test_cast_keeps_int8_scales_in_fp32():
    model = nn.Sequential(nn.LayerNorm(64), nn.Linear(64, 64))
    quantize_linears(model)
    cast_except_int8(model, torch.bfloat16)
    assert model[0].weight.dtype == torch.bfloat16
    assert model[1].weight_int8.dtype == torch.int8
    assert model[1].weight_scale.dtype == torch.float32 and model[1].bias.dtype == torch.float32
    with torch.inference_mode():
        out = model(torch.randn(3, 64, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def _head(seed=0, cin=48, ch=32):
    torch.manual_seed(seed)
    head = CenterHead(cin, ch)
    with torch.no_grad():
        for m in head.modules():
            if isinstance(m, nn.BatchNorm2d):  # non-trivial running statistics, or folding is not exercised
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_()
                m.bias.normal_()
    return head.eval()


def test_fused_center_head_equals_the_center_head():
    head = _head()
    fused = head.fused_for_inference()
    assert isinstance(fused, FusedCenterHead) and not any(p.requires_grad for p in fused.parameters())
    feat = torch.randn(2, 48, 6, 6)
    with torch.inference_mode():
        want, got = head(feat), fused(feat)
    for a, b, name in zip(want, got, ("score_map", "size_map", "offset_map", "boxes")):
        assert a.shape == b.shape, name
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5, msg=name)
    # raw branch outputs too (the sigmoid clamps would hide a wrong branch order in saturated cells)
    with torch.inference_mode():
        raw = torch.cat([head._branch(n, feat) for n in ("ctr", "offset", "size")], 1)
        x = torch.relu(fused.conv1(im2col_channels_last(feat))).transpose(1, 2).reshape(2, -1, 6, 6)
        for conv in fused.convs:
            x = torch.relu(conv(x))
        torch.testing.assert_close(fused.conv5(x), raw, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("view", [False, True])
def test_im2col_channels_last_is_unfold_in_ky_kx_c_order(view):
    # the same 3x3 / pad-1 patches as F.unfold, features (ky, kx, c) instead of (c, ky, kx); H != W, and both a
    # contiguous map and OSTrack's transposed view of (B, H*W, C) tokens
    B, C, H, W = 2, 5, 4, 7
    feat = (torch.randn(B, H * W, C).transpose(1, 2).reshape(B, C, H, W) if view
            else torch.randn(B, C, H, W))
    want = torch.nn.functional.unfold(feat, 3, padding=1)  # (B, C*9, H*W): c major, then ky, kx
    want = want.reshape(B, C, 9, H * W).permute(0, 3, 2, 1).reshape(B, H * W, 9 * C)
    assert torch.equal(im2col_channels_last(feat), want)


def test_fuse_for_inference_replaces_heads_in_place():
    model = nn.ModuleDict({"box_head": _head(), "other": nn.Linear(4, 4)})
    assert fuse_for_inference(model) == 1
    assert isinstance(model["box_head"], FusedCenterHead) and type(model["other"]) is nn.Linear


def test_int8_runtime_on_ostrack_quantises_the_fused_head():
    torch.manual_seed(0)
    model = lorat.create_model("loretrack-b-128", depth=2, embed_dim=64, num_heads=2, head_channels=16).eval()
    rt = make_runtime(model, "int8", "float32", "cpu")
    assert isinstance(rt.model.box_head, FusedCenterHead) and isinstance(rt.model.box_head.conv1, Int8Linear)
    assert rt.info["fused_modules"] == 1 and rt.info["weights"].startswith("int8")
    assert isinstance(model.box_head, CenterHead)  # the runtime prepared a copy
    # the official computation path keeps the head as written
    official = make_runtime(model, "eager", "float32", "cpu", merge_lora=False)
    assert isinstance(official.model.box_head, CenterHead)


def test_int8_runtime_is_cpu_only():
    with pytest.raises(ValueError, match="runs on the CPU"):
        resolve_runtime_precision("int8", "auto", torch.device("cuda"))
