"""Helpers for the OSTrack / LoReTrack fixture tests: where the fixture sets live and how to build from them.

Every number (width, depth, heads, head width, student / teacher / tracker geometry) is read from the
set's ``manifest.json``, so another set (e.g. a held-back one with a different geometry) runs through the
same tests. Sets: ``$LORAT_LORETRACK_FIXTURES`` (folders separated by ``os.pathsep``), else
``<shared>/fixtures/loretrack``.
"""
from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

import torch
from safetensors.torch import load_file

from conftest import SHARED


def fixture_dirs() -> list[Path]:
    env = os.environ.get("LORAT_LORETRACK_FIXTURES")
    dirs = [Path(p) for p in env.split(os.pathsep) if p] if env else [SHARED / "fixtures" / "loretrack"]
    for d in dirs:
        if not (d / "manifest.json").is_file():
            raise FileNotFoundError(f"LoReTrack fixtures not found at {d}; set LORAT_SHARED (or "
                                    "LORAT_LORETRACK_FIXTURES) to the folder holding them")
    return dirs


def ids() -> list[str]:
    return [d.name for d in fixture_dirs()]


@cache
def manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def file_with_role(d: Path, role: str) -> Path:
    for name, meta in manifest(d)["files"].items():
        if meta.get("role") == role:
            return d / name
    raise KeyError(f"{d}: manifest has no file with role {role!r}")


@cache
def tensors(d: Path, role: str) -> dict[str, torch.Tensor]:
    """A fixture file's tensors, float16 storage upcast to float32 (lossless)."""
    raw = load_file(str(file_with_role(d, role)))
    return {k: (v.float() if v.dtype == torch.float16 else v) for k, v in raw.items()}


def arch_overrides(d: Path) -> dict:
    m = manifest(d)["model"]
    c = m["embed_dim"]
    return dict(embed_dim=c, depth=m["depth"], num_heads=m.get("num_heads", c // m.get("head_dim", 64)),
                head_channels=m["head_channels"], mlp_ratio=m.get("mlp_hidden", 4 * c) / c,
                patch_size=m.get("patch", 16), drop_path=0.0)


def student_overrides(d: Path) -> dict:
    g = manifest(d)["geometry"]
    s, t = g["student"], g.get("tracker", {})
    out = dict(template_size=s["template_px"], search_size=s["search_px"], **arch_overrides(d))
    if t:
        out.update(template_area_factor=float(t["template_factor"]), search_area_factor=float(t["search_factor"]))
    return out


def teacher_overrides(d: Path) -> dict:
    t = manifest(d)["geometry"]["teacher"]
    return dict(template_size=t["template_px"], search_size=t["search_px"], **arch_overrides(d))


def build_student(d: Path, geometry: str = "student"):
    """The fixture student: MAE file through ``create_model``, then the stored CENTER head.

    ``geometry="tracker"`` uses the tracker's template / search sizes (the same network in the official set).
    """
    import lorat

    ov = student_overrides(d)
    if geometry == "tracker":
        t = manifest(d)["geometry"]["tracker"]
        ov.update(template_size=t["template_size"], search_size=t["search_size"])
    model = lorat.create_model("loretrack-b-256", pretrained=file_with_role(d, "pretrained"), **ov)
    head = {k.removeprefix("box_head."): v for k, v in tensors(d, "student_head").items()}
    model.box_head.load_state_dict(head, strict=True)
    return model


def build_teacher(d: Path):
    import lorat

    model = lorat.load_checkpoint(file_with_role(d, "teacher_checkpoint"), name="ostrack-b-384", **teacher_overrides(d))
    model.requires_grad_(False)
    return model.eval()


def tol(kind: str) -> float:
    return {"map": 1e-4, "box": 2e-5, "probe": 1e-5, "grad": 1e-4, "px": 1e-3}[kind]


def assert_loss(value: torch.Tensor | float, ref: torch.Tensor, name: str) -> None:
    v, r = float(torch.as_tensor(value).detach()), float(ref)
    assert abs(v - r) <= 1e-6 * max(1.0, abs(r)), f"{name}: {v} vs reference {r}"


def assert_close(value: torch.Tensor, ref: torch.Tensor, atol: float, name: str) -> None:
    assert value.shape == ref.shape, f"{name}: shape {tuple(value.shape)} vs {tuple(ref.shape)}"
    err = (value.detach().double() - ref.double()).abs().max().item()
    assert err <= atol, f"{name}: max abs diff {err} > {atol}"


def assert_grad(grad: torch.Tensor | None, ref: torch.Tensor, name: str) -> None:
    if grad is None:  # the parameter does not reach this term: the reference must be all zeros
        grad = torch.zeros_like(ref)
    scale = ref.abs().max().item()
    err = (grad.double() - ref.double()).abs().max().item()
    assert err <= 1e-4 * max(scale, 1e-12), f"{name}: grad max abs diff {err} > 1e-4 * {scale}"
