"""On-disk index cache of the training sets: a second start reads one JSON file instead of rescanning.

The index of a training set is cached as JSON in ``$LORAT_CACHE_DIR/index`` (default
``~/.cache/lorat/index``), keyed on the root path, :data:`READER_VERSION`, the cache format and the
modification times and sizes of the annotation files. Arrays (boxes, visibility) are stored packed
(zlib + base64); frame lists as a folder, a pattern and a start when they are a :class:`FrameList`.
Writes are atomic, so a concurrent reader sees the old or the complete new file.
"""
from __future__ import annotations

import base64
import hashlib
import json
import time
import warnings
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ..files import atomic_write_text
from .frames import FrameList
from .sequence import Sequence

READER_VERSION = 2
"""Version of the training readers' output; bump it when one changes (invalidates every cached index).
2: COCO tracks carry their image as ``sampling_unit``."""
_CACHE_FORMAT = 2  # 2: per-sequence sampling_unit column


def cached_index(name: str, root: Path, reader: Callable[[Path], list[Sequence]],
                 annotation_files: Callable[[Path], list[Path]], cache_dir: Path) -> list[Sequence]:
    """``reader(root)``, served from ``cache_dir`` when the cached index of ``name`` is current.

    A cache that cannot be read is rebuilt; one that cannot be written only produces a warning. Warnings
    the scan raised are stored and raised again on every cached load (what they say still holds).
    """
    key = _cache_key(name, root, annotation_files(root))
    root_id = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    path = cache_dir / f"{name}-{root_id}-{key[:20]}.json"
    if path.is_file():
        try:
            seqs, notes = _load_index(path, root, key)
            for note in notes:
                warnings.warn(note, stacklevel=3)
            return seqs
        except (OSError, ValueError, KeyError, TypeError, zlib.error) as e:
            warnings.warn(f"ignoring unreadable index cache {path}: {e}", stacklevel=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seqs = reader(root)
    notes = [str(w.message) for w in caught]
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    try:
        _save_index(path, seqs, root, key, name, notes)
        for old in cache_dir.glob(f"{name}-{root_id}-*.json"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError as e:
        warnings.warn(f"could not write index cache {path}: {e}", stacklevel=3)
    return seqs


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
                                             "has_visible", "dataset", "sampling_unit")}
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
        cols["sampling_unit"].append(s.sampling_unit)
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
                            language=doc["language"][i], extra=extra,
                            sampling_unit=doc["sampling_unit"][i]))
        offset += n
    if offset != len(boxes):
        raise ValueError("box count does not match the sequence lengths")
    return out, list(doc.get("warnings", []))


__all__ = ["READER_VERSION", "cached_index"]
