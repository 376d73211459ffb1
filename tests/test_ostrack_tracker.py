"""OSTrack tracker decode (set C): Hann window, windowed argmax, map back, clip, and one full tracker step."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lorat
from lorat.track.ostrack import (
    OSTrackTracker,
    box_to_pixels,
    clip_box,
    decode,
    hann2d,
    map_box_back,
    preprocess,
    sample_target,
)
from ostrack_fixtures import build_student, fixture_dirs, ids, manifest, tensors

DIRS = fixture_dirs()
PX = 1e-3


def _geom(d):
    return manifest(d)["geometry"]["tracker"]


def _cases(C):
    return sorted({k.split(".")[0] for k in C if k.startswith("case")})


@pytest.mark.parametrize("d", DIRS, ids=ids())
def test_hann_window_exact(d):
    C = tensors(d, "decode")
    feat = _geom(d)["search_size"] // 16
    assert torch.equal(hann2d(feat, feat), C["hann_window"])


@pytest.mark.parametrize("d", DIRS, ids=ids())
def test_decode_cases(d):
    C, g = tensors(d, "decode"), _geom(d)
    S, feat = g["search_size"], g["search_size"] // 16
    cases = _cases(C)
    assert cases
    for c in cases:
        p = c + "."
        prev = C[p + "prev_state_xywh"].tolist()
        H, W = C[p + "frame_hw"].tolist()
        rf = S / math.ceil(math.sqrt(prev[2] * prev[3]) * g["search_factor"])
        assert rf == C[p + "resize_factor"].item(), c
        boxes, idx, _ = decode(C[p + "score_map"], C[p + "size_map"], C[p + "offset_map"], hann2d(feat, feat))
        assert torch.equal(hann2d(feat, feat) * C[p + "score_map"], C[p + "response"])
        assert idx.item() == C[p + "argmax_windowed"].item(), c
        assert C[p + "score_map"].flatten().argmax().item() == C[p + "argmax_raw"].item()
        assert (boxes - C[p + "box_crop_cxcywh"]).abs().max() <= 2e-5, c
        px = box_to_pixels(boxes[0], S, rf)
        np.testing.assert_allclose(px, C[p + "pred_box_px"].numpy(), atol=PX, rtol=0)
        mapped = map_box_back(px, prev, S, rf)
        np.testing.assert_allclose(mapped, C[p + "mapped_xywh"].numpy(), atol=PX, rtol=0)
        final = clip_box(mapped, H, W, margin=10)
        np.testing.assert_allclose(final, C[p + "final_state_xywh"].numpy(), atol=PX, rtol=0)


def test_clip_box_takes_x2_before_clipping():
    # x1 < 0: x2 = x1 + w is computed first, so the width shrinks by the clipped part
    assert clip_box([-5.0, -3.0, 20.0, 4.0], 100, 100, margin=10) == [0, 0, 15.0, 10]
    assert clip_box([95.0, 50.0, 20.0, 20.0], 100, 100, margin=10) == [90, 50.0, 10, 20.0]


def test_sample_target_padding_rule():
    img = np.full((20, 30, 3), 200, np.uint8)
    crop, rf = sample_target(img, [25.0, 15.0, 4.0, 4.0], 2.0, 16)  # crop 8 px, x2 = 31 > W
    assert crop.shape == (16, 16, 3) and rf == 2.0
    assert crop[:, -1].max() == 0 and crop[0, 0].max() == 200  # zero padding on the right/bottom
    with pytest.raises(ValueError, match="too small"):
        sample_target(img, [1.0, 1.0, 0.0, 0.0], 2.0, 16)


@pytest.mark.parametrize("d", DIRS, ids=ids())
def test_full_tracker_step(d):
    C, g = tensors(d, "decode"), _geom(d)
    f0, f1 = C["full.frame0"].numpy(), C["full.frame1"].numpy()
    init = C["full.init_bbox_xywh"].tolist()
    z, zr = sample_target(f0, init, g["template_factor"], g["template_size"])
    assert np.array_equal(z, C["full.template_crop"].numpy()) and zr == C["full.template_resize_factor"].item()
    x, xr = sample_target(f1, init, g["search_factor"], g["search_size"])
    assert np.array_equal(x, C["full.search_crop"].numpy()) and xr == C["full.search_resize_factor"].item()
    model = build_student(d, geometry="tracker")
    tracker = lorat.Tracker(model, lorat.TrackConfig(device="cpu", dtype="float32", verbose=False))
    assert type(tracker) is OSTrackTracker  # dispatched through the architecture registry
    assert not model.training
    tracker.initialize(f0, init)
    # the tracker's own crops are the official ones, exactly
    st = tracker.states[tracker.active_ids[0]]
    assert torch.equal(st.z, preprocess(C["full.template_crop"].numpy())[0])
    xt, info = tracker.crop_search(st, f1)
    assert torch.equal(xt, preprocess(C["full.search_crop"].numpy())[0])
    assert info.resize_factor == C["full.search_resize_factor"].item()
    box, score = tracker.track(f1)
    assert box.dtype == np.float64 and box.shape == (4,)
    np.testing.assert_allclose(box, C["full.final_state_xywh"].numpy(), atol=PX, rtol=0)
    assert 0 < score < 1
    # the same step for three sequences in one forward, one of them at another position in the batch
    tracker.initialize_many(["a", "b", "c"], [f0, f0, f0], [init, init, init])
    res = tracker.track_many(["a", "b", "c"], [f1, f1, f1])
    for b, s in res:
        np.testing.assert_allclose(b, C["full.final_state_xywh"].numpy(), atol=PX, rtol=0)
        assert s == pytest.approx(score, abs=1e-5)
    # the state moved to the reported box: the next crop is centred on it
    assert tracker.states["a"].extra["xywh"] == pytest.approx(list(res[0][0]), abs=1e-9)
    tracker.remove(["a", "b"])
    assert tracker.active_ids == ["__single__", "c"]


def test_precision_auto_and_bf16():
    torch.manual_seed(0)
    model = lorat.create_model("loretrack-b-96", embed_dim=32, depth=1, num_heads=2, head_channels=16)
    img = (np.arange(80 * 90 * 3) % 251).astype(np.uint8).reshape(80, 90, 3)
    auto = lorat.Tracker(model, lorat.TrackConfig(device="cpu", verbose=False, copy_model=True))
    assert isinstance(auto, OSTrackTracker) and auto.precision in ("float32", "bfloat16")
    bf = lorat.Tracker(model, lorat.TrackConfig(device="cpu", dtype="bfloat16", verbose=False, copy_model=True))
    assert next(bf.model.parameters()).dtype == torch.bfloat16 and bf.input_dtype == torch.bfloat16
    fp = lorat.Tracker(model, lorat.TrackConfig(device="cpu", dtype="float32", verbose=False))
    for tr in (bf, fp):
        tr.initialize(img, [20, 20, 16, 18])
    (b16, s16), (_, s32) = bf.track(img), fp.track(img)
    assert np.isfinite(b16).all() and (b16[2:] >= 10).all() and abs(s16 - s32) < 0.05
    # the head maps agree to bf16 precision (an untrained model's argmax may still land on another cell)
    st = bf.states["__single__"]
    x, _ = fp.crop_search(st, img)
    m16 = bf.forward(bf.batch_templates([st]), x[None].to(torch.bfloat16), [st])["score_map"]
    m32 = fp.forward(fp.batch_templates([fp.states["__single__"]]), x[None], [st])["score_map"]
    assert (m16 - m32).abs().max() < 0.05


def test_tracker_errors():
    model = lorat.create_model("loretrack-b-96", embed_dim=32, depth=1, num_heads=2, head_channels=16)
    tr = OSTrackTracker(model, lorat.TrackConfig(device="cpu"))
    img = np.zeros((50, 60, 3), np.uint8)
    with pytest.raises(ValueError, match="initialize"):
        tr.track(img)
    with pytest.raises(ValueError, match="size"):
        tr.initialize(img, [5, 5, 0, 4])
    with pytest.raises(ValueError, match="uint8"):
        tr.initialize(img.astype(np.float32), [5, 5, 4, 4])
    tr.initialize(img, [5, 5, 10, 12])
    box, score = tr.track(img)
    assert np.isfinite(box).all() and box[2] >= 10 and box[3] >= 10
