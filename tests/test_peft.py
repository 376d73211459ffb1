"""LoRA: placement, initialisations, scaling, merge/unmerge, ablation targets, the fused training form."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import lorat
from lorat.models import peft
from lorat.models.peft import LoRA, LoRALinear, attach_lora, has_lora, merge_lora
from lorat.models.vit import Block


def _blocks(ffn="mlp", dim=32):
    torch.manual_seed(0)
    return nn.ModuleList([Block(dim, 4, ffn=ffn), Block(dim, 4, ffn=ffn)])


@pytest.mark.parametrize("ffn,expected", [("mlp", {"q", "k", "v", "proj", "fc1", "fc2"}),
                                          ("swiglu", {"q", "k", "v", "proj", "w12", "w3"})])
def test_lora_on_every_block_linear(ffn, expected):
    blocks = _blocks(ffn)
    n = attach_lora(blocks, r=4, alpha=4)
    assert n == 2 * len(expected)
    adapted = {name.split(".")[-1] for name, m in blocks.named_modules() if isinstance(m, LoRALinear)}
    assert adapted == expected
    # q/k/v are separate Linear(C, C) holding the fused weight's rows q | k | v
    assert blocks[0].attn.qkv.q.linear.weight.shape == (32, 32)


def test_qkv_split_preserves_function_before_training():
    blocks = _blocks()
    x = torch.randn(2, 7, 32)
    ref = blocks[0](x)
    attach_lora(blocks, r=4, alpha=4, init="zero_b")
    assert torch.allclose(blocks[0](x), ref, atol=1e-6)


@pytest.mark.parametrize("init", ["trunc_normal", "kaiming", "gaussian", "zero_b"])
def test_initialisations(init):
    torch.manual_seed(0)
    lora = LoRA(256, 128, r=16, alpha=16, init=init)
    A, B = lora.A.detach(), lora.B.detach()
    if init == "trunc_normal":  # official: both A and B trunc-normal std 0.02, |x| <= 2 (absolute bounds)
        assert abs(A.std().item() - 0.02) < 0.003 and abs(B.std().item() - 0.02) < 0.003
        assert A.abs().max() <= 2 and B.abs().max() > 0
    else:
        assert torch.count_nonzero(B) == 0
    if init == "kaiming":
        bound = 1 / math.sqrt(256)  # kaiming_uniform(a=sqrt(5)) on fan_in 256
        assert A.abs().max() <= bound and A.abs().max() > 0.9 * bound
    if init == "gaussian":
        assert abs(A.std().item() - 1 / 16) < 0.005


def test_scaling_and_rslora():
    assert LoRA(8, 8, r=16, alpha=32).scaling == 2.0
    assert LoRA(8, 8, r=16, alpha=32, rslora=True).scaling == 8.0
    lin = nn.Linear(8, 6)
    lora = LoRA(8, 6, r=2, alpha=6)
    layer = LoRALinear(lin, lora)
    x = torch.randn(3, 8)
    expected = lin(x) + x @ lora.A.t() @ lora.B.t() * 3.0
    assert torch.allclose(layer(x), expected, atol=1e-6)
    with pytest.raises(ValueError, match="unknown LoRA init"):
        LoRA(8, 8, r=2, alpha=2, init="xavier")


def test_merge_unmerge_in_place_and_structural():
    blocks = _blocks()
    attach_lora(blocks, r=4, alpha=8)
    with torch.no_grad():
        for m in blocks.modules():
            if isinstance(m, LoRA):
                m.B.normal_(0, 0.2)
    x = torch.randn(2, 7, 32)
    ref = blocks[1](blocks[0](x))
    w0 = blocks[0].mlp.fc1.linear.weight.clone()
    for m in blocks.modules():
        if isinstance(m, LoRALinear):
            m.merge()
    assert not torch.equal(blocks[0].mlp.fc1.linear.weight, w0)
    assert torch.allclose(blocks[1](blocks[0](x)), ref, atol=1e-5)
    for m in blocks.modules():
        if isinstance(m, LoRALinear):
            m.unmerge()
    assert torch.allclose(blocks[0].mlp.fc1.linear.weight, w0, atol=1e-6)
    merge_lora(blocks)
    assert not has_lora(blocks)
    assert type(blocks[0].attn.qkv) is nn.Linear and blocks[0].attn.qkv.weight.shape == (96, 32)
    assert torch.allclose(blocks[1](blocks[0](x)), ref, atol=1e-5)


def test_lora_ablation_targets():
    blocks = _blocks()
    n = attach_lora(blocks, r=4, alpha=4, targets=("q", "v"))
    assert n == 4
    qkv = blocks[0].attn.qkv
    assert qkv.q.lora is not None and qkv.k.lora is None and qkv.v.lora is not None
    assert type(blocks[0].mlp.fc1) is nn.Linear
    with pytest.raises(ValueError, match="unknown LoRA targets"):
        attach_lora(_blocks(), r=4, alpha=4, targets=("query",))


def _grads_of(blocks, x, fused, monkeypatch, autocast=False):
    """Output and parameter gradients of ``blocks`` in training mode with the fused form on or off."""
    monkeypatch.setattr(peft, "FUSED_TRAINING", fused)
    blocks.train().zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = blocks[1](blocks[0](x))
    (y.float() * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
    return y.detach().float(), {n: p.grad.clone() for n, p in blocks.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("targets,dropout", [(peft.LORA_TARGETS, 0.0), (("q", "v", "fc2"), 0.0),
                                             (peft.LORA_TARGETS, 0.5)])
def test_fused_training_form_computes_the_official_one(targets, dropout, monkeypatch):
    # all of q/k/v adapted: one GEMM + one block-diagonal update; a part left out or dropout: part by part
    blocks = _blocks()
    attach_lora(blocks, r=4, alpha=8, dropout=dropout, targets=targets)
    x = torch.randn(2, 7, 32)
    torch.manual_seed(1)
    ref, ref_g = _grads_of(blocks, x, False, monkeypatch)
    torch.manual_seed(1)  # the same dropout masks
    out, g = _grads_of(blocks, x, True, monkeypatch)
    assert ref_g.keys() == g.keys() and any(".lora." in n for n in g)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    for n in ref_g:
        torch.testing.assert_close(g[n], ref_g[n], atol=1e-6, rtol=1e-4, msg=n)
    # only the trainable LoRA factors (and the unfrozen norms/scales) get gradients, as in the official form
    assert not any(".linear." in n for n in g)


def test_fused_training_form_under_bf16_autocast(monkeypatch):
    blocks = _blocks()
    attach_lora(blocks, r=4, alpha=8)
    for m in blocks.modules():  # an update large enough to matter against bf16 rounding
        if isinstance(m, LoRA):
            nn.init.normal_(m.B, std=0.5)
    x = torch.randn(2, 7, 32)
    ref, ref_g = _grads_of(blocks, x, False, monkeypatch, autocast=True)
    out, g = _grads_of(blocks, x, True, monkeypatch, autocast=True)
    exact, _ = _grads_of(blocks, x, False, monkeypatch)  # fp32
    # the fused form rounds less often (the update is added inside the GEMM): at least as close to fp32
    assert (out - exact).abs().max() <= 1.5 * (ref - exact).abs().max()
    torch.testing.assert_close(out, ref, atol=0.05, rtol=0.05)
    for n in ref_g:
        torch.testing.assert_close(g[n], ref_g[n], atol=0.05, rtol=0.1, msg=n)


def test_eval_mode_keeps_the_official_op_sequence(monkeypatch):
    blocks = _blocks()
    attach_lora(blocks, r=4, alpha=8)
    calls, add_low_rank = [], peft.add_low_rank
    monkeypatch.setattr(peft, "add_low_rank", lambda *a: calls.append(1) or add_low_rank(*a))
    x = torch.randn(2, 7, 32)
    with torch.no_grad():
        blocks.eval()[0](x)
    assert not calls
    blocks[0].train()(x)
    assert len(calls) == 4  # q|k|v fused, proj, fc1, fc2


def test_weight_decay_relevant_shapes_of_trainables(tiny_cfg):
    model = lorat.create_model(tiny_cfg)
    names = set(model.trainable_names())
    assert "head.cls_mlp.layers.2.weight" in names
    assert model.get_parameter("head.cls_mlp.layers.2.weight").shape == (1, tiny_cfg.embed_dim)
