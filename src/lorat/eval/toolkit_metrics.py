"""Metrics of the GOT-10k toolkit (GOT-10k val protocol and its OTB experiment) and of the
TrackingNet devkit, mirrored in pure numpy including their quirks.

* GOT-10k (``got10k==0.1.3`` ``ExperimentGOT10k.report``): frame 0 dropped, both boxes clipped to
  the image (a box left of the image is *moved*, not cropped), ``eps`` in the union, IoU clipped
  to ``[0, 1]``, frames with ``cover == 0`` removed, all repetitions and all sequences pooled
  frame-wise; SR uses strict ``>``. See :func:`got10k_sequence_ious`, :func:`got10k_evaluate`.
* OTB experiment of the same package (``ExperimentOTB.report``): :func:`otb_sequence`,
  :func:`otb_mean`.
* TrackingNet devkit (``metrics.py::evaluate``): coordinates rounded half-to-even, missing rows
  NaN, NaN-skipping max/min in the intersection (pandas), success ``>=``, 21-point curves and
  trapezoid areas: :func:`trackingnet_sequence`, :func:`trackingnet_scores`.

Background: ``docs/metrics.md`` (IoU conventions, the GOT-10k, OTB and TrackingNet rules).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from lorat.eval.metrics import EvaluationError

__all__ = [
    "GOT10K_THRESHOLDS",
    "got10k_rect_iou",
    "got10k_sequence_ious",
    "got10k_evaluate",
    "otb_sequence",
    "otb_mean",
    "TrackingNetSequence",
    "trackingnet_sequence",
    "trackingnet_scores",
]

GOT10K_THRESHOLDS = np.linspace(0, 1, 101)
_OTB_IOU_THR = np.linspace(0, 1, 21)
_OTB_CE_THR = np.arange(0, 51)
_TN_SUCCESS_X = np.linspace(0, 1, 21)
_TN_PRECISION_X = np.linspace(0, 50, 21)
_TN_NPRECISION_X = np.linspace(0, 0.5, 21)


# ------------------------------------------------------------------------------------------------
# GOT-10k toolkit
# ------------------------------------------------------------------------------------------------

def got10k_rect_iou(a: np.ndarray, b: np.ndarray,
                    bound: tuple[float, float] | None = None) -> np.ndarray:
    """The toolkit's ``rect_iou``: optional clipping to ``bound = (W, H)``, ``+eps``, clip [0, 1].

    Operates on copies (the toolkit clips in place). NaN propagates to NaN IoU.
    """
    a = np.array(a, dtype=np.float64)
    b = np.array(b, dtype=np.float64)
    if a.shape != b.shape:
        raise EvaluationError("AssertionError", "")
    with np.errstate(all="ignore"):
        if bound is not None:
            for r in (a, b):
                # order matters: the new x is used for the width limit, so x < 0 moves the box
                r[:, 0] = np.clip(r[:, 0], 0, bound[0])
                r[:, 1] = np.clip(r[:, 1], 0, bound[1])
                r[:, 2] = np.clip(r[:, 2], 0, bound[0] - r[:, 0])
                r[:, 3] = np.clip(r[:, 3], 0, bound[1] - r[:, 1])
        x1 = np.maximum(a[:, 0], b[:, 0])
        y1 = np.maximum(a[:, 1], b[:, 1])
        x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
        y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
        inter = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
        union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
        ious = inter / (union + np.finfo(float).eps)
        return np.clip(ious, 0.0, 1.0)


def got10k_sequence_ious(repetitions: Sequence[np.ndarray], gt: np.ndarray,
                         cover: np.ndarray | None = None,
                         image_size: tuple[float, float] | None = None) -> np.ndarray:
    """Kept IoUs of one sequence as ``ExperimentGOT10k.report`` pools them.

    Args:
        repetitions: one ``(N, 4)`` prediction array per run (``<seq>_001.txt``, ...).
        gt: ``(N, 4)`` ground truth.
        cover: ``(N,)`` ``cover.label`` values; frames with ``cover == 0`` are dropped. None =
            keep every frame.
        image_size: ``(W, H)`` from ``meta_info.ini`` for the clipping; None = no clipping.

    Returns the concatenation over repetitions of the IoUs of frames ``1..N-1`` with
    ``cover > 0``.

    Raises:
        EvaluationError: ``AssertionError`` if a run's shape differs from the ground truth's
            (the toolkit asserts equal shapes).
    """
    gt = np.asarray(gt, dtype=np.float64)
    if len(repetitions) == 0:
        raise EvaluationError("Exception", "Results for sequence not found.")
    for r in repetitions:
        if np.shape(r) != gt.shape:
            raise EvaluationError("AssertionError", "")
    keep = np.ones(gt.shape[0] - 1, dtype=bool) if cover is None else np.asarray(cover)[1:] > 0
    out = [got10k_rect_iou(np.asarray(r, dtype=np.float64)[1:], gt[1:], bound=image_size)[keep]
           for r in repetitions]
    return np.concatenate(out) if out else np.zeros(0)


def got10k_evaluate(ious: np.ndarray, times: np.ndarray | None = None) -> dict:
    """``ExperimentGOT10k._evaluate`` on a pooled IoU list (one sequence or a whole dataset).

    Returns ``ao`` (mean IoU), ``sr`` (= ``sr50``, fraction of IoU > 0.5), ``sr75``
    (fraction > 0.75, = curve index 75), ``succ_curve`` (101 thresholds, strict ``>``),
    ``sr50_from_curve``, ``sr75_from_curve`` and ``speed_fps`` (mean of ``1/t`` over the given
    positive, non-NaN times; -1 without times). Empty ``ious`` give NaN (as ``np.mean`` does).
    """
    ious = np.asarray(ious, dtype=np.float64)
    with np.errstate(all="ignore"):
        if ious.size:
            ao = float(np.mean(ious))
            sr = float(np.mean(ious > 0.5))
            curve = np.mean(ious[:, None] > GOT10K_THRESHOLDS[None, :], axis=0)
        else:
            ao = sr = float("nan")
            curve = np.full(GOT10K_THRESHOLDS.shape, np.nan)
        speed = -1.0
        if times is not None:
            t = np.asarray(times, dtype=np.float64).ravel()
            t = t[~np.isnan(t)]
            t = t[t > 0]
            if t.size:
                speed = float(np.mean(1.0 / t))
    return {
        "ao": ao,
        "sr": sr,
        "sr50": sr,
        "sr75": float(curve[75]),
        "succ_curve": [float(v) for v in curve],
        "sr50_from_curve": float(curve[50]),
        "sr75_from_curve": float(curve[75]),
        "speed_fps": speed,
    }


# ------------------------------------------------------------------------------------------------
# OTB experiment of the GOT-10k toolkit
# ------------------------------------------------------------------------------------------------

def otb_sequence(pred: np.ndarray, gt: np.ndarray, times: np.ndarray | None = None) -> dict:
    """``ExperimentOTB.report`` for one sequence (fractions, float64).

    ``P[0] <- G[0]``; unbounded ``rect_iou`` (eps, clip [0, 1]); centres ``x + (w-1)/2``;
    success ``IoU > linspace(0, 1, 21)``, precision ``error <= 0..50`` px; no validity or
    visibility handling.

    Raises:
        EvaluationError: ``AssertionError`` when the prediction has a different row count.
    """
    pred = np.array(pred, dtype=np.float64)
    gt = np.array(gt, dtype=np.float64)
    if pred.shape[0] == 0:
        raise EvaluationError("IndexError", "index 0 is out of bounds for axis 0 with size 0")
    pred[0] = gt[0]
    if pred.shape[0] != gt.shape[0]:
        raise EvaluationError("AssertionError", "")
    ious = got10k_rect_iou(pred, gt)
    with np.errstate(all="ignore"):
        pc = pred[:, :2] + (pred[:, 2:] - 1) / 2
        gc = gt[:, :2] + (gt[:, 2:] - 1) / 2
        ce = np.sqrt(np.sum(np.power(pc - gc, 2), axis=-1))
        succ = np.mean(ious[:, None] > _OTB_IOU_THR[None, :], axis=0)
        prec = np.mean(ce[:, None] <= _OTB_CE_THR[None, :], axis=0)
    speed = 0.0
    if times is not None:
        t = np.asarray(times, dtype=np.float64).ravel()
        t = t[t > 0]
        if t.size:
            speed = float(np.mean(1.0 / t))
    return _otb_dict(succ, prec, speed if speed > 0 else -1)


def _otb_dict(succ: np.ndarray, prec: np.ndarray, speed: float) -> dict:
    return {
        "success_curve": [float(v) for v in succ],
        "precision_curve": [float(v) for v in prec],
        "success_score": float(np.mean(succ)),
        "precision_score": float(prec[20]),
        "success_rate": float(succ[len(succ) // 2]),
        "speed_fps": speed,
    }


def otb_mean(per_sequence: Sequence[Mapping]) -> dict:
    """Dataset numbers of ``ExperimentOTB.report``: equal-weight mean of the sequence curves;
    speed = mean over sequences that have a positive speed (else -1)."""
    if len(per_sequence) == 0:
        raise ValueError("no sequences to average")
    succ = np.mean([m["success_curve"] for m in per_sequence], axis=0)
    prec = np.mean([m["precision_curve"] for m in per_sequence], axis=0)
    # the toolkit keeps 0 for "no speed" and reports -1 only in the per-sequence entries
    speeds = np.array([max(float(m.get("speed_fps", -1)), 0.0) for m in per_sequence])
    nz = np.count_nonzero(speeds)
    out = _otb_dict(succ, prec, float(np.sum(speeds) / nz) if nz > 0 else -1)
    out["num_sequences"] = len(per_sequence)
    return out


# ------------------------------------------------------------------------------------------------
# TrackingNet devkit
# ------------------------------------------------------------------------------------------------

@dataclass
class TrackingNetSequence:
    """One sequence of the devkit: 21-point curves (fractions) and the per-frame coverage flags."""

    success_curve: np.ndarray
    precision_curve: np.ndarray
    norm_precision_curve: np.ndarray
    covered: np.ndarray


def trackingnet_sequence(pred: np.ndarray | None, gt: np.ndarray) -> TrackingNetSequence:
    """The devkit's per-file computation.

    Args:
        pred: ``(M, 4)`` submitted boxes; rows beyond ``N`` are ignored and missing rows are
            NaN (pandas index alignment). None = no (unique) matching submission file, which the
            devkit replaces by zeros.
        gt: ``(N, 4)`` ground truth.
    """
    gt = np.asarray(gt, dtype=np.float64)
    n = gt.shape[0]
    sub = np.zeros((n, 4)) if pred is None else np.full((n, 4), np.nan)
    if pred is not None:
        pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
        m = min(n, pred.shape[0])
        sub[:m] = pred[:m]
    with np.errstate(all="ignore"):
        a = np.round(gt)  # half-to-even, like the devkit's np.round on the columns
        s = np.round(sub)
        if n > 0:
            s[0] = a[0]
        ax2, ay2 = a[:, 0] + a[:, 2] - 1.0, a[:, 1] + a[:, 3] - 1.0
        sx2, sy2 = s[:, 0] + s[:, 2] - 1.0, s[:, 1] + s[:, 3] - 1.0
        acx, acy = a[:, 0] + (a[:, 2] + 1.0) / 2.0, a[:, 1] + (a[:, 3] + 1.0) / 2.0
        scx, scy = s[:, 0] + (s[:, 2] + 1.0) / 2.0, s[:, 1] + (s[:, 3] + 1.0) / 2.0
        # pandas DataFrame.max/min(axis=1) skip NaN: fmax/fmin do the same
        ix1, iy1 = np.fmax(a[:, 0], s[:, 0]), np.fmax(a[:, 1], s[:, 1])
        ix2, iy2 = np.fmin(ax2, sx2), np.fmin(ay2, sy2)
        iw = np.round(ix2 - ix1 + 1)
        ih = np.round(iy2 - iy1 + 1)
        iw = np.where(iw < 0, 0.0, iw)  # pandas clip(lower=0) leaves NaN alone
        ih = np.where(ih < 0, 0.0, ih)
        inter = iw * ih
        iou = inter / (a[:, 3] * a[:, 2] + s[:, 3] * s[:, 2] - inter)
        dx, dy = acx - scx, acy - scy
        dist = np.sqrt(dx * dx + dy * dy)
        ndist = np.sqrt(dx / a[:, 2] * dx / a[:, 2] + dy / a[:, 3] * dy / a[:, 3])
        covered = (s[:, 3] + s[:, 2] + s[:, 0] + s[:, 1]) > 0
        denom = float(n)
        succ = np.array([np.sum(iou >= t) for t in _TN_SUCCESS_X], dtype=float) / denom
        prec = np.array([np.sum(dist <= t) for t in _TN_PRECISION_X], dtype=float) / denom
        nprec = np.array([np.sum(ndist <= t) for t in _TN_NPRECISION_X], dtype=float) / denom
    return TrackingNetSequence(succ, prec, nprec, covered)


def _trapz(y: np.ndarray, x: np.ndarray) -> float:
    # np.trapz's formula (removed from recent numpy): sum(dx * (y[1:] + y[:-1]) / 2)
    d = np.diff(x)
    return float(np.add.reduce(d * (y[1:] + y[:-1]) / 2.0))


def trackingnet_scores(per_sequence: Sequence[TrackingNetSequence]) -> dict:
    """``evaluate()``'s four numbers (percent) for a set of sequences, plus the mean curves.

    Curves are summed over files and divided by the file count; every score, including
    precision and normalised precision, is ``trapz(curve, x=linspace(0, 1, 21)) * 100``.
    Coverage = % of all frames (pooled) whose rounded ``x + y + w + h > 0``.
    """
    if len(per_sequence) == 0:
        raise ValueError("no sequences to average")
    k = len(per_sequence)
    succ = np.zeros(21)
    prec = np.zeros(21)
    nprec = np.zeros(21)
    for q in per_sequence:  # accumulate in file order like the devkit
        succ += q.success_curve
        prec += q.precision_curve
        nprec += q.norm_precision_curve
    succ, prec, nprec = succ / k, prec / k, nprec / k
    covered = np.concatenate([q.covered for q in per_sequence])
    with np.errstate(all="ignore"):
        coverage = float(np.mean(covered) * 100) if covered.size else float("nan")
    return {
        "coverage": coverage,
        "success": _trapz(succ, _TN_SUCCESS_X) * 100,
        "precision": _trapz(prec, _TN_SUCCESS_X) * 100,
        "norm_precision": _trapz(nprec, _TN_SUCCESS_X) * 100,
        "success_curve": [float(v) for v in succ],
        "precision_curve": [float(v) for v in prec],
        "norm_precision_curve": [float(v) for v in nprec],
    }
