"""Our SPMTrack reproduces the official code on every SPMTrack fixture in the manifest (fixture C and any other).

Everything is driven by the manifest (configs, template/search counts, key tables), and the model is reached only
through the public contract: ``lorat.load_checkpoint(path, name="spmtrack-b-378", pretrained=..., **overrides)``
and ``model(z, z_feat_mask, x, state=None)``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import lorat
from conftest import fixture_file, official_manifest
from lorat.data.transforms import template_foreground_mask
from lorat.hub import CheckpointError, read_state_file, save_checkpoint
from lorat.models.registry import get_arch
from lorat.track.spmtrack_memory import StateTokens
from lorat.train.spmtrack_loss import frame_targets, spmtrack_loss
from spmtrack_fixtures import pretrained_file, spmtrack_fixture_names, spmtrack_io, spmtrack_kwargs

NAMES = spmtrack_fixture_names()
TOL = 1e-5


def _load(fx, path=None, **extra):
    kw = dict(spmtrack_kwargs(fx), **extra)
    return lorat.load_checkpoint(path or fixture_file(fx, "checkpoint"), pretrained=pretrained_file(fx), **kw).eval()


def _close(out, io, prefix, keys=("score_map", "boxes")):
    for key in keys:
        ref = io[f"{prefix}.{key}"]
        assert out[key].shape == ref.shape, f"{prefix}.{key}"
        err = (out[key] - ref).abs().max().item()
        assert err <= TOL, f"{prefix}.{key}: max abs error {err}"


def _frames(model, z, mask, xs):
    with torch.no_grad():
        return model.forward_frames(z, mask, xs)


def test_there_is_an_spmtrack_fixture():
    assert NAMES, "no SPMTrack fixture found in the manifest"


@pytest.mark.parametrize("name", NAMES)
def test_both_frames_and_propagated_state(name):
    fx = official_manifest()["fixtures"][name]
    io, z, mask, xs = spmtrack_io(fx)
    model = _load(fx)
    state = None
    for k, x in enumerate(xs):
        with torch.no_grad():
            q = model.query_token(state, x.shape[0])
            out = model(z, mask, x, state=state)
        if f"state.query_frame{k}" in io:
            assert (q - io[f"state.query_frame{k}"]).abs().max().item() <= TOL
        _close(out, io, f"output.frame{k}")
        ref_state = io[f"state.after_frame{k}"].reshape(out["state"].shape)
        assert out["state"].shape == (x.shape[0], model.cfg.embed_dim)
        assert (out["state"] - ref_state).abs().max().item() <= TOL, f"state after frame {k}"
        state = out["state"]
    # forward_frames is the same computation (the training forward)
    for k, out in enumerate(_frames(model, z, mask, xs)):
        _close(out, io, f"output.frame{k}")


@pytest.mark.parametrize("name", NAMES)
def test_official_inference_model_never_propagates(name):
    """The official inference model's outputs: every frame as a first frame (its state cache never hits)."""
    fx = official_manifest()["fixtures"][name]
    io, z, mask, xs = spmtrack_io(fx)
    model = _load(fx)
    states = StateTokens(propagate=False)  # the as-shipped switch
    ids = list(range(xs[0].shape[0]))
    for k, x in enumerate(xs):
        with torch.no_grad():
            out = model(z, mask, x, state=states.batch(ids))
        states.update(ids, out["state"])
        _close(out, io, f"output_inference_model.frame{k}")
        if k == 1 and "output.x1_as_first_frame.score_map" in io:
            _close(out, io, "output.x1_as_first_frame")
    # and propagation does change frame 1 (so the switch matters)
    if len(xs) > 1:
        prop = StateTokens(propagate=True)
        with torch.no_grad():
            prop.update(ids, model(z, mask, xs[0], state=prop.batch(ids))["state"])
            out1 = model(z, mask, xs[1], state=prop.batch(ids))
        _close(out1, io, "output.frame1")


@pytest.mark.parametrize("name", NAMES)
def test_template_masks_from_boxes(name):
    fx = official_manifest()["fixtures"][name]
    io, z, mask, _ = spmtrack_io(fx)
    cfg = spmtrack_kwargs(fx)
    feat = cfg["template_size"] // 14
    for t in range(z.shape[1]):
        for b, box in enumerate(io[f"input.z_{t}_boxes_template_px"].numpy()):
            ours = template_foreground_mask(box, cfg["template_size"], feat)
            assert np.array_equal(ours, mask[b, t].numpy()), (t, b)


@pytest.mark.parametrize("name", NAMES)
def test_labels_and_every_loss_term(name):
    fx = official_manifest()["fixtures"][name]
    io, z, mask, xs = spmtrack_io(fx)
    cfg = spmtrack_kwargs(fx)
    model = _load(fx)
    targets = []
    for k in range(len(xs)):
        tgt = frame_targets(io[f"label.gt_boxes_search_region_px_{k}"], cfg["search_size"], cfg["search_size"] // 14)
        for key in ("positive_sample_batch_dim_indices", "positive_sample_map_dim_indices", "num_positive_samples"):
            assert torch.equal(tgt[key], io[f"label.{key}_{k}"].to(tgt[key].dtype)), (key, k)
        assert (tgt["boxes"] - io[f"label.boxes_{k}"]).abs().max().item() <= 1e-7
        targets.append(tgt)
    outs = model.forward_frames(z, mask, xs)
    total, terms = spmtrack_loss(outs, targets)
    for k in range(len(xs)):
        assert terms[f"bce_{k}"].item() == pytest.approx(io[f"loss.bce_{k}"].item(), rel=1e-5, abs=1e-6)
        assert terms[f"giou_{k}"].item() == pytest.approx(io[f"loss.iou_{k}"].item(), rel=1e-5, abs=1e-6)
    assert total.item() == pytest.approx(io["loss.total"].item(), rel=1e-5)
    for key, value in fx.get("loss_values", {}).items():  # the manifest's copy agrees too
        assert io[key].item() == pytest.approx(value, rel=1e-6)
    total.backward()  # gradients reach the trainable parts only
    assert model.track_query.grad is not None and model.head.cls_mlp.layers[0].weight.grad is not None
    assert model.patch_embed.proj.weight.grad is None


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_keys_equal_official(name):
    fx = official_manifest()["fixtures"][name]
    kw = spmtrack_kwargs(fx)
    model = lorat.create_model(kw.pop("name"), **kw)
    ckpt, _ = read_state_file(fixture_file(fx, "checkpoint"))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert set(trainable) == set(ckpt) == set(fx["trainable_parameters"])
    full = fx["full_state_dict"]["keys"]
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert set(ours) == set(full)
    for k, shape in ours.items():
        assert full[k]["shape"] == shape, k
    assert get_arch("spmtrack").claims(ckpt) and not get_arch("lorat").claims(ckpt)


@pytest.mark.parametrize("name", NAMES)
def test_full_state_dict_provenance(name):
    """Frozen tensors equal their pretrained sources (q/k/v row slices) and pos_embed matches the official stats."""
    fx = official_manifest()["fixtures"][name]
    sd = _load(fx).state_dict()
    pre, _ = read_state_file(pretrained_file(fx))
    for key, meta in fx["full_state_dict"]["keys"].items():
        src = meta["source"]
        if src.startswith("pretrained["):
            pkey = src[len("pretrained["):src.index("]")]
            ref = pre[pkey].float()
            if src.count("[") == 2:
                lo, hi = (int(v) for v in src[src.rindex("[") + 1:-1].split(":"))
                ref = ref[lo:hi]
            assert torch.equal(sd[key], ref), key
        stats = meta["stats"]
        t = sd[key].double()
        assert abs(t.sum().item() - stats["sum"]) <= 1e-4 * max(1.0, stats["abs_sum"]) ** 0.5, key
        assert torch.allclose(t.flatten()[:8], torch.tensor(stats["first8"], dtype=torch.float64), atol=1e-7), key


@pytest.mark.parametrize("name", NAMES)
def test_round_trips_through_lorat_files(name, tmp_path):
    fx = official_manifest()["fixtures"][name]
    io, z, mask, xs = spmtrack_io(fx)
    model = _load(fx)
    for contents in ("full", "trainable"):
        path = tmp_path / f"{contents}.safetensors"
        save_checkpoint(model, path, contents=contents)
        _, meta = read_state_file(path)
        assert meta["contents"] == contents
        pre = pretrained_file(fx) if contents == "trainable" else None
        back = lorat.load_checkpoint(path, pretrained=pre).eval()
        assert type(back) is type(model) and back.cfg == model.cfg
        for k, out in enumerate(_frames(back, z, mask, xs)):
            _close(out, io, f"output.frame{k}")


@pytest.mark.parametrize("name", NAMES)
def test_original_spmtrack_repo_checkpoint(name, tmp_path):
    """Headerless ``.bin`` with ``expert_alpha`` / ``use_rsexpert`` scalars: alpha comes from the file."""
    fx = official_manifest()["fixtures"][name]
    io, z, mask, xs = spmtrack_io(fx)
    kw = spmtrack_kwargs(fx)
    tensors, _ = read_state_file(fixture_file(fx, "checkpoint"))
    tensors["expert_alpha"] = torch.tensor(kw["tmoe_alpha"])
    tensors["use_rsexpert"] = torch.tensor(kw["tmoe_rs"])
    path = tmp_path / "spmtrack_repo_model.bin"
    save_file(tensors, str(path))
    with pytest.warns(UserWarning, match="expert_alpha"):
        model = _load(fx, path, tmoe_alpha=kw["tmoe_alpha"] + 3.0)
    assert model.cfg.tmoe_alpha == kw["tmoe_alpha"]
    for k, out in enumerate(_frames(model, z, mask, xs)):
        _close(out, io, f"output.frame{k}")


@pytest.mark.parametrize("name", NAMES)
def test_strict_loading_errors_name_the_file(name, tmp_path):
    fx = official_manifest()["fixtures"][name]
    kw = spmtrack_kwargs(fx)
    ckpt = fixture_file(fx, "checkpoint")
    with pytest.raises(CheckpointError, match=f"{ckpt.name}.*pretrained"):
        lorat.load_checkpoint(ckpt, **kw)  # trainable only, no backbone
    with pytest.raises(CheckpointError, match="tmoe_r="):
        _load(fx, tmoe_r=kw["tmoe_r"] + 1)
    with pytest.raises(CheckpointError, match="tmoe_experts="):
        _load(fx, tmoe_experts=kw["tmoe_experts"] + 1)
    tensors, _ = read_state_file(ckpt)
    extra = dict(tensors, **{"blocks.0.attn.qkv.q.tmoe.bogus": torch.zeros(1)})
    save_file(extra, str(tmp_path / "extra.bin"))
    with pytest.raises(CheckpointError, match="extra.bin.*does not have"):
        _load(fx, tmp_path / "extra.bin")
    missing = {k: v for k, v in tensors.items() if k != "query_embed"}
    save_file(missing, str(tmp_path / "missing.bin"))
    with pytest.raises(CheckpointError, match="missing.bin.*query_embed"):
        _load(fx, tmp_path / "missing.bin")
    with pytest.raises(CheckpointError, match="DINOv2 backbone"):
        _load(fx, pretrained_file(fx))
