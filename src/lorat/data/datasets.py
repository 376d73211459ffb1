"""Dataset names: which root each lives under, which reader reads it; ``load_benchmark`` and ``load_training_dataset``.

Public API::

    load_benchmark("lasot")                  # list[Sequence], boxes as the benchmark files write them
    load_training_dataset("got10k_vottrain") # list[Sequence], cleaned for training, cached on disk
    dataset_root("lasot")                    # Path, from LORAT_LASOT_ROOT or the datasets.yaml file
    check_datasets()                         # list[DatasetStatus] for every known dataset

Where each concept lives: roots and the config file in :mod:`lorat.data.roots`, evaluation readers in
:mod:`lorat.data.benchmarks`, training readers and their cleaning in :mod:`lorat.data.training`, the index
cache in :mod:`lorat.data.index_cache`, ``lorat data [check]`` in :mod:`lorat.data.check`. The names they
had here before are still importable from this module.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .benchmarks import (
    got10k_sequence_names,
    read_folder,
    read_got10k,
    read_lasot,
    read_lasot_ext,
    read_nfs,
    read_otb,
    read_tnl2k,
    read_trackingnet_test,
    read_uav123,
)
from .errors import DatasetError, DatasetFormatError, DatasetNotFoundError
from .frames import FrameList
from .index_cache import READER_VERSION, cached_index
from .roots import ROOTS, config_path, index_cache_dir, read_config, require_root, root_env_var
from .sequence import Sequence
from .training import (
    clean_boxes,
    coco_train_files,
    got10k_train_files,
    got10k_vottrain_files,
    lasot_train_files,
    read_coco2017_train,
    read_got10k_train,
    read_got10k_vottrain,
    read_lasot_train,
    read_trackingnet_train,
    read_vottrain_indices,
    trackingnet_train_files,
    vottrain_split_file,
)

__all__ = [
    "BENCHMARKS", "TRAIN_DATASETS", "ALIASES", "ROOTS", "READER_VERSION", "DatasetInfo",
    "DatasetError", "DatasetFormatError", "DatasetNotFoundError", "FrameList",
    "load_benchmark", "load_training_dataset", "dataset_root", "root_env_var", "config_path",
    "read_config", "index_cache_dir", "clean_boxes",
    "vottrain_split_file", "read_vottrain_indices",
]

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
    "lasot_train": DatasetInfo("lasot_train", "lasot", read_lasot_train, "LaSOT train (1120)", lasot_train_files),
    "got10k_train": DatasetInfo("got10k_train", "got10k", lambda r: read_got10k_train(r, None),
                                "GOT-10k train (9335)",
                                lambda r: got10k_train_files(r, got10k_sequence_names(r, "train"))),
    "got10k_vottrain": DatasetInfo("got10k_vottrain", "got10k", read_got10k_vottrain,
                                   "GOT-10k train minus VOT overlap (7086, pytracking vottrain list)",
                                   got10k_vottrain_files),
    "trackingnet_train": DatasetInfo("trackingnet_train", "trackingnet", read_trackingnet_train,
                                     "TrackingNet TRAIN_0..11", trackingnet_train_files),
    "coco2017_train": DatasetInfo("coco2017_train", "coco", read_coco2017_train,
                                  "COCO 2017 train, one-frame sequence per non-crowd object", coco_train_files),
}

ALIASES: dict[str, str] = {
    "lasot_test": "lasot", "lasot_extension": "lasot_ext", "trackingnet_test": "trackingnet",
    "tnl2k_test": "tnl2k", "otb": "otb100", "nfs": "nfs30", "uav": "uav123",
    "coco": "coco2017_train", "coco_train": "coco2017_train",
}
"""Other spellings accepted for dataset names."""


def _root_key(name: str) -> str:
    name = ALIASES.get(name, name)
    if name in ROOTS:
        return name
    if name in BENCHMARKS:
        return BENCHMARKS[name].root_key
    if name in TRAIN_DATASETS:
        return TRAIN_DATASETS[name].root_key
    known = ", ".join(sorted(set(ROOTS) | set(BENCHMARKS) | set(TRAIN_DATASETS)))
    raise ValueError(f"unknown dataset {name!r}; known: {known}")


def dataset_root(name: str) -> Path:
    """Root folder of a dataset (root key like ``got10k`` or dataset name like ``got10k_val``).

    Looks at ``LORAT_<KEY>_ROOT`` first, then the datasets YAML file. Raises
    :class:`DatasetNotFoundError` naming both when unset, or naming the source when the folder is missing.
    """
    return require_root(_root_key(name))


def _lookup(name: str, table: dict[str, DatasetInfo], kind: str) -> DatasetInfo:
    info = table.get(ALIASES.get(name, name))
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
    that cannot be written only produces a warning (see :mod:`lorat.data.index_cache`).
    """
    info = _lookup(name, TRAIN_DATASETS, "training dataset")
    root = _resolve_root(info, root)
    if not use_cache or info.annotation_files is None:
        return info.reader(root)
    cache_dir = Path(cache_dir) if cache_dir is not None else index_cache_dir()
    return cached_index(info.name, root, info.reader, info.annotation_files, cache_dir)


_CHECK_NAMES = ("DatasetStatus", "check_datasets", "add_data_arguments", "run_data")


def __getattr__(name: str):
    # ``lorat data check`` lives in lorat.data.check, which imports this module; its names are still
    # served from here on first use, without a module-level import cycle.
    if name in _CHECK_NAMES:
        from . import check

        return getattr(check, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    from .check import main

    sys.exit(main())
