"""Tracking jobs of ``lorat app``: sources, box checks, the batched tracking loop and the WebM copy.

:func:`run_job` tracks every target of a :class:`Job` from its start frame with one batched forward per frame
and writes ``lorat track``'s files (see :mod:`lorat.app`); :class:`WebmWriter` writes the browser-playable copy.
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .files import atomic_write_text
from .track.video import AtomicVideoWriter, FrameSource, ImageFolderSource, draw_tracking, read_image, write_boxes

__all__ = ["TARGET_COLORS", "WebmWriter", "Source", "Job", "read_frame", "check_boxes", "output_names", "run_job"]

# One colour per target (RGB); target 1 is green as in `lorat track`.
TARGET_COLORS: tuple[tuple[int, int, int], ...] = (
    (0, 255, 0), (255, 64, 64), (64, 160, 255), (255, 200, 0), (255, 0, 255), (0, 255, 255), (255, 128, 0),
    (160, 96, 255))


# ============================================================================ the browser-playable copy
class WebmWriter:
    """VP8 WebM writer (RGB frames) to a temporary file renamed on :meth:`close`; Chromium and Firefox play it."""

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self._tmp = self.path.with_name(f".{self.path.stem}.{uuid.uuid4().hex[:8]}.tmp.webm")
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def write(self, frame_rgb: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame (later frames of another size are resized)."""
        h, w = frame_rgb.shape[:2]
        if self._writer is None:
            self._size = (w, h)
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"VP80"), self.fps, (w, h))
            if not self._writer.isOpened():
                self._writer = None
                raise ValueError(f"cannot write {self.path}: OpenCV has no VP8 (WebM) encoder")
        if (w, h) != self._size:
            frame_rgb = cv2.resize(frame_rgb, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        """Finish the file and move it to ``path``."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the temporary file."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self._tmp.unlink(missing_ok=True)


# ============================================================================ sources and jobs
@dataclass
class Source:
    """An opened video or image folder: where it is and what it looks like."""

    id: str
    path: Path
    name: str
    num_frames: int | None
    width: int
    height: int
    fps: float | None

    def public(self) -> dict[str, Any]:
        """JSON view for the page."""
        return {"id": self.id, "name": self.name, "num_frames": self.num_frames, "width": self.width,
                "height": self.height, "fps": self.fps}


@dataclass
class Job:
    """One tracking run: its progress, outcome and files (read by the page through ``GET /api/jobs/<id>``)."""

    id: str
    source: Source
    start_frame: int
    boxes: list[list[float]]
    out_dir: Path
    state: str = "loading"  # loading -> running -> done | cancelled | error
    done: int = 0
    total: int | None = None
    fps: float | None = None
    error: str | None = None
    model: str = ""
    runtime: str = ""
    files: dict[str, str] = field(default_factory=dict)  # role -> file name in out_dir
    started: float = field(default_factory=time.monotonic)
    cancel: threading.Event = field(default_factory=threading.Event)

    def public(self) -> dict[str, Any]:
        """JSON view for the page."""
        return {"id": self.id, "state": self.state, "done": self.done, "total": self.total, "fps": self.fps,
                "error": self.error, "model": self.model, "runtime": self.runtime, "files": self.files,
                "start_frame": self.start_frame, "boxes": self.boxes, "source": self.source.name,
                "seconds": round(time.monotonic() - self.started, 2)}


def read_frame(source: Source, index: int) -> np.ndarray:
    """Frame ``index`` of ``source`` as ``(H, W, 3)`` uint8 RGB (the same pixels tracking sees)."""
    if source.num_frames is not None and not 0 <= index < source.num_frames:
        raise ValueError(f"frame {index} is outside {source.name} (frames 0..{source.num_frames - 1})")
    if source.path.is_dir():
        return read_image(ImageFolderSource(source.path).files[index])
    cap = cv2.VideoCapture(str(source.path))
    try:
        if index:
            cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, bgr = cap.read()
    finally:
        cap.release()
    if not ok or bgr is None:
        raise ValueError(f"cannot decode frame {index} of {source.name}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def check_boxes(boxes: Any, width: int, height: int) -> list[list[float]]:
    """Validate the page's boxes ``[[x, y, w, h], ...]`` for a ``width x height`` frame (ValueError naming one)."""
    if not isinstance(boxes, list) or not boxes:
        raise ValueError("no target: drag a box around the object on the frame first")
    out = []
    for k, b in enumerate(boxes, 1):
        try:
            x, y, w, h = (float(v) for v in b)
        except (TypeError, ValueError):
            raise ValueError(f"target {k}: box {b!r} is not 4 numbers x, y, w, h") from None
        if not all(np.isfinite([x, y, w, h])):
            raise ValueError(f"target {k}: box {b!r} contains NaN or infinity")
        if w < 1 or h < 1:
            raise ValueError(f"target {k}: the box is empty ({w:g} x {h:g} px); drag to draw a box around the "
                             "object")
        if x >= width or y >= height or x + w <= 0 or y + h <= 0:
            raise ValueError(f"target {k}: box ({x:g}, {y:g}, {w:g}, {h:g}) lies outside the {width}x{height} "
                             "frame")
        out.append([x, y, w, h])
    return out


def output_names(name: str, targets: int) -> list[tuple[str, str]]:
    """``(boxes file, scores file)`` per target: ``lorat track``'s names for one target, numbered for several."""
    if targets == 1:
        return [(f"{name}_boxes.txt", f"{name}_scores.txt")]
    return [(f"{name}_target{k}_boxes.txt", f"{name}_target{k}_scores.txt") for k in range(1, targets + 1)]


def _batched_calls(tracker: Any):
    """``(init(ids, images, boxes), track(ids, images))`` for the tracker's batched methods.

    The tracker API is ``initialize_many(images, boxes, ids)`` / ``track_many(images, ids)``; trackers that
    still take the ids first (``initialize_many(ids, images, boxes)``) are called in that order.
    """
    import inspect

    first = next(iter(inspect.signature(tracker.initialize_many).parameters), "")
    if first == "ids":
        return (lambda ids, images, boxes: tracker.initialize_many(ids, images, boxes),
                lambda ids, images: tracker.track_many(ids, images))
    return (lambda ids, images, boxes: tracker.initialize_many(images, boxes, ids),
            lambda ids, images: tracker.track_many(images, ids))


def run_job(job: Job, tracker: Any, source: FrameSource) -> None:
    """Track ``job.boxes`` from ``job.start_frame`` to the end (or a cancel) and write the result files.

    Frame ``start_frame`` reports the given boxes with confidence 1, then one batched ``track_many`` per frame;
    the per-frame drawing and the fps smoothing are those of ``lorat track``.
    """
    ids = list(range(len(job.boxes)))
    initialize_many, track_many = _batched_calls(tracker)
    n = len(ids)
    # lorat track's rule (the source's rate, else 30); containers without a frame rate (MediaRecorder WebM)
    # may report their 1 kHz timebase instead, which no player shows sensibly
    fps_in = source.fps if source.fps and source.fps <= 240 else 30.0
    mp4 = AtomicVideoWriter(job.out_dir / f"{source.name}_tracked.mp4", fps_in)
    webm = WebmWriter(job.out_dir / f"{source.name}_tracked.webm", fps_in)
    boxes: list[list[np.ndarray]] = [[] for _ in ids]
    scores: list[list[float]] = [[] for _ in ids]
    smoothed = None
    if source.num_frames is not None:
        job.total = source.num_frames - job.start_frame
    job.state = "running"
    try:
        for i, frame in enumerate(source):
            if i < job.start_frame:
                continue
            if job.cancel.is_set():
                break
            t0 = time.perf_counter()
            if i == job.start_frame:
                initialize_many(ids, [frame] * n, job.boxes)
                results = [(np.asarray(b, dtype=np.float64), 1.0) for b in job.boxes]
            else:
                results = track_many(ids, [frame] * n)
            dt = time.perf_counter() - t0
            if i > job.start_frame:
                smoothed = dt if smoothed is None else 0.9 * smoothed + 0.1 * dt
            fps = 1.0 / smoothed if smoothed else None
            drawn = frame
            for k, (box, score) in enumerate(results):
                boxes[k].append(box)
                scores[k].append(score)
                drawn = draw_tracking(drawn, box, score, fps if k == 0 else None, TARGET_COLORS[k % len(TARGET_COLORS)])
            mp4.write(drawn)
            webm.write(drawn)
            job.done += 1
            job.fps = fps
    except BaseException:
        mp4.abort()
        webm.abort()
        raise
    if job.done == 0:
        mp4.abort()
        webm.abort()
        if job.cancel.is_set():  # cancelled before the first frame: nothing to write
            job.state = "cancelled"
            return
        raise ValueError(f"frame {job.start_frame} of {source.name} could not be read")
    mp4.close()
    webm.close()
    files = {"video": mp4.path.name, "webm": webm.path.name}
    for k, (box_name, score_name) in enumerate(output_names(source.name, n)):
        write_boxes(job.out_dir / box_name, boxes[k])
        atomic_write_text(job.out_dir / score_name, "".join(f"{s:.6f}\n" for s in scores[k]))
        files[f"boxes{k + 1}"] = box_name
        files[f"scores{k + 1}"] = score_name
    job.files = files
    job.state = "cancelled" if job.cancel.is_set() else "done"
