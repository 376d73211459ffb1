"""Text file formats shared by every reader and writer: box files, label files, list files, ``.ini`` files.

The one box-file reader (:func:`read_boxes`) and writer (:func:`write_boxes`) of the library: benchmark
ground truth, training annotations, raw tracking results (``lorat analyze``, ``lorat eval``) and
``lorat track`` outputs all go through them. Their quirks are documented in ``docs/datasets.md``.

Every error is a :class:`lorat.data.errors.DatasetError` whose message names the file and, for
content errors, the 1-based line number. Format errors are also ``ValueError`` and missing files
also ``FileNotFoundError``.
"""
from __future__ import annotations

import ast
import io
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..files import atomic_write_text
from .errors import DatasetFormatError, missing

_FIELD_SEP = re.compile(r"[,\t ;]+")
_BLANK_LINE = re.compile(r"\n[ \t]*\r?\n")


def read_text(path: str | os.PathLike, what: str) -> str:
    """Whole file as text (UTF-8, a leading byte-order mark dropped); errors name ``what`` and the path."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise missing(path, what) from None
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


def read_boxes(path: str | os.PathLike, what: str = "ground-truth file", *, skip_blank_lines: bool = False,
               header: bool = True) -> np.ndarray:
    """Parse an ``x,y,w,h`` file into an ``(N, 4)`` float64 array (always 2-D, also for 0 or 1 rows).

    Accepted everywhere: comma, tab, semicolon or space separators, mixed within a file (OTB);
    ``NaN``/``nan``/``inf``/``Infinity`` values (UAV123 absent rows, results of a failed tracker);
    ``#`` comment lines; a UTF-8 byte-order mark; trailing blank lines.

    Args:
        path: the file.
        what: what the file is, for the "not found" message (``"ground-truth file"``, ``"result file"``).
        skip_blank_lines: skip blank lines between rows, as NumPy's ``loadtxt`` does for raw results.
            Off for annotations: there a blank line most likely stands for a missing frame, and skipping
            it would shift every later box onto the wrong frame, so it raises.
        header: allow one non-numeric first line (e.g. ``x,y,w,h``). Results have no header.

    Raises:
        DatasetNotFoundError: the file does not exist.
        DatasetFormatError: a row without exactly four numbers, a non-number, a blank line between
            rows (unless skipped); the message names the file and the 1-based line.
    """
    path = Path(path)
    text = read_text(path, what)
    fast = _fast_boxes(text, skip_blank_lines)
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
            if skip_blank_lines:
                continue
            raise DatasetFormatError(f"{path}:{lineno}: blank line between annotation rows")
        fields = [f for f in _FIELD_SEP.split(line) if f]
        if header and not rows and lineno == 1 and not any(_is_number(f) for f in fields):
            continue  # header line such as "x,y,w,h"
        if len(fields) != 4:
            raise DatasetFormatError(
                f"{path}:{lineno}: expected 4 numbers 'x,y,w,h', got {len(fields)} fields: {raw!r}")
        try:
            rows.append([float(f) for f in fields])
        except ValueError:
            raise DatasetFormatError(f"{path}:{lineno}: not a number in {raw!r}") from None
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def _fast_boxes(text: str, skip_blank_lines: bool) -> np.ndarray | None:
    """NumPy's C parser for well-formed files (20x faster); None sends the file to the checking parser.

    ``loadtxt`` silently skips blank lines, so files with one go to the checking parser unless blank
    lines are to be skipped anyway.
    """
    body = text.strip()
    if not body or ";" in body or (not skip_blank_lines and _BLANK_LINE.search(body)):
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


def format_boxes(boxes: Sequence[Sequence[float]] | np.ndarray, delimiter: str = ",", fmt: str = "%.3f") -> str:
    """One ``x<delimiter>y<delimiter>w<delimiter>h`` line per row, each value written with ``fmt``.

    ``NaN`` rows come out as ``nan``, which :func:`read_boxes` reads back.
    """
    rows = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return "".join(delimiter.join(fmt % v for v in r) + "\n" for r in rows)


def write_boxes(path: str | os.PathLike, boxes: Sequence[Sequence[float]] | np.ndarray, delimiter: str = ",",
                fmt: str = "%.3f") -> None:
    """Write :func:`format_boxes` text to ``path`` atomically (a reader sees the old or the complete file)."""
    atomic_write_text(path, format_boxes(boxes, delimiter, fmt))


def read_values(path: str | os.PathLike, what: str = "value file") -> np.ndarray:
    """Every number of a flag, label or time file as a 1-D float64 array, whatever the line layout.

    Any of comma, tab, semicolon or whitespace separates values; blank lines and ``#`` lines are skipped.
    """
    path = Path(path)
    values: list[float] = []
    for lineno, line in enumerate(read_text(path, what).splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for tok in _FIELD_SEP.split(line):
            if not tok:
                continue
            try:
                values.append(float(tok))
            except ValueError:
                raise DatasetFormatError(f"{path}:{lineno}: not a number: {tok!r}") from None
    return np.asarray(values, dtype=np.float64)


def read_flags(path: str | os.PathLike, expected: int | None = None, what: str = "label file") -> np.ndarray:
    """Integer labels written one per line (GOT-10k) or on one comma-separated line (LaSOT), as int64.

    ``expected`` checks the count against the ground truth's row count.
    """
    path = Path(path)
    text = read_text(path, what)
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


def read_name_list(path: str | os.PathLike, what: str = "sequence list") -> list[str]:
    """Non-empty stripped lines of a list file (GOT-10k ``list.txt``, LaSOT ``testing_set.txt``)."""
    return [ln.strip() for ln in read_text(path, what).splitlines() if ln.strip()]


def read_ini(path: str | os.PathLike) -> dict[str, str]:
    """GOT-10k ``meta_info.ini``: ``[METAINFO]`` then ``key: value`` lines (split on the first ``:``)."""
    path = Path(path)
    meta: dict[str, str] = {}
    for lineno, line in enumerate(read_text(path, "meta_info.ini").splitlines(), 1):
        line = line.strip()
        if not line or (line.startswith("[") and line.endswith("]")):
            continue
        if ":" not in line:
            raise DatasetFormatError(f"{path}:{lineno}: expected 'key: value', got {line!r}")
        key, _, value = line.partition(":")
        meta[key.strip()] = value.strip()
    return meta


def parse_resolution(value: str, path: str | os.PathLike) -> tuple[int, int]:
    """``'(1280, 720)'`` -> ``(1280, 720)`` (width, height); ``path`` is named in the error."""
    try:
        w, h = ast.literal_eval(value)
        return int(w), int(h)
    except (ValueError, SyntaxError, TypeError):
        raise DatasetFormatError(f"{path}: cannot parse resolution {value!r}, expected '(W, H)'") from None


__all__ = ["read_text", "read_boxes", "format_boxes", "write_boxes", "read_values", "read_flags",
           "read_name_list", "read_ini", "parse_resolution"]
