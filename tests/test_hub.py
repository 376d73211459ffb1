"""Checkpoint formats: DINOv2 layouts round-trip, our format round-trips, bad files fail clearly."""
from __future__ import annotations

import json
import pickle
import struct
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

import lorat
from conftest import OFFICIAL
from lorat.hub import (
    CheckpointError,
    convert_dinov2,
    detect_dinov2_layout,
    facebook_to_huggingface,
    facebook_to_timm,
    huggingface_to_facebook,
    load_checkpoint,
    load_dinov2,
    read_state_file,
    read_state_metadata,
    save_checkpoint,
    timm_to_facebook,
)
from lorat.models.vit import DinoV2


def _dinov2_sd(ffn="mlp"):
    torch.manual_seed(0)
    model = DinoV2(embed_dim=32, depth=2, num_heads=2, ffn=ffn, img_size=70)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("ffn", ["mlp", "swiglu"])
def test_timm_round_trip(ffn):
    _, fb = _dinov2_sd(ffn)
    timm = facebook_to_timm(fb)
    assert "mask_token" not in timm
    assert ("blocks.0.mlp.fc1.weight" in timm) and not any(".w12." in k for k in timm)
    assert detect_dinov2_layout(timm) == "timm"
    back = timm_to_facebook(timm)
    assert set(back) == set(fb)
    for k in fb:
        expected = torch.zeros_like(fb[k]) if k == "mask_token" else fb[k]  # timm does not keep the mask token
        assert torch.equal(back[k], expected), k


@pytest.mark.parametrize("ffn", ["mlp", "swiglu"])
def test_huggingface_round_trip_and_function(ffn):
    model, fb = _dinov2_sd(ffn)
    hf = facebook_to_huggingface(fb)
    assert "encoder.layer.1.attention.attention.key.weight" in hf
    assert detect_dinov2_layout(hf) == "huggingface"
    prefixed = {f"dinov2.{k}": v for k, v in hf.items()}  # Dinov2ForImageClassification nesting
    for src in (hf, prefixed):
        back = huggingface_to_facebook(src)
        assert set(back) == set(fb)
        assert all(torch.equal(back[k], fb[k]) for k in fb)
    # The converted weights compute the same function.
    other = DinoV2(embed_dim=32, depth=2, num_heads=2, ffn=ffn, img_size=70)
    other.load_state_dict(convert_dinov2(hf))
    x = torch.randn(1, 3, 70, 70)
    assert torch.allclose(other(x), model(x), atol=1e-6)


def test_official_fixture_backbone_is_facebook_layout():
    tensors, _ = read_state_file(OFFICIAL / "dinov2_vits14_synth_depth2_pretrain.safetensors")
    assert detect_dinov2_layout(tensors) == "facebook"
    loaded = load_dinov2(OFFICIAL / "dinov2_vits14_synth_depth2_pretrain.safetensors")
    assert all(v.dtype == torch.float32 for v in loaded.values())


def test_unknown_layout_names_closest_and_keys():
    _, fb = _dinov2_sd()
    bad = {("backbone." + k if k.startswith("blocks.0.") else k): v for k, v in fb.items()}
    with pytest.raises(CheckpointError) as e:
        detect_dinov2_layout(bad, "weird.pth")
    msg = str(e.value)
    assert "weird.pth" in msg and "closest is 'facebook'" in msg
    assert "blocks.0.attn.qkv.weight" in msg and "backbone.blocks.0" in msg


def test_dinov2_torch_file_loads_with_weights_only(tmp_path):
    _, fb = _dinov2_sd()
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save({"model": facebook_to_timm(fb)}, path)
    sd = load_dinov2(path)
    assert torch.equal(sd["blocks.1.attn.qkv.weight"], fb["blocks.1.attn.qkv.weight"])


@pytest.mark.parametrize("contents", ["full", "trainable"])
def test_own_format_round_trip(tmp_path, tiny_cfg, contents):
    torch.manual_seed(0)
    _, fb = _dinov2_sd()
    cfg = replace(tiny_cfg, embed_dim=32, num_heads=2, pretrain_img_size=70)
    model = lorat.create_model(cfg, pretrained=fb)
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path, contents=contents)
    _, meta = read_state_file(path)
    assert meta["format"] == "lorat" and meta["contents"] == contents
    if contents == "trainable":
        with pytest.raises(CheckpointError, match="pass pretrained"):
            load_checkpoint(path)
        loaded = load_checkpoint(path, pretrained=fb)
    else:
        loaded = load_checkpoint(path)
    assert loaded.cfg == model.cfg
    z, x = torch.randn(1, 3, 28, 28), torch.randn(1, 3, 56, 56)
    mask = torch.ones(1, 2, 2, dtype=torch.long)
    model.eval(), loaded.eval()
    assert torch.allclose(loaded(z, x, mask)["score_map"], model(z, x, mask)["score_map"], atol=1e-6)
    # Merged models save and load as merged.
    model.merge_lora()
    save_checkpoint(model, tmp_path / "merged.safetensors")
    merged = load_checkpoint(tmp_path / "merged.safetensors").eval()
    assert torch.allclose(merged(z, x, mask)["score_map"], model(z, x, mask)["score_map"], atol=1e-6)


def _official_like(tmp_path, tiny_cfg, mutate):
    model = lorat.create_model(tiny_cfg)
    sd = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    mutate(sd)
    path = tmp_path / "weights.bin"  # official releases: safetensors content named .bin
    save_file(sd, str(path))
    return path


def test_bad_checkpoints_give_clear_errors(tmp_path, tiny_cfg):
    ok = _official_like(tmp_path, tiny_cfg, lambda sd: None)
    with pytest.raises(CheckpointError, match="pass the preset name"):
        load_checkpoint(ok)
    with pytest.raises(CheckpointError, match="pass pretrained"):
        load_checkpoint(ok, name=tiny_cfg)

    def wrong_shape(sd):
        sd["token_type_embed"] = torch.zeros(3, 99)
    with pytest.raises(CheckpointError, match="embed_dim: file 99 vs config 32"):
        load_checkpoint(_official_like(tmp_path, tiny_cfg, wrong_shape), name=tiny_cfg, pretrained={})

    def wrong_head_shape(sd):
        sd["head.reg_mlp.layers.2.weight"] = torch.zeros(5, 32)
    with pytest.raises(CheckpointError, match="shape mismatch.*head.reg_mlp.layers.2.weight"):
        load_checkpoint(_official_like(tmp_path, tiny_cfg, wrong_head_shape), name=tiny_cfg)

    def foreign(sd):
        sd["decoder.layer.0.weight"] = torch.zeros(2)
    with pytest.raises(CheckpointError, match="decoder.layer.0.weight"):
        load_checkpoint(_official_like(tmp_path, tiny_cfg, foreign), name=tiny_cfg)

    def deeper(sd):
        sd["blocks.5.mlp.fc1.lora.A"] = torch.zeros(4, 32)
    with pytest.raises(CheckpointError, match="depth: file 6 vs config 2.*depth=6"):
        load_checkpoint(_official_like(tmp_path, tiny_cfg, deeper), name=tiny_cfg)

    def missing(sd):
        del sd["head.cls_mlp.layers.0.bias"]
    with pytest.raises(CheckpointError, match="missing trainable keys.*head.cls_mlp.layers.0.bias"):
        load_checkpoint(_official_like(tmp_path, tiny_cfg, missing), name=tiny_cfg)


def test_truncated_pickle_missing_and_garbage_files(tmp_path, tiny_cfg):
    ok = _official_like(tmp_path, tiny_cfg, lambda sd: None)
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(ok.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated.bin: truncated file"):
        read_state_file(truncated)

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(CheckpointError, match="evil.pkl: is a raw pickle file"):
        read_state_file(raw)
    evil_zip = tmp_path / "evil.pth"
    torch.save({"w": Evil()}, evil_zip)  # a torch zip whose pickle holds a callable
    with pytest.raises(CheckpointError, match="evil.pth: cannot be read.*weights_only=True"):
        read_state_file(evil_zip)
    garbage = tmp_path / "image.jpg"
    garbage.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
    with pytest.raises(CheckpointError, match="image.jpg: not a safetensors or PyTorch"):
        read_state_file(garbage)
    with pytest.raises(FileNotFoundError, match="nowhere.bin"):
        read_state_file(tmp_path / "nowhere.bin")


def test_metadata_reader_reads_the_header_only_and_refuses_what_read_state_file_refuses(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"w": torch.ones(3)}, str(path), metadata={"format": "lorat", "note": "x"})
    assert read_state_metadata(path) == {"format": "lorat", "note": "x"}
    # the tensors are not read: a tensor of an unknown dtype fails read_state_file but not the header reader
    header = json.dumps({"w": {"dtype": "Q9", "shape": [3], "data_offsets": [0, 12]},
                         "__metadata__": {"note": "y"}}).encode()
    odd = tmp_path / "odd.safetensors"
    odd.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 12)
    with pytest.raises(CheckpointError, match="odd.safetensors: cannot read safetensors data"):
        read_state_file(odd)
    assert read_state_metadata(odd) == {"note": "y"}
    bad = json.dumps({"w": {"dtype": "F32", "shape": [3]}}).encode()  # no data_offsets
    (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", len(bad)) + bad + b"\0" * 12)
    with pytest.raises(CheckpointError, match="bad.safetensors: corrupt safetensors header"):
        read_state_metadata(tmp_path / "bad.safetensors")
    torch.save({"w": torch.ones(2)}, tmp_path / "plain.pth")
    assert read_state_metadata(tmp_path / "plain.pth") == {}
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(CheckpointError, match="t.safetensors: truncated file"):
        read_state_metadata(truncated)
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"w": 1}))
    with pytest.raises(CheckpointError, match="evil.pkl: is a raw pickle file"):
        read_state_metadata(tmp_path / "evil.pkl")
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        read_state_metadata(tmp_path / "nowhere.safetensors")


def test_backbone_passed_as_checkpoint_is_explained(tmp_path):
    with pytest.raises(CheckpointError, match="is a DINOv2 backbone, not a LoRAT checkpoint"):
        load_checkpoint(OFFICIAL / "dinov2_vits14_synth_depth2_pretrain.safetensors", name="lorat-s-224", depth=2)


def test_backbone_with_wrong_depth_is_explained():
    with pytest.raises(ValueError, match="has 2 blocks but the model has depth=3.*depth=2"):
        lorat.create_model("lorat-s-224", depth=3,
                           pretrained=OFFICIAL / "dinov2_vits14_synth_depth2_pretrain.safetensors")


# ------------------------------------------------------------------------------ geometry of official files
def _fixture_checkpoint():
    from conftest import fixture_file, fixture_model_kwargs, official_manifest

    fx = official_manifest()["fixtures"]["A_lorat"]
    return fixture_file(fx, "checkpoint"), fixture_file(fx, "pretrained"), fixture_model_kwargs(fx)


def test_official_file_named_for_another_resolution_warns_and_prints_geometry(tmp_path, capsys):
    import shutil

    ckpt, pre, kw = _fixture_checkpoint()  # a trainable-only 224 px file: no tensor reveals the grid
    named = tmp_path / "LoRAT-S-378.bin"
    shutil.copyfile(ckpt, named)
    over = kw["overrides"]
    with pytest.warns(UserWarning, match=r"name says 378px but preset 'lorat-s-224' searches at 224px"):
        load_checkpoint(named, name=kw["name"], pretrained=pre, **over)
    assert "geometry: template 112px, search 224px, grid 16" in capsys.readouterr().out
    # the reverse: a -224 name loaded under the 378 geometry
    back = tmp_path / "LoRAT-S-224.bin"
    shutil.copyfile(ckpt, back)
    with pytest.warns(UserWarning, match=r"name says 224px but preset 'lorat-s-378' searches at 378px"):
        load_checkpoint(back, name="lorat-s-378", pretrained=pre, depth=over["depth"], lora_r=over["lora_r"])
    assert "geometry: template 196px, search 378px, grid 27" in capsys.readouterr().out
    # a name that agrees gives no warning
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_checkpoint(back, name=kw["name"], pretrained=pre, **over)


def test_full_official_file_with_another_grid_is_refused(tmp_path, tiny_cfg):
    model = lorat.create_model(tiny_cfg)  # search 56 px: a 4x4 grid
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["pos_embed"] = torch.zeros(1, 36, tiny_cfg.embed_dim)  # a 6x6 grid: 84 px
    path = tmp_path / "full.bin"
    save_file(sd, str(path))
    with pytest.raises(CheckpointError, match=r"position grid is 6x6 \(search 84px\).*search 56px \(grid 4\)"):
        load_checkpoint(path, name=tiny_cfg, pretrained=None)
