"""Our LoRAT reproduces the official code's numbers on every LoRAT fixture in the manifest.

Parametrised over the manifest, so a fixture with other geometry, depth or alpha != r is checked by the
same code: nothing here is tied to fixture A's numbers.
"""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import lorat
from conftest import OFFICIAL, fixture_file, fixture_model_kwargs, lorat_fixture_names, official_manifest
from lorat.hub import load_checkpoint, load_lorat_state, read_state_file
from lorat.models.peft import has_lora

NAMES = lorat_fixture_names()
TOL = 1e-5


def _setup(name):
    fx = official_manifest()["fixtures"][name]
    kw = fixture_model_kwargs(fx)
    io = load_file(fixture_file(fx, "io"))
    inputs = (io["input.z"].float(), io["input.x"].float(), io["input.z_feat_mask"])
    return fx, kw, io, inputs


def _run(model, inputs):
    model.eval()
    with torch.no_grad():
        return model(*inputs)


def _assert_close(out, io, prefix):
    for key in ("score_map", "boxes"):
        ref = io[f"{prefix}.{key}"]
        assert out[key].shape == ref.shape
        err = (out[key] - ref).abs().max().item()
        assert err <= TOL, f"{prefix}.{key}: max abs error {err}"


def test_there_is_a_lorat_fixture():
    assert NAMES, "no LoRAT fixture found in the manifest"


@pytest.mark.parametrize("name", NAMES)
def test_pos_embed_bit_exact(name):
    fx, kw, _, _ = _setup(name)
    model = lorat.create_model(kw["name"], pretrained=fixture_file(fx, "pretrained"), **kw["overrides"])
    pos = model.pos_embed.detach()
    stats = fx["full_state_dict"]["keys"]["pos_embed"]["stats"]
    assert list(pos.shape) == stats["shape"]
    assert pos.flatten()[:8].tolist() == stats["first8"]
    assert pos.double().sum().item() == pytest.approx(stats["sum"], abs=1e-9)
    extras = [meta for meta in fx["files"].values() if meta.get("role") == "fullsd_extras"]
    if extras:  # the tensor itself is stored: compare every bit
        assert torch.equal(pos, load_file(fixture_file(fx, "fullsd_extras"))["pos_embed"])


@pytest.mark.parametrize("name", NAMES)
def test_unmerged_merged_and_file_outputs(name):
    fx, kw, io, inputs = _setup(name)
    pre, ckpt = fixture_file(fx, "pretrained"), fixture_file(fx, "checkpoint")
    model = load_checkpoint(ckpt, name=kw["name"], pretrained=pre, **kw["overrides"])
    assert has_lora(model)
    _assert_close(_run(model, inputs), io, "output")
    model.merge_lora()
    assert not has_lora(model)
    _assert_close(_run(model, inputs), io, "output_merged")
    # The official evaluation path: plain model, LoRA merged on load from the file, where a file without
    # lora_alpha is merged with scale 1 (official_lora_scaling reproduces that).
    official = load_checkpoint(ckpt, name=kw["name"], pretrained=pre, merge=True, official_lora_scaling=True,
                               **kw["overrides"])
    _assert_close(_run(official, inputs), io, "output_merged_from_ckpt_file")


@pytest.mark.parametrize("name", NAMES)
def test_merged_weights_match_official_merge(name):
    fx, kw, _, _ = _setup(name)
    model = load_checkpoint(fixture_file(fx, "checkpoint"), name=kw["name"], pretrained=fixture_file(fx, "pretrained"),
                            merge=True, **kw["overrides"])
    sd = model.state_dict()
    partial = [OFFICIAL / f for f, meta in fx["files"].items() if meta.get("role") == "merged_partial"]
    for path in partial:  # merged tensors stored in full: compare values
        for key, ref in load_file(path).items():
            assert (sd[key] - ref).abs().max().item() <= 1e-6, key
    # Every merged key: same names, shapes and (float64) sums as the official merged inference model.
    merged = fx["merged_state_dict"]["keys"]
    assert set(merged) == set(sd)
    for key, meta in merged.items():
        t = sd[key].double()
        assert list(t.shape) == meta["shape"], key
        assert abs(t.sum().item() - meta["stats"]["sum"]) <= 1e-4 * max(1.0, meta["stats"]["abs_sum"]) ** 0.5, key
        assert abs(t.norm().item() - meta["stats"]["l2"]) <= 1e-5 * max(1.0, meta["stats"]["l2"]), key


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_keys_equal_official(name):
    fx, kw, _, _ = _setup(name)
    model = lorat.create_model(kw["name"], **kw["overrides"])
    ckpt, _ = read_state_file(fixture_file(fx, "checkpoint"))
    assert set(model.trainable_names()) == set(ckpt), "trainable parameters must be exactly the checkpoint's keys"
    full = fx["full_state_dict"]["keys"]
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    # The official training state dict appends two scalar LoRA attributes; everything else matches 1:1.
    assert set(full) - set(ours) == {"lora_alpha", "use_rslora"}
    assert set(ours) <= set(full)
    for k, shape in ours.items():
        assert full[k]["shape"] == shape, k


@pytest.mark.parametrize("name", NAMES)
def test_full_state_dict_loads_without_backbone(name):
    """An official full training state dict (frozen tensors + lora_alpha) loads strictly with no DINOv2 file."""
    fx, kw, io, inputs = _setup(name)
    ref = load_checkpoint(fixture_file(fx, "checkpoint"), name=kw["name"], pretrained=fixture_file(fx, "pretrained"),
                          **kw["overrides"])
    full = dict(ref.state_dict())
    lora = fx["config"]["model"]["lora"]  # the official state_dict() appends these two scalars
    full["lora_alpha"] = torch.tensor(lora["alpha"])
    full["use_rslora"] = torch.tensor(bool(lora.get("use_rslora", False)))
    fresh = lorat.create_model(kw["name"], **dict(kw["overrides"], lora_alpha=1.0))  # alpha must come from the file
    with pytest.warns(UserWarning, match="overrides config alpha"):
        load_lorat_state(fresh, full, "full state dict")
    _assert_close(_run(fresh, inputs), io, "output")


@pytest.mark.parametrize("name", NAMES)
def test_intermediate_probes(name):
    fx, kw, io, inputs = _setup(name)
    model = load_checkpoint(fixture_file(fx, "checkpoint"), name=kw["name"], pretrained=fixture_file(fx, "pretrained"),
                            **kw["overrides"]).eval()
    z, x, mask = inputs
    with torch.no_grad():
        pz, px = model.patch_embed(z), model.patch_embed(x)
        tokens = model.embed(z, x, mask)
        acts = {"patch_embed_z": pz, "patch_embed_x": px, "tokens_in": tokens}
        for i, blk in enumerate(model.blocks):
            tokens = blk(tokens)
            acts[f"block{i}_out"] = tokens
        acts["norm_out"] = model.norm(tokens)
    for key, t in acts.items():
        for end, sl in (("first4", slice(0, 4)), ("last4", slice(-4, None))):
            probe = f"probe.{key}.{end}"
            if probe in io:
                assert (t[:, sl] - io[probe]).abs().max().item() <= TOL, probe


@pytest.mark.parametrize("name", NAMES)
def test_default_scaling_differs_from_official_only_when_alpha_ne_r(name):
    fx, kw, io, inputs = _setup(name)
    o = kw["overrides"]
    kwargs = dict(name=kw["name"], pretrained=fixture_file(fx, "pretrained"), merge=True, **o)
    ours = _run(load_checkpoint(fixture_file(fx, "checkpoint"), **kwargs), inputs)
    _assert_close(ours, io, "output")  # the trained model's function, whatever alpha/r is
    if o["lora_alpha"] == o["lora_r"]:
        _assert_close(ours, io, "output_merged_from_ckpt_file")


def test_head_reference_points():
    fx, kw, io, _ = _setup(NAMES[0])
    model = lorat.create_model(kw["name"], **kw["overrides"])
    assert torch.equal(model.head.bbox_offset, io["head.bbox_offset"])
