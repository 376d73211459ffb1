"""Frame I/O off the tracking thread: decode ahead (:class:`Prefetcher`), draw and encode behind
(:class:`BackgroundWriter`).

``lorat track`` spends per frame, besides the tracker, the source's decode and the annotated video's drawing and
encoding: ~1 ms at 640x480, ~4 ms at 720p, ~8 ms at 1080p on the 2-core CPU, next to a 10-20 ms tracker step.
OpenCV releases the GIL while it decodes and encodes, so these threads overlap that work with the model.
Both keep the order of the frames, bound their queues (memory stays at a few frames) and hand an error raised
in their thread to the caller at the point in the sequence where it happened.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = ["Prefetcher", "BackgroundWriter"]

_END = object()
_POLL_S = 0.05  # how often a blocked thread checks whether it was told to stop


class Prefetcher:
    """Iterate ``items`` with up to ``depth`` of them produced ahead by a daemon thread.

    Yields the same items in the same order. An exception raised by ``items`` is raised by ``next()`` after the
    items produced before it. :meth:`close` (also on leaving a ``with`` block) stops the thread and closes
    ``items`` when it is a generator (a video source then releases its capture).
    """

    def __init__(self, items: Iterable[Any], depth: int = 4) -> None:
        if depth < 1:
            raise ValueError(f"depth={depth} must be >= 1")
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._produce, args=(iter(items),), name="lorat-prefetch",
                                        daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, it: Iterator[Any]) -> None:
        try:
            for item in it:
                if not self._put((item, None)):
                    return
            self._put((_END, None))
        except BaseException as e:  # handed to the consumer, raised there
            self._put((None, e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Prefetcher:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        item, error = self._queue.get()
        if error is not None or item is _END:
            self._done = True
            self._thread.join()
            if error is not None:
                raise error
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop producing; returns once the thread has ended (it finishes the item it is producing)."""
        self._done = True
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=_POLL_S)  # unblocks a put that is waiting for room
            except queue.Empty:
                pass
        self._thread.join()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BackgroundWriter:
    """Run ``write(*args)`` for each :meth:`submit` in a daemon thread, in order, with up to ``depth`` queued.

    :meth:`close` waits until every submitted call has run. Once ``write`` has raised, every later call is
    dropped and the exception is raised by each :meth:`submit` and by :meth:`close`. :meth:`abandon` drops
    what is queued and stops the thread (for an error path whose output is thrown away anyway).
    """

    def __init__(self, write: Callable[..., None], depth: int = 8) -> None:
        if depth < 1:
            raise ValueError(f"depth={depth} must be >= 1")
        self._write = write
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._abandoned = threading.Event()
        self._thread = threading.Thread(target=self._consume, name="lorat-writer", daemon=True)
        self._thread.start()

    def _consume(self) -> None:
        while True:
            args = self._queue.get()
            if args is _END:
                return
            if self._error is None and not self._abandoned.is_set():
                try:
                    self._write(*args)
                except BaseException as e:  # raised in the caller's thread
                    self._error = e

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, *args: Any) -> None:
        """Queue ``write(*args)`` (waits while ``depth`` calls are queued)."""
        self._raise_if_failed()
        self._queue.put(args)

    def close(self) -> None:
        """Run every queued call, stop the thread and raise the first error of ``write``, if any."""
        self._queue.put(_END)
        self._thread.join()
        self._raise_if_failed()

    def abandon(self) -> None:
        """Drop the queued calls and stop the thread; an error of ``write`` is not raised."""
        self._abandoned.set()
        self._queue.put(_END)
        self._thread.join()
