"""Dataset roots, training-set readers with an index cache, and ``lorat data [check]``.

Public API::

    load_benchmark("lasot")                  # list[Sequence], boxes as the benchmark files write them
    load_training_dataset("got10k_vottrain") # list[Sequence], cleaned for training, cached on disk
    dataset_root("lasot")                    # Path, from LORAT_LASOT_ROOT or the datasets.yaml file
    check_datasets()                         # list[DatasetStatus] for every known dataset

Roots come from environment variables ``LORAT_<KEY>_ROOT`` (e.g. ``LORAT_GOT10K_ROOT``) or from one
YAML file, ``~/.config/lorat/datasets.yaml`` by default (``$LORAT_DATASETS`` to use another)::

    lasot: /data/LaSOT
    got10k: /data/GOT-10k
    got10k_vottrain_split: /data/got10k_vot_train_split.txt   # optional, see below

Training sets are cleaned as in the official LoRAT pipeline: boxes become continuous 0-based
``x1, y1, x2 = x + w, y2 = y + h``, are clipped to the image and returned again as ``x, y, w, h``;
degenerate boxes and frames the dataset flags as absent get ``visible = False`` and NaN boxes; frames
without a valid box at the head and tail of a video are cut, and videos without any are dropped.
``extra['image_size']`` is ``(width, height)`` and ``extra['first_frame']`` the index of the first kept
frame in the original video. LaSOT's 1-based boxes are shifted to 0-based (``x - 1, y - 1``) first.

The index of a training set is cached as JSON in ``$LORAT_CACHE_DIR/index`` (default
``~/.cache/lorat/index``), keyed on the root path, :data:`READER_VERSION` and the modification times
and sizes of the annotation files, so a second start reads one file instead of rescanning.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import time
import warnings
import zlib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..files import atomic_write_text
from .benchmarks import (
    DatasetError,
    DatasetFormatError,
    DatasetNotFoundError,
    FrameList,
    got10k_sequence_names,
    image_size,
    lasot_sequence_dir,
    lasot_split_names,
    read_boxes,
    read_folder,
    read_got10k,
    read_got10k_sequence,
    read_lasot,
    read_lasot_ext,
    read_lasot_sequence,
    read_nfs,
    read_otb,
    read_tnl2k,
    read_trackingnet_test,
    read_uav123,
)
from .sequence import Sequence

__all__ = [
    "BENCHMARKS", "TRAIN_DATASETS", "ROOTS", "READER_VERSION", "DatasetInfo", "DatasetStatus",
    "DatasetError", "DatasetFormatError", "DatasetNotFoundError", "FrameList",
    "load_benchmark", "load_training_dataset", "dataset_root", "root_env_var", "config_path",
    "read_config", "index_cache_dir", "check_datasets", "clean_boxes", "add_data_arguments", "run_data",
]

READER_VERSION = 1  # bump when a reader's output changes: invalidates every cached index
_CACHE_FORMAT = 1


# ----------------------------------------------------------------------------------------------
# Roots and the config file


# root key -> what the folder must contain (shown by `lorat data`)
ROOTS: dict[str, str] = {
    "lasot": "LaSOT: <class>/<class>-<k>/{img,groundtruth.txt,...}; testing_set.txt optional",
    "lasot_ext": "LaSOT_extension: <class>/<class>-<k>/",
    "got10k": "GOT-10k: {train,val,test}/list.txt and sequence folders",
    "trackingnet": "TrackingNet: TRAIN_0..TRAIN_11/ and TEST/, each with anno/ and frames/",
    "tnl2k": "TNL2K test set: <seq>/{imgs,groundtruth.txt,language.txt}",
    "otb100": "OTB100: <Name>/{img,groundtruth_rect.txt}",
    "nfs": "NFS: <seq>/30/<seq>/ + <seq>/30/<seq>.txt (or pytracking sequences/ + anno/)",
    "uav123": "UAV123: anno/UAV123/*.txt and data_seq/UAV123/<folder>/",
    "coco": "COCO 2017: annotations/instances_train2017.json and images/train2017/ (or train2017/)",
    "folder": "any folder of <seq>/groundtruth.txt + frames (optional)",
}
_EXTRA_CONFIG_KEYS = {"got10k_vottrain_split": "GOT-10k vottrain index file (see got10k_vottrain)"}
VOTTRAIN_ENV = "LORAT_GOT10K_VOTTRAIN_SPLIT"


def root_env_var(key: str) -> str:
    """Environment variable for a root key: ``lasot_ext`` -> ``LORAT_LASOT_EXT_ROOT``."""
    return f"LORAT_{key.upper()}_ROOT"


def config_path() -> Path:
    """The datasets YAML file: ``$LORAT_DATASETS``, else ``$XDG_CONFIG_HOME/lorat/datasets.yaml``
    (``~/.config/lorat/datasets.yaml``)."""
    env = os.environ.get("LORAT_DATASETS")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "lorat" / "datasets.yaml"


def index_cache_dir() -> Path:
    """Where training-set indexes are cached: ``$LORAT_CACHE_DIR/index``, else
    ``$XDG_CACHE_HOME/lorat/index`` (``~/.cache/lorat/index``)."""
    env = os.environ.get("LORAT_CACHE_DIR")
    if env:
        return Path(env).expanduser() / "index"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lorat" / "index"


def read_config(path: str | Path | None = None) -> dict[str, Path]:
    """Parse the datasets YAML file into ``{key: absolute path}``; a missing file gives ``{}``.

    Values may use ``~`` and ``$VARS``; relative paths are relative to the file's folder. Unknown
    keys raise :class:`DatasetFormatError` (a typo would otherwise silently leave a root unset).
    """
    import yaml

    path = Path(path) if path is not None else config_path()
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise DatasetFormatError(f"{path}: invalid YAML ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{path}: expected a mapping 'key: /path', got {type(data).__name__}")
    known = set(ROOTS) | set(_EXTRA_CONFIG_KEYS)
    out: dict[str, Path] = {}
    for key, value in data.items():
        if key not in known:
            raise DatasetFormatError(
                f"{path}: unknown key {key!r}; known keys: {', '.join(sorted(known))}")
        if value is None:
            continue
        if not isinstance(value, (str, os.PathLike)):
            raise DatasetFormatError(f"{path}: value of {key!r} must be a path, got {value!r}")
        p = Path(os.path.expandvars(os.fspath(value))).expanduser()
        out[key] = p if p.is_absolute() else (path.parent / p)
    return out


def _root_key(name: str) -> str:
    name = _ALIASES.get(name, name)
    if name in ROOTS:
        return name
    if name in BENCHMARKS:
        return BENCHMARKS[name].root_key
    if name in TRAIN_DATASETS:
        return TRAIN_DATASETS[name].root_key
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(set(ROOTS) | set(BENCHMARKS) | set(TRAIN_DATASETS)))}")


def _root_setting(key: str) -> tuple[Path | None, str | None]:
    """``(path, where it came from)`` for a root key, or ``(None, None)`` when unset."""
    env = root_env_var(key)
    value = os.environ.get(env)
    if value:
        return Path(value).expanduser().absolute(), f"env {env}"
    cfg = config_path()
    roots = read_config(cfg)
    if key in roots:
        return roots[key].absolute(), f"config {cfg}"
    return None, None


def _unset_message(key: str) -> str:
    env, cfg = root_env_var(key), config_path()
    where = "" if cfg.is_file() else " (the file does not exist yet)"
    return (f"no root configured for dataset '{key}': set the environment variable {env}=/path/to/{key} "
            f"or add the line '{key}: /path/to/{key}' to {cfg}{where}; LORAT_DATASETS selects another "
            f"config file. `lorat data` prints all settings.")


def dataset_root(name: str) -> Path:
    """Root folder of a dataset (root key like ``got10k`` or dataset name like ``got10k_val``).

    Looks at ``LORAT_<KEY>_ROOT`` first, then the datasets YAML file. Raises
    :class:`DatasetNotFoundError` naming both when unset, or naming the source when the folder is missing.
    """
    key = _root_key(name)
    root, source = _root_setting(key)
    if root is None:
        raise DatasetNotFoundError(_unset_message(key))
    if not root.is_dir():
        raise DatasetNotFoundError(f"root of dataset '{key}' is {root} (from {source}), but that folder does not exist")
    return root


# ----------------------------------------------------------------------------------------------
# Cleaning for training


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


def _training_sequence(raw: Sequence, boxes: np.ndarray, present: np.ndarray | None,
                       size: tuple[int, int], dataset: str, **extra) -> Sequence | None:
    """Clean, then cut invalid head/tail frames; None when no frame is valid."""
    boxes, visible = clean_boxes(boxes, present, size)
    idx = np.flatnonzero(visible)
    if idx.size == 0:
        return None
    a, b = int(idx[0]), int(idx[-1]) + 1
    return Sequence(name=raw.name, frames=raw.frames[a:b], boxes=boxes[a:b], visible=visible[a:b],
                    dataset=dataset, object_class=raw.object_class, language=raw.language,
                    extra={"image_size": (int(size[0]), int(size[1])), "first_frame": a, **extra})


def _read_lasot_train(root: Path) -> list[Sequence]:
    out = []
    for name in lasot_split_names(root, "train"):
        raw = read_lasot_sequence(lasot_sequence_dir(root, name), name, "lasot")
        if len(raw) == 0:
            continue
        size = image_size(raw.frames[0])
        # LaSOT boxes are 1-based (MATLAB); the training pipeline works in 0-based pixels.
        seq = _training_sequence(raw, raw.boxes - [1, 1, 0, 0], raw.visible, size, "lasot")
        if seq is not None:
            out.append(seq)
    return out


def _lasot_train_files(root: Path) -> list[Path]:
    files = [root / "training_set.txt", root / "testing_set.txt"]
    for name in lasot_split_names(root, "train"):
        d = lasot_sequence_dir(root, name)
        files += [d / "groundtruth.txt", d / "full_occlusion.txt", d / "out_of_view.txt", d / "nlp.txt"]
    return files


def _read_got10k_train_subset(root: Path, indices: list[int] | None) -> list[Sequence]:
    names = got10k_sequence_names(root, "train")
    if indices is not None:
        names = [names[i] for i in indices]
    out = []
    for name in names:
        raw = read_got10k_sequence(root / "train" / name, "train", labels=False)
        if len(raw) == 0:
            continue
        size = raw.extra.get("image_size") or image_size(raw.frames[0])
        seq = _training_sequence(raw, raw.boxes, raw.visible, size, "got10k")
        if seq is not None:
            out.append(seq)
    return out


def _got10k_files(root: Path, names: Iterable[str]) -> list[Path]:
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


def _read_got10k_vottrain(root: Path) -> list[Sequence]:
    _, idx, _ = _vottrain_names(root)
    return _read_got10k_train_subset(root, idx)


def _got10k_vottrain_files(root: Path) -> list[Path]:
    split, _, names = _vottrain_names(root)
    return [split] + _got10k_files(root, names)


TRACKINGNET_CHUNKS = tuple(f"TRAIN_{i}" for i in range(12))


def _trackingnet_chunks(root: Path) -> list[Path]:
    present = [root / c for c in TRACKINGNET_CHUNKS if (root / c / "anno").is_dir()]
    if not present:
        raise DatasetNotFoundError(f"no TrackingNet training chunk (TRAIN_0..TRAIN_11 with anno/) under {root}")
    missing = [c for c in TRACKINGNET_CHUNKS if not (root / c / "anno").is_dir()]
    if missing:
        warnings.warn(f"TrackingNet: using {len(present)} of 12 training chunks under {root}; missing: "
                      f"{', '.join(missing)}", stacklevel=3)
    return present


def _read_trackingnet_train(root: Path) -> list[Sequence]:
    out = []
    for chunk in _trackingnet_chunks(root):
        for anno in sorted((chunk / "anno").glob("*.txt"), key=lambda p: p.name):
            gt = read_boxes(anno)
            if len(gt) == 0:
                continue
            raw = Sequence(name=anno.stem, frames=FrameList(chunk / "frames" / anno.stem, "{}.jpg", 0, len(gt)),
                           boxes=gt)
            seq = _training_sequence(raw, gt, None, image_size(raw.frames[0]), "trackingnet", chunk=chunk.name)
            if seq is not None:
                out.append(seq)
    return out


def _trackingnet_files(root: Path) -> list[Path]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chunks = _trackingnet_chunks(root)
    return [a for c in chunks for a in sorted((c / "anno").glob("*.txt"))] + [c / "anno" for c in chunks]


def _coco_paths(root: Path) -> tuple[Path, Path]:
    ann = root / "annotations" / "instances_train2017.json"
    img = root / "images" / "train2017"
    if not img.is_dir() and (root / "train2017").is_dir():
        img = root / "train2017"
    return ann, img


def _read_coco2017_train(root: Path) -> list[Sequence]:
    ann_file, img_dir = _coco_paths(root)
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
                            dataset="coco2017", object_class=cls,
                            extra={"image_size": size, "first_frame": 0, "image_id": im["id"],
                                   "annotation_id": ann["id"]}))
    return out


def _coco_files(root: Path) -> list[Path]:
    return [_coco_paths(root)[0]]


# ----------------------------------------------------------------------------------------------
# Registries


@dataclass
class DatasetInfo:
    """One loadable dataset: which root it lives under and the function that reads it."""

    name: str
    root_key: str
    reader: Callable[[Path], list[Sequence]]
    description: str
    annotation_files: Callable[[Path], list[Path]] | None = None  # training sets: cache key inputs


BENCHMARKS: dict[str, DatasetInfo] = {
    "lasot": DatasetInfo("lasot", "lasot", lambda r: read_lasot(r, "test"), "LaSOT test (280, Protocol II)"),
    "lasot_ext": DatasetInfo("lasot_ext", "lasot_ext", read_lasot_ext, "LaSOT_extension (150)"),
    "got10k_val": DatasetInfo("got10k_val", "got10k", lambda r: read_got10k(r, "val"), "GOT-10k val (180)"),
    "got10k_test": DatasetInfo("got10k_test", "got10k", lambda r: read_got10k(r, "test"),
                               "GOT-10k test (180, first box only)"),
    "trackingnet": DatasetInfo("trackingnet", "trackingnet", read_trackingnet_test,
                               "TrackingNet test (511, first box only)"),
    "tnl2k": DatasetInfo("tnl2k", "tnl2k", read_tnl2k, "TNL2K test (700)"),
    "otb100": DatasetInfo("otb100", "otb100", read_otb, "OTB100 / OTB-2015 (100)"),
    "nfs30": DatasetInfo("nfs30", "nfs", read_nfs, "NFS, 30 fps (100)"),
    "uav123": DatasetInfo("uav123", "uav123", read_uav123, "UAV123 (123)"),
    "folder": DatasetInfo("folder", "folder", read_folder, "folder(s) of frames + groundtruth.txt"),
}

TRAIN_DATASETS: dict[str, DatasetInfo] = {
    "lasot_train": DatasetInfo("lasot_train", "lasot", _read_lasot_train, "LaSOT train (1120)", _lasot_train_files),
    "got10k_train": DatasetInfo("got10k_train", "got10k", lambda r: _read_got10k_train_subset(r, None),
                                "GOT-10k train (9335)",
                                lambda r: _got10k_files(r, got10k_sequence_names(r, "train"))),
    "got10k_vottrain": DatasetInfo("got10k_vottrain", "got10k", _read_got10k_vottrain,
                                   "GOT-10k train minus VOT overlap (7086, pytracking vottrain list)",
                                   _got10k_vottrain_files),
    "trackingnet_train": DatasetInfo("trackingnet_train", "trackingnet", _read_trackingnet_train,
                                     "TrackingNet TRAIN_0..11", _trackingnet_files),
    "coco2017_train": DatasetInfo("coco2017_train", "coco", _read_coco2017_train,
                                  "COCO 2017 train, one-frame sequence per non-crowd object", _coco_files),
}

_ALIASES = {
    "lasot_test": "lasot", "lasot_extension": "lasot_ext", "trackingnet_test": "trackingnet",
    "tnl2k_test": "tnl2k", "otb": "otb100", "nfs": "nfs30", "uav": "uav123",
    "coco": "coco2017_train", "coco_train": "coco2017_train",
}


def _lookup(name: str, table: dict[str, DatasetInfo], kind: str) -> DatasetInfo:
    info = table.get(_ALIASES.get(name, name))
    if info is None:
        raise ValueError(f"unknown {kind} {name!r}; choose from: {', '.join(table)}")
    return info


def _resolve_root(info: DatasetInfo, root: str | Path | None) -> Path:
    if root is None:
        return dataset_root(info.root_key)
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise DatasetNotFoundError(f"root of dataset '{info.name}' does not exist: {root}")
    return root


def load_benchmark(name: str, root: str | Path | None = None) -> list[Sequence]:
    """Read an evaluation benchmark (``lasot``, ``lasot_ext``, ``got10k_val``, ``got10k_test``,
    ``trackingnet``, ``tnl2k``, ``otb100``, ``nfs30``, ``uav123``, ``folder``).

    ``root`` defaults to the configured root (:func:`dataset_root`). Boxes are as the files write them;
    unpublished rows (test splits) are NaN. ``visible`` is set for LaSOT(-ext) and GOT-10k.
    """
    info = _lookup(name, BENCHMARKS, "benchmark")
    return info.reader(_resolve_root(info, root))


def load_training_dataset(name: str, root: str | Path | None = None, *, cache_dir: str | Path | None = None,
                          use_cache: bool = True) -> list[Sequence]:
    """Read a cleaned training set (``lasot_train``, ``got10k_train``, ``got10k_vottrain``,
    ``trackingnet_train``, ``coco2017_train``), using the on-disk index cache when it is current.

    ``cache_dir`` defaults to :func:`index_cache_dir`. A cache that cannot be read is rebuilt; one
    that cannot be written only produces a warning.
    """
    info = _lookup(name, TRAIN_DATASETS, "training dataset")
    root = _resolve_root(info, root)
    if not use_cache or info.annotation_files is None:
        return info.reader(root)
    cache_dir = Path(cache_dir) if cache_dir is not None else index_cache_dir()
    key = _cache_key(info.name, root, info.annotation_files(root))
    root_id = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    path = cache_dir / f"{info.name}-{root_id}-{key[:20]}.json"
    if path.is_file():
        try:
            seqs, notes = _load_index(path, root, key)
            for note in notes:  # what the scan warned about still holds
                warnings.warn(note, stacklevel=2)
            return seqs
        except (OSError, ValueError, KeyError, TypeError, zlib.error) as e:
            warnings.warn(f"ignoring unreadable index cache {path}: {e}", stacklevel=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seqs = info.reader(root)
    notes = [str(w.message) for w in caught]
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    try:
        _save_index(path, seqs, root, key, info.name, notes)
        for old in cache_dir.glob(f"{info.name}-{root_id}-*.json"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError as e:
        warnings.warn(f"could not write index cache {path}: {e}", stacklevel=2)
    return seqs


# ----------------------------------------------------------------------------------------------
# Index cache


def _cache_key(name: str, root: Path, files: Iterable[Path]) -> str:
    h = hashlib.sha256()
    h.update(f"{_CACHE_FORMAT}|{READER_VERSION}|{name}|{root}\n".encode())
    for f in files:
        try:
            st = f.stat()
            h.update(f"{f}|{st.st_mtime_ns}|{st.st_size}\n".encode())
        except OSError:
            h.update(f"{f}|-\n".encode())
    return h.hexdigest()


def _rel(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return str(p)


def _pack(a: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(np.ascontiguousarray(a).tobytes(), 1)).decode("ascii")


def _unpack(s: str, dtype) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(s)), dtype=dtype).copy()


def _save_index(path: Path, seqs: list[Sequence], root: Path, key: str, name: str, notes: list[str]) -> None:
    dirs: dict[str, int] = {}
    cols: dict[str, list] = {k: [] for k in ("name", "length", "frames", "object_class", "language", "extra",
                                             "has_visible", "dataset")}
    for s in seqs:
        n = len(s.frames)
        if s.boxes.shape != (n, 4):
            raise ValueError(f"sequence {s.name}: boxes {s.boxes.shape} do not match {n} frames")
        if isinstance(s.frames, FrameList):
            d = _rel(s.frames.folder, root)
            frames = {"d": dirs.setdefault(d, len(dirs)), "p": s.frames.pattern, "s": s.frames.start}
        else:
            frames = [_rel(Path(p), root) for p in s.frames]
        cols["name"].append(s.name)
        cols["length"].append(n)
        cols["frames"].append(frames)
        cols["object_class"].append(s.object_class)
        cols["language"].append(s.language)
        cols["extra"].append(json.loads(json.dumps(s.extra)))  # tuples -> lists; fails loudly on arrays
        cols["has_visible"].append(s.visible is not None)
        cols["dataset"].append(s.dataset)
    boxes = np.concatenate([s.boxes for s in seqs]) if seqs else np.zeros((0, 4))
    visible = np.concatenate([s.visible if s.visible is not None else np.zeros(len(s), bool) for s in seqs]) \
        if seqs else np.zeros(0, bool)
    doc = {
        "format": _CACHE_FORMAT, "reader_version": READER_VERSION, "dataset": name, "root": str(root),
        "key": key, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "num_sequences": len(seqs), "warnings": notes,
        "dirs": list(dirs), **cols,
        "boxes": _pack(boxes.astype("<f8")), "visible": _pack(visible.astype(np.uint8)),
    }
    atomic_write_text(path, json.dumps(doc, separators=(",", ":")))  # readers see old or complete new


def _load_index(path: Path, root: Path, key: str) -> tuple[list[Sequence], list[str]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    if doc.get("format") != _CACHE_FORMAT or doc.get("reader_version") != READER_VERSION or doc.get("key") != key:
        raise ValueError("stale cache header")
    boxes = _unpack(doc["boxes"], "<f8").reshape(-1, 4)
    visible = _unpack(doc["visible"], np.uint8).astype(bool)
    dirs = [root / d for d in doc["dirs"]]
    path_objs: dict[str, Path] = {}
    out, offset = [], 0
    for i, name in enumerate(doc["name"]):
        n = doc["length"][i]
        fr = doc["frames"][i]
        if isinstance(fr, dict):
            frames = FrameList(dirs[fr["d"]], fr["p"], fr["s"], n)
        else:
            frames = [path_objs.setdefault(p, root / p) for p in fr]
        extra = doc["extra"][i]
        if "image_size" in extra:
            extra["image_size"] = tuple(extra["image_size"])
        out.append(Sequence(name=name, frames=frames, boxes=boxes[offset:offset + n],
                            visible=visible[offset:offset + n] if doc["has_visible"][i] else None,
                            dataset=doc["dataset"][i], object_class=doc["object_class"][i],
                            language=doc["language"][i], extra=extra))
        offset += n
    if offset != len(boxes):
        raise ValueError("box count does not match the sequence lengths")
    return out, list(doc.get("warnings", []))


# ----------------------------------------------------------------------------------------------
# `lorat data check`


@dataclass
class DatasetStatus:
    """What ``lorat data check`` found for one dataset."""

    name: str
    kind: str  # "benchmark" or "train"
    root_key: str
    env_var: str
    root: Path | None = None
    source: str | None = None  # "env LORAT_..." or "config <file>"
    configured: bool = False
    exists: bool = False
    num_sequences: int | None = None
    num_frames: int | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Configured, present and readable, with no missing frame found."""
        return self.configured and self.exists and not self.problems

    @property
    def status(self) -> str:
        """``ok``, ``not set``, ``missing`` (root folder absent) or ``error``."""
        if not self.configured:
            return "not set"
        if not self.exists:
            return "missing"
        return "ok" if not self.problems else "error"


def _first_missing_frames(seqs: list[Sequence], deep: bool) -> tuple[int, str | None]:
    """(number of sequences with a missing frame, first missing path). Checks first/last frames unless deep."""
    checked: set[str] = set()
    bad, first = 0, None
    for s in seqs:
        if len(s.frames) == 0:
            continue
        candidates = s.frames if deep else [s.frames[0], s.frames[-1]]
        for p in candidates:
            p = str(p)
            if p in checked:
                continue
            checked.add(p)
            if not os.path.isfile(p):
                bad += 1
                first = first or f"{p} (sequence {s.name})"
                break
    return bad, first


def check_datasets(names: Iterable[str] | None = None, *, deep: bool = False, use_cache: bool = True,
                   progress: Callable[[str], None] | None = None) -> list[DatasetStatus]:
    """Check every known dataset (or ``names``): root configured, root exists, files parse, frames exist.

    Each dataset is fully read (training sets through the index cache, which this warms). Frames are
    checked at the start and end of each sequence, or all of them with ``deep=True``.
    """
    table = [(n, "benchmark", i) for n, i in BENCHMARKS.items()] + [(n, "train", i) for n, i in TRAIN_DATASETS.items()]
    if names:
        wanted = [_ALIASES.get(n, n) for n in names]
        unknown = [n for n in wanted if n not in BENCHMARKS and n not in TRAIN_DATASETS]
        if unknown:
            raise ValueError(f"unknown dataset(s) {unknown}; known: {', '.join(n for n, _, _ in table)}")
        table = [t for t in table if t[0] in wanted]
    out = []
    for name, kind, info in table:
        st = DatasetStatus(name=name, kind=kind, root_key=info.root_key, env_var=root_env_var(info.root_key))
        out.append(st)
        try:
            st.root, st.source = _root_setting(info.root_key)
        except DatasetError as e:
            st.configured = True
            st.problems.append(str(e))
            continue
        if st.root is None:
            st.notes.append("optional: pass a folder to `lorat eval`/`lorat track`" if name == "folder"
                            else _unset_message(info.root_key))
            continue
        st.configured = True
        st.exists = st.root.is_dir()
        if not st.exists:
            st.problems.append(f"root {st.root} (from {st.source}) does not exist")
            continue
        if progress:
            progress(f"checking {name} in {st.root}")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                seqs = (load_benchmark(name, st.root) if kind == "benchmark"
                        else load_training_dataset(name, st.root, use_cache=use_cache))
            st.notes += [str(w.message) for w in caught]
        except DatasetError as e:
            st.problems.append(str(e))
            continue
        st.num_sequences = len(seqs)
        st.num_frames = int(sum(len(s) for s in seqs))
        if not seqs:
            st.problems.append("no sequences found")
        bad, first = _first_missing_frames(seqs, deep)
        if bad:
            st.problems.append(f"{bad} sequence(s) with missing frames; first missing frame: {first}")
    return out


def _format_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``lorat data`` sub-commands (``check``) to ``parser``; results go to :func:`run_data`."""
    sub = parser.add_subparsers(dest="data_command", metavar="{check}")
    chk = sub.add_parser("check", help="validate every configured dataset root and name what is missing")
    chk.add_argument("names", nargs="*", help="datasets to check (default: all); e.g. lasot got10k_train")
    chk.add_argument("--deep", action="store_true", help="check that every frame exists (slow on big sets)")
    chk.add_argument("--no-cache", action="store_true", help="rescan training sets instead of using the index cache")
    chk.add_argument("--json", action="store_true", help="print the results as JSON")


def _print_settings() -> int:
    cfg = config_path()
    try:
        cfg_roots = read_config(cfg)
        cfg_state = "found" if cfg.is_file() else "not found"
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("Dataset roots come from environment variables first, then from the config file.\n")
    print(f"config file : {cfg} ({cfg_state}; set LORAT_DATASETS to use another file)")
    print(f"index cache : {index_cache_dir()} (set LORAT_CACHE_DIR to move it)\n")
    users: dict[str, list[str]] = {}
    for n, i in list(BENCHMARKS.items()) + list(TRAIN_DATASETS.items()):
        users.setdefault(i.root_key, []).append(n)
    rows = [["root key", "environment variable", "current value", "datasets"]]
    for key in ROOTS:
        env = root_env_var(key)
        if os.environ.get(env):
            value = f"{os.environ[env]} (env)"
        elif key in cfg_roots:
            value = f"{cfg_roots[key]} (config)"
        else:
            value = "-"
        rows.append([key, env, value, ", ".join(users.get(key, []))])
    print(_format_table(rows))
    vot = os.environ.get(VOTTRAIN_ENV) or cfg_roots.get("got10k_vottrain_split") or "-"
    print(f"\nGOT-10k vottrain list: {vot} ({VOTTRAIN_ENV} or 'got10k_vottrain_split:' in the config file;"
          f" default <got10k root>/got10k_vot_train_split.txt)")
    print(f"\nExample {cfg.name}:")
    for key in ("lasot", "got10k", "trackingnet", "coco"):
        print(f"  {key}: /data/{key}")
    print("\nRun `lorat data check` to validate the configured roots.")
    return 0


def run_data(args: argparse.Namespace) -> int:
    """Run ``lorat data`` (print settings) or ``lorat data check`` (table; exit 1 if a configured set fails)."""
    if getattr(args, "data_command", None) != "check":
        return _print_settings()
    try:
        results = check_datasets(args.names or None, deep=args.deep, use_cache=not args.no_cache,
                                 progress=None if args.json else (lambda m: print(f"[data] {m}", file=sys.stderr, flush=True)))
    except (ValueError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([{**asdict(r), "root": str(r.root) if r.root else None, "status": r.status}
                          for r in results], indent=2))
    else:
        rows = [["dataset", "status", "root", "details"]]
        for r in results:
            if r.problems:
                detail = r.problems[0]
            elif r.num_sequences is not None:
                detail = f"{r.num_sequences} sequences, {r.num_frames} frames"
            else:
                detail = f"set {r.env_var} or '{r.root_key}:' in the config file" if r.name != "folder" else "optional"
            rows.append([r.name, r.status, str(r.root) if r.root else "-", detail])
        print(f"config file: {config_path()}\n")
        print(_format_table(rows))
        for r in results:
            for p in r.problems[1:] + [n for n in r.notes if r.configured]:
                print(f"  {r.name}: {p}")
    failed = [r for r in results if r.configured and not r.ok]
    return 1 if failed else 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m lorat.data.datasets",
                                      description="Show dataset settings or check the configured dataset roots.")
    add_data_arguments(_parser)
    sys.exit(run_data(_parser.parse_args()))
