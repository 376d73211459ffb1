"""SPMTrack tuplet sampling: windows, role reassignment after the random sort, edge cases."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lorat.data.sequence import Sequence
from lorat.train.spmtrack_sampler import (
    TupletSamplingConfig,
    TupletSamplingError,
    sample_sequence_tuplet,
    sample_tuplet,
)


def _check(mask, templates, searches):
    assert len(templates) == 3 and len(searches) == 2
    frames = templates + searches
    assert all(mask[f] for f in frames)
    asc = frames == sorted(frames)
    assert asc or frames == sorted(frames, reverse=True)  # templates precede searches in the chosen direction
    return asc


def test_long_track_windows_and_both_directions():
    mask = np.ones(3000, dtype=bool)
    mask[::7] = False  # invalid frames are never picked
    rng = np.random.default_rng(0)
    directions = set()
    for _ in range(500):
        templates, searches = sample_tuplet(mask, rng)
        directions.add(_check(mask, templates, searches))
        frames = sorted(templates + searches)
        # 3 template draws within +-200 of one base, searches within 400 of the template range
        assert frames[-1] - frames[0] <= 400 + 400 + 400
    assert directions == {True, False}


def test_roles_are_reassigned_after_sorting():
    """With searches drawn left and an ascending sort, the earliest frames become templates."""
    mask = np.zeros(2000, dtype=bool)
    mask[1000:1004] = True  # templates must come from here ...
    mask[700:702] = True  # ... and searches only from the left side
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(200):
        templates, searches = sample_tuplet(mask, rng)
        _check(mask, templates, searches)
        seen.add(min(templates) < 900)  # ascending: the left-side frames are now templates
    assert seen == {True, False}


def test_deterministic_given_rng():
    mask = np.ones(500, dtype=bool)
    a = [sample_tuplet(mask, np.random.default_rng(7)) for _ in range(3)]
    b = [sample_tuplet(mask, np.random.default_rng(7)) for _ in range(3)]
    assert a == b


def test_single_frame_track_repeats_the_image():
    assert sample_tuplet(np.array([True]), np.random.default_rng(0)) == ([0, 0, 0], [0, 0])
    with pytest.raises(TupletSamplingError, match="only frame"):
        sample_tuplet(np.array([False]), np.random.default_rng(0))


def test_too_few_valid_frames_is_a_clear_error():
    mask = np.array([True, True, False, True, False])
    with pytest.raises(TupletSamplingError, match="3 valid frames; a tuplet needs at least 4"):
        sample_tuplet(mask, np.random.default_rng(0), name="seq-x")


def test_no_search_side_raises_after_extensions():
    mask = np.zeros(10, dtype=bool)
    mask[:4] = True  # templates exhaust the track: at most one search candidate on either side
    cfg = TupletSamplingConfig(max_gap=1, max_base_redraws=50)
    with pytest.raises(TupletSamplingError, match="range extensions|no base template"):
        for seed in range(20):
            sample_tuplet(mask, np.random.default_rng(seed), cfg)


def test_auto_extend_reaches_far_search_frames():
    mask = np.zeros(1000, dtype=bool)
    mask[0:4] = True
    mask[420:422] = True  # beyond 400 from any template: found only after growing the range
    cfg = TupletSamplingConfig(max_gap=3)
    far = 0
    for seed in range(60):
        templates, searches = sample_tuplet(mask, np.random.default_rng(seed), cfg)
        _check(mask, templates, searches)
        far += bool(set(templates + searches) & {420, 421})  # > 400 from every template: needs the extension
    assert far > 0


def test_sequence_wrapper_uses_visibility():
    boxes = np.tile([1.0, 1.0, 5.0, 5.0], (50, 1))
    visible = np.ones(50, dtype=bool)
    visible[10:40] = False
    seq = Sequence("s", [Path(f"{i}.jpg") for i in range(50)], boxes, visible, dataset="lasot")
    templates, searches = sample_sequence_tuplet(seq, np.random.default_rng(0))
    assert all(visible[f] for f in templates + searches)
