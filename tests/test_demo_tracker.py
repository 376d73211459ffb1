"""``TrackConfig.size_lr``: the state's size follows the prediction at that rate; 1.0 is the official rule."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lorat.track.tracker import TrackConfig, Tracker


class FixedBoxModel(nn.Module):
    """Peak at the centre cell; every cell predicts the same normalised xyxy box (a target twice as large)."""

    def __init__(self, cfg, box):
        super().__init__()
        self.cfg = cfg
        self.box = torch.tensor(box, dtype=torch.float32)
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, z, x, z_feat_mask):
        n = self.cfg.search_feat
        score = torch.full((x.shape[0], n, n), -10.0)
        score[:, n // 2, n // 2] = 10.0
        return {"score_map": score, "boxes": self.box.expand(x.shape[0], n, n, 4).clone()}


def _track_two_frames(tiny_cfg, size_lr):
    # The predicted box (crop coordinates) is centred and half the crop wide; with search area factor
    # 4 that is twice the initial target's side, so an unsmoothed state doubles its size every frame.
    model = FixedBoxModel(tiny_cfg, [0.25, 0.25, 0.75, 0.75])
    tracker = Tracker(model, TrackConfig(device="cpu", dtype="float32", size_lr=size_lr, verbose=False))
    image = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    tracker.initialize(image, (190, 190, 20, 20))
    reported = [tracker.track(image)[0] for _ in range(2)]
    return tracker, reported


@pytest.mark.parametrize("size_lr", [1.0, 0.3])
def test_size_lr_blends_state_size_and_keeps_reported_box(tiny_cfg, size_lr):
    tracker, reported = _track_two_frames(tiny_cfg, size_lr)
    state = tracker.states["__single__"]
    side = 20.0
    for _ in range(2):  # each frame predicts twice the state's side; the state moves by size_lr of the way
        side = (1 - size_lr) * side + size_lr * 2 * side
    np.testing.assert_allclose(state.box[2:] - state.box[:2], [side, side], rtol=0.02)
    np.testing.assert_allclose((state.box[:2] + state.box[2:]) / 2, [200, 200], atol=1.0)
    # The reported box is the prediction (twice the side the crop was cut around), not the smoothed state.
    prev_side = (1 - size_lr) * 20 + size_lr * 40
    np.testing.assert_allclose(reported[1][2:], [2 * prev_side, 2 * prev_side], rtol=0.02)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_size_lr_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="size_lr"):
        TrackConfig(size_lr=bad).validate()
