"""Tracker settings of the demo: AUC of one checkpoint on a demo's held-out domain-B sequences.

    PYTHONPATH=src python benchmarks/demo_tracker_settings.py CKPT DOMAIN_B_ROOT TAG [field=value ...]

``field=value``: any :class:`lorat.track.tracker.TrackConfig` field (``size_lr=0.15``, ``window_penalty=0.6``,
``dtype=bfloat16``; default dtype float32), plus ``n=12`` (first N sequences), ``saf=3.5`` (test-time search area
factor) and ``rs=0.3`` (the *reported* box is size-smoothed too, through a ``decode`` override). Prints one JSON
line: AUC, P@20, median / p90 of sqrt(predicted area / true area) on visible frames, seconds.
Raw results go to ``/tmp/demo_tracker_settings/TAG``.
"""
from __future__ import annotations

import ast
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lorat import boxes as bx
from lorat.data.datasets import load_benchmark
from lorat.eval.report import ResultSource, analyze
from lorat.eval.runner import evaluate
from lorat.hub import load_checkpoint
from lorat.track.tracker import TrackConfig, Tracker


def reported_smoothing(rate: float) -> type[Tracker]:
    """A tracker whose reported box (and so its state) has the size ``(1 - rate) * state + rate * predicted``."""

    class ReportedSmoothing(Tracker):
        def decode(self, outputs, crops, states):
            boxes, scores = super().decode(outputs, crops, states)
            for i, (st, c) in enumerate(zip(states, crops)):
                centre = (boxes[i, :2] + boxes[i, 2:]) / 2
                size = (1 - rate) * (st.box[2:] - st.box[:2]) + rate * (boxes[i, 2:] - boxes[i, :2])
                boxes[i] = bx.clip_to_image(np.concatenate([centre - size / 2, centre + size / 2]), *c.image_size)
            return boxes, scores

    return ReportedSmoothing


def main(ckpt: str, root: Path, tag: str, args: list[str]) -> dict:
    torch.set_num_threads(2)
    kw = {k: (v if k == "dtype" else ast.literal_eval(v)) for k, v in (a.split("=", 1) for a in args)}
    n, saf, rs = int(kw.pop("n", 0)), kw.pop("saf", None), kw.pop("rs", None)
    test = load_benchmark("got10k_val", root)
    test = test[:n] if n else test
    model = load_checkpoint(ckpt)
    if saf:
        model.cfg.search_area_factor = saf
    res = Path("/tmp/demo_tracker_settings") / tag
    shutil.rmtree(res, ignore_errors=True)
    t0 = time.perf_counter()
    cls = reported_smoothing(rs) if rs else Tracker
    tracker = cls(model, TrackConfig(device="cpu", verbose=False, **{"dtype": "float32", **kw}))
    evaluate(tracker, {"b": test}, res.parent, tag, batch=8, workers=0, progress=False)
    o = analyze([ResultSource(tag, res / "b")], test, rule="pytracking", protocol="generic")["trackers"][tag]["overall"]
    ratios = []
    for s in test:
        pred, gt = np.loadtxt(res / "b" / f"{s.name}.txt", ndmin=2), s.boxes
        ok = np.isfinite(gt).all(1) & (gt[:, 2] > 0)
        ratios.append(np.sqrt(pred[ok, 2] * pred[ok, 3] / (gt[ok, 2] * gt[ok, 3])))
    r = np.concatenate(ratios)
    return {"tag": tag, "ckpt": ckpt, "kw": args, "auc": round(o["auc"], 1), "prec": round(o["precision"], 1),
            "size_med": round(float(np.median(r)), 2), "size_p90": round(float(np.percentile(r, 90)), 2),
            "sec": round(time.perf_counter() - t0, 1)}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4:])))
