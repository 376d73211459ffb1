"""SPMTrack reference memory: the template schedule, pruning that never changes a selection, crops, states."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lorat.data.transforms import IMAGENET_MEAN, IMAGENET_STD, image_mean
from lorat.track.spmtrack_memory import ReferenceMemory, StateTokens, memory_entry, template_indices


def test_first_frames_repeat_entries():
    assert template_indices(1) == [0, 0, 0]
    assert template_indices(2) == [0, 1, 1]
    assert template_indices(3) == [0, 1, 2]
    assert template_indices(3, "thirds") == [0, 1, 2]


@pytest.mark.parametrize("t", [4, 5, 9, 10, 100, 1001, 2500])
def test_default_schedule_formula(t):
    d = t // 2
    assert template_indices(t) == sorted({0, d // 2, d + d // 2})
    assert template_indices(t, "thirds") == sorted({0, t // 3, 2 * t // 3})


def test_schedule_slots_are_distinct_monotone_and_in_memory():
    for schedule in ("default", "thirds"):
        prev = [0, 0, 0]
        for t in range(1, 3000):
            idx = template_indices(t, schedule)
            assert len(idx) == 3 and max(idx) < t
            if t >= 4:
                assert len(set(idx)) == 3
            assert all(a >= b for a, b in zip(idx, prev)), (schedule, t)  # what makes pruning safe
            prev = idx


def test_bad_schedule_and_frame():
    with pytest.raises(ValueError, match="schedule"):
        template_indices(5, "quarters")
    with pytest.raises(ValueError, match="t >= 1"):
        template_indices(0)


@pytest.mark.parametrize("schedule", ["default", "thirds"])
@pytest.mark.parametrize("known_length", [False, True])
def test_pruning_never_changes_a_selection(schedule, known_length):
    n = 1500
    full = ReferenceMemory(schedule, prune=False)
    pruned = ReferenceMemory(schedule, length=n if known_length else None)
    full.append(0)
    pruned.append(0)
    for t in range(1, n):
        assert pruned.select() == full.select() == template_indices(t, schedule)
        full.append(t)
        pruned.append(t)
    assert len(full) == n
    assert pruned.peak < n  # bounded below the frame count
    if known_length:
        assert len(pruned) == 1  # after the last frame only entry 0 is left


def test_peak_memory_numbers():
    """Peak kept entries on a 10,000-frame sequence (recorded in docs/spmtrack.md)."""
    peaks = {}
    for length in (None, 10_000):
        mem = ReferenceMemory("default", length=length)
        for t in range(10_000):
            mem.append(t)
        peaks[length] = mem.peak
    assert peaks[None] <= 0.76 * 10_000
    assert peaks[10_000] <= 0.51 * 10_000
    assert peaks[10_000] < peaks[None]


def test_select_errors():
    mem = ReferenceMemory()
    mem.append("m0")
    with pytest.raises(ValueError, match="only 1 were appended"):
        mem.select(3)
    for i in range(1, 40):
        mem.append(f"m{i}")
    with pytest.raises(KeyError, match="pruned"):
        mem.select(8)  # a past frame: its middle entry is gone
    assert mem.select() == ["m0", f"m{(40 // 2) // 2}", f"m{40 // 2 + (40 // 2) // 2}"]


def test_memory_entry_crops_around_box_with_own_mean():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(90, 120, 3), dtype=np.uint8)
    box = np.array([2.0, 3.0, 30.0, 40.0])  # near the corner: the crop needs padding
    crop, mask = memory_entry(image, box, template_size=56, feat_size=4)
    assert crop.shape == (3, 56, 56) and crop.dtype == torch.float32
    assert mask.shape == (4, 4) and mask.dtype == torch.int64
    assert mask.sum() > 0 and mask[1:3, 1:3].all()  # the box is centred in the crop
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    pad = ((image_mean(image).view(3, 1, 1) / 255.0) - mean) / std
    assert torch.allclose(crop[:, 0, 0:1], pad[:, 0], atol=1e-5)  # top-left corner is pad: this frame's mean
    with pytest.raises(ValueError, match="finite xyxy"):
        memory_entry(image, [1.0, 2.0, float("nan"), 4.0], 56, 4)


def test_state_tokens_propagate_and_as_shipped():
    ids = ["a", "b"]
    st = StateTokens()
    assert st.batch(ids) is None
    h = torch.randn(2, 8, requires_grad=True)
    st.update(ids, h)
    got = st.batch(ids)
    assert torch.equal(got, h.detach()) and not got.requires_grad
    st.release("a")
    st.release("never-seen")  # ignored
    got = st.batch(ids)
    assert torch.equal(got[0], torch.zeros(8)) and torch.equal(got[1], h[1].detach())
    shipped = StateTokens(propagate=False)
    shipped.update(ids, h)
    assert shipped.batch(ids) is None and shipped.get("a") is None
    with pytest.raises(ValueError, match="2 ids but 3 states"):
        st.update(ids, torch.zeros(3, 8))
