"""Template/search pair sampling over dataset readers' ``list[Sequence]`` (see ``docs/datasets.md``, sampling).

Reproducibility contract: item ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)`` and the data.
Every item owns a PCG64 generator seeded with ``(seed, e, i)`` (the official pipeline seeds one per batch
slot instead, which ties results to the number of workers), and the epoch's list of (dataset, sequence)
draws is a pure function of ``(seed, e)``. So results do not depend on the number of DataLoader workers,
on the batch size, on the number of ranks, or on where a run was resumed.

Distributed training: the per-epoch list is already globally shuffled, so every rank can take its own
slice of each global batch; the trainer's batch sampler (:class:`lorat.train.trainer.RankBatches`, the one
sampler of the library) does that and passes plain indices, which use the epoch set by
:meth:`PairDataset.set_epoch` (set before each epoch's iterator is built, so workers see it unless
``persistent_workers=True``). ``(epoch, index)`` keys are accepted too and need no epoch state.
"""
from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence as Seq
from typing import Any

import numpy as np
import torch
import torch.utils.data

from lorat import boxes as bx
from lorat.data.images import read_image
from lorat.data.sequence import Sequence
from lorat.data.transforms import collate_pairs

MAX_GAP = 100
"""Largest template-search frame distance (``max_gaps: 100``, sample mode ``interval``)."""

_PLAN_TAG = 0x504C414E  # separates the epoch-plan stream from the per-item streams
_ITEM_TAG = 0x4954454D


# ======================================================================================== weights
def dataset_sampling_weights(num_sequences: Seq[int], groups: Seq[Seq[int]] | None = None,
                             group_weights: Seq[float] | None = None) -> np.ndarray:
    """Per-dataset sampling probabilities (official ``get_dataset_sampling_weight``).

    Each group gets ``group_weight`` (default 1.0), split among its datasets in proportion to their
    sequence counts; a dataset in no group forms its own group of weight 1. The result is normalised.
    ``groups=None`` makes every dataset its own group, i.e. equal shares: the full LoRAT protocol
    (GOT-10k, LaSOT, TrackingNet, COCO at 25 % each). One group holding every dataset gives weights
    proportional to sequence counts.
    """
    n = len(num_sequences)
    groups = [list(g) for g in groups] if groups is not None else [[i] for i in range(n)]
    group_weights = list(group_weights) if group_weights is not None else [1.0] * len(groups)
    if len(group_weights) != len(groups):
        raise ValueError(f"{len(groups)} groups but {len(group_weights)} group weights")
    seen = [i for g in groups for i in g]
    if len(seen) != len(set(seen)) or any(not 0 <= i < n for i in seen):
        raise ValueError(f"groups must hold distinct dataset indices in [0, {n}), got {groups}")
    groups += [[i] for i in range(n) if i not in set(seen)]
    group_weights += [1.0] * (len(groups) - len(group_weights))
    weights = np.zeros(n, dtype=np.float64)
    for members, gw in zip(groups, group_weights):
        sizes = np.array([num_sequences[i] for i in members], dtype=np.float64)
        if sizes.sum() > 0:
            weights[members] = sizes / sizes.sum() * gw
    if not weights.sum() > 0:
        raise ValueError("all dataset weights are zero (empty datasets?)")
    return weights / weights.sum()


def epoch_plan(num_sequences: Seq[int], weights: np.ndarray, total: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's ``(dataset_index (total,), sequence_index (total,))`` draws (official sequence picker).

    Dataset ``d`` gets ``floor(w_d * total)`` slots, the last dataset the remainder. Within a dataset the
    sequence indices are concatenated full random permutations, truncated; then the whole list is shuffled.
    """
    sizes = (np.asarray(weights, dtype=np.float64) * total).astype(np.int64)
    sizes[-1] = total - sizes[:-1].sum()
    dataset_idx, sequence_idx = [], []
    for d, (n, size) in enumerate(zip(num_sequences, sizes)):
        if size <= 0:
            continue
        if n <= 0:
            raise ValueError(f"dataset {d} has no usable sequence but weight {weights[d]:.4g}")
        chunks, have = [], 0
        while have < size:
            perm = np.arange(n, dtype=np.int64)
            rng.shuffle(perm)
            chunks.append(perm)
            have += n
        sequence_idx.append(np.concatenate(chunks)[:size])
        dataset_idx.append(np.full(size, d, dtype=np.int64))
    dataset_idx_all = np.concatenate(dataset_idx)
    sequence_idx_all = np.concatenate(sequence_idx)
    order = rng.permutation(total)
    return dataset_idx_all[order], sequence_idx_all[order]


# =================================================================================== frame pairs
def valid_frame_mask(sequence: Sequence) -> np.ndarray:
    """``(N,)`` bool: frames usable for training (object visible and a finite box with ``w, h > 0``)."""
    b = np.asarray(sequence.boxes, dtype=np.float64).reshape(-1, 4)
    with np.errstate(invalid="ignore"):
        mask = np.isfinite(b).all(axis=1) & (b[:, 2] > 0) & (b[:, 3] > 0)
    if sequence.visible is not None:
        mask &= np.asarray(sequence.visible, dtype=bool)
    return mask


def sample_frame_pair(mask: np.ndarray, rng: np.random.Generator, max_gap: int = MAX_GAP) -> tuple[int, int]:
    """Template and search frame indices of one positive pair (official ``interval`` sampling).

    ``z`` is uniform over valid frames; ``x`` is uniform over valid frames in ``[z - max_gap, z + max_gap]``
    other than ``z``. Without a candidate (one-frame sequences such as COCO objects, or isolated valid
    frames) ``x = z``: the same image, cropped differently.
    """
    valid = np.flatnonzero(mask)
    if valid.size == 0:
        raise ValueError("sequence has no valid frame")
    z = int(rng.choice(valid))
    if len(mask) == 1:
        return z, z
    lo, hi = max(z - max_gap, 0), min(z + max_gap + 1, len(mask))
    window = np.array(mask[lo:hi], dtype=bool, copy=True)
    window[z - lo] = False
    candidates = np.flatnonzero(window) + lo
    if candidates.size == 0:
        return z, z
    return z, int(rng.choice(candidates))


read_image_rgb = read_image
"""The frame reader of training: :func:`lorat.data.images.read_image` (the one tracking uses too)."""


def sampling_units(sequences: Seq[Sequence]) -> list[np.ndarray]:
    """Group ``sequences`` into sampling units, in order of first appearance.

    Sequences with the same :attr:`Sequence.sampling_unit` form one unit (COCO: the objects of one image);
    a sequence without one is a unit of its own. Returns, per unit, the int64 indices of its sequences.
    """
    units: list[list[int]] = []
    where: dict[str, int] = {}
    for i, seq in enumerate(sequences):
        key = seq.sampling_unit
        if key is None:
            units.append([i])
        elif key in where:
            units[where[key]].append(i)
        else:
            where[key] = len(units)
            units.append([i])
    return [np.asarray(u, dtype=np.int64) for u in units]


# ======================================================================================= dataset
class PairDataset(torch.utils.data.Dataset):
    """Training pairs for a Siamese tracker; ``len()`` = ``samples_per_epoch``.

    Args:
        datasets: one ``list[Sequence]`` per dataset (as the readers return them). Sequences without a
            valid frame (see :func:`valid_frame_mask`) are dropped. The rest are grouped into sampling
            units (:attr:`Sequence.sampling_unit`; COCO: one unit per image): the epoch plan and the weights
            count units, and an item takes one track of its unit uniformly.
        transform: ``transform(z_image, z_box, x_image, x_box, rng) -> dict | None`` with ``(H, W, 3)``
            uint8 RGB frames and xyxy boxes in image pixels, e.g. :class:`lorat.data.transforms.
            SiameseTrainTransform`. ``None`` rejects the pair.
        samples_per_epoch: items per epoch (official 131,072; validation 4,096).
        seed: run seed; with the epoch and the index it determines every item.
        weights: relative per-dataset weights (normalised), e.g. ``[1, 1, 1, 1]``; default equal shares.
        groups, group_weights: grouped weighting instead of ``weights``, see :func:`dataset_sampling_weights`.
        max_gap: search-frame window half-width in frames.
        max_redraws: give up (``RuntimeError``) after this many rejected draws for one item.
        negative_prob: share of *negative pairs* (DaSiamRPN's distractor-aware training, not in LoRAT's recipe):
            the template as usual, the search crop cut around another track's object, every cell a
            negative (empty ``positive_indices``), so the score has to come from the template, not from
            "the object in the middle". 0 (default) leaves the sampler's random stream as the official one.
        image_reader: ``path -> (H, W, 3) uint8 RGB``; default :func:`lorat.data.images.read_image`.

    Items are the transform's dict plus ``pair``: int64 ``(dataset, sequence, z_frame, x_frame)`` of the
    pair finally used (``sequence`` indexes ``self.sequences[dataset]``, the track, not the unit; for a
    negative pair ``x_frame`` is a frame of the other track) and, when ``negative_prob > 0``, ``negative``
    (bool) and ``x_track``: int64 ``(dataset, sequence)`` of the search frame.
    A rejected pair (failed crop checks, or a box that is empty once clipped to the
    image) is redrawn from a random dataset (by weight) and a random unit, with the item's generator
    (official behaviour). Keys are an index (current epoch, see :meth:`set_epoch`) or ``(epoch, index)``.
    """

    def __init__(self, datasets: Seq[Seq[Sequence]], transform: Callable[..., dict | None],
                 samples_per_epoch: int, seed: int = 42, weights: Seq[float] | None = None,
                 groups: Seq[Seq[int]] | None = None, group_weights: Seq[float] | None = None,
                 max_gap: int = MAX_GAP, max_redraws: int = 100,
                 image_reader: Callable[[Any], np.ndarray] = read_image, negative_prob: float = 0.0):
        if samples_per_epoch <= 0:
            raise ValueError(f"samples_per_epoch must be positive, got {samples_per_epoch}")
        self.sequences: list[list[Sequence]] = []
        self.masks: list[list[np.ndarray]] = []
        for ds in datasets:
            kept = [(s, m) for s in ds for m in [valid_frame_mask(s)] if m.any()]
            self.sequences.append([s for s, _ in kept])
            self.masks.append([m for _, m in kept])
        self.units: list[list[np.ndarray]] = [sampling_units(seqs) for seqs in self.sequences]
        """Per dataset, per unit: int64 indices into ``self.sequences[dataset]`` of the unit's tracks."""
        self.num_sequences = [len(u) for u in self.units]  # what the plan draws from: units
        if weights is not None:
            if groups is not None or group_weights is not None:
                raise ValueError("pass either weights or groups/group_weights, not both")
            if len(weights) != len(self.sequences):
                raise ValueError(f"{len(weights)} weights for {len(self.sequences)} datasets")
            group_weights = weights  # one group per dataset
        self.weights = dataset_sampling_weights(self.num_sequences, groups, group_weights)
        self.transform = transform
        self.samples_per_epoch = int(samples_per_epoch)
        self.seed = int(seed)
        self.max_gap = int(max_gap)
        self.max_redraws = int(max_redraws)
        if not 0.0 <= negative_prob < 1.0:
            raise ValueError(f"negative_prob={negative_prob} must be in [0, 1)")
        self.negative_prob = float(negative_prob)
        self.image_reader = image_reader
        self.epoch = 0
        self._plan: tuple[int, np.ndarray, np.ndarray] | None = None

    collate = staticmethod(collate_pairs)
    """Batch collation for ``DataLoader(collate_fn=dataset.collate)`` (:func:`collate_pairs`)."""

    def __len__(self) -> int:
        return self.samples_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch used by integer keys (call before building each epoch's iterator)."""
        self.epoch = int(epoch)

    def plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """``(dataset_index, sequence_index)`` arrays of an epoch, computed once per process and epoch."""
        if self._plan is None or self._plan[0] != epoch:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, 0, _PLAN_TAG]))
            self._plan = (epoch, *epoch_plan(self.num_sequences, self.weights, self.samples_per_epoch, rng))
        return self._plan[1], self._plan[2]

    def item_rng(self, epoch: int, index: int) -> np.random.Generator:
        """The generator owned by item ``index`` of ``epoch``."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, epoch, index, _ITEM_TAG]))

    def _load(self, sequence: Sequence, frame: int) -> tuple[np.ndarray, np.ndarray]:
        image = self.image_reader(sequence.frames[frame])
        h, w = image.shape[:2]
        box = bx.clip_to_image(bx.xywh_to_xyxy(np.asarray(sequence.boxes[frame], dtype=np.float64)), w, h)
        return image, box

    def draw(self, key: int | tuple[int, int], attempt: Callable[..., dict | None], what: str,
             hint: str) -> dict:
        """The item ``key`` (an index of the current epoch, or ``(epoch, index)``): its planned dataset and unit,
        a track of the unit, ``attempt(d, s, sequence, rng)`` -> sample or None (rejected); after a rejection
        a random dataset (by weight) and unit, up to ``max_redraws`` times, all from the item's generator.

        Subclasses that build other samples from the same plan (several frames, ...) pass their own
        ``attempt``; ``what`` / ``hint`` name the sample in the error when every draw is rejected.
        """
        epoch, index = (int(key[0]), int(key[1])) if isinstance(key, (tuple, list)) else (self.epoch, int(key))
        if not 0 <= index < self.samples_per_epoch:
            raise IndexError(f"index {index} out of range for {self.samples_per_epoch} samples per epoch")
        dataset_idx, unit_idx = self.plan(epoch)
        d, u = int(dataset_idx[index]), int(unit_idx[index])
        rng = self.item_rng(epoch, index)
        for _ in range(self.max_redraws):
            tracks = self.units[d][u]
            # a one-track unit (every video) draws nothing here, so its stream is that of a plain sequence
            s = int(tracks[0] if len(tracks) == 1 else tracks[rng.integers(0, len(tracks))])
            sample = attempt(d, s, self.sequences[d][s], rng)
            if sample is not None:
                return sample
            # rejected: redraw with index=None semantics (random dataset by weight, random unit)
            d = int(rng.choice(len(self.weights), p=self.weights))
            u = int(rng.integers(0, self.num_sequences[d]))
        raise RuntimeError(f"no valid training {what} after {self.max_redraws} draws for epoch {epoch}, "
                           f"item {index}; {hint}")

    def _pair(self, d: int, s: int, sequence: Sequence, rng: np.random.Generator) -> dict | None:
        z, x = sample_frame_pair(self.masks[d][s], rng, self.max_gap)
        # a negative pair: the search crop is cut around another track's object (drawn only when enabled, so
        # the official stream is unchanged at 0)
        negative = self.negative_prob > 0 and rng.random() < self.negative_prob
        xd, xs, x_sequence = d, s, sequence
        if negative:
            xd, xs, x = self._other_frame(d, s, rng)
            x_sequence = self.sequences[xd][xs]
        z_image, z_box = self._load(sequence, z)
        x_image, x_box = (z_image, z_box) if (xd, xs, x) == (d, s, z) else self._load(x_sequence, x)
        if not (bx.is_valid(z_box) and bx.is_valid(x_box)):
            return None
        sample = self.transform(z_image, z_box, x_image, x_box, rng)
        if sample is not None:
            sample["pair"] = torch.tensor([d, s, z, x], dtype=torch.int64)
            if self.negative_prob > 0:
                sample["negative"] = torch.tensor(negative)
                sample["x_track"] = torch.tensor([xd, xs], dtype=torch.int64)  # where the search frame is from
            if negative:
                sample["positive_indices"] = sample["positive_indices"][:0]  # every cell is background
        return sample

    def _other_frame(self, d: int, s: int, rng: np.random.Generator) -> tuple[int, int, int]:
        """``(dataset, track, frame)`` of a random valid frame of a random track other than ``(d, s)``."""
        for _ in range(self.max_redraws):
            od = int(rng.choice(len(self.weights), p=self.weights))
            tracks = self.units[od][int(rng.integers(0, self.num_sequences[od]))]
            os_ = int(tracks[rng.integers(0, len(tracks))])
            if (od, os_) != (d, s):
                valid = np.flatnonzero(self.masks[od][os_])
                return od, os_, int(valid[rng.integers(0, len(valid))])
        raise RuntimeError("negative pairs need at least two tracks with valid frames")

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        return self.draw(key, self._pair, "pair", "check the boxes and the transform's size limits")


__all__ = ["MAX_GAP", "dataset_sampling_weights", "epoch_plan", "valid_frame_mask", "sample_frame_pair",
           "read_image_rgb", "sampling_units", "PairDataset"]
