"""Shared test helpers: where the official fixtures live, and how to build a model from one."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LORAT_SHARED", REPO.parent / "shared"))
OFFICIAL = SHARED / "fixtures" / "official"
METRICS = SHARED / "fixtures" / "metrics"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# Keep the suite off the user's files: a private index cache and no personal dataset-roots file.
os.environ["LORAT_CACHE_DIR"] = tempfile.mkdtemp(prefix="lorat-test-cache-")
os.environ["LORAT_DATASETS"] = os.path.join(os.environ["LORAT_CACHE_DIR"], "datasets.yaml")
for _key in [k for k in os.environ if k.startswith("LORAT_") and k.endswith("_ROOT")]:
    del os.environ[_key]


def official_manifest() -> dict:
    """The official fixtures' manifest.json (fails loudly if the shared fixtures are missing)."""
    path = OFFICIAL / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"official fixtures not found at {path}; set LORAT_SHARED to the shared/ folder")
    return json.loads(path.read_text())


def lorat_fixture_names() -> list[str]:
    """Every LoRAT model fixture in the manifest (role 'io' + 'checkpoint', not SPMTrack)."""
    out = []
    for name, fx in official_manifest()["fixtures"].items():
        roles = {f.get("role") for f in fx.get("files", {}).values()}
        if {"io", "checkpoint", "pretrained"} <= roles and "spmtrack" not in name.lower():
            out.append(name)
    return sorted(out)


def fixture_file(fx: dict, role: str) -> Path:
    """Path of the file with ``role`` in a manifest fixture entry."""
    for fname, meta in fx["files"].items():
        if meta.get("role") == role:
            return OFFICIAL / fname
    raise KeyError(f"fixture has no file with role {role!r}")


_VIT = {"ViT-S/14": "s", "ViT-B/14": "b", "ViT-L/14": "l", "ViT-g/14": "g"}


def fixture_model_kwargs(fx: dict) -> dict:
    """ModelConfig overrides reproducing a manifest fixture's official config (geometry, depth, LoRA)."""
    from lorat.hub import infer_arch, read_state_file

    cfg = fx["config"]
    common, model = cfg["common"], cfg["model"]
    variant = _VIT[model["backbone"]["parameters"]["name"]]
    tz, sx = common["template_size"][0], common["search_region_size"][0]
    ckpt, _ = read_state_file(fixture_file(fx, "checkpoint"))
    pre, _ = read_state_file(fixture_file(fx, "pretrained"))
    depth = 1 + max(int(k.split(".")[1]) for k in pre if k.startswith("blocks."))
    lora = model.get("lora", {})
    return dict(
        name=f"lorat-{variant}-{224 if sx == 224 else 378}",
        overrides=dict(depth=depth, template_size=tz, search_size=sx,
                       lora_r=int(lora.get("r", infer_arch(ckpt).get("lora_r", 64))),
                       lora_alpha=float(lora.get("alpha", 64)), lora_dropout=float(lora.get("dropout", 0.0)),
                       lora_rslora=bool(lora.get("use_rslora", False))),
    )


@pytest.fixture
def tiny_cfg():
    """A tiny LoRAT config (fast on CPU) used by many tests."""
    from lorat.config import ModelConfig

    return ModelConfig(name="tiny", embed_dim=32, depth=2, num_heads=2, template_size=28, search_size=56,
                       lora_r=4, lora_alpha=8.0)
