"""Training-set readers: LaSOT train, GOT-10k train / vottrain, TrackingNet train, COCO 2017 train.

Training sets are cleaned as in the official LoRAT pipeline: boxes become continuous 0-based
``x1, y1, x2 = x + w, y2 = y + h``, are clipped to the image and returned again as ``x, y, w, h``;
degenerate boxes and frames the dataset flags as absent get ``visible = False`` and NaN boxes; frames
without a valid box at the head and tail of a video are cut, and videos without any are dropped.
``extra['image_size']`` is ``(width, height)`` and ``extra['first_frame']`` the index of the first kept
frame in the original video. LaSOT's 1-based boxes are shifted to 0-based (``x - 1, y - 1``) first.

COCO objects are one-frame tracks whose :attr:`~lorat.data.sequence.Sequence.sampling_unit` is their
image, so the pair sampler draws an image uniformly and then one of its objects (the official unit),
instead of favouring crowded images.

Each reader has a companion ``*_files(root)`` listing the annotation files that the index cache
(:mod:`lorat.data.index_cache`) keys on. Use :func:`lorat.data.datasets.load_training_dataset`.
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .benchmarks import (
    got10k_sequence_names,
    lasot_sequence_dir,
    lasot_split_names,
    read_got10k_sequence,
    read_lasot_sequence,
)
from .errors import DatasetFormatError, DatasetNotFoundError
from .formats import read_boxes
from .frames import FrameList
from .images import image_size
from .roots import VOTTRAIN_ENV, config_path, read_config
from .sequence import Sequence


def clean_boxes(boxes: np.ndarray, present: np.ndarray | None, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Clip ``x, y, w, h`` boxes to a ``(width, height)`` image with ``x2 = x + w`` (continuous coords).

    Returns ``(boxes, visible)``: rows that are non-finite, degenerate after clipping, or flagged absent
    by ``present`` are NaN with ``visible = False``.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w_img, h_img = size
    with np.errstate(invalid="ignore"):
        x1 = np.clip(boxes[:, 0], 0, w_img)
        y1 = np.clip(boxes[:, 1], 0, h_img)
        x2 = np.clip(boxes[:, 0] + boxes[:, 2], 0, w_img)
        y2 = np.clip(boxes[:, 1] + boxes[:, 3], 0, h_img)
        valid = np.isfinite(boxes).all(1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0) & (x2 > x1) & (y2 > y1)
    if present is not None:
        valid &= np.asarray(present, dtype=bool)
    out = np.full_like(boxes, np.nan)
    out[valid] = np.stack([x1, y1, x2 - x1, y2 - y1], 1)[valid]
    return out, valid


def training_sequence(raw: Sequence, boxes: np.ndarray, present: np.ndarray | None,
                      size: tuple[int, int], dataset: str, **extra) -> Sequence | None:
    """Clean ``boxes`` (:func:`clean_boxes`), then cut invalid head/tail frames; None when no frame is valid."""
    boxes, visible = clean_boxes(boxes, present, size)
    idx = np.flatnonzero(visible)
    if idx.size == 0:
        return None
    a, b = int(idx[0]), int(idx[-1]) + 1
    return Sequence(name=raw.name, frames=raw.frames[a:b], boxes=boxes[a:b], visible=visible[a:b],
                    dataset=dataset, object_class=raw.object_class, language=raw.language,
                    extra={"image_size": (int(size[0]), int(size[1])), "first_frame": a, **extra})


def read_lasot_train(root: Path) -> list[Sequence]:
    """LaSOT Protocol II train split (1,120 videos), cleaned; boxes shifted to 0-based."""
    out = []
    for name in lasot_split_names(root, "train"):
        raw = read_lasot_sequence(lasot_sequence_dir(root, name), name, "lasot")
        if len(raw) == 0:
            continue
        size = image_size(raw.frames[0])
        # LaSOT boxes are 1-based (MATLAB); the training pipeline works in 0-based pixels.
        seq = training_sequence(raw, raw.boxes - [1, 1, 0, 0], raw.visible, size, "lasot")
        if seq is not None:
            out.append(seq)
    return out


def lasot_train_files(root: Path) -> list[Path]:
    """Files whose change invalidates the cached LaSOT train index."""
    files = [root / "training_set.txt", root / "testing_set.txt"]
    for name in lasot_split_names(root, "train"):
        d = lasot_sequence_dir(root, name)
        files += [d / "groundtruth.txt", d / "full_occlusion.txt", d / "out_of_view.txt", d / "nlp.txt"]
    return files


def read_got10k_train(root: Path, indices: list[int] | None) -> list[Sequence]:
    """GOT-10k train, cleaned; ``indices`` (0-based into ``train/list.txt``) selects a subset."""
    names = got10k_sequence_names(root, "train")
    if indices is not None:
        names = [names[i] for i in indices]
    out = []
    for name in names:
        raw = read_got10k_sequence(root / "train" / name, "train", labels=False)
        if len(raw) == 0:
            continue
        size = raw.extra.get("image_size") or image_size(raw.frames[0])
        seq = training_sequence(raw, raw.boxes, raw.visible, size, "got10k")
        if seq is not None:
            out.append(seq)
    return out


def got10k_train_files(root: Path, names: Iterable[str]) -> list[Path]:
    """Files whose change invalidates a cached GOT-10k train index over ``names``."""
    files = [root / "train" / "list.txt"]
    for n in names:
        d = root / "train" / n
        files += [d / "groundtruth.txt", d / "absence.label", d / "meta_info.ini"]
    return files


def vottrain_split_file(root: Path) -> Path:
    """Locate the GOT-10k "vottrain" index file (7,086 0-based indices into ``train/list.txt``).

    The list is not shipped with lorat. Provide pytracking's ``ltr/data_specs/got10k_vot_train_split.txt``
    through ``$LORAT_GOT10K_VOTTRAIN_SPLIT``, the ``got10k_vottrain_split`` key of the datasets YAML file,
    or by copying it to ``<got10k root>/got10k_vot_train_split.txt`` (or ``<root>/train/``).
    """
    candidates: list[tuple[Path, str]] = []
    env = os.environ.get(VOTTRAIN_ENV)
    if env:
        candidates.append((Path(env).expanduser(), f"env {VOTTRAIN_ENV}"))
    cfg = read_config()
    if "got10k_vottrain_split" in cfg:
        candidates.append((cfg["got10k_vottrain_split"], f"config {config_path()}"))
    if candidates:  # an explicit setting must point at an existing file
        path, source = candidates[0]
        if not path.is_file():
            raise DatasetNotFoundError(f"GOT-10k vottrain split file {path} (from {source}) does not exist")
        return path
    for p in (root / "got10k_vot_train_split.txt", root / "train" / "got10k_vot_train_split.txt"):
        if p.is_file():
            return p
    raise DatasetNotFoundError(
        f"GOT-10k vottrain split file not found. It lists 7,086 0-based indices into train/list.txt, one per "
        f"line, and is not shipped with lorat: take pytracking's ltr/data_specs/got10k_vot_train_split.txt and "
        f"put it at {root / 'got10k_vot_train_split.txt'}, or point {VOTTRAIN_ENV} or the "
        f"'got10k_vottrain_split' key of {config_path()} at it")


def read_vottrain_indices(path: Path, num_train: int) -> list[int]:
    """Parse the vottrain index file, checking that every index is an integer inside ``train/list.txt``."""
    out, seen = [], set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            i = int(line)
        except ValueError:
            raise DatasetFormatError(f"{path}:{lineno}: expected a 0-based integer index, got {line!r}") from None
        if not 0 <= i < num_train:
            raise DatasetFormatError(f"{path}:{lineno}: index {i} outside train/list.txt (0..{num_train - 1})")
        if i in seen:
            raise DatasetFormatError(f"{path}:{lineno}: index {i} listed twice")
        seen.add(i)
        out.append(i)
    return out


def _vottrain_names(root: Path) -> tuple[Path, list[int], list[str]]:
    names = got10k_sequence_names(root, "train")
    split = vottrain_split_file(root)
    idx = read_vottrain_indices(split, len(names))
    return split, idx, [names[i] for i in idx]


def read_got10k_vottrain(root: Path) -> list[Sequence]:
    """GOT-10k train restricted to the vottrain list (7,086 videos), cleaned."""
    _, idx, _ = _vottrain_names(root)
    return read_got10k_train(root, idx)


def got10k_vottrain_files(root: Path) -> list[Path]:
    """Files whose change invalidates the cached vottrain index (the split file included)."""
    split, _, names = _vottrain_names(root)
    return [split] + got10k_train_files(root, names)


TRACKINGNET_CHUNKS = tuple(f"TRAIN_{i}" for i in range(12))


def trackingnet_chunks(root: Path) -> list[Path]:
    """The ``TRAIN_k`` chunk folders present under ``root`` (warns when some of the 12 are missing)."""
    present = [root / c for c in TRACKINGNET_CHUNKS if (root / c / "anno").is_dir()]
    if not present:
        raise DatasetNotFoundError(f"no TrackingNet training chunk (TRAIN_0..TRAIN_11 with anno/) under {root}")
    missing = [c for c in TRACKINGNET_CHUNKS if not (root / c / "anno").is_dir()]
    if missing:
        warnings.warn(f"TrackingNet: using {len(present)} of 12 training chunks under {root}; missing: "
                      f"{', '.join(missing)}", stacklevel=3)
    return present


def read_trackingnet_train(root: Path) -> list[Sequence]:
    """TrackingNet TRAIN_0..TRAIN_11 (the chunks present), cleaned."""
    out = []
    for chunk in trackingnet_chunks(root):
        for anno in sorted((chunk / "anno").glob("*.txt"), key=lambda p: p.name):
            gt = read_boxes(anno)
            if len(gt) == 0:
                continue
            raw = Sequence(name=anno.stem, frames=FrameList(chunk / "frames" / anno.stem, "{}.jpg", 0, len(gt)),
                           boxes=gt)
            seq = training_sequence(raw, gt, None, image_size(raw.frames[0]), "trackingnet", chunk=chunk.name)
            if seq is not None:
                out.append(seq)
    return out


def trackingnet_train_files(root: Path) -> list[Path]:
    """Files whose change invalidates the cached TrackingNet train index."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chunks = trackingnet_chunks(root)
    return [a for c in chunks for a in sorted((c / "anno").glob("*.txt"))] + [c / "anno" for c in chunks]


def coco_paths(root: Path) -> tuple[Path, Path]:
    """``(instances_train2017.json, image folder)``: ``images/train2017`` or, failing that, ``train2017``."""
    ann = root / "annotations" / "instances_train2017.json"
    img = root / "images" / "train2017"
    if not img.is_dir() and (root / "train2017").is_dir():
        img = root / "train2017"
    return ann, img


def read_coco2017_train(root: Path) -> list[Sequence]:
    """COCO 2017 train: one one-frame track per non-crowd object with a valid box, in annotation order.

    Every track's ``sampling_unit`` is its image (``"coco2017/<image id>"``): images are what the sampler
    draws uniformly, and the dataset's size for the sampling weights is its number of images.
    """
    ann_file, img_dir = coco_paths(root)
    if not ann_file.is_file():
        raise DatasetNotFoundError(f"COCO annotation file not found: {ann_file}")
    try:
        data = json.loads(ann_file.read_text(encoding="utf-8"))
        images = {im["id"]: im for im in data["images"]}
        categories = {c["id"]: c["name"] for c in data["categories"]}
        annotations = data["annotations"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DatasetFormatError(f"{ann_file}: not a COCO instances file ({type(e).__name__}: {e})") from None
    paths: dict[int, Path] = {}  # one Path object per image, shared by its objects
    out = []
    for k, ann in enumerate(annotations):
        try:
            if ann.get("iscrowd", 0):
                continue  # crowd regions are not single objects
            im = images[ann["image_id"]]
            size = (int(im["width"]), int(im["height"]))
            bbox = np.asarray(ann["bbox"], dtype=np.float64).reshape(1, 4)
            cls = categories.get(ann.get("category_id"))
            file_name = im["file_name"]
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetFormatError(f"{ann_file}: annotations[{k}] is malformed ({type(e).__name__}: {e})") from None
        boxes, visible = clean_boxes(bbox, None, size)
        if not visible[0]:
            continue
        frame = paths.setdefault(im["id"], img_dir / file_name)
        out.append(Sequence(name=f"{Path(file_name).stem}_{ann['id']}", frames=[frame], boxes=boxes, visible=visible,
                            dataset="coco2017", object_class=cls, sampling_unit=f"coco2017/{im['id']}",
                            extra={"image_size": size, "first_frame": 0, "image_id": im["id"],
                                   "annotation_id": ann["id"]}))
    return out


def coco_train_files(root: Path) -> list[Path]:
    """Files whose change invalidates the cached COCO index (the annotation JSON)."""
    return [coco_paths(root)[0]]


__all__ = ["clean_boxes", "training_sequence", "read_lasot_train", "lasot_train_files", "read_got10k_train",
           "got10k_train_files", "vottrain_split_file", "read_vottrain_indices", "read_got10k_vottrain",
           "got10k_vottrain_files", "TRACKINGNET_CHUNKS", "trackingnet_chunks", "read_trackingnet_train",
           "trackingnet_train_files", "coco_paths", "read_coco2017_train", "coco_train_files"]
