"""SPMTrack presets, config round trip, the forward contract and the trainable set (small random models)."""
from __future__ import annotations

import pytest
import torch

import lorat
from conftest import fixture_file, lorat_fixture_names, official_manifest
from lorat.config import from_dict, to_dict
from lorat.hub import CheckpointError
from lorat.models.registry import get_arch, get_preset, list_models
from lorat.models.spmtrack import SPMTrack, SPMTrackConfig
from lorat.models.tmoe import has_tmoe
from lorat.train.spmtrack_loss import frame_targets, giou_weight_for_epoch, spmtrack_loss
from spmtrack_fixtures import TINY_SPMTRACK, lively

TINY = TINY_SPMTRACK
_lively = lively


def _inputs(b=2, t=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, t, 3, 28, 28, generator=g)
    mask = torch.randint(0, 2, (b, t, 2, 2), generator=g)
    x = torch.randn(b, 3, 56, 56, generator=g)
    return z, mask, x


@pytest.mark.parametrize("variant,dim,depth,drop,batch", [("b", 768, 12, 0.0, 128), ("l", 1024, 24, 0.1, 64),
                                                          ("g", 1536, 40, 0.4, 32)])
def test_presets(variant, dim, depth, drop, batch):
    for res, (tz, area) in {378: (196, 5.0), 224: (112, 4.0)}.items():
        cfg = get_preset(f"spmtrack-{variant}-{res}")
        assert isinstance(cfg, SPMTrackConfig) and cfg.arch == "spmtrack"
        assert (cfg.embed_dim, cfg.depth, cfg.drop_path, cfg.train_batch_size) == (dim, depth, drop, batch)
        assert (cfg.template_size, cfg.search_size, cfg.search_area_factor) == (tz, res, area)
        assert (cfg.tmoe_r, cfg.tmoe_alpha, cfg.tmoe_experts, cfg.tmoe_init) == (64, 64.0, 4, "bert")
        assert not (cfg.tmoe_shared_expert or cfg.tmoe_route_compression or cfg.tmoe_rs)
        assert (cfg.num_templates, cfg.num_search_frames) == (3, 2)
    assert cfg.ffn == ("swiglu" if variant == "g" else "mlp")
    assert {"spmtrack-b-378", "spmtrack-l-224", "spmtrack-g-378"} <= set(list_models("spmtrack"))


def test_config_round_trip_and_validation():
    cfg = lorat.models.registry.resolve_config("spmtrack-b-378", **TINY)
    assert from_dict(SPMTrackConfig, to_dict(cfg)) == cfg
    assert to_dict(cfg)["arch"] == "spmtrack"
    with pytest.raises(ValueError, match="peft='lora'"):
        SPMTrackConfig(peft="lora").validate()
    with pytest.raises(ValueError, match="tmoe_init"):
        SPMTrackConfig(tmoe_init="kaiming").validate()
    with pytest.raises(ValueError, match="search_size"):
        SPMTrackConfig(search_size=100).validate()
    with pytest.raises(KeyError, match="no field"):
        lorat.create_model("spmtrack-b-378", tmoe_rank=8)


def test_forward_contract_shapes_and_state():
    torch.manual_seed(0)
    model = _lively(lorat.create_model("spmtrack-b-378", **TINY)).eval()
    z, mask, x = _inputs()
    with torch.no_grad():
        out0 = model(z, mask, x)
        out1 = model(z, mask, x, state=out0["state"])
        out1b = model(z, mask, x, state=out0["state"].unsqueeze(1))  # (B, 1, C) accepted too
    assert out0["score_map"].shape == (2, 4, 4) and out0["boxes"].shape == (2, 4, 4, 4)
    assert out0["state"].shape == (2, 32)
    assert (out0["score_map"] - out1["score_map"]).abs().max() > 1e-3  # the state matters
    assert torch.equal(out1["score_map"], out1b["score_map"])
    # any number of templates; each template's own mask matters
    with torch.no_grad():
        one = model(z[:, :1], mask[:, :1], x)
        flipped = model(z, torch.cat([1 - mask[:, :1], mask[:, 1:]], 1), x)
    assert one["score_map"].shape == (2, 4, 4)
    assert (flipped["score_map"] - out0["score_map"]).abs().max() > 1e-3
    with pytest.raises(ValueError, match=r"z \(B,T,3,H,W\)"):
        model(z[:, 0], mask[:, 0], x)


def test_batch_independence():
    torch.manual_seed(1)
    model = _lively(lorat.create_model("spmtrack-b-378", **TINY)).eval()
    z, mask, x = _inputs(b=3)
    with torch.no_grad():
        full = model(z, mask, x)
        part = model(z[1:2], mask[1:2], x[1:2])
    assert torch.allclose(full["score_map"][1:2], part["score_map"], atol=1e-5)


def test_trainable_set_and_stop_gradient_between_frames():
    torch.manual_seed(2)
    model = lorat.create_model("spmtrack-b-378", **TINY)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"track_query", "query_embed", "token_type_embed"} <= trainable
    assert all(n in ("track_query", "query_embed", "token_type_embed") or n.startswith("head.") or ".tmoe." in n
               for n in trainable)
    assert not model.pos_embed.requires_grad and not model.norm.weight.requires_grad
    z, mask, x = _inputs()
    outs = model.forward_frames(z, mask, [x, x.flip(-1)])
    assert outs[1]["state"].requires_grad
    # gradient of frame 1 does not flow back through frame 0's state
    state0 = outs[0]["state"]
    grads = torch.autograd.grad(outs[1]["score_map"].sum(), [state0], allow_unused=True)
    assert grads[0] is None
    targets = [frame_targets(torch.tensor([[10.0, 12.0, 30.0, 40.0], [5.0, 5.0, 50.0, 20.0]]), 56, 4)] * 2
    total, terms = spmtrack_loss(outs, targets)
    assert total.item() == pytest.approx(sum(terms[f"{k}_{i}"].item() for k in ("bce", "giou") for i in (0, 1)),
                                         rel=1e-6)
    with pytest.raises(ValueError, match="one target per search frame"):
        spmtrack_loss(outs, targets[:1])


def test_giou_warmup_weight():
    assert giou_weight_for_epoch(0, warmup_epochs=2) == 10.0
    assert giou_weight_for_epoch(1, warmup_epochs=2) == 10.0
    assert giou_weight_for_epoch(2, warmup_epochs=2) == 1.0
    assert giou_weight_for_epoch(0) == 1.0


def test_full_finetuning_and_backbone_after_tmoe():
    torch.manual_seed(3)
    full = lorat.create_model("spmtrack-b-378", peft="full", **TINY)
    assert not has_tmoe(full) and all(p.requires_grad for p in full.parameters())
    # a DINOv2-layout state dict loads into a model that already has TMoE attached
    model = lorat.create_model("spmtrack-b-378", **TINY)
    plain = lorat.create_model("lorat-b-224", peft="full", embed_dim=32, num_heads=2, depth=2, template_size=28,
                               search_size=56)
    sd = {k: v for k, v in plain.state_dict().items() if k.startswith(("patch_embed.", "blocks.", "norm."))}
    sd["pos_embed"] = torch.cat([torch.zeros(1, 1, 32), torch.randn(1, 16, 32)], dim=1)
    sd["cls_token"], sd["mask_token"] = torch.zeros(1, 1, 32), torch.zeros(1, 32)
    model.load_backbone(sd)
    assert has_tmoe(model)
    assert torch.equal(model.blocks[0].attn.qkv.k.linear.weight, sd["blocks.0.attn.qkv.weight"][32:64])
    assert model.merge_lora() is model and has_tmoe(model)  # TMoE does not merge


def test_arch_registration():
    arch = get_arch("spmtrack")
    assert arch.config_cls is SPMTrackConfig
    assert arch.tracker == "lorat.track.spmtrack:SPMTrackTracker"
    assert arch.task == "lorat.train.spmtrack_task:SPMTrackTask"
    assert isinstance(lorat.create_model("spmtrack-b-378", **TINY), SPMTrack)


@pytest.mark.parametrize("name", lorat_fixture_names())
def test_lorat_checkpoint_is_not_taken_for_spmtrack(name):
    fx = official_manifest()["fixtures"][name]
    ckpt = fixture_file(fx, "checkpoint")
    with pytest.raises(CheckpointError, match=f"{ckpt.name}.*track_query"):
        lorat.load_checkpoint(ckpt, name="spmtrack-b-378", pretrained=fixture_file(fx, "pretrained"))
