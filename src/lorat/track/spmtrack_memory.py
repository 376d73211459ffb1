"""SPMTrack's reference-frame memory, its template schedule and the per-sequence target state.

Official inference (``pipelines/SPMTrack``):

* frame 0's template crop (area factor 2, padded with frame 0's mean) and its foreground mask are memory
  entry 0; the model is not run at initialisation;
* after every tracked frame ``t`` the frame is cropped around the *predicted* box (area factor 2, padded with
  **that frame's** mean) and appended with the mask of the predicted box: memory entry ``t``. No confidence
  gating;
* the templates used at frame ``t`` (when entries ``0..t-1`` exist) are entries ``[0,0,0]``, ``[0,1,1]``,
  ``[0,1,2]`` for ``t = 1, 2, 3`` and, from ``t = 4`` on, ``unique(0, d//2, d + d//2)`` with ``d = t//2``
  (about frame 0, t/4 and 3t/4). For ``t >= 4`` the three are always distinct (``d >= 2`` gives
  ``0 < d//2 < d + d//2 < t``). The LaSOT schedule of the SPMTrack repository's B-378 evaluation
  (``schedule="thirds"``) uses ``{0, t//3, 2t//3}`` instead;
* the target-state token: frame ``t`` is fed ``h_{t-1}`` (``None`` on the first tracked frame), stored per
  sequence. ``StateTokens(propagate=False)`` reproduces the LoRAT-repository port as shipped, whose state cache
  never hits, so every frame runs as a first frame.

Bounded memory: every slot of the schedule is non-decreasing in ``t``, so once frame ``t`` is next, no entry
strictly between 0 and the middle slot's index at ``t`` can be picked again and it is dropped. With the
sequence length known, entries beyond what the last frame can pick are dropped too. The number of kept crops
then grows like ``t/4 .. 3t/4`` instead of ``t`` (see ``docs/spmtrack.md`` for numbers); the schedule itself
needs O(t) distinct crops, so no exact implementation can keep a constant number.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch

from lorat.data import transforms as T

SCHEDULES = ("default", "thirds")
MEMORY_AREA_FACTOR = 2.0


def template_indices(t: int, schedule: str = "default") -> list[int]:
    """Memory indices of the 3 templates for frame ``t >= 1`` (entries ``0..t-1`` exist), ascending."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown SPMTrack template schedule {schedule!r}; expected one of {SCHEDULES}")
    if t < 1:
        raise ValueError(f"template_indices needs frame t >= 1 (frame 0 initialises the memory), got {t}")
    if t <= 3:
        return [0, min(1, t - 1), t - 1]
    if schedule == "thirds":
        picks = {0, t // 3, 2 * t // 3}
    else:
        d = t // 2
        picks = {0, d // 2, d + d // 2}
    out = sorted(picks)
    if len(out) != 3:  # cannot happen for t >= 4; kept as a guard for schedule edits
        raise AssertionError(f"schedule {schedule!r} gave {out} at t={t}")
    return out


def memory_entry(image: np.ndarray, box_xyxy: Sequence[float], template_size: int, feat_size: int,
                 area_factor: float = MEMORY_AREA_FACTOR) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop one memory entry: ``(crop (3, S, S) float32 ImageNet-normalised, mask (f, f) int64)``.

    ``image``: the (H, W, 3) uint8 frame; ``box_xyxy``: the box in image pixels (frame 0: the initial box; later:
    the prediction). The crop follows the SiamFC context rule with ``area_factor`` and is padded with this
    frame's own mean; the mask marks every template cell the box (mapped with the crop's actual parameters)
    overlaps.
    """
    box = np.asarray(box_xyxy, dtype=np.float64)
    if box.shape != (4,) or not np.all(np.isfinite(box)):
        raise ValueError(f"memory_entry needs a finite xyxy box, got {box_xyxy!r}")
    pad = T.image_mean(image)
    scale, translation = T.siamfc_crop_params(box, area_factor, template_size)
    crop, scale, translation = T.crop_and_resize(image, scale, translation, template_size, pad_color=pad)
    mask = T.template_foreground_mask(T.boxes_to_crop(box, scale, translation), template_size, feat_size)
    return T.normalize(crop.div_(255.0)), torch.from_numpy(mask)


class ReferenceMemory:
    """The memory of one sequence: entries appended per frame, templates selected by the schedule, pruned.

    ``length``: the sequence's frame count when known (offline evaluation), which allows more pruning.
    Entries are opaque (e.g. ``(crop, mask)`` from :func:`memory_entry`).
    """

    def __init__(self, schedule: str = "default", length: int | None = None, prune: bool = True) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown SPMTrack template schedule {schedule!r}; expected one of {SCHEDULES}")
        if length is not None and length < 1:
            raise ValueError(f"sequence length must be >= 1, got {length}")
        self.schedule, self.length, self.prune_enabled = schedule, length, prune
        self._entries: dict[int, Any] = {}
        self.num_appended = 0
        self.peak = 0

    def __len__(self) -> int:
        """Entries currently kept."""
        return len(self._entries)

    def indices(self) -> list[int]:
        """Frame indices of the kept entries, ascending."""
        return sorted(self._entries)

    def append(self, entry: Any) -> int:
        """Store the entry of the next frame (frame ``num_appended``); returns its index, then prunes."""
        index = self.num_appended
        self._entries[index] = entry
        self.num_appended += 1
        self.peak = max(self.peak, len(self._entries))
        if self.prune_enabled:
            self.prune()
        return index

    def select(self, t: int | None = None) -> list[Any]:
        """The 3 template entries for frame ``t`` (default: the next frame, ``num_appended``)."""
        t = self.num_appended if t is None else t
        if t > self.num_appended:
            raise ValueError(f"frame {t} needs entries up to {t - 1}, only {self.num_appended} were appended")
        picks = template_indices(t, self.schedule)
        missing = [i for i in picks if i not in self._entries]
        if missing:
            raise KeyError(f"memory entries {missing} for frame {t} were pruned (frames must be tracked in order)")
        return [self._entries[i] for i in picks]

    def needed(self, i: int, t: int) -> bool:
        """Whether entry ``i`` can still be picked by some frame ``t' >= t``."""
        if i == 0:
            return True
        last = None if self.length is None else self.length - 1
        if last is not None and t > last:
            return False
        lo = template_indices(max(t, 1), self.schedule)
        hi = None if last is None else template_indices(max(last, 1), self.schedule)
        for slot in (1, 2):  # every slot's index is non-decreasing in t'
            if i >= lo[slot] and (hi is None or i <= hi[slot]):
                return True
        return False

    def prune(self) -> None:
        """Drop every entry no later frame can pick (the next frame is ``num_appended``)."""
        t = self.num_appended
        for i in [i for i in self._entries if not self.needed(i, t)]:
            del self._entries[i]


def release_freed_memory() -> bool:
    """Return freed heap memory to the operating system (glibc ``malloc_trim(0)``); False where unavailable.

    glibc serves crop-sized blocks from its heap (its mmap threshold grows past their size after the first free),
    so the kept memory crops end up between freed ones and freed per-frame temporaries (search crops, padded
    copies): those free pages stay resident, and resident memory grows several times faster than the kept
    crops. ``malloc_trim`` gives the free pages inside the heap back.
    """
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = False
    if not _LIBC:
        return False
    _LIBC.malloc_trim(0)
    return True


_LIBC: Any = None


class StateTokens:
    """The per-sequence target state ``h`` fed to the next frame (``q_t = h_{t-1} + track_query + query_embed``).

    ``propagate=False`` reproduces the LoRAT-repository port as shipped: its cache never hits, so :meth:`get`
    always returns None (every frame runs as the first).
    """

    def __init__(self, propagate: bool = True) -> None:
        self.propagate = propagate
        self._states: dict[Hashable, torch.Tensor] = {}

    def get(self, seq_id: Hashable) -> torch.Tensor | None:
        """The stored (C,) state of ``seq_id``, or None (first frame, or ``propagate=False``)."""
        return self._states.get(seq_id) if self.propagate else None

    def batch(self, ids: Sequence[Hashable]) -> torch.Tensor | None:
        """(B, C) states for ``ids``; sequences without one get zeros (``0 + track_query`` is exact). None when
        no sequence has a state."""
        states = [self.get(i) for i in ids]
        present = [s for s in states if s is not None]
        if not present:
            return None
        ref = present[0]
        return torch.stack([s if s is not None else torch.zeros_like(ref) for s in states])

    def update(self, ids: Sequence[Hashable], states: torch.Tensor) -> None:
        """Store the model's (B, C) ``state`` output for ``ids`` (detached)."""
        if len(ids) != states.shape[0]:
            raise ValueError(f"{len(ids)} ids but {states.shape[0]} states")
        if self.propagate:
            for i, s in zip(ids, states.detach()):
                self._states[i] = s.clone()  # a row of the model's output: a view would pin all its tokens

    def release(self, seq_id: Hashable) -> None:
        """Forget ``seq_id`` (unknown ids are ignored: the first frame may not have run yet)."""
        self._states.pop(seq_id, None)

    def __contains__(self, seq_id: Hashable) -> bool:
        return seq_id in self._states


__all__ = ["SCHEDULES", "MEMORY_AREA_FACTOR", "template_indices", "memory_entry", "ReferenceMemory", "StateTokens",
           "release_freed_memory"]
