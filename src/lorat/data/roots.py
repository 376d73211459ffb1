"""Dataset roots: the datasets YAML file, ``LORAT_<KEY>_ROOT`` environment variables, the index-cache folder.

Roots come from environment variables ``LORAT_<KEY>_ROOT`` (e.g. ``LORAT_GOT10K_ROOT``) first, then from
one YAML file, ``~/.config/lorat/datasets.yaml`` by default (``$LORAT_DATASETS`` to use another)::

    lasot: /data/LaSOT
    got10k: /data/GOT-10k
    got10k_vottrain_split: /data/got10k_vot_train_split.txt   # optional

This module knows root *keys* (``got10k``); :func:`lorat.data.datasets.dataset_root` maps dataset names
(``got10k_val``) onto them.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import DatasetFormatError, DatasetNotFoundError

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
EXTRA_CONFIG_KEYS = {"got10k_vottrain_split": "GOT-10k vottrain index file (see got10k_vottrain)"}
"""Config-file keys that are not dataset roots."""
VOTTRAIN_ENV = "LORAT_GOT10K_VOTTRAIN_SPLIT"
"""Environment variable naming the GOT-10k vottrain index file."""


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
    known = set(ROOTS) | set(EXTRA_CONFIG_KEYS)
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



def root_setting(key: str) -> tuple[Path | None, str | None]:
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


def unset_message(key: str) -> str:
    env, cfg = root_env_var(key), config_path()
    where = "" if cfg.is_file() else " (the file does not exist yet)"
    return (f"no root configured for dataset '{key}': set the environment variable {env}=/path/to/{key} "
            f"or add the line '{key}: /path/to/{key}' to {cfg}{where}; LORAT_DATASETS selects another "
            f"config file. `lorat data` prints all settings.")



def require_root(key: str) -> Path:
    """The configured root folder of a root key; raises :class:`DatasetNotFoundError` when it is unset
    (naming the variable and the file to set) or when the folder does not exist (naming where it came from)."""
    root, source = root_setting(key)
    if root is None:
        raise DatasetNotFoundError(unset_message(key))
    if not root.is_dir():
        raise DatasetNotFoundError(f"root of dataset '{key}' is {root} (from {source}), but that folder does not exist")
    return root


__all__ = ["ROOTS", "EXTRA_CONFIG_KEYS", "VOTTRAIN_ENV", "root_env_var", "config_path", "index_cache_dir",
           "read_config", "root_setting", "unset_message", "require_root"]
