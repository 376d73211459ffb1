"""The one record every dataset reader returns: a tracked object in a list of frames."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Sequence:
    """One tracked object over a list of frames.

    Attributes:
        name: sequence name as the benchmark spells it (e.g. ``airplane-1``, ``GOT-10k_Val_000001``).
        frames: image paths in temporal order; ``len(frames) == len(boxes)``.
        boxes: ``(N, 4)`` float64 ground truth in ``x, y, w, h`` (top-left corner, pixels). Rows that
            the benchmark does not publish (test splits) are NaN.
        visible: ``(N,)`` bool, False where the dataset flags the target as absent (LaSOT full
            occlusion or out of view, GOT-10k ``absence.label``), or None when the dataset has no flags.
        dataset: short dataset name (``lasot``, ``got10k``, ...).
        object_class: class label where the dataset has one.
        language: natural-language description where the dataset has one (LaSOT, TNL2K).
        extra: anything else a reader wants to keep (e.g. GOT-10k ``cover.label``).
        sampling_unit: what the training sampler draws uniformly. Sequences sharing a unit are tracks of
            one video or image (COCO: the objects of one image); the sampler picks a unit, then one of its
            tracks uniformly, and a dataset's size for the sampling weights is its number of units.
            None: the sequence is a unit of its own (every video dataset).
    """

    name: str
    frames: list[Path]
    boxes: np.ndarray
    visible: np.ndarray | None = None
    dataset: str = ""
    object_class: str | None = None
    language: str | None = None
    extra: dict = field(default_factory=dict)
    sampling_unit: str | None = None

    def __len__(self) -> int:
        return len(self.frames)
