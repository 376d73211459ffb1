"""Every registered preset builds, and a reduced copy of it trains the right parameters."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import lorat
from lorat.config import GEOMETRIES, VIT_VARIANTS, apply_overrides
from lorat.models.peft import has_lora
from lorat.models.registry import get_preset

PRESETS = lorat.list_models("lorat-")  # LoRAT presets; other architectures test their own


def test_all_variants_and_resolutions_are_registered():
    assert PRESETS == sorted(f"lorat-{v}-{r}" for v in "sblg" for r in (224, 378))


@pytest.mark.parametrize("name", PRESETS)
def test_preset_official_sizes(name):
    cfg = get_preset(name)
    v, r = name.split("-")[1], int(name.split("-")[2])
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads) == tuple(VIT_VARIANTS[v][k] for k in ("embed_dim", "depth", "num_heads"))
    assert cfg.drop_path == {"s": 0.0, "b": 0.0, "l": 0.1, "g": 0.4}[v]
    assert (cfg.template_size, cfg.search_size) == ((112, 224) if r == 224 else (196, 378))
    assert (cfg.template_feat, cfg.search_feat) == ((8, 16) if r == 224 else (14, 27))
    assert cfg.search_area_factor == GEOMETRIES[r]["search_area_factor"] and cfg.template_area_factor == 2.0
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_init) == (64, 64.0, "trunc_normal")


@pytest.mark.parametrize("name", PRESETS)
def test_preset_full_size_on_meta_device(name):
    """The real-size model builds (on the meta device: no memory) with the documented trainable count."""
    with torch.device("meta"):
        model = lorat.create_model(name)
    cfg = model.cfg
    D, r = cfg.embed_dim, cfg.lora_r
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if cfg.ffn == "mlp":
        per_block = 18 * r * D  # q,k,v,proj: 2rD each; fc1, fc2: 5rD each
    else:
        hidden = 4096 if D == 1536 else None
        per_block = (8 * D + (D + 2 * hidden) + (hidden + D)) * r
    head = 4 * D * D + 9 * D + 5
    assert trainable == cfg.depth * per_block + head + 3 * D
    if name == "lorat-b-224":  # the paper's LoRAT-B: ~13.0 M trainable parameters
        assert abs(trainable / 1e6 - 13.0) < 0.1


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("peft", ["lora", "full"])
def test_reduced_preset_forward_backward(name, peft):
    cfg = get_preset(name)
    # Keep the variant's block type (MLP / SwiGLU) and geometry ratios, shrink width and depth.
    small = replace(cfg, embed_dim=48, num_heads=4, depth=2, lora_r=4,
                    template_size=28 if cfg.search_size == 224 else 42, search_size=56 if cfg.search_size == 224 else 84,
                    peft=peft)
    torch.manual_seed(0)
    model = lorat.create_model(small).train()
    B, hz, hx = 2, small.template_feat, small.search_feat
    z = torch.randn(B, 3, small.template_size, small.template_size)
    x = torch.randn(B, 3, small.search_size, small.search_size)
    mask = torch.zeros(B, hz, hz, dtype=torch.long)
    mask[:, 1:, 1:] = 1
    out = model(z, x, mask)
    assert out["score_map"].shape == (B, hx, hx) and out["boxes"].shape == (B, hx, hx, 4)
    assert out["score_map"].dtype == torch.float32
    (out["score_map"].mean() + out["boxes"].mean()).backward()
    names = set(model.trainable_names())
    if peft == "lora":
        assert has_lora(model)
        assert all(".lora." in n or n == "token_type_embed" or n.startswith("head.") for n in names)
        assert {"token_type_embed", "head.cls_mlp.layers.2.weight"} <= names
        assert any(n.endswith("attn.qkv.q.lora.A") for n in names)
        assert "pos_embed" not in names and "patch_embed.proj.weight" not in names
        for n, p in model.named_parameters():
            assert (p.grad is not None) == (n in names), n
    else:
        assert not has_lora(model)
        assert names == {n for n, _ in model.named_parameters()}
    ffn = "w12" if small.ffn == "swiglu" else "fc1"
    assert any(f"mlp.{ffn}" in n for n, _ in model.named_parameters())


def test_overrides_are_typed_and_checked():
    cfg = apply_overrides(get_preset("lorat-s-224"), ["lora_r=8", "lora_alpha=16", "lora_rslora=true",
                                                       "lora_targets=q,v"])
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_rslora, cfg.lora_targets) == (8, 16.0, True, ("q", "v"))
    with pytest.raises(KeyError, match="no field 'lora_rank'"):
        apply_overrides(cfg, ["lora_rank=8"])
    with pytest.raises(ValueError, match="lora_rslora: 'maybe'.*boolean"):
        apply_overrides(cfg, ["lora_rslora=maybe"])
    with pytest.raises(KeyError, match="known presets"):
        get_preset("lorat-x-224")
    with pytest.raises(ValueError, match="multiple of patch_size"):
        lorat.create_model("lorat-s-224", search_size=230)


def test_drop_path_subset_trick_used_for_large_rates():
    """ViT-g's drop path 0.4 runs each residual branch on int(B*0.6) samples, rescaled by B/subset."""
    from lorat.models.vit import Block

    blk = Block(16, 2, drop_path=0.4).train()
    calls = []
    blk.attn.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    blk(torch.randn(10, 5, 16))
    assert calls == [6]
    blk.eval()
    calls.clear()
    blk(torch.randn(10, 5, 16))
    assert calls == [10]
