"""Track one object in a video file, an image folder or a webcam; draw and save the result.

``lorat track SOURCE --box x,y,w,h --checkpoint PATH --output DIR`` writes, for a source named ``NAME``
(the video's or folder's stem, or ``webcam<N>``):

* ``DIR/NAME_tracked.mp4``: the frames with the box, the confidence and the tracking speed drawn on them
  (``mp4v``; skipped with ``--no-video``);
* ``DIR/NAME_boxes.txt``: one ``x,y,w,h`` line per frame, frame 0 included (it is the given box);
* ``DIR/NAME_scores.txt``: one confidence per frame (1 for frame 0).

Every file is written to a temporary name in ``DIR`` and renamed when complete, so an interrupted run never
leaves a half-written file under the final name (on Ctrl-C the frames tracked so far are still saved).

The Python API is :func:`open_source` (frame iterators that yield ``(H, W, 3)`` uint8 RGB arrays),
:func:`read_image`, :func:`draw_tracking`, :class:`AtomicVideoWriter`, :func:`write_boxes` and
:func:`track_source`. The CLI's model options (``--checkpoint``/``--preset``/``--pretrained``/``--dtype``/``--set``)
come from :mod:`lorat.loading`, shared with ``lorat eval`` and ``lorat export``.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..data.formats import write_boxes  # the one box-file writer, re-exported here
from ..data.images import IMAGE_EXTENSIONS, read_image  # the one image reader (training uses it too)
from ..files import atomic_write_text
from ..loading import add_model_arguments, model_from_args  # re-exported: the CLI's model options
from ..runtime import add_runtime_argument, runtime_name

__all__ = ["IMAGE_EXTENSIONS", "read_image", "FrameSource", "ImageFolderSource", "VideoFileSource",
           "WebcamSource", "open_source", "draw_tracking", "AtomicVideoWriter", "atomic_write_text",
           "write_boxes", "parse_box", "TrackRun", "track_source", "add_model_arguments", "model_from_args",
           "add_track_arguments", "run_track"]

# ============================================================================ reading frames
class FrameSource:
    """Iterable of ``(H, W, 3)`` uint8 RGB frames with a ``name``, an ``fps`` and (if known) ``num_frames``."""

    name: str = "frames"
    fps: float | None = None
    num_frames: int | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        raise NotImplementedError


class ImageFolderSource(FrameSource):
    """Images in a folder (``.jpg .jpeg .png .bmp .webp``) in natural order (``2.jpg`` before ``10.jpg``)."""

    def __init__(self, folder: str | os.PathLike, fps: float | None = None) -> None:
        from ..data.frames import natural_key

        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"frame folder not found: {self.folder}")
        self.files = sorted((p for p in self.folder.iterdir() if p.is_file()
                             and p.suffix.lower() in IMAGE_EXTENSIONS), key=lambda p: natural_key(p.name))
        if not self.files:
            raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {self.folder}")
        self.name = self.folder.resolve().name or "frames"
        self.fps = fps
        self.num_frames = len(self.files)

    def __iter__(self) -> Iterator[np.ndarray]:
        for f in self.files:
            yield read_image(f)


class _CaptureSource(FrameSource):
    """Common code of video files and webcams (``cv2.VideoCapture``, BGR -> RGB)."""

    def _open(self, target: str | int, what: str) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(target)
        if not cap.isOpened():
            cap.release()
            raise ValueError(f"cannot open {what} (unsupported format, corrupt file or no device)")
        return cap

    def _frames(self, cap: cv2.VideoCapture, what: str) -> Iterator[np.ndarray]:
        count = 0
        try:
            while True:
                ok, bgr = cap.read()
                if not ok or bgr is None:
                    break
                count += 1
                if bgr.ndim == 2:
                    bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()
        if count == 0:
            raise ValueError(f"{what} contains no readable frames")
        if self.num_frames and count < self.num_frames - 1:  # containers may over-report by one
            warnings.warn(f"{what}: decoding stopped after {count} of {self.num_frames} frames "
                          "(corrupt or truncated file?)", stacklevel=2)


class VideoFileSource(_CaptureSource):
    """A video file decoded with OpenCV (FFmpeg backend)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video file not found: {self.path}")
        if self.path.stat().st_size == 0:
            raise ValueError(f"video file is empty: {self.path}")
        cap = self._open(str(self.path), f"video {self.path}")
        fps = cap.get(cv2.CAP_PROP_FPS)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        self.name = self.path.stem
        self.fps = fps if fps and fps > 0 and np.isfinite(fps) else None
        self.num_frames = n if n > 0 else None

    def __iter__(self) -> Iterator[np.ndarray]:
        return self._frames(self._open(str(self.path), f"video {self.path}"), f"video {self.path}")


class WebcamSource(_CaptureSource):
    """A camera by index (runs until it stops delivering frames, ``max_frames`` or Ctrl-C)."""

    def __init__(self, index: int) -> None:
        self.index = int(index)
        self.name = f"webcam{self.index}"
        self._cap = self._open(self.index, f"webcam {self.index}")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and fps > 0 else None

    def __iter__(self) -> Iterator[np.ndarray]:
        cap, self._cap = self._cap, None
        return self._frames(cap if cap is not None else self._open(self.index, f"webcam {self.index}"),
                            f"webcam {self.index}")


def open_source(source: str | int | os.PathLike) -> FrameSource:
    """A folder -> :class:`ImageFolderSource`; a file -> :class:`VideoFileSource`; an integer (or a string of
    digits that is not an existing path) -> :class:`WebcamSource`. A missing path is a FileNotFoundError."""
    if isinstance(source, int):
        return WebcamSource(source)
    path = Path(source)
    if path.is_dir():
        return ImageFolderSource(path)
    if path.is_file():
        return VideoFileSource(path)
    if str(source).isdigit():
        return WebcamSource(int(source))
    raise FileNotFoundError(f"source not found: {path} (give a video file, an image folder or a webcam index)")


# ============================================================================ drawing / writing
def draw_tracking(frame: np.ndarray, box_xywh: Sequence[float] | None, score: float | None = None,
                  fps: float | None = None, color: tuple[int, int, int] = (0, 255, 0)) -> np.ndarray:
    """Return a copy of the RGB ``frame`` with the box, its confidence and the speed drawn on it."""
    out = np.ascontiguousarray(frame).copy()
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 300))
    font = max(0.4, min(h, w) / 900)
    if box_xywh is not None and np.isfinite(np.asarray(box_xywh, dtype=np.float64)).all():
        x, y, bw, bh = (float(v) for v in box_xywh)
        p1 = (int(round(x)), int(round(y)))
        p2 = (int(round(x + bw)), int(round(y + bh)))
        cv2.rectangle(out, p1, p2, color, thick, cv2.LINE_AA)
        if score is not None:
            ty = p1[1] - 4 if p1[1] - 4 > 12 * font else min(p2[1] + int(16 * font) + 4, h - 2)
            cv2.putText(out, f"{score:.2f}", (max(p1[0], 0), ty), cv2.FONT_HERSHEY_SIMPLEX, font, color, thick,
                        cv2.LINE_AA)
    if fps is not None:
        cv2.putText(out, f"{fps:.1f} fps", (6, int(22 * font) + 4), cv2.FONT_HERSHEY_SIMPLEX, font,
                    (255, 255, 0), thick, cv2.LINE_AA)
    return out


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask requires setting it; restore right away
    os.umask(mask)
    return mask


def _temp_path(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    return Path(tmp)


class AtomicVideoWriter:
    """``cv2.VideoWriter`` (``mp4v``) writing RGB frames to a temporary file renamed to ``path`` on close.

    The frame size is fixed by the first frame; later frames of another size are resized. Use as a context
    manager: leaving the block with an exception deletes the temporary file (KeyboardInterrupt keeps what
    was written, so a Ctrl-C on a webcam still saves the video).
    """

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = float(fps)
        self._tmp: Path | None = None
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, frame_rgb: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame."""
        h, w = frame_rgb.shape[:2]
        if self._writer is None:
            self._tmp = _temp_path(self.path)
            self._size = (w, h)
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                self.abort()
                raise ValueError(f"cannot write video {self.path} (no mp4v encoder?); use --no-video")
        if (w, h) != self._size:
            frame_rgb = cv2.resize(frame_rgb, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        """Finish the file and move it to ``path``."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            os.chmod(self._tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give what open() would
            os.replace(self._tmp, self.path)
            self._tmp = None

    def abort(self) -> None:
        """Drop the temporary file."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def __enter__(self) -> AtomicVideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            self.close()
        else:
            self.abort()


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``"x,y,w,h"`` (commas or spaces) -> 4 floats; ValueError naming the text otherwise."""
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise ValueError(f"--box {text!r} is not 4 numbers x,y,w,h") from None
    if len(values) != 4:
        raise ValueError(f"--box {text!r} must have 4 numbers x,y,w,h, got {len(values)}")
    return values  # type: ignore[return-value]


# ============================================================================ tracking a source
@dataclass
class TrackRun:
    """Outcome of :func:`track_source`."""

    boxes: list[np.ndarray] = field(default_factory=list)  # (4,) x, y, w, h per frame, frame 0 = given box
    scores: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # tracker time per frame (crop + forward + decode)
    files: dict[str, Path] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def fps(self) -> float:
        """Frames per second of the tracker alone (frames 1.., excluding decoding and drawing)."""
        t = sum(self.seconds[1:])
        return (len(self.seconds) - 1) / t if t > 0 else float("nan")


def track_source(tracker, source: FrameSource, box_xywh: Sequence[float], output: str | os.PathLike | None,
                 write_video: bool = True, max_frames: int | None = None, progress: bool = True,
                 background_io: bool = True) -> TrackRun:
    """Track the object given by ``box_xywh`` in frame 0 of ``source`` through all its frames.

    Writes the files described in the module docstring to ``output`` (nothing when ``output`` is None).
    A Ctrl-C stops early, saves what was tracked and re-raises KeyboardInterrupt. ``background_io``: decode
    the next frames and draw / encode the annotated video in two threads beside the tracker
    (:mod:`lorat.track.background`; a webcam is read one frame ahead only, to keep its latency); the results
    are the same either way.
    """
    from tqdm.auto import tqdm

    from .background import BackgroundWriter, Prefetcher

    run = TrackRun()
    out_dir = Path(output) if output is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    writer = None
    if out_dir is not None and write_video:
        writer = AtomicVideoWriter(out_dir / f"{source.name}_tracked.mp4", source.fps or 30.0)
    total = source.num_frames if max_frames is None else min(max_frames, source.num_frames or max_frames)
    bar = tqdm(total=total, unit="frame", desc=f"track {source.name}", disable=not progress, dynamic_ncols=True)
    smoothed = None  # exponential moving average of the per-frame tracker time
    frames = Prefetcher(source, depth=1 if isinstance(source, WebcamSource) else 4) if background_io else source

    def draw_and_write(frame: np.ndarray, box: np.ndarray, score: float, fps: float | None) -> None:
        writer.write(draw_tracking(frame, box, score, fps))

    behind = BackgroundWriter(draw_and_write) if background_io and writer is not None else None
    try:
        for i, frame in enumerate(frames):
            if max_frames is not None and i >= max_frames:
                break
            t0 = time.perf_counter()
            if i == 0:
                tracker.initialize(frame, box_xywh)
                box, score = np.asarray(box_xywh, dtype=np.float64), 1.0
            else:
                box, score = tracker.track(frame)
            dt = time.perf_counter() - t0
            run.boxes.append(box)
            run.scores.append(score)
            run.seconds.append(dt)
            if i > 0:
                smoothed = dt if smoothed is None else 0.9 * smoothed + 0.1 * dt
            fps = 1.0 / smoothed if smoothed else None
            if behind is not None:
                behind.submit(frame, box, score, fps)
            elif writer is not None:
                draw_and_write(frame, box, score, fps)
            bar.update(1)
            if fps is not None:
                bar.set_postfix(fps=f"{fps:.1f}", score=f"{score:.2f}", refresh=False)
    except KeyboardInterrupt:
        run.interrupted = True
    except BaseException:
        if behind is not None:
            behind.abandon()
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close()
        if isinstance(frames, Prefetcher):
            frames.close()
    if behind is not None:
        try:
            behind.close()  # the frames tracked so far reach the video, also after a Ctrl-C
        except BaseException:
            writer.abort()
            raise
    if out_dir is not None and run.boxes:
        if writer is not None:
            writer.close()
            run.files["video"] = writer.path
        run.files["boxes"] = out_dir / f"{source.name}_boxes.txt"
        write_boxes(run.files["boxes"], run.boxes)
        run.files["scores"] = out_dir / f"{source.name}_scores.txt"
        atomic_write_text(run.files["scores"], "".join(f"{s:.6f}\n" for s in run.scores))
    elif writer is not None:
        writer.abort()
    if run.interrupted:
        raise KeyboardInterrupt
    return run


# ============================================================================ CLI: lorat track
def add_track_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``lorat track``."""
    p.add_argument("source", metavar="SOURCE", help="video file, folder of images, or webcam index (0, 1, ...)")
    p.add_argument("--box", required=True, metavar="X,Y,W,H", help="target box in the first frame (pixels)")
    p.add_argument("--output", "-o", required=True, metavar="DIR",
                   help="folder for NAME_tracked.mp4, NAME_boxes.txt and NAME_scores.txt")
    p.add_argument("--no-video", action="store_true", help="only write the boxes and scores")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_arguments(p)
    add_runtime_argument(p)


def run_track(args: argparse.Namespace) -> int:
    """Run ``lorat track``: load the model, track every frame, write the outputs; returns 0."""
    from .tracker import Tracker

    box = parse_box(args.box)
    source = open_source(args.source)  # open first: a missing source fails before the model loads
    model, track_cfg, _ = model_from_args(args)
    tracker = Tracker(model, track_cfg)
    run = track_source(tracker, source, box, args.output, write_video=not args.no_video,
                       max_frames=args.max_frames, progress=not args.quiet)
    files = ", ".join(str(p) for p in run.files.values())
    print(f"tracked {len(run.boxes)} frames of {source.name} at {run.fps:.1f} fps "
          f"({tracker.device}, precision {tracker.precision}, runtime {runtime_name(tracker)}); wrote {files}")
    return 0
