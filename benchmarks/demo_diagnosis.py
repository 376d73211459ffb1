"""Why the demo tracker drifts: free-running vs oracle-recentred tracking, and size smoothing.

    PYTHONPATH=src python benchmarks/demo_diagnosis.py WEIGHTS DOMAIN_B_ROOT [N_SEQUENCES]

WEIGHTS is a full ``model_final.safetensors`` of a ``lorat demo`` run (e.g. ``pretrain_A``). Three runs over the
first N held-out sequences, each printing an approximate AUC (mean success over IoU thresholds 0, 0.05, ..., 1 on
visible frames), the mean IoU and the median / 90th percentile of predicted size / true size:

* ``free``: the official tracker as in the benchmark;
* ``oracle``: before every frame the state is reset to the previous frame's true box, so the crop is always
  right: what is left is the per-frame error, with no feedback;
* ``smoothed``: the demo's size-smoothed tracker (``TrackConfig.size_lr = lorat.demo.DEMO_SIZE_LR``).
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from lorat.data.datasets import load_benchmark
from lorat.demo import DEMO_SIZE_LR
from lorat.hub import load_checkpoint
from lorat.track.tracker import TrackConfig, Tracker
from lorat.track.video import read_image


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # (N, 4) xywh each
    iw = np.clip(np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - iw * ih
    return np.where(union > 0, iw * ih / np.maximum(union, 1e-9), 0.0)


def run(weights: str, seqs, mode: str) -> str:
    # smoothed: the demo's tracker (state size follows the prediction at DEMO_SIZE_LR); else the official rule
    size_lr = DEMO_SIZE_LR if mode == "smoothed" else 1.0
    tracker = Tracker(load_checkpoint(weights), TrackConfig(device="cpu", size_lr=size_lr, verbose=False))
    ious, ratios = [], []
    for s in seqs:
        frames = [read_image(p) for p in s.frames]
        tracker.initialize(frames[0], s.boxes[0])
        pred = [s.boxes[0]]
        for t in range(1, len(frames)):
            g = s.boxes[t - 1]
            if mode == "oracle" and np.isfinite(g).all() and g[2] > 0:
                tracker.states["__single__"].box = np.array([g[0], g[1], g[0] + g[2], g[1] + g[3]])
            pred.append(tracker.track(frames[t])[0])
        pred, gt = np.array(pred), s.boxes
        vis = np.isfinite(gt).all(1) & (gt[:, 2] > 0)
        ious.append(_iou(pred[vis], gt[vis]))
        ratios.append(np.sqrt(pred[vis, 2] * pred[vis, 3] / (gt[vis, 2] * gt[vis, 3])))
    iou, r = np.concatenate(ious), np.concatenate(ratios)
    auc = 100 * np.mean([(iou > th).mean() for th in np.linspace(0, 1, 21)])
    return (f"| {mode} | {auc:.1f} | {iou.mean():.3f} | {np.median(r):.2f} | {np.percentile(r, 90):.2f} |")


if __name__ == "__main__":
    torch.set_num_threads(2)
    weights, root = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else None
    seqs = load_benchmark("got10k_val", root)[:n]
    print(f"{len(seqs)} sequences, {weights}\n")
    print("| mode | AUC~ | mean IoU | size ratio median | p90 |\n|---|---:|---:|---:|---:|")
    for mode in ("free", "oracle", "smoothed"):
        print(run(weights, seqs, mode), flush=True)
