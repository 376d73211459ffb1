"""Frame paths: natural ordering, numbered frame folders and the compact :class:`FrameList`."""
from __future__ import annotations

import operator
import os
import re
from collections import abc
from pathlib import Path

from .errors import DatasetNotFoundError, missing
from .images import IMAGE_EXTENSIONS


class FrameList(abc.Sequence):
    """Read-only list of frame paths ``folder / pattern.format(start + i)`` for ``i < count``.

    Behaves like ``list[Path]`` for indexing, slicing, iteration, ``len`` and ``==``, but costs a few
    bytes instead of one ``Path`` object per frame (TrackingNet alone has ~14 million frames).
    """

    __slots__ = ("folder", "pattern", "start", "count")

    def __init__(self, folder: str | Path, pattern: str, start: int, count: int):
        self.folder = Path(folder)
        self.pattern = pattern
        self.start = int(start)
        self.count = max(0, int(count))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):
        if isinstance(index, slice):
            a, b, step = index.indices(self.count)
            if step == 1:
                return FrameList(self.folder, self.pattern, self.start + a, b - a)
            return [self[i] for i in range(a, b, step)]
        i = operator.index(index)
        if i < 0:
            i += self.count
        if not 0 <= i < self.count:
            raise IndexError("frame index out of range")
        return self.folder / self.pattern.format(self.start + i)

    def __iter__(self):
        for i in range(self.count):
            yield self.folder / self.pattern.format(self.start + i)

    def __eq__(self, other) -> bool:
        if isinstance(other, FrameList):
            return (self.folder, self.pattern, self.start, self.count) == (
                other.folder, other.pattern, other.start, other.count) or list(self) == list(other)
        if isinstance(other, (list, tuple)):
            return len(other) == self.count and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # mutable-list semantics: not hashable

    def __add__(self, other) -> list[Path]:
        return list(self) + list(other)

    def __repr__(self) -> str:
        return f"FrameList({str(self.folder)!r}, {self.pattern!r}, start={self.start}, count={self.count})"

    def __getstate__(self):
        return (str(self.folder), self.pattern, self.start, self.count)

    def __setstate__(self, state):
        folder, self.pattern, self.start, self.count = state
        self.folder = Path(folder)


def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers numerically (``2.jpg`` before ``10.jpg``)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_images(folder: Path) -> list[Path]:
    """Image files in ``folder`` in natural order (raises if the folder is missing)."""
    if not folder.is_dir():
        raise missing(folder, "frame folder")
    files = [e.name for e in _scandir(folder) if e.name.lower().endswith(IMAGE_EXTENSIONS)]
    files.sort(key=natural_key)
    return [folder / f for f in files]


def _scandir(folder: Path):
    with os.scandir(folder) as it:
        return [e for e in it if e.is_file()]


def numbered_images(folder: Path) -> dict[int, Path]:
    """Map frame number -> path for image files whose stem is an integer (any zero padding/extension).

    When two files share a number (``0001.jpg`` and ``0001.png``) the extension that comes first in
    :data:`IMAGE_EXTENSIONS` wins.
    """
    out: dict[int, Path] = {}
    rank: dict[int, int] = {}
    for p in list_images(folder):
        stem, ext = p.stem, p.suffix.lower()
        if not stem.isdigit():
            continue
        n, r = int(stem), IMAGE_EXTENSIONS.index(ext)
        if n not in out or r < rank[n]:
            out[n], rank[n] = p, r
    return out


def frames_in_range(folder: Path, numbers: dict[int, Path], start: int, count: int,
                    what: str) -> list[Path] | FrameList:
    """Frames ``start .. start+count-1`` from a :func:`numbered_images` map; raises on the first gap."""
    frames = []
    for n in range(start, start + count):
        p = numbers.get(n)
        if p is None:
            raise DatasetNotFoundError(
                f"{what}: frame number {n} not found in {folder} (expected frames {start}..{start + count - 1})")
        frames.append(p)
    return compact_frames(frames)


def compact_frames(frames: list[Path]) -> list[Path] | FrameList:
    """Return a :class:`FrameList` when ``frames`` follow one zero-padded numeric pattern, else the list."""
    if not frames:
        return frames
    first = frames[0]
    m = re.fullmatch(r"(\d+)", first.stem)
    if not m:
        return frames
    width, ext, folder, start = len(first.stem), first.suffix, first.parent, int(first.stem)
    pattern = (f"{{:0{width}d}}" if width > 1 and first.stem.startswith("0") else "{}") + ext
    candidate = FrameList(folder, pattern, start, len(frames))
    if all(a == b for a, b in zip(candidate, frames)):
        return candidate
    return frames


__all__ = ["FrameList", "natural_key", "list_images", "numbered_images", "frames_in_range", "compact_frames"]
