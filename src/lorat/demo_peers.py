"""Classical peers for ``lorat demo``: OpenCV's CSRT, KCF and MIL trackers on the same held-out sequences.

They need no training, so they tell the reader how hard the synthetic benchmark is. Results are written in the
layout :func:`lorat.eval.runner.evaluate` uses (``<folder>/<seq>.txt`` with one ``x y w h`` row per frame and
``<seq>_time.txt`` with seconds per frame), so :func:`lorat.eval.report.analyze` scores them with exactly the code
that scores LoRAT, and its ``speed_fps`` is their speed. A sequence whose boxes file exists is skipped (resumable).

On a lost target (``update`` returns ``ok = False``) the last box is reported again: the benchmark asks for a box
on every frame, and this is what a user of these trackers would draw.

:func:`run_opencv_peers` runs every (peer, sequence) pair on a pool of worker processes, one OpenCV thread each:
CSRT and MIL run at ~25 fps at 160x120 on one core, so on 2 cores two workers halve the demo's ~2 minutes of
peer tracking. Each pair's fps is measured inside its worker, as with one process. CSRT and KCF give the same
boxes as in one process; MIL draws its samples from OpenCV's global random generator, so its boxes depend on
which sequences its worker ran before (demo AUC 34.0-34.4).
"""
from __future__ import annotations

import multiprocessing
import time
from collections.abc import Mapping
from collections.abc import Sequence as Seq
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from .files import atomic_write_text

__all__ = ["OPENCV_PEERS", "make_opencv_tracker", "run_opencv_peer", "run_opencv_peers"]

#: label in the report -> OpenCV factory name (``cv2.<name>()``, from opencv-contrib-python(-headless)).
OPENCV_PEERS: dict[str, str] = {
    "OpenCV CSRT": "TrackerCSRT_create",
    "OpenCV KCF": "TrackerKCF_create",
    "OpenCV MIL": "TrackerMIL_create",
}


def make_opencv_tracker(factory: str):
    """A fresh OpenCV tracker from its factory name; a clear error when the contrib build is missing."""
    import cv2

    make = getattr(cv2, factory, None) or getattr(getattr(cv2, "legacy", None), factory, None)
    if make is None:
        raise RuntimeError(f"cv2.{factory} is not available in OpenCV {cv2.__version__}: install "
                           "opencv-contrib-python-headless (it replaces opencv-python-headless)")
    return make()


def _int_rect(box_xywh: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    # OpenCV wants an integer rectangle inside the image with sides >= 1.
    x0 = int(np.clip(np.floor(box_xywh[0]), 0, width - 1))
    y0 = int(np.clip(np.floor(box_xywh[1]), 0, height - 1))
    x1 = int(np.clip(np.ceil(box_xywh[0] + box_xywh[2]), x0 + 1, width))
    y1 = int(np.clip(np.ceil(box_xywh[1] + box_xywh[3]), y0 + 1, height))
    return x0, y0, x1 - x0, y1 - y0


def track_opencv(factory: str, frames: Seq[str | Path], init_box_xywh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Track one sequence; returns ``(boxes (N, 4) x, y, w, h, seconds per frame (N,))``.

    Frame 0's row is the given box; its time is the initialisation. Decoding is not timed.
    """
    import cv2

    tracker = make_opencv_tracker(factory)
    boxes = np.zeros((len(frames), 4), np.float64)
    times = np.zeros(len(frames), np.float64)
    last = np.asarray(init_box_xywh, np.float64)
    for i, path in enumerate(frames):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot read frame {path}")
        t0 = time.perf_counter()
        if i == 0:
            tracker.init(img, _int_rect(last, img.shape[1], img.shape[0]))
        else:
            ok, rect = tracker.update(img)
            if ok and rect[2] > 0 and rect[3] > 0:
                last = np.asarray(rect, np.float64)
        times[i] = time.perf_counter() - t0
        boxes[i] = last
    return boxes, times


def run_opencv_peer(factory: str, sequences: Seq, folder: Path) -> None:
    """Track every sequence not yet done with ``cv2.<factory>`` and write its result files into ``folder``."""
    import cv2

    cv2.setNumThreads(1)  # like the demo's one-process budget; CSRT's internal threads barely help at 160x120
    folder.mkdir(parents=True, exist_ok=True)
    for s in sequences:
        done = folder / f"{s.name}.txt"
        if done.is_file():
            continue
        boxes, times = track_opencv(factory, s.frames, s.boxes[0])
        atomic_write_text(folder / f"{s.name}_time.txt", "".join(f"{t:.6f}\n" for t in times))
        atomic_write_text(done, "".join("\t".join(f"{v:.3f}" for v in r) + "\n" for r in boxes))


def run_opencv_peers(peers: Mapping[str, str], sequences: Seq, folders: Mapping[str, Path], workers: int = 2) -> None:
    """:func:`run_opencv_peer` for every peer (label -> factory) into ``folders[label]``, on ``workers`` processes.

    The jobs are (peer, sequence) pairs (a few seconds each), so the workers finish together. ``workers <= 1``
    runs them in this process. Workers are spawned (not forked): the caller may hold OpenMP threads.
    """
    jobs = [(factory, s, Path(folders[label])) for label, factory in peers.items() for s in sequences]
    if workers <= 1 or len(jobs) <= 1:
        for factory, s, folder in jobs:
            run_opencv_peer(factory, [s], folder)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for f in [pool.submit(run_opencv_peer, factory, [s], folder) for factory, s, folder in jobs]:
            f.result()  # re-raises a worker's error (an unreadable frame names its file)
