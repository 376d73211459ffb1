"""Box errors of a tracker's results on the frames where it is on the target (IoU > 0.3).

    PYTHONPATH=src python benchmarks/demo_box_errors.py BENCHMARK_ROOT RESULTS_DIR [RESULTS_DIR ...]

``BENCHMARK_ROOT``: a GOT-10k-layout root whose ``val`` split holds the ground truth (a demo's
``data/domain_B``); each ``RESULTS_DIR`` holds one ``<sequence>.txt`` of x,y,w,h rows per sequence (a demo's
``results/<tracker>/synthetic_B``). Frame 0 and frames without a visible target are left out. Prints, per
results folder: on-target frames, their mean IoU, the centre error in target sizes (sqrt(w h)) and the median
|log| of the size and aspect ratios.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from lorat.data.datasets import load_benchmark


def iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of two (N, 4) x, y, w, h arrays."""
    lo, hi = np.maximum(a[:, :2], b[:, :2]), np.minimum(a[:, :2] + a[:, 2:], b[:, :2] + b[:, 2:])
    inter = np.clip(hi - lo, 0, None).prod(1)
    return inter / (a[:, 2:].prod(1) + b[:, 2:].prod(1) - inter)


def box_errors(root: Path, results: Path) -> dict[str, float]:
    """The numbers of the module docstring for one results folder."""
    centre, size, aspect, ious = [], [], [], []
    for seq in load_benchmark("got10k_val", root):
        text = (results / f"{seq.name}.txt").read_text()
        pred = np.loadtxt(text.replace(",", " ").splitlines(), ndmin=2)
        visible = np.isfinite(seq.boxes).all(1) & (seq.boxes[:, 2] > 0)
        visible[0] = False
        g, p = seq.boxes[visible], pred[visible]
        iou = iou_xywh(p, g)
        on = iou > 0.3
        g, p = g[on], p[on]
        side = np.sqrt(g[:, 2:].prod(1))
        centre.append(np.hypot(*((p[:, :2] + p[:, 2:] / 2) - (g[:, :2] + g[:, 2:] / 2)).T) / side)
        size.append(np.abs(np.log(np.sqrt(p[:, 2:].prod(1)) / side)))
        aspect.append(np.abs(np.log((p[:, 2] / p[:, 3]) / (g[:, 2] / g[:, 3]))))
        ious.append(iou[on])
    centre, size, aspect, ious = (np.concatenate(v) for v in (centre, size, aspect, ious))
    return {"frames": len(ious), "mean_iou": float(ious.mean()), "centre_median": float(np.median(centre)),
            "centre_p90": float(np.percentile(centre, 90)), "size_log_median": float(np.median(size)),
            "aspect_log_median": float(np.median(aspect))}


if __name__ == "__main__":
    bench = Path(sys.argv[1])
    for folder in sys.argv[2:]:
        e = box_errors(bench, Path(folder))
        print(f"{folder}: {e['frames']} on-target frames, IoU {e['mean_iou']:.3f}, centre error "
              f"{e['centre_median']:.3f} (p90 {e['centre_p90']:.3f}) target sizes, |log size| "
              f"{e['size_log_median']:.3f}, |log aspect| {e['aspect_log_median']:.3f}")
