"""Helpers shared by the SPMTrack fixture tests: which manifest entries are SPMTrack, and how to build them."""
from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from conftest import OFFICIAL, fixture_file, official_manifest

_VIT = {"ViT-S/14": (384, 6), "ViT-B/14": (768, 12), "ViT-L/14": (1024, 16), "ViT-g/14": (1536, 24)}


def spmtrack_fixture_names() -> list[str]:
    """Every SPMTrack model fixture in the manifest (a TMoE config plus io and checkpoint files)."""
    out = []
    for name, fx in official_manifest()["fixtures"].items():
        roles = {f.get("role") for f in fx.get("files", {}).values()}
        if {"io", "checkpoint"} <= roles and "tmoe" in fx.get("config", {}).get("model", {}):
            out.append(name)
    return sorted(out)


def pretrained_file(fx: dict) -> Path:
    """The DINOv2 file of a fixture: a file with role 'pretrained', else the one its notes name."""
    try:
        return fixture_file(fx, "pretrained")
    except KeyError:
        return OFFICIAL / fx["notes"]["pretrained_file"].split()[0]


def spmtrack_kwargs(fx: dict) -> dict:
    """``load_checkpoint`` keyword arguments reproducing a fixture's official config (read from the manifest)."""
    common, model = fx["config"]["common"], fx["config"]["model"]
    tmoe = model["tmoe"]
    embed_dim, heads = _VIT[model["backbone"]["parameters"]["name"]]
    pre = load_file(pretrained_file(fx))
    depth = 1 + max(int(k.split(".")[1]) for k in pre if k.startswith("blocks."))
    return dict(name="spmtrack-b-378", embed_dim=embed_dim, num_heads=heads, depth=depth,
                template_size=int(common["template_size"][0]), search_size=int(common["search_region_size"][0]),
                tmoe_r=int(tmoe["r"]), tmoe_alpha=float(tmoe["alpha"]), tmoe_experts=int(tmoe["expert_nums"]),
                tmoe_dropout=float(tmoe.get("dropout", 0.0)), tmoe_rs=bool(tmoe.get("use_rsexpert", False)),
                tmoe_shared_expert=bool(tmoe.get("shared_expert", False)),
                tmoe_route_compression=bool(tmoe.get("route_compression", False)))


def spmtrack_io(fx: dict) -> tuple[dict, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """``(io tensors, z (B,T,3,H,W), z_feat_mask (B,T,h,w), [x_0, x_1, ...])`` of a fixture."""
    io = load_file(fixture_file(fx, "io"))
    nt = len({m[1] for k in io if (m := re.match(r"input\.z_(\d+)$", k))})
    ns = len({m[1] for k in io if (m := re.match(r"input\.x_(\d+)$", k))})
    z = torch.stack([io[f"input.z_{i}"].float() for i in range(nt)], dim=1)
    mask = torch.stack([io[f"input.z_{i}_feat_mask"] for i in range(nt)], dim=1)
    return io, z, mask, [io[f"input.x_{k}"].float() for k in range(ns)]


#: a tiny SPMTrack config for tests that need no fixture (3 experts, 28 / 56 px)
TINY_SPMTRACK = dict(embed_dim=32, num_heads=2, depth=2, template_size=28, search_size=56, tmoe_r=4, tmoe_alpha=8.0,
                     tmoe_experts=3)


def lively(model):
    """Make a random model react to its inputs (DINOv2's LayerScale init of 1e-5 mutes the blocks)."""
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith(".gamma"):
                p.fill_(0.5)
            elif n in ("token_type_embed", "track_query", "query_embed") or ".routed_experts." in n:
                p.normal_(std=0.3)
            elif n.startswith("head.") and n.endswith("weight"):
                p.normal_(std=0.15)
    return model

