"""Evaluation benchmarks as they lie on disk, and the file parsers shared with the training readers.

Every reader takes the dataset root and returns ``list[Sequence]``. Boxes are returned exactly as the
files write them (``x, y, w, h``; LaSOT and OTB are 1-based, the others 0-based), because the
reference metrics expect them that way. Layouts and quirks follow ``docs/metrics-and-formats.md`` §8.

Errors are raised as :class:`DatasetError` subclasses whose message names the file (and line).
Use :func:`lorat.data.datasets.load_benchmark` rather than calling the readers directly: it also
resolves the dataset root from the environment or the config file.
"""
from __future__ import annotations

import ast
import io
import operator
import os
import re
import struct
import warnings
from collections import abc
from pathlib import Path

import numpy as np

from .sequence import Sequence

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


# ----------------------------------------------------------------------------------------------
# Errors


class DatasetError(Exception):
    """A dataset is missing, incomplete or malformed; the message says which file and what to do."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A root folder, annotation file, list file or frame does not exist."""

    def __str__(self) -> str:  # FileNotFoundError would otherwise format (errno, strerror)
        return str(self.args[0]) if self.args else ""


class DatasetFormatError(DatasetError, ValueError):
    """A file exists but its content does not match the dataset's format."""


def _missing(path: Path, what: str, hint: str = "") -> DatasetNotFoundError:
    msg = f"{what} not found: {path}"
    return DatasetNotFoundError(msg + (f" ({hint})" if hint else ""))


# ----------------------------------------------------------------------------------------------
# Frame lists


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
        raise _missing(folder, "frame folder")
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
    pattern = ("{:0%dd}" % width if width > 1 and first.stem.startswith("0") else "{}") + ext
    candidate = FrameList(folder, pattern, start, len(frames))
    if all(a == b for a, b in zip(candidate, frames)):
        return candidate
    return frames


# ----------------------------------------------------------------------------------------------
# Text parsers


_FIELD_SEP = re.compile(r"[,\t ;]+")


def _read_text(path: Path, what: str) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _missing(path, what) from None
    except IsADirectoryError:
        raise DatasetFormatError(f"{what} is a directory, expected a file: {path}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DatasetFormatError(f"{path}: not a UTF-8 text file ({e})") from None


def _is_number(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def read_boxes(path: Path, what: str = "ground-truth file") -> np.ndarray:
    """Parse a ``x,y,w,h`` file into an ``(N, 4)`` float64 array.

    Accepts comma, tab, semicolon or space separators (mixed per file, as in OTB), ``NaN`` rows
    (UAV123), one non-numeric header line (e.g. ``x,y,w,h``), ``#`` comments and trailing blank lines.
    A blank line between rows or a row without exactly four numbers raises :class:`DatasetFormatError`
    naming the file and the 1-based line number.
    """
    text = _read_text(path, what)
    fast = _fast_boxes(text)
    if fast is not None:
        return fast
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    rows: list[list[float]] = []
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if line.startswith("#"):
            continue
        if not line:
            raise DatasetFormatError(f"{path}:{lineno}: blank line between annotation rows")
        fields = [f for f in _FIELD_SEP.split(line) if f]
        if not rows and lineno == 1 and not any(_is_number(f) for f in fields):
            continue  # header line such as "x,y,w,h"
        if len(fields) != 4:
            raise DatasetFormatError(
                f"{path}:{lineno}: expected 4 numbers 'x,y,w,h', got {len(fields)} fields: {raw!r}")
        try:
            rows.append([float(f) for f in fields])
        except ValueError:
            raise DatasetFormatError(f"{path}:{lineno}: not a number in {raw!r}") from None
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


_BLANK_LINE = re.compile(r"\n[ \t]*\r?\n")


def _fast_boxes(text: str) -> np.ndarray | None:
    """NumPy's C parser for well-formed files (20x faster); None sends the file to the checking parser."""
    body = text.strip()
    if not body or ";" in body or _BLANK_LINE.search(body):
        return None
    first = body.split("\n", 1)[0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = np.loadtxt(io.StringIO(body), delimiter="," if "," in first else None, dtype=np.float64,
                             ndmin=2, comments="#")
    except ValueError:
        return None
    return arr if arr.ndim == 2 and arr.shape[1] == 4 else None


def read_flags(path: Path, expected: int | None = None, what: str = "label file") -> np.ndarray:
    """Parse integer labels written one per line (GOT-10k) or on one comma-separated line (LaSOT)."""
    text = _read_text(path, what)
    values: list[int] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for tok in _FIELD_SEP.split(line.strip()):
            if not tok:
                continue
            try:
                v = float(tok)
                if v != int(v):
                    raise ValueError
            except ValueError:
                raise DatasetFormatError(f"{path}:{lineno}: expected an integer label, got {tok!r}") from None
            values.append(int(v))
    if expected is not None and len(values) != expected:
        raise DatasetFormatError(
            f"{path}: has {len(values)} labels but the ground truth has {expected} rows")
    return np.asarray(values, dtype=np.int64)


def read_name_list(path: Path, what: str = "sequence list") -> list[str]:
    """Non-empty stripped lines of a list file (GOT-10k ``list.txt``, LaSOT ``testing_set.txt``)."""
    return [ln.strip() for ln in _read_text(path, what).splitlines() if ln.strip()]


def read_ini(path: Path) -> dict[str, str]:
    """GOT-10k ``meta_info.ini``: ``[METAINFO]`` then ``key: value`` lines (split on the first ``': '``)."""
    meta: dict[str, str] = {}
    for lineno, line in enumerate(_read_text(path, "meta_info.ini").splitlines(), 1):
        line = line.strip()
        if not line or (line.startswith("[") and line.endswith("]")):
            continue
        if ":" not in line:
            raise DatasetFormatError(f"{path}:{lineno}: expected 'key: value', got {line!r}")
        key, _, value = line.partition(":")
        meta[key.strip()] = value.strip()
    return meta


def parse_resolution(value: str, path: Path) -> tuple[int, int]:
    """``'(1280, 720)'`` -> ``(1280, 720)`` (width, height)."""
    try:
        w, h = ast.literal_eval(value)
        return int(w), int(h)
    except (ValueError, SyntaxError, TypeError):
        raise DatasetFormatError(f"{path}: cannot parse resolution {value!r}, expected '(W, H)'") from None


# ----------------------------------------------------------------------------------------------
# Image size without decoding


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of a JPEG or PNG read from its header; other formats fall back to OpenCV."""
    try:
        with open(path, "rb") as f:
            head = f.read(32)
            if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
                w, h = struct.unpack(">II", head[16:24])
                return int(w), int(h)
            if head.startswith(b"\xff\xd8"):
                size = _jpeg_size(f)
                if size is not None:
                    return size
    except FileNotFoundError:
        raise _missing(path, "frame") from None
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetFormatError(f"cannot read image {path}")
    return int(img.shape[1]), int(img.shape[0])


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(f) -> tuple[int, int] | None:
    f.seek(2)
    while True:
        b = f.read(1)
        while b and b != b"\xff":
            b = f.read(1)
        while b == b"\xff":
            b = f.read(1)
        if not b:
            return None
        marker = b[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue  # markers without a length field
        seg = f.read(2)
        if len(seg) < 2:
            return None
        length = struct.unpack(">H", seg)[0]
        if marker in _SOF:
            data = f.read(5)
            if len(data) < 5:
                return None
            h, w = struct.unpack(">HH", data[1:5])
            return int(w), int(h)
        f.seek(length - 2, 1)


# ----------------------------------------------------------------------------------------------
# LaSOT and LaSOT_extension


# Protocol II test split (280 sequences): the 4 test instances of each of the 70 classes. A
# ``testing_set.txt`` in the root takes precedence over this table.
LASOT_TEST_SPLIT: dict[str, tuple[int, ...]] = {
    "airplane": (1, 9, 13, 15), "basketball": (1, 6, 7, 11), "bear": (2, 4, 6, 17),
    "bicycle": (2, 7, 9, 18), "bird": (2, 3, 15, 17), "boat": (3, 4, 12, 17), "book": (3, 10, 11, 19),
    "bottle": (1, 12, 14, 18), "bus": (2, 5, 17, 19), "car": (2, 6, 9, 17), "cat": (1, 3, 18, 20),
    "cattle": (2, 7, 12, 13), "chameleon": (3, 6, 11, 20), "coin": (3, 6, 7, 18), "crab": (3, 6, 12, 18),
    "crocodile": (3, 4, 10, 14), "cup": (1, 4, 7, 17), "deer": (4, 8, 10, 14), "dog": (1, 7, 15, 19),
    "drone": (2, 7, 13, 15), "electricfan": (1, 10, 18, 20), "elephant": (1, 12, 16, 18),
    "flag": (2, 3, 5, 9), "fox": (2, 3, 5, 20), "frog": (3, 4, 9, 20), "gametarget": (1, 2, 7, 13),
    "gecko": (1, 5, 16, 19), "giraffe": (2, 10, 13, 15), "goldfish": (3, 7, 8, 10),
    "gorilla": (4, 6, 9, 13), "guitar": (3, 8, 10, 16), "hand": (2, 3, 9, 16), "hat": (1, 2, 5, 18),
    "helmet": (5, 11, 13, 19), "hippo": (1, 7, 9, 20), "horse": (1, 4, 12, 15),
    "kangaroo": (2, 5, 11, 14), "kite": (4, 6, 10, 15), "leopard": (1, 7, 16, 20),
    "licenseplate": (6, 12, 13, 15), "lion": (1, 5, 12, 20), "lizard": (1, 3, 6, 13),
    "microphone": (2, 6, 14, 16), "monkey": (3, 4, 9, 17), "motorcycle": (1, 3, 9, 18),
    "mouse": (1, 8, 9, 17), "person": (1, 5, 10, 12), "pig": (2, 10, 13, 18), "pool": (3, 7, 12, 15),
    "rabbit": (10, 13, 17, 19), "racing": (10, 15, 16, 20), "robot": (1, 5, 8, 19),
    "rubicCube": (1, 6, 14, 19), "sepia": (6, 8, 13, 16), "shark": (2, 3, 5, 6), "sheep": (3, 5, 7, 9),
    "skateboard": (3, 8, 16, 19), "spider": (14, 16, 18, 20), "squirrel": (8, 11, 13, 19),
    "surfboard": (4, 5, 8, 12), "swing": (10, 14, 17, 20), "tank": (6, 9, 14, 16),
    "tiger": (4, 6, 12, 18), "train": (1, 7, 11, 20), "truck": (3, 6, 7, 16), "turtle": (5, 8, 9, 16),
    "umbrella": (2, 9, 17, 19), "volleyball": (1, 13, 18, 19), "yoyo": (7, 15, 17, 19),
    "zebra": (10, 14, 16, 17),
}


def lasot_test_names() -> list[str]:
    """The 280 Protocol II test sequence names (class order, then instance number)."""
    return [f"{c}-{k}" for c in sorted(LASOT_TEST_SPLIT) for k in LASOT_TEST_SPLIT[c]]


def lasot_sequence_dir(root: Path, name: str) -> Path:
    """``<root>/<class>/<class>-<k>``, or ``<root>/<class>-<k>`` for flat copies."""
    cls = name.rsplit("-", 1)[0]
    nested = root / cls / name
    if nested.is_dir() or not (root / name).is_dir():
        return nested
    return root / name


def lasot_sequences_on_disk(root: Path) -> list[str]:
    """Names of all ``<class>-<k>`` folders (with a ``groundtruth.txt``) under a LaSOT-style root."""
    if not root.is_dir():
        raise _missing(root, "dataset root")
    names = set()
    for cls_dir in root.iterdir():
        if not cls_dir.is_dir():
            continue
        if (cls_dir / "groundtruth.txt").is_file():  # flat layout
            names.add(cls_dir.name)
            continue
        for seq_dir in cls_dir.iterdir():
            if seq_dir.name.startswith(cls_dir.name + "-") and (seq_dir / "groundtruth.txt").is_file():
                names.add(seq_dir.name)
    return sorted(names, key=natural_key)


def lasot_split_names(root: Path, split: str) -> list[str]:
    """LaSOT Protocol II ``test`` or ``train`` names.

    Uses ``testing_set.txt`` / ``training_set.txt`` from the root when present (file order); otherwise
    the built-in test table, and for ``train`` every sequence on disk that is not a test sequence.
    """
    list_file = root / ("testing_set.txt" if split == "test" else "training_set.txt")
    if list_file.is_file():
        return read_name_list(list_file, f"LaSOT {split} split")
    if split == "test":
        return lasot_test_names()
    test = set(lasot_test_names())
    other = root / "testing_set.txt"
    if other.is_file():
        test = set(read_name_list(other, "LaSOT test split"))
    return [n for n in lasot_sequences_on_disk(root) if n not in test]


def read_lasot_sequence(seq_dir: Path, name: str, dataset: str) -> Sequence:
    """One LaSOT(-ext) sequence: 1-based boxes as written, visibility from the two flag files."""
    if not seq_dir.is_dir():
        raise _missing(seq_dir, f"{dataset} sequence folder '{name}'")
    boxes = read_boxes(seq_dir / "groundtruth.txt")
    n = len(boxes)
    occ = read_flags(seq_dir / "full_occlusion.txt", n, "full_occlusion.txt")
    oov = read_flags(seq_dir / "out_of_view.txt", n, "out_of_view.txt")
    nlp = seq_dir / "nlp.txt"
    language = _read_text(nlp, "nlp.txt").strip() if nlp.is_file() else None
    return Sequence(
        name=name,
        frames=FrameList(seq_dir / "img", "{:08d}.jpg", 1, n),
        boxes=boxes,
        visible=(occ == 0) & (oov == 0),
        dataset=dataset,
        object_class=name.rsplit("-", 1)[0],
        language=language or None,
    )


def read_lasot(root: Path, split: str = "test") -> list[Sequence]:
    """LaSOT Protocol II split (``test``: 280 sequences, ``train``: 1120)."""
    root = Path(root)
    if not root.is_dir():
        raise _missing(root, "LaSOT root")
    source = root / ("testing_set.txt" if split == "test" else "training_set.txt")
    source_text = f"listed in {source}" if source.is_file() else f"in the built-in Protocol II {split} split"
    out = []
    for n in lasot_split_names(root, split):
        d = lasot_sequence_dir(root, n)
        if not d.is_dir():
            raise _missing(d, f"LaSOT sequence folder '{n}' ({source_text})")
        out.append(read_lasot_sequence(d, n, "lasot"))
    return out


def read_lasot_ext(root: Path) -> list[Sequence]:
    """LaSOT_extension: every ``<class>/<class>-<k>`` sequence under the root (150 in the release)."""
    root = Path(root)
    names = lasot_sequences_on_disk(root)
    if not names:
        raise DatasetNotFoundError(f"no LaSOT_ext sequences (<class>/<class>-<k>/groundtruth.txt) under {root}")
    return [read_lasot_sequence(lasot_sequence_dir(root, n), n, "lasot_ext") for n in names]


# ----------------------------------------------------------------------------------------------
# GOT-10k


def got10k_sequence_names(root: Path, split: str) -> list[str]:
    """Names from ``<root>/<split>/list.txt``."""
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise _missing(split_dir, f"GOT-10k {split} folder")
    list_file = split_dir / "list.txt"
    if not list_file.is_file():
        raise _missing(list_file, f"GOT-10k {split} list.txt", "every GOT-10k split folder ships one")
    return read_name_list(list_file, "GOT-10k list.txt")


def read_got10k_sequence(seq_dir: Path, split: str, *, labels: bool = True) -> Sequence:
    """One GOT-10k sequence. ``labels=False`` skips ``cover.label``/``cut_by_image.label``/meta extras."""
    name = seq_dir.name
    if not seq_dir.is_dir():
        raise _missing(seq_dir, f"GOT-10k sequence folder '{name}' listed in {seq_dir.parent / 'list.txt'}")
    gt = read_boxes(seq_dir / "groundtruth.txt")
    if split == "test":
        # The test split publishes the first box only: the frame count comes from the folder.
        numbers = numbered_images(seq_dir)
        n = max(len(numbers), len(gt))
        frames = frames_in_range(seq_dir, numbers, 1, n, f"GOT-10k {name}")
        boxes = np.full((n, 4), np.nan)
        boxes[: len(gt)] = gt
    else:
        n = len(gt)
        frames = FrameList(seq_dir, "{:08d}.jpg", 1, n)
        boxes = gt
    visible = None
    absence = seq_dir / "absence.label"
    if absence.is_file():
        visible = read_flags(absence, n, "absence.label") == 0
    extra: dict = {}
    meta_file = seq_dir / "meta_info.ini"
    object_class = None
    if meta_file.is_file():
        meta = read_ini(meta_file)
        object_class = meta.get("object_class") or None
        if "resolution" in meta:
            extra["image_size"] = parse_resolution(meta["resolution"], meta_file)
        if labels:
            extra["meta"] = meta
    if labels:
        for key in ("cover", "cut_by_image"):
            f = seq_dir / f"{key}.label"
            if f.is_file():
                extra[key] = read_flags(f, n, f.name)
    return Sequence(name=name, frames=frames, boxes=boxes, visible=visible, dataset="got10k",
                    object_class=object_class, extra=extra)


def read_got10k(root: Path, split: str = "val") -> list[Sequence]:
    """GOT-10k ``train``/``val``/``test`` split in ``list.txt`` order."""
    root = Path(root)
    return [read_got10k_sequence(root / split / n, split) for n in got10k_sequence_names(root, split)]


# ----------------------------------------------------------------------------------------------
# TrackingNet


def trackingnet_frames(frame_dir: Path, count: int | None, what: str) -> list[Path] | FrameList:
    """``frames/<seq>/0.jpg, 1.jpg, ...`` (0-based, no padding). ``count=None`` lists the folder."""
    if count is not None:
        return FrameList(frame_dir, "{}.jpg", 0, count)
    numbers = numbered_images(frame_dir)
    if not numbers:
        raise DatasetNotFoundError(f"{what}: no frames in {frame_dir}")
    return frames_in_range(frame_dir, numbers, 0, max(numbers) + 1, what)


def read_trackingnet_test(root: Path) -> list[Sequence]:
    """TrackingNet ``TEST`` (511 sequences; the first box only, frames counted from the folder)."""
    root = Path(root)
    anno_dir = root / "TEST" / "anno"
    if not anno_dir.is_dir():
        raise _missing(anno_dir, "TrackingNet TEST/anno folder")
    out = []
    for anno in sorted(anno_dir.glob("*.txt"), key=lambda p: p.name):
        name = anno.stem
        gt = read_boxes(anno)
        frames = trackingnet_frames(root / "TEST" / "frames" / name, None, f"TrackingNet {name}")
        n = max(len(frames), len(gt))
        if len(gt) > len(frames):
            raise DatasetFormatError(f"{anno}: {len(gt)} rows but only {len(frames)} frames")
        boxes = np.full((n, 4), np.nan)
        boxes[: len(gt)] = gt
        out.append(Sequence(name=name, frames=frames, boxes=boxes, dataset="trackingnet"))
    if not out:
        raise DatasetNotFoundError(f"no TrackingNet test annotations (*.txt) in {anno_dir}")
    return out


# ----------------------------------------------------------------------------------------------
# TNL2K


TNL2K_DAMAGED_FRAMES = {("test_015_Sord_video_Q01_done", "00000492.png")}


def read_tnl2k(root: Path) -> list[Sequence]:
    """TNL2K test: ``<seq>/imgs/*`` sorted by name, ``groundtruth.txt``, ``language.txt``.

    The damaged frame ``00000492.png`` of ``test_015_Sord_video_Q01_done`` is replaced by the frame
    before it (the documented fix), so no copy is needed on disk.
    """
    root = Path(root)
    if not root.is_dir():
        raise _missing(root, "TNL2K root")
    seq_dirs = sorted((d for d in root.iterdir() if (d / "groundtruth.txt").is_file()), key=lambda d: d.name)
    if not seq_dirs:
        raise DatasetNotFoundError(f"no TNL2K sequences (<seq>/groundtruth.txt) under {root}")
    out = []
    for d in seq_dirs:
        gt = read_boxes(d / "groundtruth.txt")
        frames = list_images(d / "imgs")
        frames = _fit_frames(frames, len(gt), d / "imgs", d / "groundtruth.txt")
        for i, p in enumerate(frames):
            if i > 0 and (d.name, p.name) in TNL2K_DAMAGED_FRAMES:
                frames[i] = frames[i - 1]
        lang = d / "language.txt"
        language = _read_text(lang, "language.txt").strip() if lang.is_file() else None
        out.append(Sequence(name=d.name, frames=frames, boxes=gt, dataset="tnl2k", language=language or None))
    return out


def _fit_frames(frames: list[Path], rows: int, folder: Path, gt_file: Path) -> list[Path]:
    """The ground truth defines the length: drop extra trailing frames, raise on missing ones."""
    if len(frames) < rows:
        raise DatasetNotFoundError(
            f"{gt_file} has {rows} rows but {folder} holds only {len(frames)} frames")
    return list(frames[:rows])


# ----------------------------------------------------------------------------------------------
# OTB100


# Image-number ranges that do not start at 1 or stop before the last image (from the OTB config).
OTB_FRAME_RANGES: dict[str, tuple[int, int]] = {
    "David": (300, 770), "BlurCar1": (247, 988), "BlurCar3": (3, 359), "BlurCar4": (18, 397),
    "Football1": (1, 74), "Freeman3": (1, 460), "Freeman4": (1, 283), "Diving": (1, 215),
}
OTB_INIT_OMIT: dict[str, int] = {"Tiger1": 5}  # first frames and gt rows dropped


def _otb_annotation_files(seq_dir: Path) -> list[tuple[str, Path]]:
    """``[(sequence name, gt file)]``: one target, or ``<Name>_1``/``_2`` for two-target folders."""
    single = seq_dir / "groundtruth_rect.txt"
    if single.is_file():
        return [(seq_dir.name, single)]
    multi = []
    for f in seq_dir.glob("groundtruth_rect.*.txt"):
        k = f.name[len("groundtruth_rect."):-len(".txt")]
        if k.isdigit() and f.stat().st_size > 0 and _read_text(f, "OTB ground truth").strip():
            multi.append((int(k), f))  # Human4: .1 is empty, .2 is the target
    multi.sort()
    if len(multi) == 1:
        return [(seq_dir.name, multi[0][1])]
    return [(f"{seq_dir.name}_{k}", f) for k, f in multi]


def read_otb(root: Path) -> list[Sequence]:
    """OTB100: ``<Name>/img/0001.jpg`` (any padding/extension), ``groundtruth_rect[.k].txt``.

    Applies the per-sequence frame ranges (``David`` starts at image 300, ...), ``Tiger1``'s
    ``initOmit`` of 5 and splits ``Jogging``/``Skating2`` into ``_1``/``_2`` targets.
    """
    root = Path(root)
    if not root.is_dir():
        raise _missing(root, "OTB root")
    out = []
    for seq_dir in sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: d.name.lower()):
        annos = _otb_annotation_files(seq_dir)
        if not annos:
            continue
        img_dir = seq_dir / "img" if (seq_dir / "img").is_dir() else seq_dir
        numbers = numbered_images(img_dir)
        for name, gt_file in annos:
            gt = read_boxes(gt_file)
            start, end = OTB_FRAME_RANGES.get(seq_dir.name, (1, None))
            n = len(gt) if end is None else min(len(gt), end - start + 1)
            gt = gt[:n]
            omit = OTB_INIT_OMIT.get(seq_dir.name, 0)
            frames = frames_in_range(img_dir, numbers, start + omit, n - omit, f"OTB {name}")
            out.append(Sequence(name=name, frames=frames, boxes=gt[omit:], dataset="otb100"))
    if not out:
        raise DatasetNotFoundError(f"no OTB sequences (<Name>/groundtruth_rect.txt) under {root}")
    return out


# ----------------------------------------------------------------------------------------------
# NFS (30 fps)


NFS_IGNORE_FROM = {"pingpong_2": 263}  # trackit ignores these annotations (240-fps frame index)


def read_nfs_vatic(path: Path, name: str) -> dict[int, tuple[list[float], bool, bool]]:
    """Parse an NFS VATIC file into ``{30-fps frame index: (xyxy, lost, occluded)}``.

    Rows are ``track_id xmin ymin xmax ymax frame lost occluded generated "label"`` on the 240-fps clock;
    the 30-fps frames are the rows with ``(frame - 1) % 8 == 0``.
    """
    out = {}
    for lineno, raw in enumerate(_read_text(path, "NFS annotation").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        head = line.split('"', 1)[0].split()
        try:
            if len(head) < 9:
                raise ValueError
            xyxy = [float(v) for v in head[1:5]]
            frame, lost, occluded = int(head[5]), int(head[6]), int(head[7])
        except ValueError:
            raise DatasetFormatError(
                f"{path}:{lineno}: expected 'track_id xmin ymin xmax ymax frame lost occluded generated "
                f"\"label\"', got {raw!r}") from None
        index240 = frame - 1
        if index240 >= NFS_IGNORE_FROM.get(name, 1 << 62) or index240 % 8:
            continue
        out[index240 // 8] = (xyxy, bool(lost), bool(occluded))
    return out


def read_nfs(root: Path) -> list[Sequence]:
    """NFS 30 fps, raw download (``<seq>/30/<seq>/00001.jpg`` + VATIC ``<seq>/30/<seq>.txt``) or the
    pytracking layout (``sequences/<seq>/`` + tab-separated ``anno/nfs_<seq>.txt``).

    Raw layout: boxes are converted from corners to ``x, y, w, h``; the sequence runs from the first
    image to the last annotated 30-fps frame; unannotated frames are NaN; ``extra['lost']`` and
    ``extra['occluded']`` keep the VATIC flags.
    """
    root = Path(root)
    if not root.is_dir():
        raise _missing(root, "NFS root")
    if (root / "anno").is_dir() and (root / "sequences").is_dir():
        return _read_nfs_pytracking(root)
    out = []
    for seq_dir in sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: d.name):
        name = seq_dir.name
        anno = seq_dir / "30" / f"{name}.txt"
        if not anno.is_file():
            continue
        rows = read_nfs_vatic(anno, name)
        if not rows:
            raise DatasetFormatError(f"{anno}: no 30-fps annotation rows")
        n = max(rows) + 1
        frame_dir = seq_dir / "30" / name
        frames = frames_in_range(frame_dir, numbered_images(frame_dir), 1, n, f"NFS {name}")
        boxes = np.full((n, 4), np.nan)
        lost = np.zeros(n, bool)
        occluded = np.zeros(n, bool)
        for i, (xyxy, lo, oc) in rows.items():
            boxes[i] = [xyxy[0], xyxy[1], xyxy[2] - xyxy[0], xyxy[3] - xyxy[1]]
            lost[i], occluded[i] = lo, oc
        out.append(Sequence(name=name, frames=frames, boxes=boxes, dataset="nfs30",
                            extra={"lost": lost, "occluded": occluded}))
    if not out:
        raise DatasetNotFoundError(f"no NFS sequences (<seq>/30/<seq>.txt or anno/nfs_<seq>.txt) under {root}")
    return out


def _read_nfs_pytracking(root: Path) -> list[Sequence]:
    out = []
    for anno in sorted((root / "anno").glob("nfs_*.txt"), key=lambda p: p.name):
        name = anno.stem[len("nfs_"):]
        gt = read_boxes(anno)
        frame_dir = root / "sequences" / name
        frames = frames_in_range(frame_dir, numbered_images(frame_dir), 1, len(gt), f"NFS {name}")
        out.append(Sequence(name=name, frames=frames, boxes=gt, dataset="nfs30"))
    if not out:
        raise DatasetNotFoundError(f"no NFS annotations (anno/nfs_<seq>.txt) under {root}")
    return out


# ----------------------------------------------------------------------------------------------
# UAV123


# First image number of the evaluation sub-sequences cut from one long folder (UAV123 configSeqs);
# each annotation file has exactly end - start + 1 rows, so the start is all that is needed.
UAV123_SUBSEQUENCE_STARTS: dict[str, tuple[int, ...]] = {
    "bird1": (1, 775, 1573), "car1": (1, 751, 1627), "car16": (1, 415), "car6": (1, 487, 1807, 2953, 3925),
    "car8": (1, 1357), "group1": (1, 1333, 2515, 3925), "group2": (1, 907, 1771),
    "group3": (1, 1567, 2827, 4369), "person12": (1, 601), "person14": (1, 847, 1813), "person17": (1, 1501),
    "person19": (1, 1243, 2791), "person2": (1, 1189), "person4": (1, 1501), "person5": (1, 877),
    "person7": (1, 1249), "person8": (1, 1075), "truck4": (1, 577), "uav1": (1, 1555, 2473),
}


def _uav_dirs(root: Path) -> tuple[Path, Path]:
    for base in (root, root / "UAV123"):
        anno, data = base / "anno" / "UAV123", base / "data_seq" / "UAV123"
        if anno.is_dir():
            return anno, data
    raise _missing(root / "anno" / "UAV123", "UAV123 annotation folder")


def read_uav123(root: Path) -> list[Sequence]:
    """UAV123: ``anno/UAV123/<seq>.txt`` (comma, NaN rows when absent), frames in
    ``data_seq/UAV123/<folder>/000001.jpg``; ``<folder>_<k>`` sub-sequences start at the configSeqs frame."""
    root = Path(root)
    anno_dir, data_dir = _uav_dirs(root)
    numbers_cache: dict[Path, dict[int, Path]] = {}
    out = []
    for anno in sorted(anno_dir.glob("*.txt"), key=lambda p: natural_key(p.name)):
        name = anno.stem
        gt = read_boxes(anno)
        folder, start = name, 1
        m = re.fullmatch(r"(.+)_(\d+)", name)
        if not (data_dir / name).is_dir() and m:
            folder, k = m.group(1), int(m.group(2))
            starts = UAV123_SUBSEQUENCE_STARTS.get(folder, ())
            if k > len(starts):
                raise DatasetFormatError(
                    f"{anno}: '{name}' looks like sub-sequence {k} of folder '{folder}', but its start frame "
                    f"is not in the UAV123 configSeqs table")
            start = starts[k - 1]
        frame_dir = data_dir / folder
        if frame_dir not in numbers_cache:
            numbers_cache[frame_dir] = numbered_images(frame_dir)
        frames = frames_in_range(frame_dir, numbers_cache[frame_dir], start, len(gt), f"UAV123 {name}")
        out.append(Sequence(name=name, frames=frames, boxes=gt, dataset="uav123",
                            extra={"start_frame": start}))
    if not out:
        raise DatasetNotFoundError(f"no UAV123 annotations (*.txt) in {anno_dir}")
    return out


# ----------------------------------------------------------------------------------------------
# Generic folders


FOLDER_FRAME_DIRS = ("img", "imgs", "frames", "images", "color")


def read_folder_sequence(seq_dir: Path) -> Sequence:
    """A folder with ``groundtruth.txt`` and frames (in ``img/``, ``imgs/``, ``frames/``, ``images/``,
    ``color/`` or the folder itself, natural order). Rows missing after the last gt row are NaN,
    so a file with only the first box is enough to run a tracker."""
    gt_file = seq_dir / "groundtruth.txt"
    gt = read_boxes(gt_file)
    if len(gt) == 0:
        raise DatasetFormatError(f"{gt_file}: empty, the first frame's box is required")
    frame_dir = next((seq_dir / d for d in FOLDER_FRAME_DIRS if (seq_dir / d).is_dir()), seq_dir)
    frames = list_images(frame_dir)
    if len(frames) < len(gt):
        raise DatasetNotFoundError(f"{gt_file} has {len(gt)} rows but {frame_dir} holds only {len(frames)} frames")
    boxes = np.full((len(frames), 4), np.nan)
    boxes[: len(gt)] = gt
    return Sequence(name=seq_dir.name, frames=compact_frames(frames), boxes=boxes, dataset="folder")


def read_folder(root: Path) -> list[Sequence]:
    """One sequence (``root/groundtruth.txt``) or a folder of them (``root/<seq>/groundtruth.txt``)."""
    root = Path(root)
    if not root.is_dir():
        raise _missing(root, "sequence folder")
    if (root / "groundtruth.txt").is_file():
        return [read_folder_sequence(root)]
    dirs = sorted((d for d in root.iterdir() if (d / "groundtruth.txt").is_file()), key=lambda d: natural_key(d.name))
    if not dirs:
        raise DatasetNotFoundError(f"no groundtruth.txt in {root} or in its sub-folders")
    return [read_folder_sequence(d) for d in dirs]

