"""TMoE: the layer's formula, its options and inits, placement and key names, and E=1 == LoRA exactly."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from lorat.models.peft import LoRA, attach_lora
from lorat.models.tmoe import TMoE, TMoELinear, attach_tmoe, has_tmoe, tmoe_modules, tmoe_trainable_count
from lorat.models.vit import Block


def _reference(t: TMoE, x: torch.Tensor) -> torch.Tensor:
    """The formula written out expert by expert: s * sum_i softmax(G x)_i * (x A_i^T) B_i^T (+ shared)."""
    g = torch.softmax(x @ t.expert_route.weight.t(), dim=-1)
    out = torch.zeros(*x.shape[:-1], t.routed_experts[0].shape[0], dtype=torch.float64)
    for i, b in enumerate(t.routed_experts):
        a = t.compress_experts[i] if t.route_compression else t.compress_expert
        out += g[..., i:i + 1].double() * (x.double() @ a.double().t() @ b.double().t())
    if t.shared_expert is not None:
        out += x.double() @ t.compress_expert.double().t() @ t.shared_expert.double().t()
    return (out * t.scaling).float()


@pytest.mark.parametrize("experts", [1, 3, 4])
@pytest.mark.parametrize("shared", [False, True])
def test_formula(experts, shared):
    torch.manual_seed(0)
    t = TMoE(24, 40, r=6, alpha=12.0, num_experts=experts, shared_expert=shared)
    for b in t.routed_experts:
        nn.init.normal_(b, std=0.3)
    x = torch.randn(2, 7, 24)
    assert torch.allclose(t(x), _reference(t, x), atol=1e-5)
    assert t.scaling == 2.0


def test_route_compression_has_one_compress_matrix_per_expert():
    torch.manual_seed(1)
    t = TMoE(16, 16, r=4, alpha=4.0, num_experts=3, route_compression=True)
    keys = set(t.state_dict())
    assert {"compress_experts.0", "compress_experts.1", "compress_experts.2"} <= keys
    assert "compress_expert" not in keys
    for b in t.routed_experts:
        nn.init.normal_(b, std=0.3)
    x = torch.randn(5, 16)
    assert torch.allclose(t(x), _reference(t, x), atol=1e-5)


def test_router_is_dense_softmax_per_token():
    torch.manual_seed(2)
    t = TMoE(8, 8, r=2, alpha=2.0, num_experts=4)
    x = torch.randn(3, 5, 8)
    g = t.route(x)
    assert g.shape == (3, 5, 4) and torch.allclose(g.sum(-1), torch.ones(3, 5))
    assert (g > 0).all()  # no top-k: every expert contributes to every token
    t(x).sum().backward()
    assert all(b.grad is not None and b.grad.abs().sum() > 0 for b in t.routed_experts)
    assert t.expert_route.weight.grad.abs().sum() > 0


def test_rs_scaling():
    t = TMoE(8, 8, r=16, alpha=8.0, rs=True)
    assert t.scaling == pytest.approx(8.0 / math.sqrt(16))


def test_inits():
    torch.manual_seed(3)
    bert = TMoE(64, 64, r=8, alpha=8.0, init="bert")
    assert all(b.abs().sum() > 0 for b in bert.routed_experts)
    assert bert.compress_expert.std().item() == pytest.approx(0.02, rel=0.2)
    assert bert.compress_expert.abs().max().item() <= 2.0  # trunc_normal_ bounds are absolute (+-2), as officially
    for init in ("lora", "gaussian"):
        t = TMoE(64, 64, r=8, alpha=8.0, init=init)
        assert all(torch.count_nonzero(b) == 0 for b in t.routed_experts)
        assert t.compress_expert.abs().sum() > 0
        assert torch.count_nonzero(t(torch.randn(4, 64))) == 0  # starts at the frozen function
    assert TMoE(64, 64, r=8, alpha=8.0, init="gaussian").compress_expert.std().item() == pytest.approx(1 / 8, rel=0.1)
    with pytest.raises(ValueError, match="unknown TMoE init"):
        TMoE(8, 8, r=2, alpha=2.0, init="zeros")


def test_dropout_applies_to_the_expert_input_only_in_training():
    torch.manual_seed(4)
    t = TMoE(32, 32, r=4, alpha=4.0, dropout=0.5)
    x = torch.randn(10, 32)
    t.eval()
    assert torch.equal(t(x), t(x))
    t.train()
    assert not torch.allclose(t(x), t.eval()(x))


def test_one_expert_equals_lora_exactly():
    torch.manual_seed(5)
    t = TMoE(48, 80, r=8, alpha=16.0, num_experts=1)
    lora = LoRA(48, 80, r=8, alpha=16.0)
    with torch.no_grad():
        lora.A.copy_(t.compress_expert)
        lora.B.copy_(t.routed_experts[0])
    x = torch.randn(3, 11, 48)
    assert torch.equal(t(x), lora(x))


def test_one_expert_blocks_equal_lora_blocks_exactly():
    torch.manual_seed(6)
    blocks = nn.ModuleList(Block(32, 2) for _ in range(2))
    for p in blocks.parameters():
        nn.init.normal_(p, std=0.2)
    with_lora, with_tmoe = copy.deepcopy(blocks), copy.deepcopy(blocks)
    attach_lora(with_lora, r=4, alpha=8.0)
    attach_tmoe(with_tmoe, r=4, alpha=8.0, num_experts=1)
    lora_sd = with_lora.state_dict()
    mapped = {}
    for k in with_tmoe.state_dict():
        src = k.replace(".tmoe.compress_expert", ".lora.A").replace(".tmoe.routed_experts.0", ".lora.B")
        if src in lora_sd:
            mapped[k] = lora_sd[src]
    with_tmoe.load_state_dict(mapped, strict=False)
    x = torch.randn(2, 9, 32)

    def run(lora_blocks, tmoe_blocks):
        y_lora, y_tmoe = x, x
        for a, b in zip(lora_blocks, tmoe_blocks):
            y_lora, y_tmoe = a(y_lora), b(y_tmoe)
        return y_lora, y_tmoe

    # Eval mode runs the official op sequence on both sides: equal to the bit.
    y_lora, y_tmoe = run(with_lora.eval(), with_tmoe.eval())
    assert torch.equal(y_lora, y_tmoe)
    # Training mode: LoRA's fused form (the update inside addmm) rounds differently on some CPUs.
    y_lora, y_tmoe = run(with_lora.train(), with_tmoe.train())
    torch.testing.assert_close(y_lora, y_tmoe, rtol=1e-6, atol=1e-6)


def test_placement_key_names_and_freezing():
    blocks = nn.ModuleList(Block(16, 2) for _ in range(2))
    blocks.requires_grad_(False)  # the model freezes the backbone first, then attaches TMoE
    n = attach_tmoe(blocks, r=2, alpha=2.0, num_experts=3)
    assert n == 2 * 6 and has_tmoe(blocks) and len(tmoe_modules(blocks)) == 12
    keys = set(blocks.state_dict())
    for part in ("attn.qkv.q", "attn.qkv.k", "attn.qkv.v", "attn.proj", "mlp.fc1", "mlp.fc2"):
        for suffix in ("linear.weight", "linear.bias", "tmoe.compress_expert", "tmoe.routed_experts.0",
                       "tmoe.routed_experts.2", "tmoe.expert_route.weight"):
            assert f"1.{part}.{suffix}" in keys
    trainable = {k for k, p in blocks.named_parameters() if p.requires_grad}
    assert trainable and all(".tmoe." in k for k in trainable)
    assert isinstance(blocks[0].mlp.fc1, TMoELinear)
    count = sum(p.numel() for p in blocks.parameters() if p.requires_grad)
    per_block = 4 * tmoe_trainable_count(16, 16, 2, 3) + tmoe_trainable_count(16, 64, 2, 3) \
        + tmoe_trainable_count(64, 16, 2, 3)
    assert count == 2 * per_block


def test_swiglu_targets_and_target_subset():
    blocks = nn.ModuleList([Block(24, 2, ffn="swiglu")])
    assert attach_tmoe(blocks, r=2, alpha=2.0, targets=("q", "v", "w12", "w3")) == 4
    keys = set(blocks.state_dict())
    assert "0.mlp.w12.tmoe.compress_expert" in keys and "0.mlp.w3.tmoe.expert_route.weight" in keys
    assert "0.attn.qkv.k.linear.weight" in keys and not any(k.startswith("0.attn.qkv.k.tmoe") for k in keys)
    assert not any(k.startswith("0.attn.proj.tmoe") for k in keys)
    with pytest.raises(ValueError, match="unknown TMoE targets"):
        attach_tmoe(nn.ModuleList([Block(8, 2)]), r=2, alpha=2.0, targets=("qkv",))


def test_b378_trainable_count_matches_the_paper():
    """SPMTrack-B: ~26.9 M TMoE parameters in the blocks (spec) -> 29.2 M trainable with head and embeddings."""
    c, hidden, r, e = 768, 3072, 64, 4
    per_block = 4 * tmoe_trainable_count(c, c, r, e) + tmoe_trainable_count(c, hidden, r, e) \
        + tmoe_trainable_count(hidden, c, r, e)
    assert 12 * per_block / 1e6 == pytest.approx(26.9, abs=0.05)


@pytest.mark.parametrize("autocast", [False, True])
def test_training_cast_once_changes_nothing(autocast, monkeypatch):
    # in training mode the wrappers cast the input to the autocast dtype once, for all readers; autocast would
    # have made the same cast per matmul, so outputs are bit-identical. Gradients are in fp32; under autocast the
    # input's gradient is now summed over its readers in bf16 before the one cast back, so they agree to bf16
    from lorat.models import peft

    torch.manual_seed(0)
    blocks = nn.ModuleList([Block(32, 4), Block(32, 4)])
    attach_tmoe(blocks, r=4, alpha=8, num_experts=3, targets=("q", "v", "proj", "fc1", "fc2"))
    for m in blocks.modules():
        if isinstance(m, TMoE):
            for b in m.routed_experts:
                nn.init.normal_(b, std=0.3)
    x = torch.randn(2, 7, 32)
    results = []
    for fused in (False, True):
        monkeypatch.setattr(peft, "FUSED_TRAINING", fused)
        blocks.train().zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = blocks[1](blocks[0](x))
        y.float().square().sum().backward()
        results.append((y.detach(), {n: p.grad.clone() for n, p in blocks.named_parameters() if p.grad is not None}))
    (y0, g0), (y1, g1) = results
    assert torch.equal(y0, y1) and g0.keys() == g1.keys() and g0
    for n in g0:
        if autocast:
            torch.testing.assert_close(g1[n], g0[n], atol=1e-2 * g0[n].abs().max().item(), rtol=0.02, msg=n)
        else:
            assert torch.equal(g0[n], g1[n]), n
