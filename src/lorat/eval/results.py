"""Readers of ``lorat analyze``'s inputs: raw tracking results of any tracker, and ground truth as files.

Layouts are described in :mod:`lorat.eval.report` (and ``docs/metrics.md``). Box files go through the
library's one box-file reader, :func:`lorat.data.formats.read_boxes`, in its lenient result mode:
blank lines skipped (as NumPy's ``loadtxt`` in the reference evaluators), no header line.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from lorat.data import formats
from lorat.data.formats import read_values
from lorat.data.sequence import Sequence
from lorat.eval.metrics import EvaluationError

_GT_SUFFIXES = ("_visible", "_cover", "_image_size", "_time")


def read_boxes(path: str | os.PathLike) -> np.ndarray:
    """Read an ``x, y, w, h`` result or ground-truth file into an ``(N, 4)`` float64 array.

    :func:`lorat.data.formats.read_boxes` with blank lines skipped and no header: comma, tab, semicolon
    or whitespace separators; ``#`` lines skipped; ``NaN``/``nan``/``inf``/``Infinity`` parse as floats.
    Always 2-D, even for 0 or 1 rows. Errors are ``ValueError`` naming the file and line.
    """
    return formats.read_boxes(path, "result file", skip_blank_lines=True, header=False)


def _check_len(name: str, what: str, arr: np.ndarray, n: int) -> None:
    if arr.shape[0] != n:
        raise ValueError(f"sequence {name!r}: {what} has {arr.shape[0]} values, ground truth {n} rows")


def load_gt_dir(path: str | os.PathLike) -> list[Sequence]:
    """Ground truth from a folder of ``<seq>.txt`` files (layout in the module docstring)."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"ground-truth folder not found: {root}")
    listing = root / "list.txt"
    if listing.is_file():
        names = [ln.strip() for ln in listing.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    else:
        names = sorted(p.stem for p in root.glob("*.txt")
                       if p.name != "list.txt" and not p.stem.endswith(_GT_SUFFIXES))
    seqs = []
    for name in names:
        boxes = read_boxes(root / f"{name}.txt")
        n = boxes.shape[0]
        visible = None
        extra: dict[str, Any] = {}
        if (root / f"{name}_visible.txt").is_file():
            visible = read_values(root / f"{name}_visible.txt") != 0
            _check_len(name, "visible", visible, n)
        if (root / f"{name}_cover.txt").is_file():
            extra["cover"] = read_values(root / f"{name}_cover.txt")
            _check_len(name, "cover", extra["cover"], n)
        if (root / f"{name}_image_size.txt").is_file():
            wh = read_values(root / f"{name}_image_size.txt")
            if wh.shape != (2,):
                raise ValueError(f"{root / f'{name}_image_size.txt'}: expected 'W,H'")
            extra["image_size"] = (float(wh[0]), float(wh[1]))
        seqs.append(Sequence(name=name, frames=[], boxes=boxes, visible=visible, dataset="gt", extra=extra))
    if not seqs:
        raise ValueError(f"no ground-truth files in {root}")
    return seqs


def _float_rows(rows: Any, what: str) -> np.ndarray:
    arr = np.array([[float(v) for v in r] for r in rows], dtype=np.float64)
    return arr.reshape(-1, 4) if arr.size == 0 else arr


def load_gt_json(path: str | os.PathLike) -> tuple[list[Sequence], list[str] | None]:
    """Ground truth from an ``inputs.json``-style file; returns the sequences and
    ``main_sequences`` (None when the file has none)."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or not isinstance(doc.get("sequences"), list):
        raise ValueError(f"{path}: expected an object with a 'sequences' list")
    seqs = []
    for s in doc["sequences"]:
        name = str(s["name"])
        boxes = _float_rows(s["gt"], "gt")
        n = boxes.shape[0]
        vis_raw = s.get("target_visible", s.get("visible"))
        visible = None if vis_raw is None else np.array([bool(float(v)) for v in vis_raw])
        if visible is not None:
            _check_len(name, "target_visible", visible, n)
        extra: dict[str, Any] = {}
        if s.get("gt_uav") is not None:
            extra["boxes_uav"] = _float_rows(s["gt_uav"], "gt_uav")
            _check_len(name, "gt_uav", extra["boxes_uav"], n)
        cover = s.get("got10k_cover", s.get("cover"))
        if cover is not None:
            extra["cover"] = np.array([float(v) for v in cover])
            _check_len(name, "cover", extra["cover"], n)
        size = s.get("image_size_wh", s.get("image_size"))
        if size is not None:
            extra["image_size"] = (float(size[0]), float(size[1]))
        seqs.append(Sequence(name=name, frames=[], boxes=boxes, visible=visible, dataset="gt", extra=extra))
    main = doc.get("main_sequences")
    return seqs, (None if main is None else [str(m) for m in main])


class ResultSource:
    """Where one tracker's raw results live: a folder (see module docstring) or a JSON file."""

    def __init__(self, name: str, path: str | os.PathLike) -> None:
        self.name = name
        self.path = Path(path)
        self._json: dict[str, np.ndarray] | None = None
        self._all_txt: list[str] | None = None
        if self.path.suffix.lower() == ".json" and self.path.is_file():
            with open(self.path, encoding="utf-8") as f:
                doc = json.load(f)
            if isinstance(doc, dict) and isinstance(doc.get("sequences"), list):
                self._json = {str(s["name"]): _float_rows(s["pred"], "pred")
                              for s in doc["sequences"] if s.get("pred") is not None}
            elif isinstance(doc, dict):
                self._json = {str(k): _float_rows(v, "pred") for k, v in doc.items()}
            else:
                raise ValueError(f"{self.path}: unsupported results JSON")
        elif not self.path.is_dir():
            raise FileNotFoundError(f"results not found: {self.path}")

    def default_file(self, seq: str) -> str:
        """The path a pytracking-style reader would look for (used in error messages)."""
        return f"{self.path}/{seq}.txt" if self._json is None else f"{self.path}#{seq}"

    def repetitions(self, seq: str) -> list[np.ndarray]:
        """All runs of ``seq``: ``<seq>/<seq>_NNN.txt`` (sorted) or else ``<seq>.txt``/``<seq>/<seq>.txt``."""
        if self._json is not None:
            return [self._json[seq]] if seq in self._json else []
        runs = sorted((self.path / seq).glob(f"{_glob_escape(seq)}_[0-9]*.txt"))
        runs = [p for p in runs if re.fullmatch(re.escape(seq) + r"_[0-9][^/]*\.txt", p.name)
                and not p.name.endswith("_time.txt")]
        if runs:
            return [_read_result(p) for p in runs]
        for p in (self.path / f"{seq}.txt", self.path / seq / f"{seq}.txt"):
            if p.is_file():
                return [_read_result(p)]
        return []

    def boxes(self, seq: str) -> np.ndarray | None:
        """First run of ``seq``, or None if missing (preference: ``<seq>.txt`` first)."""
        if self._json is None and (self.path / f"{seq}.txt").is_file():
            return _read_result(self.path / f"{seq}.txt")
        runs = self.repetitions(seq)
        return runs[0] if runs else None

    def times(self, seq: str) -> np.ndarray | None:
        """Per-frame seconds from ``<seq>_time.txt`` (flat folder or GOT-10k sub-folder)."""
        if self._json is not None:
            return None
        for p in (self.path / seq / f"{seq}_time.txt", self.path / f"{seq}_time.txt"):
            if p.is_file():
                return _read_result(p, values=True)
        return None

    def otb_times(self, seq: str) -> np.ndarray | None:
        """Times where the GOT-10k toolkit's OTB experiment reads them: ``times/<seq>_time.txt``."""
        if self._json is None and (self.path / "times" / f"{seq}_time.txt").is_file():
            return _read_result(self.path / "times" / f"{seq}_time.txt", values=True)
        return None

    def trackingnet_boxes(self, seq: str) -> np.ndarray | None:
        """The devkit's matching: the unique ``*.txt`` whose relative path contains ``<seq>.txt``."""
        if self._json is not None:
            return self._json.get(seq)
        if self._all_txt is None:
            self._all_txt = sorted(p.relative_to(self.path).as_posix() for p in self.path.rglob("*.txt"))
        hits = [p for p in self._all_txt if f"{seq}.txt" in p]
        return _read_result(self.path / hits[0]) if len(hits) == 1 else None


def _read_result(path: Path, values: bool = False) -> np.ndarray:
    """A result file that cannot be parsed fails that sequence (pytracking's message), not the run."""
    try:
        return read_values(path) if values else read_boxes(path)
    except (ValueError, UnicodeDecodeError) as e:
        raise EvaluationError("Exception", f"Could not read file {path}") from e


def _glob_escape(s: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", s)



__all__ = ["read_boxes", "read_values", "load_gt_dir", "load_gt_json", "ResultSource"]
