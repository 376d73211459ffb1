"""Tracker: crop bookkeeping, Hann window, decoding (official fixture), state rule, batching, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import lorat
from conftest import OFFICIAL
from lorat import boxes as bx
from lorat.data import transforms as T
from lorat.models.head import cell_centres
from lorat.models.peft import has_lora
from lorat.track.tracker import TrackConfig, Tracker, check_init_box, decode_prediction, hann_window_2d


def _noise(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def tiny_model(tiny_cfg):
    torch.manual_seed(0)
    return lorat.create_model(tiny_cfg)


class StubModel(nn.Module):
    """Outputs a score peak at ``cell`` and the same normalised xyxy ``box`` at every cell."""

    def __init__(self, cfg, box, cell=(1, 2)):
        super().__init__()
        self.cfg = cfg
        self.box = torch.tensor(box, dtype=torch.float32)
        self.cell = cell
        self.weight = nn.Parameter(torch.zeros(1))
        self.calls = []

    def forward(self, z, x, z_feat_mask):
        self.calls.append((z.shape, x.shape, z_feat_mask.clone()))
        n = self.cfg.search_feat
        score = torch.full((x.shape[0], n, n), -10.0)
        score[:, self.cell[0], self.cell[1]] = 10.0
        return {"score_map": score, "boxes": self.box.expand(x.shape[0], n, n, 4).clone()}


# ------------------------------------------------------------------------------ post-processing
@pytest.mark.parametrize("h,w", [(16, 16), (27, 27), (5, 7), (1, 3)])
def test_hann_window_equals_official_definition(h, w):
    def hann(n):  # symmetric (periodic=False) Hann: 0.5 - 0.5 cos(2 pi k / (n - 1)); n = 1 -> [1]
        return np.ones(1) if n == 1 else 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / (n - 1))

    win = hann_window_2d(h, w)
    assert win.shape == (h, w) and win.dtype == torch.float32
    np.testing.assert_allclose(win.numpy(), np.outer(hann(h), hann(w)), atol=1e-6)
    np.testing.assert_allclose(win.numpy(), np.outer(np.hanning(h), np.hanning(w)), atol=1e-6)
    # bit-exact with the official expression (float32 column x row product)
    official = torch.hann_window(h, periodic=False)[:, None] * torch.hann_window(w, periodic=False)[None, :]
    assert torch.equal(win, official)


def test_decode_prediction_hand_computed():
    # 4x4 map; hann(4, periodic=False) = [0, .75, .75, 0], so the corner's window is 0, cell (1,1)'s is .5625.
    score = torch.full((1, 4, 4), -10.0)
    score[0, 0, 0] = 3.0  # p = 0.952574 -> q = 0.55 p = 0.523916
    score[0, 1, 1] = 0.0  # p = 0.5      -> q = 0.275 + 0.45 * 0.5625 = 0.528125  (wins)
    boxes = torch.zeros(1, 4, 4, 4)
    boxes[0, 1, 1] = torch.tensor([0.25, 0.3, 0.5, 0.6])
    boxes[0, 0, 0] = torch.tensor([0.0, 0.0, 0.1, 0.1])
    box, conf, idx = decode_prediction(score, boxes, hann_window_2d(4, 4), 0.45, (56, 56))
    assert idx.tolist() == [5]
    assert conf.item() == pytest.approx(0.5, abs=1e-7)  # un-penalised
    np.testing.assert_allclose(box[0].numpy(), [14.0, 16.8, 28.0, 33.6], rtol=1e-6)
    # without the window the corner wins, with its own sigmoid score; non-square crop scales x and y apart
    box, conf, idx = decode_prediction(score, boxes, hann_window_2d(4, 4), 0.0, (100, 50))
    assert idx.tolist() == [0]
    assert conf.item() == pytest.approx(1 / (1 + np.exp(-3.0)), rel=1e-6)
    np.testing.assert_allclose(box[0].numpy(), [0.0, 0.0, 10.0, 5.0], rtol=1e-6)


def test_decode_prediction_on_official_outputs():
    io = load_file(str(OFFICIAL / "lorat_A_io.safetensors"))
    offset = io["head.bbox_offset"]  # (16, 16, 2) official cell reference points (x, y)
    torch.testing.assert_close(cell_centres(16, 16), offset, rtol=0, atol=0)
    score, boxes = io["output.score_map"], io["output.boxes"]  # (2,16,16), (2,16,16,4) normalised xyxy
    # Every official box surrounds its cell's reference point (sigmoid ltrb distances from it).
    assert bool((boxes[..., :2] < offset).all()) and bool((boxes[..., 2:] > offset).all())
    box, conf, idx = decode_prediction(score, boxes, hann_window_2d(16, 16), 0.45, (224, 224))
    # independent numpy computation of the official decoding rule (docs/tracking.md, step 3)
    p = 1 / (1 + np.exp(-score.double().numpy().reshape(2, -1)))
    q = 0.55 * p + 0.45 * np.outer(np.hanning(16), np.hanning(16)).reshape(1, -1)
    want = q.argmax(1)
    assert idx.tolist() == want.tolist()
    np.testing.assert_allclose(conf.numpy(), p[[0, 1], want], rtol=1e-6)
    np.testing.assert_allclose(box.numpy(), boxes.numpy().reshape(2, -1, 4)[[0, 1], want] * 224, rtol=1e-6)


# ------------------------------------------------------------------------------ crops
def test_search_crop_and_inverse_round_trip(tiny_cfg):
    tracker = Tracker(StubModel(tiny_cfg, [0.4, 0.4, 0.6, 0.6]), TrackConfig(device="cpu", dtype="float32"))
    image = np.zeros((90, 120, 3), np.uint8)
    image[30:50, 40:70] = 255  # a white target exactly at the box below
    box = np.array([40.0, 30.0, 70.0, 50.0])
    tracker.initialize(image, bx.xyxy_to_xywh(box))
    state = tracker.states[tracker.active_ids[0]]
    crop, c = tracker.crop_search(state, image)
    scale, translation = c.scale, c.translation
    assert crop.shape == (3, 56, 56)
    in_crop = T.boxes_to_crop(box, scale, translation)
    np.testing.assert_allclose(T.boxes_from_crop(in_crop, scale, translation), box, atol=1e-9)
    # the target lands centred in the crop, with the context rule's size: (w+p)(h+p), p = 3 (w+h)/2
    np.testing.assert_allclose(bx.box_center(in_crop), [28, 28], atol=0.5)
    assert scale[0] == pytest.approx(np.sqrt(56 * 56 / ((30 + 75) * (20 + 75))), rel=0.02)
    # the white pixels of the crop are where the adjusted parameters put the box
    white = (crop[0] > 0).numpy()  # normalised: white > 0, black < 0
    ys, xs = np.nonzero(white)
    np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], in_crop, atol=1.0)


def test_search_crops_are_padded_with_frame0_mean(tiny_cfg):
    tracker = Tracker(StubModel(tiny_cfg, [0.4, 0.4, 0.6, 0.6]), TrackConfig(device="cpu", dtype="float32"))
    frame0 = np.full((40, 50, 3), (200, 100, 50), np.uint8)
    tracker.initialize(frame0, (0, 0, 10, 10))  # at the corner: most of every crop is padding
    state = tracker.states[tracker.active_ids[0]]
    np.testing.assert_allclose(state.pad.numpy(), [200, 100, 50])
    frame1 = np.full((40, 50, 3), 7, np.uint8)
    crop, _ = tracker.crop_search(state, frame1)
    want = (np.array([200, 100, 50]) / 255 - np.array(T.IMAGENET_MEAN)) / np.array(T.IMAGENET_STD)
    np.testing.assert_allclose(crop[:, 0, 0].numpy(), want, atol=1e-5)  # top-left corner: outside the image


def test_template_mask_and_min_size_enlargement(tiny_cfg):
    model = StubModel(tiny_cfg, [0.4, 0.4, 0.6, 0.6])
    tracker = Tracker(model, TrackConfig(device="cpu", dtype="float32"))
    image = _noise(60, 80, 1)
    tracker.initialize(image, (30, 20, 4, 3))  # tiny box: the search crop uses a >= 10 px box
    state = tracker.states[tracker.active_ids[0]]
    # template crop: area factor 2, no min-size adjustment; mask = cells overlapping the mapped box
    s, t = T.siamfc_crop_params(np.array([30, 20, 34, 23.0]), 2.0, 28)
    _, s, t = T.crop_and_resize(image, s, t, 28)
    want = T.template_foreground_mask(T.boxes_to_crop(np.array([30, 20, 34, 23.0]), s, t), 28, 2)
    np.testing.assert_array_equal(state.z_mask.numpy(), want)
    assert state.z_mask.sum() >= 1
    scale = tracker.crop_search(state, image)[1].scale
    enlarged = np.array([27.0, 16.5, 37.0, 26.5])  # 4x3 box grown to 10x10 about its centre
    assert scale[0] == pytest.approx(T.siamfc_scale(enlarged, 4.0, 56)[0], rel=0.03)
    np.testing.assert_allclose(state.box, [30, 20, 34, 23])  # the state itself is not enlarged


# ------------------------------------------------------------------------------ output and state rule
def test_box_mapped_back_with_adjusted_params_and_state_update(tiny_cfg):
    model = StubModel(tiny_cfg, [0.25, 0.375, 0.75, 0.625])
    tracker = Tracker(model, TrackConfig(device="cpu", dtype="float32"))
    image = _noise(70, 90, 2)
    tracker.initialize(image, (35, 25, 20, 16))
    state = tracker.states[tracker.active_ids[0]]
    c = tracker.crop_search(state, image)[1]
    scale, translation = c.scale, c.translation
    box, score = tracker.track(image)
    want = bx.clip_to_image(T.boxes_from_crop(np.array([14.0, 21.0, 42.0, 35.0]), scale, translation), 90, 70)
    np.testing.assert_allclose(box, bx.xyxy_to_xywh(want), atol=1e-4)
    assert score == pytest.approx(1 / (1 + np.exp(-10.0)), rel=1e-6)
    np.testing.assert_allclose(state.box, want, atol=1e-4)  # valid -> new state


def test_invalid_clipped_box_keeps_previous_state(tiny_cfg):
    model = StubModel(tiny_cfg, [-3.0, -3.0, -2.5, -2.5])  # far up-left of the crop -> outside the image
    tracker = Tracker(model, TrackConfig(device="cpu", dtype="float32"))
    image = _noise(70, 90, 3)
    tracker.initialize(image, (35, 25, 20, 16))
    sid = tracker.active_ids[0]
    before = tracker.states[sid].box.copy()
    box, _ = tracker.track(image)
    np.testing.assert_allclose(box, [0, 0, 0, 0])  # the reported result is the clipped box, whatever it is
    np.testing.assert_allclose(tracker.states[sid].box, before)  # but the state does not move
    box2, _ = tracker.track(image)
    np.testing.assert_allclose(box2, [0, 0, 0, 0])
    np.testing.assert_allclose(tracker.states[sid].box, before)


# ------------------------------------------------------------------------------ batching
def test_batched_tracking_equals_tracking_each_alone(tiny_model):
    single = Tracker(tiny_model, TrackConfig(device="cpu", dtype="float32"))
    batched = Tracker(tiny_model, TrackConfig(device="cpu", dtype="float32"))
    sizes = [(48, 64), (60, 50), (40, 40)]
    inits = [(10, 8, 20, 15), (5, 30, 12, 25), (20, 20, 6, 6)]
    videos = [[_noise(h, w, 10 * k + f) for f in range(5)] for k, (h, w) in enumerate(sizes)]
    expected = []
    for frames, box in zip(videos, inits):
        single.initialize(frames[0], box)
        expected.append([single.track(f) for f in frames[1:]])
    ids = ["a", "b", "c"]
    batched.initialize_many(ids, [v[0] for v in videos], inits)
    got = [batched.track_many(ids, [v[f] for v in videos]) for f in range(1, 5)]
    assert len({tuple(np.round(b, 3)) for step in got for b, _ in step}) > 3  # not all the same box
    for f in range(4):
        for k in range(3):
            np.testing.assert_allclose(got[f][k][0], expected[k][f][0], atol=1e-4)
            assert got[f][k][1] == pytest.approx(expected[k][f][1], abs=1e-5)
    # sequences can stop and join between frames
    batched.remove(["b"])
    assert batched.active_ids == ["a", "c"]
    assert len(batched.track_many(["c"], [videos[2][1]])) == 1


def test_batched_forward_is_one_call(tiny_cfg):
    model = StubModel(tiny_cfg, [0.4, 0.4, 0.6, 0.6])
    tracker = Tracker(model, TrackConfig(device="cpu", dtype="float32"))
    tracker.initialize_many([0, 1, 2], [_noise(40, 40, i) for i in range(3)], [(5, 5, 10, 10)] * 3)
    assert model.calls == []  # initialisation does not run the model (LoRAT v1)
    tracker.track_many([0, 1, 2], [_noise(40, 40, 9)] * 3)
    assert len(model.calls) == 1 and model.calls[0][1][0] == 3


# ------------------------------------------------------------------------------ model preparation
def test_lora_merged_in_place_or_on_a_copy(tiny_cfg):
    torch.manual_seed(0)
    model = lorat.create_model(tiny_cfg)
    assert has_lora(model)
    copied = Tracker(model, TrackConfig(device="cpu", dtype="float32", copy_model=True))
    assert has_lora(model) and not has_lora(copied.model)
    tracker = Tracker(model, TrackConfig(device="cpu", dtype="float32"))
    assert tracker.model is model and not has_lora(model) and not model.training
    image = _noise(50, 60, 4)
    for t in (tracker, copied):
        t.initialize(image, (10, 10, 20, 20))
    np.testing.assert_allclose(tracker.track(image)[0], copied.track(image)[0], atol=1e-4)


def test_bfloat16_on_cpu_casts_weights(tiny_model):
    tracker = Tracker(tiny_model, TrackConfig(device="cpu", dtype="bfloat16"))
    assert next(tracker.model.parameters()).dtype == torch.bfloat16
    image = _noise(50, 60, 5)
    tracker.initialize(image, (10, 10, 20, 20))
    box, score = tracker.track(image)
    assert box.shape == (4,) and np.isfinite(box).all() and 0 <= score <= 1
    with pytest.raises(ValueError, match="float16"):
        Tracker(lorat.create_model(tiny_model.cfg), TrackConfig(device="cpu", dtype="float16"))


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("box,match", [
    ((10, 10, 0, 5), "zero or negative size"),
    ((10, 10, 5, -1), "zero or negative size"),
    ((np.nan, 10, 5, 5), "NaN"),
    ((10, 10, np.inf, 5), "NaN or infinity"),
    ((100, 10, 5, 5), "outside the 60x40 image"),
    ((-20, -20, 20, 20), "outside"),
    ((1, 2, 3), "4 numbers"),
    ("abc", "not 4 numbers"),
])
def test_bad_initial_box(tiny_cfg, box, match):
    tracker = Tracker(StubModel(tiny_cfg, [0.4, 0.4, 0.6, 0.6]), TrackConfig(device="cpu", dtype="float32"))
    with pytest.raises(ValueError, match=match):
        tracker.initialize(_noise(40, 60, 0), box)
    assert tracker.active_ids == []


def test_box_partly_outside_is_accepted():
    np.testing.assert_allclose(check_init_box((-5, -5, 10, 10), 60, 40), [-5, -5, 5, 5])


@pytest.mark.parametrize("image,match", [
    (np.zeros((40, 60), np.uint8), r"\(H, W, 3\)"),
    (np.zeros((40, 60, 4), np.uint8), r"\(H, W, 3\)"),
    (np.zeros((0, 60, 3), np.uint8), "H, W > 0"),
    (np.zeros((40, 60, 3), np.float32), "uint8"),
    ([[0, 0, 0]], "numpy array"),
])
def test_bad_image(tiny_cfg, image, match):
    tracker = Tracker(StubModel(tiny_cfg, [0.4, 0.4, 0.6, 0.6]), TrackConfig(device="cpu", dtype="float32"))
    with pytest.raises(ValueError, match=match):
        tracker.initialize(image, (1, 1, 5, 5))
    tracker.initialize(_noise(40, 60, 0), (1, 1, 5, 5))
    with pytest.raises(ValueError, match=match):
        tracker.track(image)


def test_call_order_and_ids(tiny_cfg):
    tracker = Tracker(StubModel(tiny_cfg, [0.4, 0.4, 0.6, 0.6]), TrackConfig(device="cpu", dtype="float32"))
    with pytest.raises(ValueError, match="initialize"):
        tracker.track(_noise(40, 60, 0))
    with pytest.raises(ValueError, match="duplicate"):
        tracker.initialize_many(["a", "a"], [_noise(40, 60, 0)] * 2, [(1, 1, 5, 5)] * 2)
    # a bad box in a batch leaves no sequence half-initialised
    with pytest.raises(ValueError, match="outside"):
        tracker.initialize_many(["a", "b"], [_noise(40, 60, 0)] * 2, [(1, 1, 5, 5), (500, 1, 5, 5)])
    assert tracker.active_ids == []
    with pytest.raises(ValueError, match=r"\['zz'\] were not initialised"):
        tracker.track_many(["zz"], [_noise(40, 60, 0)])
    with pytest.raises(ValueError, match="window_penalty"):
        TrackConfig(window_penalty=2).validate()
