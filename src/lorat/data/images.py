"""The one image reader of the library, and image sizes read from file headers.

Training (:class:`lorat.data.sampler.PairDataset`), tracking (``lorat track``, ``lorat eval``) and the
demo all decode frames with :func:`read_image`, so a frame that training accepts is one that tracking
accepts, and both see the same pixels:

* strict: a truncated JPEG (no end-of-image marker after the last scan) or PNG (no ``IEND``) raises,
  where libjpeg/OpenCV would only warn and hand back an image whose bottom is grey;
* EXIF orientation is **ignored**: pixels come out in the order they are stored. The official LoRAT
  reader decodes with TurboJPEG/PIL and rotates only when asked to (``handle_exif_orientation=False``
  by default, and the training and evaluation pipelines never ask), and the boxes of every tracking
  dataset are drawn on the stored pixels. OpenCV's ``imread``/``imdecode`` would apply the tag, so
  :data:`DECODE_FLAGS` adds ``IMREAD_IGNORE_ORIENTATION``. It also keeps :func:`image_size` (read from
  the header, before any rotation) equal to the decoded size.

See ``docs/datasets.md`` (frames and images).
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np

from .errors import DatasetFormatError, DatasetNotFoundError, missing

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
"""File endings treated as frames (lower case), in order of preference for duplicates."""

DECODE_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
"""OpenCV flags of :func:`read_image`: 3-channel colour, EXIF orientation not applied."""


def _jpeg_is_truncated(data: bytes) -> bool:
    # Scan data cannot contain a bare 0xFFD9/0xFFDA (0xFF is byte-stuffed there), so a complete file has an
    # end-of-image marker after its last start-of-scan marker.
    last_scan = data.rfind(b"\xff\xda")
    return last_scan < 0 or data.rfind(b"\xff\xd9") < last_scan


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to ``(H, W, 3)`` uint8 RGB, stored pixel order (EXIF orientation ignored).

    Raises:
        DatasetNotFoundError: (a ``FileNotFoundError``) the file does not exist; the message names it.
        DatasetFormatError: (a ``ValueError``) the path is a folder, or the file is empty, truncated (JPEG
            without end marker, PNG without ``IEND``) or cannot be decoded; the message names it.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetNotFoundError(f"image not found: {path}") from None
    except IsADirectoryError:
        raise DatasetFormatError(f"expected an image file, got a folder: {path}") from None
    if not data:
        raise DatasetFormatError(f"image file is empty: {path}")
    if data[:2] == b"\xff\xd8" and _jpeg_is_truncated(data):
        raise DatasetFormatError(f"corrupt frame: {path} is a truncated JPEG (no end-of-image marker)")
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-16:]:
        raise DatasetFormatError(f"corrupt frame: {path} is a truncated PNG (no IEND chunk)")
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), DECODE_FLAGS)
    if bgr is None or bgr.size == 0:
        raise DatasetFormatError(f"corrupt frame: cannot decode image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of a JPEG or PNG read from its header; other formats are decoded.

    The header size is the stored size, i.e. the size :func:`read_image` returns (orientation ignored).
    """
    path = Path(path)
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
        raise missing(path, "frame") from None
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise DatasetFormatError(f"cannot read image {path}")
    return int(img.shape[1]), int(img.shape[0])


# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); they carry the size.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(f) -> tuple[int, int] | None:
    """Walk the JPEG marker segments up to the first start-of-frame; None if the file ends first."""
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


__all__ = ["IMAGE_EXTENSIONS", "DECODE_FLAGS", "read_image", "image_size"]
