"""Frame I/O threads of ``lorat track``: same frames in the same order, errors where they happened, clean stops."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from lorat.track.background import BackgroundWriter, Prefetcher
from lorat.track.video import FrameSource, track_source


def test_prefetcher_yields_everything_in_order():
    assert list(Prefetcher(range(50), depth=3)) == list(range(50))
    assert list(Prefetcher([], depth=1)) == []
    with pytest.raises(ValueError, match="depth"):
        Prefetcher([1], depth=0)


def test_prefetcher_raises_the_source_error_after_the_items_before_it():
    def frames():
        yield 1
        yield 2
        raise ValueError("corrupt frame: 3.jpg")

    it = Prefetcher(frames())
    assert next(it) == 1 and next(it) == 2
    with pytest.raises(ValueError, match="3.jpg"):
        next(it)
    with pytest.raises(StopIteration):
        next(it)


def test_closing_early_stops_the_thread_and_closes_the_source():
    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()  # a video source releases its capture here

    it = Prefetcher(endless(), depth=2)
    assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
    it.close()
    assert closed.is_set() and not it._thread.is_alive()
    with pytest.raises(StopIteration):
        next(it)


def test_background_writer_runs_every_call_in_order_and_reports_errors():
    seen = []
    w = BackgroundWriter(lambda a, b: seen.append((a, b)), depth=2)
    for i in range(20):
        w.submit(i, -i)
    w.close()
    assert seen == [(i, -i) for i in range(20)]

    def fail(i):
        if i == 3:
            raise OSError("disk full")
        seen.append(i)

    seen.clear()
    w = BackgroundWriter(fail)
    for i in range(6):
        w.submit(i)
    with pytest.raises(OSError, match="disk full"):
        w.close()
    assert seen == [0, 1, 2]  # calls after the failure are dropped
    with pytest.raises(OSError, match="disk full"):
        w.submit(7)  # and stay dropped: the error is raised again

    w = BackgroundWriter(lambda i: seen.append(i))
    w.abandon()
    assert not w._thread.is_alive()


class _Frames(FrameSource):
    """Random frames; raises KeyboardInterrupt (a Ctrl-C) before frame ``stop_at`` when given."""

    name, fps = "clip", 10.0

    def __init__(self, n: int, stop_at: int | None = None) -> None:
        self.num_frames, self.stop_at = n, stop_at

    def __iter__(self):
        rng = np.random.default_rng(0)
        for i in range(self.num_frames):
            if i == self.stop_at:
                raise KeyboardInterrupt
            yield rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)


class _Tracker:
    """Moves the box by one pixel a frame (the I/O is under test, not the model)."""

    def initialize(self, frame, box):
        self.box = np.asarray(box, dtype=np.float64)

    def track(self, frame):
        self.box = self.box + 1.0
        return self.box.copy(), 0.5


@pytest.mark.parametrize("background", [True, False])
def test_track_source_writes_the_same_outputs_with_and_without_threads(tmp_path, background):
    run = track_source(_Tracker(), _Frames(9), (5, 5, 10, 10), tmp_path, progress=False, background_io=background)
    boxes = np.loadtxt(run.files["boxes"], delimiter=",")
    np.testing.assert_allclose(boxes[:, 0], np.arange(5, 14))
    import cv2

    cap = cv2.VideoCapture(str(run.files["video"]))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == 9


@pytest.mark.parametrize("background", [True, False])
def test_ctrl_c_in_the_source_saves_what_was_tracked(tmp_path, background):
    with pytest.raises(KeyboardInterrupt):
        track_source(_Tracker(), _Frames(9, stop_at=6), (5, 5, 10, 10), tmp_path, progress=False,
                     background_io=background)
    assert np.loadtxt(tmp_path / "clip_boxes.txt", delimiter=",").shape == (6, 4)
    assert (tmp_path / "clip_tracked.mp4").is_file() and not list(tmp_path.glob(".*tmp*"))
