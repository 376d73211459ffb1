"""The scoring rules of ``lorat analyze``: one reference implementation per rule, side by side for many trackers.

:func:`analyze` scores every tracker on every sequence with one rule and returns the ``--json`` document
described in :mod:`lorat.eval.report`. The per-rule arithmetic lives in :mod:`lorat.eval.metrics`
(OPE rules, trackit) and :mod:`lorat.eval.toolkit_metrics` (GOT-10k, OTB, TrackingNet toolkits).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import Any

import numpy as np

from lorat.data.sequence import Sequence
from lorat.eval import metrics as M
from lorat.eval import toolkit_metrics as T
from lorat.eval.metrics import EvaluationError
from lorat.eval.results import ResultSource

RULES = ("pytracking", "ostrack", "got10k", "otb", "trackingnet", "trackit", "trackit_compatible")
"""Every scoring rule, by the reference implementation it mirrors."""
_OPE_RULES = ("pytracking", "ostrack")
_PROTOCOL_RULES = ("pytracking", "ostrack", "trackit_compatible")


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
    if seq.frames:  # fall back to the first frame's size (stored size, as the one image reader decodes it)
        from lorat.data.errors import DatasetError  # noqa: PLC0415
        from lorat.data.images import image_size  # noqa: PLC0415  (cv2 import cost, only when needed)

        try:
            w, h = image_size(seq.frames[0])
            return float(w), float(h)
        except DatasetError:
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


__all__ = ["RULES", "analyze"]
