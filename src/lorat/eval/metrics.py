"""One-pass-evaluation (OPE) metrics exactly as the community reference code computes them.

Pure numpy. Every function here mirrors one reference implementation, including its quirks,
so that published numbers can be re-computed bit-for-bit (within float rounding). Definitions
and the reasoning behind each rule: ``docs/metrics.md``.

Families implemented in this module (GOT-10k / OTB-toolkit / TrackingNet live in
:mod:`lorat.eval.toolkit_metrics`):

* ``pytracking`` (default) and ``ostrack`` (= Stark, the rule LoRAT reports with):
  :func:`calc_seq_err_robust`, :func:`ope_sequence`, :func:`ope_scores`,
  :func:`format_results_table`. The two rules differ only in ground-truth validity
  (pytracking: ``x, y, w, h > 0``; OSTrack: ``w, h > 0``).
* LoRAT's own framework (trackit): :func:`trackit_native_sequence` / :func:`trackit_native_mean`
  (``one_pass_evaluation``) and :func:`trackit_compatible_sequence` /
  :func:`trackit_compatible_mean` (``one_pass_evaluation_compatible``).

Boxes are ``(N, 4)`` float64 arrays ``[x, y, w, h]`` (top-left corner). Where a reference
raises, these functions raise :class:`EvaluationError` whose ``str()`` is the reference's
``"<ExceptionType>: <message>"`` text.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "EvaluationError",
    "OVERLAP_THRESHOLDS",
    "CENTER_THRESHOLDS",
    "NORM_CENTER_THRESHOLDS",
    "PROTOCOLS",
    "OPE_RULES",
    "Protocol",
    "FrameErrors",
    "OPECurves",
    "iou_xywh",
    "center_error_xywh",
    "calc_seq_err_robust",
    "ope_sequence",
    "ope_curves_from_errors",
    "ope_scores",
    "format_results_table",
    "trackit_native_sequence",
    "trackit_native_mean",
    "trackit_compatible_sequence",
    "trackit_compatible_mean",
    "TRACKIT_DATASET_NAMES",
]


class EvaluationError(Exception):
    """Raised where the mirrored reference implementation raises.

    Attributes:
        exc_type: the exception class name the reference raises (``Exception``,
            ``IndexError``, ``AssertionError``, ``TypeError`` ...).
        message: the reference's message text.
    ``str(err)`` is ``"<exc_type>: <message>"``, the form the fixture JSONs record.
    """

    def __init__(self, exc_type: str, message: str = "") -> None:
        super().__init__(f"{exc_type}: {message}")
        self.exc_type = exc_type
        self.message = message


# pytracking builds these with torch.arange(0, 1.05, 0.05, float64); torch's vectorised arange
# produces 0.6500000000000001 where numpy's arange*0.05 gives 0.65, so the exact values are
# spelled out (they matter when an IoU lands exactly on a threshold).
OVERLAP_THRESHOLDS = np.array(
    [0.0, 0.05, 0.1, 0.15000000000000002, 0.2, 0.25, 0.30000000000000004, 0.35000000000000003,
     0.4, 0.45, 0.5, 0.55, 0.6000000000000001, 0.6500000000000001, 0.7000000000000001,
     0.7500000000000001, 0.8, 0.8500000000000001, 0.9, 0.9500000000000001, 1.0],
    dtype=np.float64,
)
CENTER_THRESHOLDS = np.arange(51, dtype=np.float64)  # 0..50 px
NORM_CENTER_THRESHOLDS = np.arange(51, dtype=np.float64) / 100.0  # 0..0.50
_OP50_INDEX = 10  # print_results finds these by comparing float32 thresholds with 0.5 / 0.75
_OP75_INDEX = 15
_SCORE_INDEX = 20  # precision @20 px, normalised precision @0.20


@dataclass(frozen=True)
class Protocol:
    """How ``calc_seq_err_robust`` is driven for one benchmark family.

    Attributes:
        dataset_string: the ``seq.dataset`` string handed to ``calc_seq_err_robust``.
        uses_visibility: whether ``target_visible`` is passed (LaSOT-style datasets only).
        exclude_invalid_frames: divide by the number of valid frames instead of ``N``.
    """

    dataset_string: str
    uses_visibility: bool
    exclude_invalid_frames: bool = False


PROTOCOLS: dict[str, Protocol] = {
    "lasot": Protocol("lasot", True),
    "lasot_extension_subset": Protocol("lasot_extension_subset", True),
    # otb, nfs, tnl2k, trackingnet, got10k, avist ... all take the same code path
    "generic": Protocol("otb", False),
    "uav": Protocol("uav", False),
    "lasot_exclude_invalid_frames": Protocol("lasot", True, exclude_invalid_frames=True),
}
OPE_RULES = ("pytracking", "ostrack")


def _as_boxes(a: np.ndarray | Sequence, name: str) -> np.ndarray:
    arr = np.array(a, dtype=np.float64)  # always a copy: the references never touch inputs
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {arr.shape}")
    return arr


# ------------------------------------------------------------------------------------------------
# pytracking / OSTrack
# ------------------------------------------------------------------------------------------------

def iou_xywh(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-row IoU with pytracking's MATLAB-style ``-1``/``+1`` arithmetic (continuous IoU).

    No epsilon, no clamping to ``[0, 1]``; NaN propagates (like ``torch.max``/``clamp``).
    """
    with np.errstate(all="ignore"):
        tl = np.maximum(pred[:, :2], gt[:, :2])
        br = np.minimum(pred[:, :2] + pred[:, 2:] - 1.0, gt[:, :2] + gt[:, 2:] - 1.0)
        sz = np.maximum(br - tl + 1.0, 0.0)  # np.maximum keeps NaN like torch.clamp
        inter = sz[:, 0] * sz[:, 1]
        union = pred[:, 2] * pred[:, 3] + gt[:, 2] * gt[:, 3] - inter
        return inter / union


def center_error_xywh(pred: np.ndarray, gt: np.ndarray, normalized: bool = False) -> np.ndarray:
    """Centre distance as pytracking's ``calc_err_center`` (centres ``x + (w-1)/2``).

    With ``normalized`` both centres are divided per axis by the ground-truth ``w``/``h`` first.
    """
    with np.errstate(all="ignore"):
        pc = pred[:, :2] + 0.5 * (pred[:, 2:] - 1.0)
        gc = gt[:, :2] + 0.5 * (gt[:, 2:] - 1.0)
        if normalized:
            pc = pc / gt[:, 2:]
            gc = gc / gt[:, 2:]
        d = pc - gc
        return np.sqrt(d[:, 0] ** 2 + d[:, 1] ** 2)


@dataclass
class FrameErrors:
    """Per-frame output of :func:`calc_seq_err_robust` (all of length ``N`` = gt rows).

    ``iou`` is -1 on invalid frames; ``center_error`` is +Inf (or -1 for ``uav``) on invalid
    frames; ``norm_center_error`` is -1 on invalid frames; on ``lasot`` both centre errors are
    +Inf where the target is not visible. ``valid`` is the validity mask.
    """

    iou: np.ndarray
    center_error: np.ndarray
    norm_center_error: np.ndarray
    valid: np.ndarray


def calc_seq_err_robust(pred: np.ndarray, gt: np.ndarray, dataset: str = "otb",
                        visible: np.ndarray | None = None,
                        validity: str = "pytracking") -> FrameErrors:
    """Mirror of pytracking / OSTrack ``calc_seq_err_robust``.

    Args:
        pred: ``(M, 4)`` predictions as read from the result file (M may differ from N).
        gt: ``(N, 4)`` ground truth (NaN rows allowed only for ``dataset == 'uav'``).
        dataset: the reference's dataset string: ``'lasot'``, ``'uav'`` or anything else
            (``'lasot_extension_subset'``, ``'otb'``, ...).
        visible: ``(N,)`` 0/1 target-visible flags, or None.
        validity: ``'pytracking'`` (all of x, y, w, h > 0) or ``'ostrack'``/``'stark'``
            (w, h > 0).

    Raises:
        EvaluationError: exactly where the reference raises (NaN or negative-size prediction,
            NaN ground truth outside ``uav``, too few predictions on ``lasot``, NaN IoU, ...).
    """
    pred = _as_boxes(pred, "pred")
    gt = _as_boxes(gt, "gt")
    n = gt.shape[0]

    # 1. invalid predictions abort the whole evaluation
    if np.isnan(pred).any() or (pred[:, 2:] < 0.0).any():
        raise EvaluationError("Exception", "Error: Invalid results")
    if np.isnan(gt).any() and dataset != "uav":
        raise EvaluationError("Exception", "Warning: NaNs in annotation")

    # 2. zero-size predictions take the previous (already replaced) row; runs before the
    #    length fix and before the frame-0 replacement, in increasing frame order.
    if (pred[:, 2:] == 0.0).any():
        for i in range(1, pred.shape[0]):
            if (pred[i, 2:] == 0.0).any():
                if i >= n:  # the reference indexes anno_bb[i] here -> IndexError
                    raise EvaluationError(
                        "IndexError", f"index {i} is out of bounds for dimension 0 with size {n}")
                if not np.isnan(gt[i]).any():
                    pred[i] = pred[i - 1]

    # 3. length mismatch
    if pred.shape[0] != n:
        if pred.shape[0] > n:
            pred = pred[:n]
        elif dataset == "lasot":
            raise EvaluationError("Exception", "Mis-match in tracker prediction and GT lengths")
        else:
            pred = np.concatenate([pred, np.zeros((n - pred.shape[0], 4))], axis=0)

    # 4. the first frame is the initialisation box
    pred[0] = gt[0]

    with np.errstate(invalid="ignore"):
        if validity == "pytracking":
            valid = (gt > 0.0).sum(axis=1) == 4
        elif validity in ("ostrack", "stark"):
            valid = (gt[:, 2:] > 0.0).sum(axis=1) == 2
        else:
            raise ValueError(f"unknown validity rule {validity!r}")
    vis = None
    if visible is not None:
        vis = np.asarray(visible).astype(bool)
        if vis.shape != (n,):
            raise ValueError(f"visible must have shape ({n},), got {vis.shape}")
        valid = valid & vis

    ce = center_error_xywh(pred, gt)
    nce = center_error_xywh(pred, gt, normalized=True)
    iou = iou_xywh(pred, gt)

    ce[~valid] = -1.0 if dataset == "uav" else np.inf
    nce[~valid] = -1.0
    iou[~valid] = -1.0
    if dataset == "lasot":
        if vis is None:  # the reference evaluates ~None here
            raise EvaluationError("TypeError", "bad operand type for unary ~: 'NoneType'")
        nce[~vis] = np.inf
        ce[~vis] = np.inf

    if np.isnan(iou).any():
        raise EvaluationError("Exception", "Nans in calculated overlap")
    return FrameErrors(iou=iou, center_error=ce, norm_center_error=nce, valid=valid)


@dataclass
class OPECurves:
    """One sequence's pytracking curves (float32 fractions) and ``avg_overlap`` (float64).

    ``success``: 21 values (IoU > threshold), ``precision``: 51 (error <= px),
    ``norm_precision``: 51 (normalised error <= threshold).
    """

    success: np.ndarray
    precision: np.ndarray
    norm_precision: np.ndarray
    avg_overlap: float


def ope_curves_from_errors(err: FrameErrors, exclude_invalid_frames: bool = False) -> OPECurves:
    """Turn per-frame errors into float32 curves the way ``extract_results`` does."""
    n = err.valid.sum() if exclude_invalid_frames else err.valid.shape[0]
    if n <= 0:
        raise EvaluationError("Exception", "Seq length zero")
    valid_iou = err.iou[err.valid]
    # torch's mean of an empty tensor is NaN; numpy would warn, so do it by hand
    avg = float(valid_iou.mean()) if valid_iou.size else float("nan")
    length = np.float32(n)
    # counts are int64 -> .float() -> float32 division by the (int) length, as in the reference
    with np.errstate(invalid="ignore"):
        s = (err.iou[:, None] > OVERLAP_THRESHOLDS[None, :]).sum(0).astype(np.float32) / length
        p = (err.center_error[:, None] <= CENTER_THRESHOLDS[None, :]).sum(0).astype(np.float32) / length
        q = (err.norm_center_error[:, None] <= NORM_CENTER_THRESHOLDS[None, :]).sum(0).astype(
            np.float32) / length
    return OPECurves(success=s, precision=p, norm_precision=q, avg_overlap=avg)


def ope_sequence(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray | None = None, *,
                 protocol: str = "generic", rule: str = "pytracking",
                 exclude_invalid_frames: bool | None = None) -> tuple[FrameErrors, OPECurves]:
    """Evaluate one sequence with pytracking's (``rule='pytracking'``) or OSTrack's rules.

    Args:
        pred: ``(M, 4)`` raw predictions.
        gt: ``(N, 4)`` ground truth (for ``protocol='uav'`` pass the NaN-row ground truth).
        visible: per-frame visibility; only used by protocols that use it (LaSOT family).
        protocol: a key of :data:`PROTOCOLS`.
        rule: ``'pytracking'`` or ``'ostrack'`` (alias ``'stark'``).
        exclude_invalid_frames: override the protocol's denominator choice.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {sorted(PROTOCOLS)}")
    if rule not in ("pytracking", "ostrack", "stark"):
        raise ValueError(f"unknown OPE rule {rule!r}")
    proto = PROTOCOLS[protocol]
    excl = proto.exclude_invalid_frames if exclude_invalid_frames is None else exclude_invalid_frames
    err = calc_seq_err_robust(pred, gt, proto.dataset_string,
                              visible if proto.uses_visibility else None,
                              validity="pytracking" if rule == "pytracking" else "ostrack")
    return err, ope_curves_from_errors(err, excl)


def ope_scores(curves: Sequence[OPECurves], sequence_level: bool | None = None) -> dict:
    """Dataset (or single-sequence) scores as pytracking's ``get_auc_curve``/``get_prec_curve``.

    Curves are averaged over sequences with equal weight in float32, scaled to percent, then
    AUC = mean of the 21-point curve, OP50/OP75 = curve at 0.5/0.75, precision = curve at
    20 px, normalised precision = curve at 0.20. Returns plain Python floats/lists (percent).

    ``sequence_level=True`` (one sequence; the default when exactly one is given) adds that
    sequence's ``avg_overlap`` (pytracking's per-sequence "AO", a fraction); dataset level adds
    ``num_sequences`` instead (pytracking has no dataset-level average overlap).
    """
    if len(curves) == 0:
        raise ValueError("no sequences to average")
    hundred = np.float32(100.0)
    s = np.stack([c.success for c in curves]).astype(np.float32).mean(0, dtype=np.float32) * hundred
    p = np.stack([c.precision for c in curves]).astype(np.float32).mean(0, dtype=np.float32) * hundred
    q = np.stack([c.norm_precision for c in curves]).astype(np.float32).mean(0, dtype=np.float32) * hundred
    out = {
        "success_curve": [float(v) for v in s],
        "auc": float(s.mean(dtype=np.float32)),
        "op50": float(s[_OP50_INDEX]),
        "op75": float(s[_OP75_INDEX]),
        "precision_curve": [float(v) for v in p],
        "precision": float(p[_SCORE_INDEX]),
        "norm_precision_curve": [float(v) for v in q],
        "norm_precision": float(q[_SCORE_INDEX]),
    }
    if sequence_level is None:
        sequence_level = len(curves) == 1
    if sequence_level:
        if len(curves) != 1:
            raise ValueError("sequence_level=True needs exactly one sequence")
        out["avg_overlap"] = float(curves[0].avg_overlap)
    else:
        out["num_sequences"] = len(curves)
    return out


def format_results_table(row_labels: Sequence[str], scores: Mapping[str, Sequence[float]],
                         table_name: str = "") -> list[str]:
    """The text table pytracking's ``print_results`` prints, as a list of lines.

    Name column width = longest label (or table name) + 5; score columns are
    ``max(10, len(title) + 3)`` wide; values printed with two decimals. ``scores`` maps a
    column title (``AUC``, ``OP50``, ``OP75``, ``Precision``, ``Norm Precision``) to one value
    per row.
    """
    name_w = max([len(r) for r in row_labels] + [len(table_name)]) + 5
    widths = [max(10, len(k) + 3) for k in scores]
    header = f"{table_name:<{name_w}} |"
    for title, w in zip(scores, widths):
        header += f" {title:<{w}} |"
    lines = [header]
    for i, label in enumerate(row_labels):
        line = f"{label:<{name_w}} |"
        for values, w in zip(scores.values(), widths):
            line += f" {format(float(np.float32(values[i])), '0.2f'):<{w}} |"
        lines.append(line)
    return lines


# ------------------------------------------------------------------------------------------------
# LoRAT / trackit
# ------------------------------------------------------------------------------------------------

def _xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def _xyxy_valid(b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(b).all(axis=1) & (b[:, :2] < b[:, 2:]).all(axis=1)


def _trackit_length_mismatch(n_pred: int, n_gt: int, masked_axis: int) -> None:
    """Raise what numpy raises inside trackit when prediction and gt lengths differ."""
    if 1 in (n_pred, n_gt):
        raise EvaluationError(
            "IndexError", f"boolean index did not match indexed array along axis 0; size of axis is "
                          f"{masked_axis} but size of corresponding boolean axis is 1")
    raise EvaluationError(
        "ValueError", f"operands could not be broadcast together with shapes ({n_pred},2) ({n_gt},2) ")


_TRACKIT_SUCCESS_THR = np.linspace(0, 1, 21)
_TRACKIT_CENTER_THR = np.arange(0, 51)
_TRACKIT_NORM_THR = np.linspace(0, 0.5, 51)


def trackit_native_sequence(pred: np.ndarray, gt: np.ndarray,
                            existence: np.ndarray | None = None) -> dict:
    """LoRAT/trackit ``one_pass_evaluation`` metrics for one sequence (fractions, float64).

    Frames whose ground truth is invalid (non-finite or non-positive size) or whose existence
    flag is False are removed; an invalid prediction scores IoU -1 and infinite centre errors;
    an IoU of exactly 0 counts as -1; success uses ``>=`` on ``linspace(0, 1, 21)``. No
    first-frame replacement. ``pred`` must have as many rows as ``gt``.

    Returns ``ao``, ``sr50``, ``sr75``, ``success_score``, ``precision_score``,
    ``norm_precision_score`` and ``success_curve`` (21), ``precision_curve`` (51),
    ``norm_precision_curve`` (51).
    """
    pred = _as_boxes(pred, "pred")
    gt = _as_boxes(gt, "gt")
    if pred.shape != gt.shape:
        # trackit broadcasts the two arrays: a one-row side broadcasts and then fails at the
        # first boolean mask of the other length; any other mismatch fails to broadcast
        _trackit_length_mismatch(pred.shape[0], gt.shape[0], pred.shape[0] if gt.shape[0] == 1 else gt.shape[0])
    p = _xywh_to_xyxy(pred)
    g = _xywh_to_xyxy(gt)
    with np.errstate(all="ignore"):
        inter = np.concatenate([np.maximum(p[:, :2], g[:, :2]), np.minimum(p[:, 2:], g[:, 2:])], axis=1)
        inter[(inter[:, 2] - inter[:, 0]) <= 0] = 0
        inter[(inter[:, 3] - inter[:, 1]) <= 0] = 0
        inter_area = np.prod(inter[:, 2:] - inter[:, :2], axis=1)
        union = np.prod(p[:, 2:] - p[:, :2], axis=1) + np.prod(g[:, 2:] - g[:, :2], axis=1) - inter_area
        iou = inter_area / union
        if (iou > 1.0).any():
            raise EvaluationError("AssertionError", "")
        keep = _xyxy_valid(g)
        if existence is not None:
            keep = keep & np.asarray(existence).astype(bool)
        pc = (p[:, :2] + p[:, 2:]) / 2.0
        gc = (g[:, :2] + g[:, 2:]) / 2.0
        ce = np.sqrt(((pc - gc) ** 2).sum(1))
        gwh = g[:, 2:] - g[:, :2]
        nce = np.sqrt(((pc / gwh - gc / gwh) ** 2).sum(1))
        pvalid = _xyxy_valid(p)
        iou[~pvalid] = -1.0
        ce[~pvalid] = np.inf
        nce[~pvalid] = np.inf
        iou, ce, nce = iou[keep], ce[keep], nce[keep]
        iou[iou == 0] = -1.0
        if iou.shape[0] == 0:  # np.mean of nothing, then trackit's assert frames_iou.shape[0] > 0
            raise EvaluationError("AssertionError", "")
        succ = np.mean(iou[:, None] >= _TRACKIT_SUCCESS_THR[None, :], axis=0)
        prec = np.mean(ce[:, None] <= _TRACKIT_CENTER_THR[None, :], axis=0)
        nprec = np.mean(nce[:, None] <= _TRACKIT_NORM_THR[None, :], axis=0)
        iou[iou < 0.0] = 0
    return _trackit_native_dict(float(np.mean(iou)), float(np.mean(iou >= 0.5)),
                                float(np.mean(iou >= 0.75)), succ, prec, nprec)


def _trackit_native_dict(ao: float, sr50: float, sr75: float, succ: np.ndarray, prec: np.ndarray,
                         nprec: np.ndarray) -> dict:
    return {
        "ao": ao,
        "sr50": sr50,
        "sr75": sr75,
        "success_score": float(np.mean(succ)),
        "precision_score": float(prec[_SCORE_INDEX]),
        "norm_precision_score": float(nprec[_SCORE_INDEX]),
        "success_curve": [float(v) for v in succ],
        "precision_curve": [float(v) for v in prec],
        "norm_precision_curve": [float(v) for v in nprec],
    }


def trackit_native_mean(per_sequence: Sequence[Mapping]) -> dict:
    """Dataset mean of :func:`trackit_native_sequence` results: equal weight for everything."""
    if len(per_sequence) == 0:
        raise ValueError("no sequences to average")
    succ = np.mean([m["success_curve"] for m in per_sequence], axis=0)
    prec = np.mean([m["precision_curve"] for m in per_sequence], axis=0)
    nprec = np.mean([m["norm_precision_curve"] for m in per_sequence], axis=0)
    out = _trackit_native_dict(float(np.mean([m["ao"] for m in per_sequence])),
                               float(np.mean([m["sr50"] for m in per_sequence])),
                               float(np.mean([m["sr75"] for m in per_sequence])), succ, prec, nprec)
    out["num_sequences"] = len(per_sequence)
    return out


# trackit dataset names for our protocols (they decide visibility / Inf override / uav / +1 shift)
TRACKIT_DATASET_NAMES = {
    "lasot": "LaSOT",
    "lasot_extension_subset": "LaSOT_Extension",
    "generic": "TNL2K",
    "uav": "UAV123",
    "lasot_exclude_invalid_frames": "LaSOT",
}
_TRACKIT_COMPAT_OVERLAP_THR = np.linspace(0, 1, 21)


def trackit_compatible_sequence(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray | None,
                                dataset_name: str = "TNL2K", stark_behavior: bool = True) -> dict:
    """LoRAT/trackit ``one_pass_evaluation_compatible`` metrics for one sequence.

    A port of pytracking's ``calc_seq_err_robust`` with **no** first-frame replacement, no
    zero-size carry-forward and no exceptions for NaN/negative predictions (they just fail);
    thresholds from ``np.linspace``; curves float32 fractions. ``dataset_name`` is trackit's
    name (``LaSOT``, ``LaSOT_Extension``, ``VastTrack``, ``UAV123``, anything else = generic).
    Boxes are given in the benchmark file's coordinates; LaSOT's ``-1``/``+1`` round trip that
    trackit performs is reproduced for float-rounding fidelity.
    """
    pred = _as_boxes(pred, "pred")
    gt = _as_boxes(gt, "gt")
    if pred.shape != gt.shape:
        if pred.shape[0] == 1:  # broadcasts cleanly: a constant prediction on every frame
            pred = np.repeat(pred, gt.shape[0], axis=0)
        else:
            _trackit_length_mismatch(pred.shape[0], gt.shape[0], pred.shape[0])
    one_based = dataset_name in ("LaSOT", "VastTrack")
    with np.errstate(all="ignore"):
        def roundtrip(b: np.ndarray) -> np.ndarray:
            # trackit: loader xywh (LaSOT: x-1, y-1) -> xyxy -> (+1 for 1-based) -> xywh
            if one_based:
                b = b.copy()
                b[:, :2] -= 1
            xyxy = _xywh_to_xyxy(b)
            if one_based:
                xyxy = xyxy + 1
            return np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)

        p = roundtrip(pred)
        g = roundtrip(gt)
        if stark_behavior:
            valid = (g[:, 2:] > 0.0).sum(axis=1) == 2
        else:
            valid = (g > 0.0).sum(axis=1) == 4
        vis = None
        if visible is not None and dataset_name in ("LaSOT", "LaSOT_Extension", "VastTrack"):
            vis = np.asarray(visible).astype(bool)
            valid = valid & vis
        ce = center_error_xywh(p, g)
        nce = center_error_xywh(p, g, normalized=True)
        iou = iou_xywh(p, g)
        ce[~valid] = -1.0 if dataset_name.startswith("UAV") else np.inf
        nce[~valid] = -1.0
        iou[~valid] = -1.0
        if dataset_name in ("LaSOT", "VastTrack"):
            if vis is None:
                raise EvaluationError("TypeError", "bad operand type for unary ~: 'NoneType'")
            nce[~vis] = np.inf
            ce[~vis] = np.inf
        n = np.float64(g.shape[0])
        succ = ((iou[:, None] > _TRACKIT_COMPAT_OVERLAP_THR[None, :]).sum(0).astype(np.float64) / n
                ).astype(np.float32)
        prec = ((ce[:, None] <= CENTER_THRESHOLDS[None, :]).sum(0).astype(np.float64) / n).astype(np.float32)
        nprec = ((nce[:, None] <= NORM_CENTER_THRESHOLDS[None, :]).sum(0).astype(np.float64) / n
                 ).astype(np.float32)
    return _trackit_compatible_dict(succ, prec, nprec)


def _trackit_compatible_dict(succ: np.ndarray, prec: np.ndarray, nprec: np.ndarray) -> dict:
    return {
        "success_score": float(np.mean(succ)),
        "precision_score": float(prec[_SCORE_INDEX]),
        "norm_precision_score": float(nprec[_SCORE_INDEX]),
        "sr50": float(succ[_OP50_INDEX]),
        "sr75": float(succ[_OP75_INDEX]),
        "success_curve": [float(v) for v in succ],
        "precision_curve": [float(v) for v in prec],
        "norm_precision_curve": [float(v) for v in nprec],
    }


def trackit_compatible_mean(per_sequence: Sequence[Mapping]) -> dict:
    """Dataset mean of :func:`trackit_compatible_sequence` results (float64 mean of curves)."""
    if len(per_sequence) == 0:
        raise ValueError("no sequences to average")
    succ = np.mean(np.array([m["success_curve"] for m in per_sequence], dtype=np.float64), axis=0)
    prec = np.mean(np.array([m["precision_curve"] for m in per_sequence], dtype=np.float64), axis=0)
    nprec = np.mean(np.array([m["norm_precision_curve"] for m in per_sequence], dtype=np.float64), axis=0)
    out = _trackit_compatible_dict(succ, prec, nprec)
    out["num_sequences"] = len(per_sequence)
    return out
