"""SPMTrack's training tuplet sampling: 3 templates and 2 search frames from one track.

The official algorithm (``SPMTrack_train/training_tuplet_sampling/_algos.py``; defaults of
``config/SPMTrack/run.yaml``):

1. a base template ``z*`` uniform over the valid frames;
2. 2 more templates drawn **with replacement** from the valid frames in ``[z* - 200, z* + 200]`` other than ``z*``;
   with fewer than 3 such candidates ``z*`` is redrawn. The 3 templates are sorted;
3. left candidates: valid frames in ``[z_min - 400, z_min)``; right candidates: valid frames in
   ``(z_max, z_max + 400]``;
4. 2 search frames with replacement from one side: a side with fewer than 2 candidates is excluded, and when both
   qualify the side is a coin flip;
5. when neither side qualifies the template range grows by 5 on each side and 3-4 are retried, at most 20 times;
6. all 5 indices are sorted ascending or descending (coin flip); **the first 3 become the templates and the last 2
   the searches**, so templates always precede searches in the chosen time direction;
7. single-frame tracks (COCO images): all 5 indices are frame 0.

Deviations, all so that sampling is reproducible and terminates: the random source is the caller's
``numpy.random.Generator`` (the official code mixes in Python's unseeded global ``random``); the base redraw of
step 2 is capped (``max_base_redraws``) instead of looping forever, and a multi-frame track with fewer than 4 valid
frames is rejected up front (officially an endless loop). Both raise :class:`TupletSamplingError`, which a
dataset wrapper can catch to draw another track.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lorat.data.sampler import valid_frame_mask
from lorat.data.sequence import Sequence


class TupletSamplingError(ValueError):
    """No tuplet can be drawn from this track (too few valid frames, or the retries ran out)."""


@dataclass(frozen=True)
class TupletSamplingConfig:
    """Official defaults: ``max_gaps`` 200, ``MAX_SAMPLE_INTERVAL`` 400, 3 templates, 2 searches, auto-extend 5 x 20."""

    num_templates: int = 3
    num_search_frames: int = 2
    max_gap: int = 200
    max_search_interval: int = 400
    extend_step: int = 5
    extend_max_retry: int = 20
    max_base_redraws: int = 1000


def _valid_in(mask: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Indices of valid frames in the closed range ``[lo, hi]`` (clipped to the track)."""
    lo, hi = max(lo, 0), min(hi, len(mask) - 1)
    if hi < lo:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(mask[lo:hi + 1]) + lo


def sample_tuplet(mask: np.ndarray, rng: np.random.Generator, cfg: TupletSamplingConfig = TupletSamplingConfig(),
                  name: str = "track") -> tuple[list[int], list[int]]:
    """``(template frame indices, search frame indices)`` of one training tuplet from a track's valid-frame mask.

    ``mask``: (N,) bool, True where the frame is usable (:func:`lorat.data.sampler.valid_frame_mask`).
    """
    mask = np.asarray(mask, dtype=bool)
    nt, ns = cfg.num_templates, cfg.num_search_frames
    if len(mask) == 1:
        if not mask[0]:
            raise TupletSamplingError(f"{name}: its only frame is not valid")
        return [0] * nt, [0] * ns
    valid = np.flatnonzero(mask)
    if valid.size < nt + 1:
        raise TupletSamplingError(f"{name}: {valid.size} valid frames; a tuplet needs at least {nt + 1} "
                                  "(the official sampler would loop forever)")
    for _ in range(cfg.max_base_redraws):
        base = int(rng.choice(valid))
        cand = _valid_in(mask, base - cfg.max_gap, base + cfg.max_gap)
        cand = cand[cand != base]
        if cand.size < nt:  # official: redraw the base template
            continue
        templates = sorted([base] + [int(v) for v in rng.choice(cand, size=nt - 1, replace=True)])
        z_min, z_max = templates[0], templates[-1]
        for _ in range(cfg.extend_max_retry + 1):
            left = _valid_in(mask, z_min - cfg.max_search_interval, z_min - 1)
            right = _valid_in(mask, z_max + 1, z_max + cfg.max_search_interval)
            sides = [s for s in (left, right) if s.size >= ns]
            if sides:
                side = sides[0] if len(sides) == 1 else sides[int(rng.random() < 0.5)]
                searches = [int(v) for v in rng.choice(side, size=ns, replace=True)]
                frames = sorted(templates + searches, reverse=bool(rng.random() < 0.5))
                return frames[:nt], frames[nt:]
            z_min, z_max = z_min - cfg.extend_step, z_max + cfg.extend_step
        raise TupletSamplingError(f"{name}: no {ns} search frames around templates {templates} after "
                                  f"{cfg.extend_max_retry} range extensions")
    raise TupletSamplingError(f"{name}: no base template with {nt} neighbours within {cfg.max_gap} frames after "
                              f"{cfg.max_base_redraws} draws")


def sample_sequence_tuplet(sequence: Sequence, rng: np.random.Generator,
                           cfg: TupletSamplingConfig = TupletSamplingConfig()) -> tuple[list[int], list[int]]:
    """:func:`sample_tuplet` over a :class:`lorat.data.sequence.Sequence` (valid = visible with a positive box)."""
    return sample_tuplet(valid_frame_mask(sequence), rng, cfg, name=f"{sequence.dataset}/{sequence.name}")


__all__ = ["TupletSamplingError", "TupletSamplingConfig", "sample_tuplet", "sample_sequence_tuplet"]
