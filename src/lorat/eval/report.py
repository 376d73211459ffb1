"""Score raw tracking results against ground truth and write reports (``lorat analyze``).

Several trackers are scored side by side with one *rule* (which reference implementation to
mirror, see :mod:`lorat.eval.metrics` and :mod:`lorat.eval.toolkit_metrics`):

========================  =====================================================================
rule                      reference
========================  =====================================================================
``pytracking`` (default)  pytracking ``extract_results`` (gt valid iff x, y, w, h > 0)
``ostrack``               OSTrack / Stark ``extract_results`` (gt valid iff w, h > 0; LoRAT's)
``got10k``                GOT-10k toolkit val protocol: pooled AO / SR0.5 / SR0.75
``otb``                   GOT-10k toolkit ``ExperimentOTB``
``trackingnet``           TrackingNet devkit ``metrics.py``
``trackit``               LoRAT/trackit native ``one_pass_evaluation``
``trackit_compatible``    LoRAT/trackit ``one_pass_evaluation_compatible``
========================  =====================================================================

``--protocol`` (``lasot``, ``lasot_extension_subset``, ``generic``, ``uav``,
``lasot_exclude_invalid_frames``) selects the pytracking dataset string for ``pytracking``,
``ostrack`` and ``trackit_compatible``; the other rules have no protocol.

Inputs
------
Results (``--results DIR [DIR ...]``, tracker name = folder name, or ``NAME=DIR``):

* pytracking layout: ``DIR/<seq>.txt`` (one ``x,y,w,h`` row per frame; comma, tab, semicolon or
  whitespace separated; ``NaN``/``inf`` strings allowed) and optional ``DIR/<seq>_time.txt``;
* GOT-10k layout: ``DIR/<seq>/<seq>_001.txt`` (``_002`` ... for more runs, all pooled by the
  ``got10k`` rule, the first one used by the others) and ``DIR/<seq>/<seq>_time.txt``;
* ``DIR/times/<seq>_time.txt`` is where the ``otb`` rule looks for times (as the toolkit does);
* the ``trackingnet`` rule matches, like the devkit, every ``*.txt`` below ``DIR`` whose relative
  path contains ``<seq>.txt``; not exactly one match = all-zero prediction;
* a ``.json`` file instead of a folder: ``{"sequences": [{"name": ..., "pred": [[x, y, w, h], ...]},
  ...]}`` (the fixture ``inputs.json`` layout) or ``{"<seq>": [[x, y, w, h], ...], ...}``.

Ground truth, one of:

* ``--dataset NAME --root PATH``: :func:`lorat.data.datasets.load_benchmark`;
* ``--gt DIR``: ``DIR/<seq>.txt`` boxes, optional ``DIR/<seq>_visible.txt`` (0/1 per frame, one
  per line or separated by commas/whitespace; 0 = target absent), ``DIR/<seq>_cover.txt``
  (GOT-10k ``cover.label`` values), ``DIR/<seq>_image_size.txt`` (``W,H``, used by the ``got10k``
  clipping) and ``DIR/list.txt`` (sequence names in order; default: every other ``*.txt``, sorted);
* ``--gt FILE.json``: ``{"sequences": [{"name", "gt", optional "target_visible" (or "visible"),
  "gt_uav", "got10k_cover" (or "cover"), "image_size_wh" (or "image_size")}], optional
  "main_sequences"}`` (the fixture ``inputs.json`` layout; non-finite numbers may be the strings
  ``"NaN"``, ``"Infinity"``, ``"-Infinity"``). ``gt_uav`` replaces ``gt`` under ``--protocol uav``
  for the OPE rules. If ``main_sequences`` is given, only those form the overall average; the
  other sequences are still scored one by one.

Without cover labels the ``got10k`` rule uses ``visible`` (absent = cover 0) or keeps all frames;
without an image size it does not clip.

JSON written by ``--json`` (schema ``lorat.analyze/1``)
--------------------------------------------------------
::

    {
      "schema": "lorat.analyze/1",
      "rule": "<rule>", "protocol": "<protocol>" | null, "dataset_string": "<str>" | null,
      "exclude_invalid_frames": bool, "validity": "pytracking" | "stark" | null,
      "use_visibility": bool, "ground_truth": "<what was read>",
      "sequences": ["<seq>", ...],             # every scored sequence, in order
      "overall_sequences": ["<seq>", ...],     # the ones averaged into "overall"
      "thresholds": {"<curve key>": [x values], ...},
      "trackers": {
        "<tracker>": {
          "results": "<path>",
          "sequences": {"<seq>": {<metrics>} | {"error": "<ExcType>: <message>"}
                                 | {"skipped": "<reason>"}},
          "overall": {<metrics>, "num_sequences": int}
                     | {"error": "<first error>", "failed_sequences": ["<seq>", ...]},
          "per_frame": {"<seq>": {"iou": [...], "center_error": [...],
                                  "norm_center_error": [...], "valid": [...]}}  # --per-frame
        }
      },
      "print_results_table": ["<header line>", "<one line per tracker>"],  # pytracking/ostrack
      "errors": ["<tracker>/<seq>: <error>", ...]
    }

``<metrics>`` per rule (key names as in the reference fixtures):

* ``pytracking``/``ostrack`` (percent, float32 precision): ``success_curve`` (21), ``auc``,
  ``op50``, ``op75``, ``precision_curve`` (51), ``precision`` (@20 px), ``norm_precision_curve``
  (51), ``norm_precision`` (@0.20); per sequence also ``avg_overlap`` (fraction).
* ``got10k`` (fractions): ``ao``, ``sr`` (= ``sr50``), ``sr50``, ``sr75``, ``succ_curve`` (101),
  ``sr50_from_curve``, ``sr75_from_curve``, ``speed_fps`` (-1 without times); per sequence also
  ``length`` (N-1) and ``num_repetitions``; overall pooled over frames, also ``num_frames``.
* ``otb`` (fractions): ``success_curve`` (21), ``precision_curve`` (51), ``success_score``,
  ``precision_score``, ``success_rate``, ``speed_fps``.
* ``trackingnet`` (percent): ``coverage``, ``success``, ``precision``, ``norm_precision``, plus the
  21-point ``success_curve``, ``precision_curve``, ``norm_precision_curve`` (fractions).
* ``trackit`` (fractions): ``ao``, ``sr50``, ``sr75``, ``success_score``, ``precision_score``,
  ``norm_precision_score``, ``success_curve`` (21), ``precision_curve`` (51),
  ``norm_precision_curve`` (51).
* ``trackit_compatible`` (fractions): ``success_score``, ``precision_score``,
  ``norm_precision_score``, ``sr50``, ``sr75`` and the three curves.

Non-finite numbers are written as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``.
Where the reference raises (e.g. NaN predictions under ``pytracking``), the sequence gets
``{"error": ...}`` with the reference's exception text, and because the reference would abort
the whole evaluation, every overall containing that sequence is ``{"error": ...}`` too.
Exit status of ``lorat analyze``: 0 = every overall scored (per-sequence reference errors outside the
overall are reported in the JSON and on stderr), 1 = an overall hit a reference error (outputs still
written), 2 = bad input.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lorat.data.sequence import Sequence
from lorat.eval import metrics as M
from lorat.eval import toolkit_metrics as T
from lorat.eval.metrics import EvaluationError
from lorat.files import atomic_write_bytes, atomic_write_text

__all__ = [
    "RULES",
    "read_boxes",
    "read_values",
    "load_gt_dir",
    "load_gt_json",
    "ResultSource",
    "analyze",
    "to_jsonable",
    "atomic_write_text",
    "atomic_write_bytes",
    "write_json",
    "markdown_report",
    "write_markdown",
    "write_plots",
    "add_analyze_arguments",
    "run_analyze",
    "main",
]

RULES = ("pytracking", "ostrack", "got10k", "otb", "trackingnet", "trackit", "trackit_compatible")
_OPE_RULES = ("pytracking", "ostrack")
_PROTOCOL_RULES = ("pytracking", "ostrack", "trackit_compatible")
_GT_SUFFIXES = ("_visible", "_cover", "_image_size", "_time")
_SPLIT = re.compile(r"[,;\s]+")


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------

def _tokens(path: Path) -> Iterable[tuple[int, list[str]]]:
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            yield lineno, [t for t in _SPLIT.split(line) if t]


def read_boxes(path: str | os.PathLike) -> np.ndarray:
    """Read an ``x, y, w, h`` file (results or ground truth) into an ``(N, 4)`` float64 array.

    Any of comma, tab, semicolon or whitespace separates values; blank lines and ``#`` lines are
    skipped; ``NaN``/``nan``/``inf``/``Infinity`` parse as floats. Always 2-D, even for 0 or 1
    rows.
    """
    path = Path(path)
    rows = []
    for lineno, toks in _tokens(path):
        if len(toks) != 4:
            raise ValueError(f"{path}:{lineno}: expected 4 values (x, y, w, h), got {len(toks)}")
        try:
            rows.append([float(t) for t in toks])
        except ValueError as e:
            raise ValueError(f"{path}:{lineno}: {e}") from None
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def read_values(path: str | os.PathLike) -> np.ndarray:
    """Read all numbers of a flag/label/time file (any separators, any line layout), 1-D."""
    path = Path(path)
    vals = []
    for lineno, toks in _tokens(path):
        try:
            vals.extend(float(t) for t in toks)
        except ValueError as e:
            raise ValueError(f"{path}:{lineno}: {e}") from None
    return np.array(vals, dtype=np.float64)


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


# ------------------------------------------------------------------------------------------------
# scoring
# ------------------------------------------------------------------------------------------------

@dataclass
class _Missing:
    message: str


def _gt_for(seq: Sequence, rule: str, protocol: str | None) -> np.ndarray:
    if protocol == "uav" and rule in _PROTOCOL_RULES and "boxes_uav" in seq.extra:
        return np.asarray(seq.extra["boxes_uav"], dtype=np.float64)
    return np.asarray(seq.boxes, dtype=np.float64)


def _image_size(seq: Sequence) -> tuple[float, float] | None:
    meta = seq.extra.get("meta") if isinstance(seq.extra.get("meta"), Mapping) else {}
    for v in (seq.extra.get("image_size"), seq.extra.get("image_size_wh"), seq.extra.get("resolution"),
              meta.get("resolution")):
        if v is not None:
            if isinstance(v, str):
                v = [float(t) for t in re.findall(r"[-+0-9.eE]+", v)]
            return float(v[0]), float(v[1])
    if seq.frames:  # fall back to the first frame's size
        try:
            import cv2  # noqa: PLC0415  (optional, heavy)
            img = cv2.imread(str(seq.frames[0]), cv2.IMREAD_UNCHANGED)
            if img is not None:
                return float(img.shape[1]), float(img.shape[0])
        except ImportError:
            pass
    return None


def _cover(seq: Sequence, visible: np.ndarray | None) -> np.ndarray | None:
    for key in ("cover", "cover_label", "got10k_cover"):
        if seq.extra.get(key) is not None:
            return np.asarray(seq.extra[key], dtype=np.float64)
    return None if visible is None else np.asarray(visible, dtype=bool).astype(np.float64)


def _thresholds(rule: str) -> dict[str, list[float]]:
    if rule in _OPE_RULES:
        return {"overlap": M.OVERLAP_THRESHOLDS.tolist(), "center": M.CENTER_THRESHOLDS.tolist(),
                "center_norm": M.NORM_CENTER_THRESHOLDS.tolist()}
    if rule == "got10k":
        return {"succ_curve": T.GOT10K_THRESHOLDS.tolist()}
    if rule == "trackingnet":
        return {"success_curve": np.linspace(0, 1, 21).tolist(),
                "precision_curve": np.linspace(0, 50, 21).tolist(),
                "norm_precision_curve": np.linspace(0, 0.5, 21).tolist()}
    if rule == "otb":
        return {"success_curve": np.linspace(0, 1, 21).tolist(),
                "precision_curve": np.arange(51, dtype=float).tolist()}
    return {"success_curve": np.linspace(0, 1, 21).tolist(),
            "precision_curve": np.arange(51, dtype=float).tolist(),
            "norm_precision_curve": (np.linspace(0, 0.5, 51) if rule == "trackit"
                                     else M.NORM_CENTER_THRESHOLDS).tolist()}


def _missing_message(rule: str, src: ResultSource, seq: str) -> str:
    if rule == "got10k":
        return f"Exception: Results for sequence {seq} not found."
    if rule == "otb":
        return f"FileNotFoundError: {src.default_file(seq)} not found."
    return f"Exception: Result not found. {src.default_file(seq)}"


def _score_sequence(rule: str, src: ResultSource, seq: Sequence, *, protocol: str | None,
                    validity: str, use_visibility: bool, exclude_invalid_frames: bool,
                    ) -> tuple[Any, dict | None]:
    """Score one (tracker, sequence). Returns (per-sequence object, per-frame dict or None).

    The per-sequence object is a metrics dict, an :class:`_Missing`, or an intermediate the
    overall needs (IoU lists for got10k, curves for OPE ...) wrapped as ``(dict, extra)``.
    """
    gt = _gt_for(seq, rule, protocol)
    visible = seq.visible if use_visibility else None
    name = seq.name

    if rule == "trackingnet":
        q = T.trackingnet_sequence(src.trackingnet_boxes(name), gt)
        d = T.trackingnet_scores([q])
        return (d, q), None

    if rule == "got10k":
        runs = src.repetitions(name)
        if not runs:
            return _Missing(_missing_message(rule, src, name)), None
        ious = T.got10k_sequence_ious(runs, gt, _cover(seq, visible), _image_size(seq))
        times = src.times(name)
        d = T.got10k_evaluate(ious, times)
        d["length"] = int(gt.shape[0] - 1)
        d["num_repetitions"] = len(runs)
        return (d, (ious, times)), None

    pred = src.boxes(name)
    if pred is None:
        return _Missing(_missing_message(rule, src, name)), None

    if rule in _OPE_RULES:
        if pred.shape[0] <= 1:
            # np.loadtxt returns a 1-D array for 0 or 1 rows; pytracking then indexes pred[:, 2:]
            raise EvaluationError("IndexError", "too many indices for tensor of dimension 1")
        err, curves = M.ope_sequence(pred, gt, visible, protocol=protocol or "generic", rule=rule,
                                     exclude_invalid_frames=exclude_invalid_frames)
        d = M.ope_scores([curves], sequence_level=True)
        pf = {"iou": err.iou.tolist(), "center_error": err.center_error.tolist(),
              "norm_center_error": err.norm_center_error.tolist(), "valid": err.valid.tolist()}
        return (d, curves), pf
    if rule == "otb":
        d = T.otb_sequence(pred, gt, src.otb_times(name))
        return (d, d), None
    if rule == "trackit":
        d = M.trackit_native_sequence(pred, gt, visible)
        return (d, d), None
    if rule == "trackit_compatible":
        if exclude_invalid_frames:  # trackit's numpy port calls torch's .long() here
            raise EvaluationError("AttributeError", "'numpy.ndarray' object has no attribute 'long'")
        dataset_name = M.TRACKIT_DATASET_NAMES[protocol or "generic"]
        d = M.trackit_compatible_sequence(pred, gt, visible, dataset_name,
                                          stark_behavior=(validity == "stark"))
        return (d, d), None
    raise ValueError(f"unknown rule {rule!r}")


def _overall(rule: str, items: list[Any]) -> dict:
    if rule in _OPE_RULES:
        return M.ope_scores(items, sequence_level=False)
    if rule == "got10k":
        ious = np.concatenate([i for i, _ in items]) if items else np.zeros(0)
        ts = [t for _, t in items if t is not None]
        # the toolkit pools only positive, non-NaN times of the sequences that have them
        times = np.concatenate([np.asarray(t).ravel() for t in ts]) if ts else None
        d = T.got10k_evaluate(ious, times)
        d["num_sequences"] = len(items)
        d["num_frames"] = int(ious.shape[0])
        return d
    if rule == "otb":
        return T.otb_mean(items)
    if rule == "trackingnet":
        d = T.trackingnet_scores(items)
        d["num_sequences"] = len(items)
        return d
    if rule == "trackit":
        return M.trackit_native_mean(items)
    if rule == "trackit_compatible":
        return M.trackit_compatible_mean(items)
    raise ValueError(f"unknown rule {rule!r}")


def analyze(trackers: Seq[ResultSource], sequences: Seq[Sequence], *, rule: str = "pytracking",
            protocol: str | None = "generic", exclude_invalid_frames: bool | None = None,
            validity: str | None = None, use_visibility: bool = True,
            overall_sequences: Seq[str] | None = None, skip_missing: bool = False,
            per_frame: bool = False, report_name: str = "lorat",
            ground_truth: str = "") -> dict:
    """Score every tracker on every sequence with one rule; returns the ``--json`` document.

    Args:
        trackers: result sources (names must be unique).
        sequences: ground truth.
        rule: one of :data:`RULES`.
        protocol: a key of :data:`lorat.eval.metrics.PROTOCOLS` (rules with a protocol only).
        exclude_invalid_frames: override the protocol's denominator (``pytracking``/``ostrack``).
        validity: ``'stark'`` or ``'pytracking'`` for ``trackit_compatible`` (default stark).
        use_visibility: False = behave as if the ground truth had no visibility flags.
        overall_sequences: names averaged into ``overall`` (default: all).
        skip_missing: like pytracking's ``skip_missing_seq``: a sequence missing for any
            tracker is left out of every overall instead of making it an error.
        per_frame: include per-frame IoU / centre errors (``pytracking``/``ostrack`` only).
        report_name: table name of ``print_results_table``.
        ground_truth: free-text description stored in the document.
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose from {RULES}")
    if rule in _PROTOCOL_RULES:
        protocol = protocol or "generic"
        if protocol not in M.PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; choose from {sorted(M.PROTOCOLS)}")
    else:
        protocol = None
    implied = {"pytracking": "pytracking", "ostrack": "stark"}.get(rule)
    if rule == "trackit_compatible":
        validity = validity or "stark"
        if validity not in ("stark", "pytracking"):
            raise ValueError(f"unknown validity rule {validity!r}")
    elif validity is not None and validity != implied:
        raise ValueError(f"--validity applies to trackit_compatible only; rule {rule!r} "
                         f"fixes it ({implied}); use --rule pytracking or --rule ostrack")
    else:
        validity = implied
    names = [t.name for t in trackers]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate tracker names: {names}")
    seq_names = [s.name for s in sequences]
    if len(set(seq_names)) != len(seq_names):
        raise ValueError("duplicate sequence names in the ground truth")
    proto = M.PROTOCOLS.get(protocol) if protocol else None
    if exclude_invalid_frames is None:
        excl = bool(proto and proto.exclude_invalid_frames)
    else:
        excl = bool(exclude_invalid_frames)
    overall_names = list(seq_names) if overall_sequences is None else list(overall_sequences)
    unknown = [n for n in overall_names if n not in set(seq_names)]
    if unknown:
        raise ValueError(f"overall sequences without ground truth: {unknown}")
    raw: dict[str, dict[str, Any]] = {t.name: {} for t in trackers}
    frames: dict[str, dict[str, dict]] = {t.name: {} for t in trackers}
    for seq in sequences:
        for src in trackers:
            try:
                obj, pf = _score_sequence(rule, src, seq, protocol=protocol, validity=validity,
                                          use_visibility=use_visibility, exclude_invalid_frames=excl)
            except EvaluationError as e:
                obj, pf = e, None
            raw[src.name][seq.name] = obj
            if pf is not None and per_frame:
                frames[src.name][seq.name] = pf

    missing_any = {n for n in seq_names
                   if any(isinstance(raw[t][n], _Missing) for t in raw)} if skip_missing else set()
    overall_used = [n for n in overall_names if n not in missing_any]

    doc: dict[str, Any] = {
        "schema": "lorat.analyze/1",
        "rule": rule,
        "protocol": protocol,
        "dataset_string": proto.dataset_string if (proto and rule in _OPE_RULES) else
        (M.TRACKIT_DATASET_NAMES[protocol] if rule == "trackit_compatible" else None),
        "exclude_invalid_frames": excl if rule in _PROTOCOL_RULES else False,
        "validity": validity,
        "use_visibility": use_visibility,
        "ground_truth": ground_truth,
        "sequences": seq_names,
        "overall_sequences": overall_used,
        "thresholds": _thresholds(rule),
        "trackers": {},
        "errors": [],
    }
    for src in trackers:
        per_seq: dict[str, Any] = {}
        for n in seq_names:
            obj = raw[src.name][n]
            if isinstance(obj, EvaluationError):
                per_seq[n] = {"error": str(obj)}
                doc["errors"].append(f"{src.name}/{n}: {obj}")
            elif isinstance(obj, _Missing):
                if skip_missing:
                    per_seq[n] = {"skipped": obj.message}
                else:
                    per_seq[n] = {"error": obj.message}
                    doc["errors"].append(f"{src.name}/{n}: {obj.message}")
            else:
                per_seq[n] = obj[0]
        failed = [n for n in overall_used if "error" in per_seq[n]]
        if failed:
            overall: dict[str, Any] = {"error": per_seq[failed[0]]["error"], "failed_sequences": failed}
        elif not overall_used:
            overall = {"error": "no sequences to average", "failed_sequences": []}
        else:
            try:
                overall = _overall(rule, [raw[src.name][n][1] for n in overall_used])
            except EvaluationError as e:
                overall = {"error": str(e), "failed_sequences": []}
        entry: dict[str, Any] = {"results": str(src.path), "sequences": per_seq, "overall": overall}
        if per_frame and rule in _OPE_RULES:
            entry["per_frame"] = frames[src.name]
        doc["trackers"][src.name] = entry

    if rule in _OPE_RULES:
        ok = [t for t in names if "error" not in doc["trackers"][t]["overall"]]
        if ok:
            ov = [doc["trackers"][t]["overall"] for t in ok]
            doc["print_results_table"] = M.format_results_table(
                ok, {"AUC": [o["auc"] for o in ov], "OP50": [o["op50"] for o in ov],
                     "OP75": [o["op75"] for o in ov], "Precision": [o["precision"] for o in ov],
                     "Norm Precision": [o["norm_precision"] for o in ov]}, report_name)
        else:
            doc["print_results_table"] = []
    return doc


# ------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------

def to_jsonable(obj: Any) -> Any:
    """Recursively convert numpy types and non-finite floats (to ``"NaN"``/``"Infinity"``/
    ``"-Infinity"``) so that the result is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    return obj


def write_json(doc: Mapping, path: str | os.PathLike) -> None:
    """Write an :func:`analyze` document as strict JSON (atomically)."""
    atomic_write_text(path, json.dumps(to_jsonable(doc), indent=1, allow_nan=False) + "\n")


# per rule: (column title, overall key, scale for display, decimals)
_SUMMARY: dict[str, list[tuple[str, str, float, int]]] = {
    "pytracking": [("AUC", "auc", 1, 2), ("OP50", "op50", 1, 2), ("OP75", "op75", 1, 2),
                   ("Precision", "precision", 1, 2), ("Norm Precision", "norm_precision", 1, 2)],
    "got10k": [("AO", "ao", 100, 2), ("SR0.5", "sr50", 100, 2), ("SR0.75", "sr75", 100, 2),
               ("FPS", "speed_fps", 1, 1)],
    "otb": [("Success (AUC)", "success_score", 100, 2), ("Precision", "precision_score", 100, 2),
            ("Success rate", "success_rate", 100, 2)],
    "trackingnet": [("Success", "success", 1, 2), ("Precision", "precision", 1, 2),
                    ("Norm Precision", "norm_precision", 1, 2), ("Coverage", "coverage", 1, 2)],
    "trackit": [("AO", "ao", 100, 2), ("SR0.5", "sr50", 100, 2), ("SR0.75", "sr75", 100, 2),
                ("Success", "success_score", 100, 2), ("Precision", "precision_score", 100, 2),
                ("Norm Precision", "norm_precision_score", 100, 2)],
    "trackit_compatible": [("Success", "success_score", 100, 2),
                           ("Precision", "precision_score", 100, 2),
                           ("Norm Precision", "norm_precision_score", 100, 2),
                           ("SR0.5", "sr50", 100, 2), ("SR0.75", "sr75", 100, 2)],
}
_SUMMARY["ostrack"] = _SUMMARY["pytracking"]


def _fmt(v: Any, scale: float, decimals: int) -> str:
    if isinstance(v, str) or v is None:
        return str(v)
    return f"{float(v) * scale:.{decimals}f}"


def markdown_report(doc: Mapping) -> str:
    """A markdown summary: overall table (one row per tracker) and per-sequence main metric."""
    rule = doc["rule"]
    cols = _SUMMARY[rule]
    lines = [f"# Tracking results ({rule}" + (f", protocol {doc['protocol']}" if doc.get("protocol") else "")
             + ")", "", f"Overall over {len(doc['overall_sequences'])} sequence(s).", "",
             "| Tracker | " + " | ".join(c[0] for c in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for name, t in doc["trackers"].items():
        ov = t["overall"]
        if "error" in ov:
            lines.append(f"| {name} | " + " | ".join(["error"] * len(cols)) + " |")
        else:
            lines.append(f"| {name} | " + " | ".join(_fmt(ov[k], s, d) for _, k, s, d in cols) + " |")
    title, key, scale, dec = cols[0]
    lines += ["", f"## Per sequence ({title})", "",
              "| Sequence | " + " | ".join(doc["trackers"]) + " |",
              "|---|" + "---:|" * len(doc["trackers"])]
    for n in doc["sequences"]:
        cells = []
        for t in doc["trackers"].values():
            e = t["sequences"][n]
            cells.append("error" if "error" in e else "skipped" if "skipped" in e else _fmt(e[key], scale, dec))
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    errors = doc.get("errors") or []
    if errors:
        lines += ["", "## Errors", ""] + [f"- {e}" for e in errors]
    return "\n".join(lines) + "\n"


def write_markdown(doc: Mapping, path: str | os.PathLike) -> None:
    """Write :func:`markdown_report` atomically."""
    atomic_write_text(path, markdown_report(doc))


# per rule: (file stem, curve key, threshold key, legend key, y scale, x label, y label, title)
_PLOTS: dict[str, list[tuple[str, str, str, str, float, str, str, str]]] = {
    "pytracking": [
        ("success_plot", "success_curve", "overlap", "auc", 1, "Overlap threshold",
         "Overlap Precision [%]", "Success plot"),
        ("precision_plot", "precision_curve", "center", "precision", 1,
         "Location error threshold [pixels]", "Distance Precision [%]", "Precision plot"),
        ("norm_precision_plot", "norm_precision_curve", "center_norm", "norm_precision", 1,
         "Location error threshold", "Distance Precision [%]", "Normalized Precision plot"),
    ],
    "got10k": [("success_plot", "succ_curve", "succ_curve", "ao", 1, "Overlap threshold",
                "Success rate", "Success plot (GOT-10k)")],
    "otb": [("success_plot", "success_curve", "success_curve", "success_score", 1, "Overlap threshold",
             "Success rate", "Success plots of OPE"),
            ("precision_plot", "precision_curve", "precision_curve", "precision_score", 1,
             "Location error threshold", "Precision", "Precision plots of OPE")],
    "trackingnet": [("success_plot", "success_curve", "success_curve", "success", 1,
                     "Overlap threshold", "Success rate", "Success (TrackingNet devkit)"),
                    ("precision_plot", "precision_curve", "precision_curve", "precision", 1,
                     "Location error threshold [pixels]", "Precision", "Precision (TrackingNet devkit)"),
                    ("norm_precision_plot", "norm_precision_curve", "norm_precision_curve",
                     "norm_precision", 1, "Normalized location error threshold", "Precision",
                     "Normalized precision (TrackingNet devkit)")],
}
_PLOTS["ostrack"] = _PLOTS["pytracking"]
_PLOTS["trackit"] = _PLOTS["trackit_compatible"] = [
    ("success_plot", "success_curve", "success_curve", "success_score", 1, "Overlap threshold",
     "Success rate", "Success plot"),
    ("precision_plot", "precision_curve", "precision_curve", "precision_score", 1,
     "Location error threshold [pixels]", "Precision", "Precision plot"),
    ("norm_precision_plot", "norm_precision_curve", "norm_precision_curve", "norm_precision_score", 1,
     "Normalized location error threshold", "Precision", "Normalized precision plot"),
]


def write_plots(doc: Mapping, folder: str | os.PathLike) -> list[Path]:
    """Success / precision (/ normalised precision) PNGs of the overall curves.

    Trackers are sorted by the plotted score, legend entries read ``name [score]`` as in
    pytracking. Trackers whose overall is an error are left out. Returns the written paths.
    """
    # Agg canvas on a bare Figure: no pyplot, so no global backend switch and no figure registry
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415  (import cost)
    from matplotlib.figure import Figure  # noqa: PLC0415

    folder = Path(folder)
    written = []
    ok = {n: t["overall"] for n, t in doc["trackers"].items() if "error" not in t["overall"]}
    percent = doc["rule"] in ("pytracking", "ostrack")
    for stem, ckey, tkey, skey, _scale, xlabel, ylabel, title in _PLOTS[doc["rule"]]:
        x = np.asarray(doc["thresholds"][tkey], dtype=float)
        order = sorted(ok, key=lambda n: -_as_float(ok[n][skey]))
        fig = Figure(figsize=(6.4, 4.8))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for n in order:
            y = np.array([_as_float(v) for v in ok[n][ckey]])
            score = _as_float(ok[n][skey])
            label = f"{n} [{score:.1f}]" if doc["rule"] in ("pytracking", "ostrack", "trackingnet") \
                else f"{n} [{score:.3f}]"
            ax.plot(x, y, linewidth=2, label=label)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title, xlim=(x.min(), x.max()),
               ylim=(0, 100 if percent else 1.0))
        ax.grid(True, linestyle="dotted")
        if order:
            ax.legend(loc="lower left" if "success" in stem else "lower right", fontsize=8)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
        out = folder / f"{stem}.png"
        atomic_write_bytes(out, buf.getvalue())
        written.append(out)
    return written


def _as_float(v: Any) -> float:
    return float(v) if not isinstance(v, str) else float(v.replace("Infinity", "inf"))


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------

def add_analyze_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``lorat analyze`` options to ``parser``."""
    parser.add_argument("--results", nargs="+", action="extend", required=True, metavar="[NAME=]DIR",
                        help="result folders (or .json files), one per tracker; tracker name = "
                             "folder name unless given as NAME=DIR")
    gt = parser.add_argument_group("ground truth (either --dataset/--root or --gt)")
    gt.add_argument("--dataset", help="benchmark name for lorat.data.datasets.load_benchmark")
    gt.add_argument("--root", help="benchmark root folder (with --dataset; default: the configured root)")
    gt.add_argument("--gt", help="folder of <seq>.txt ground-truth files or an inputs.json-style file")
    parser.add_argument("--rule", choices=RULES, default="pytracking",
                        help="reference implementation to mirror (default: pytracking; LoRAT's "
                             "paper numbers use 'ostrack')")
    parser.add_argument("--protocol", choices=sorted(M.PROTOCOLS), default=None,
                        help="pytracking dataset protocol (default: from --dataset, else generic)")
    parser.add_argument("--exclude-invalid-frames", action="store_true", default=None,
                        help="divide by the number of valid frames (pytracking/ostrack)")
    parser.add_argument("--validity", choices=("stark", "pytracking"), default=None,
                        help="gt validity rule for trackit_compatible (default: stark)")
    parser.add_argument("--ignore-visibility", action="store_true",
                        help="ignore the ground truth's visibility flags")
    parser.add_argument("--sequences", nargs="+", metavar="SEQ",
                        help="score only these sequences (they form the overall)")
    parser.add_argument("--skip-missing", action="store_true",
                        help="leave sequences without results out instead of failing")
    parser.add_argument("--per-frame", action="store_true",
                        help="include per-frame IoU/centre errors in the JSON (pytracking/ostrack)")
    parser.add_argument("--report-name", default="lorat", help="table name in print_results_table")
    parser.add_argument("--json", dest="json_out", metavar="OUT.json", help="write the JSON report")
    parser.add_argument("--markdown", metavar="OUT.md", help="write a markdown summary")
    parser.add_argument("--plots", metavar="DIR", help="write success/precision plot PNGs here")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")


def _parse_results(specs: Seq[str]) -> list[ResultSource]:
    out = []
    for spec in specs:
        name, path = None, spec
        if "=" in spec and not Path(spec).exists():
            name, path = spec.split("=", 1)
        p = Path(path)
        if name is None:
            name = p.stem if p.suffix.lower() == ".json" else (p.resolve().name or str(p))
        out.append(ResultSource(name, p))
    return out


def protocol_for_dataset(name: str) -> str:
    """The pytracking protocol a benchmark name implies (lasot, lasot_extension_subset, uav or generic)."""
    n = name.lower().replace("-", "_")
    if n.startswith("lasot_ext"):
        return "lasot_extension_subset"
    if n.startswith("lasot"):
        return "lasot"
    if n.startswith("uav"):
        return "uav"
    return "generic"


def _load_ground_truth(args: argparse.Namespace) -> tuple[list[Sequence], list[str] | None, str, str]:
    """Returns (sequences, main sequence names or None, description, default protocol)."""
    if args.gt and args.dataset:
        raise ValueError("give either --gt or --dataset/--root, not both")
    if args.gt:
        p = Path(args.gt)
        if p.is_file():
            seqs, main = load_gt_json(p)
            return seqs, main, f"json:{p}", "generic"
        return load_gt_dir(p), None, f"dir:{p}", "generic"
    if args.dataset:
        from lorat.data.datasets import load_benchmark  # noqa: PLC0415  (heavy, only when needed)

        seqs = list(load_benchmark(args.dataset, args.root))  # root None = configured default
        return seqs, None, f"dataset:{args.dataset}:{args.root}", protocol_for_dataset(args.dataset)
    raise ValueError("ground truth missing: give --gt PATH or --dataset NAME --root PATH")


def _print_summary(doc: Mapping, out: Any = sys.stdout) -> None:
    if doc.get("print_results_table"):
        print("\n".join(doc["print_results_table"]), file=out)
        return
    cols = _SUMMARY[doc["rule"]]
    print("tracker | " + " | ".join(c[0] for c in cols), file=out)
    for name, t in doc["trackers"].items():
        ov = t["overall"]
        vals = ["error"] * len(cols) if "error" in ov else [_fmt(ov[k], s, d) for _, k, s, d in cols]
        print(f"{name} | " + " | ".join(vals), file=out)


def run_analyze(args: argparse.Namespace) -> int:
    """Run ``lorat analyze`` for parsed arguments; returns the exit status (0/1/2)."""
    try:
        seqs, main, desc, default_protocol = _load_ground_truth(args)
        trackers = _parse_results(args.results)
        overall = main
        if args.sequences:
            by_name = {s.name: s for s in seqs}
            unknown = [n for n in args.sequences if n not in by_name]
            if unknown:
                raise ValueError(f"unknown sequences: {unknown}")
            seqs = [by_name[n] for n in args.sequences]
            overall = list(args.sequences)
        doc = analyze(trackers, seqs, rule=args.rule, protocol=args.protocol or default_protocol,
                      exclude_invalid_frames=args.exclude_invalid_frames, validity=args.validity,
                      use_visibility=not args.ignore_visibility, overall_sequences=overall,
                      skip_missing=args.skip_missing, per_frame=args.per_frame,
                      report_name=args.report_name, ground_truth=desc)
    except (ValueError, FileNotFoundError, KeyError, ImportError, json.JSONDecodeError) as e:
        print(f"lorat analyze: error: {e}", file=sys.stderr)
        return 2
    if args.json_out:
        write_json(doc, args.json_out)
    if args.markdown:
        write_markdown(doc, args.markdown)
    if args.plots:
        write_plots(doc, args.plots)
    if not args.quiet:
        _print_summary(doc)
    for e in doc["errors"]:
        print(f"lorat analyze: {e}", file=sys.stderr)
    # Errors confined to sequences outside the overall (e.g. the fixtures' error cases) are results, not a
    # failure: the JSON holds them. Only an overall that could not be scored makes the run fail.
    return 1 if any("error" in t["overall"] for t in doc["trackers"].values()) else 0


def main(argv: Seq[str] | None = None) -> int:
    """``python -m lorat.eval.report ...`` entry point (same options as ``lorat analyze``)."""
    parser = argparse.ArgumentParser(prog="lorat analyze", description=__doc__.split("\n")[0])
    add_analyze_arguments(parser)
    return run_analyze(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
