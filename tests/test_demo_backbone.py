"""``benchmarks/demo_backbone.py --depth``: growing a stand-in keeps its function and loads as the deeper model."""
import pytest
import torch

import lorat
from lorat.hub import export_dinov2
from scripts import load_script


def _tiny(depth: int, **kw):
    return lorat.create_model("lorat-s-224", embed_dim=32, depth=depth, num_heads=2, template_size=28,
                              search_size=56, pretrain_img_size=56, peft="full", **kw).eval()


def test_grown_backbone_starts_as_the_old_function(tmp_path):
    torch.manual_seed(0)
    small = _tiny(2)
    with torch.no_grad():  # trained-looking LayerScales, so that the new blocks' 1e-5 is what keeps them silent
        for name, p in small.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.3)
    export_dinov2(small, tmp_path / "small.safetensors")
    grow_backbone = load_script("benchmarks/demo_backbone.py", "demo_backbone").grow_backbone
    grown_file = grow_backbone(tmp_path / "small.safetensors", 4, tmp_path / "grown.safetensors")

    grown = _tiny(4, pretrained=str(grown_file))
    sd_small, sd_grown = small.state_dict(), grown.state_dict()
    for k in ("blocks.1.attn.qkv.weight", "blocks.0.mlp.fc1.bias", "patch_embed.proj.weight"):  # old: unchanged
        torch.testing.assert_close(sd_grown[k], sd_small[k])
    for part in ("attn.qkv.weight", "mlp.fc2.bias"):  # new blocks: copies of the last one ...
        torch.testing.assert_close(sd_grown[f"blocks.3.{part}"], sd_small[f"blocks.1.{part}"])
    assert torch.all(sd_grown["blocks.2.ls1.gamma"] == 1e-5)  # ... whose residual branches start near zero
    # the same head and token types: the grown model computes the small one's function up to ~1e-5
    grown.load_state_dict({k: v for k, v in sd_small.items() if not k.startswith(("blocks.", "norm."))},
                          strict=False)
    z, x = torch.rand(1, 3, 28, 28), torch.rand(1, 3, 56, 56)
    mask = torch.ones(1, 2, 2, dtype=torch.long)
    with torch.no_grad():
        a, b = small(z, x, mask), grown(z, x, mask)
    torch.testing.assert_close(b["boxes"], a["boxes"], atol=1e-3, rtol=0)
    torch.testing.assert_close(b["score_map"], a["score_map"], atol=1e-3, rtol=0)
    with pytest.raises(SystemExit, match="already has 4 blocks"):
        grow_backbone(grown_file, 4, tmp_path / "again.safetensors")
