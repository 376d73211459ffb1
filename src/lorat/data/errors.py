"""The errors every dataset reader raises; each message names the file (and line) and what to do."""
from __future__ import annotations

from pathlib import Path


class DatasetError(Exception):
    """A dataset is missing, incomplete or malformed; the message says which file and what to do."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A root folder, annotation file, list file or frame does not exist."""

    def __str__(self) -> str:  # FileNotFoundError would otherwise format (errno, strerror)
        return str(self.args[0]) if self.args else ""


class DatasetFormatError(DatasetError, ValueError):
    """A file exists but its content does not match the dataset's format."""


def missing(path: Path, what: str, hint: str = "") -> DatasetNotFoundError:
    """The error for a missing ``what`` at ``path``: ``"<what> not found: <path> (<hint>)"``."""
    msg = f"{what} not found: {path}"
    return DatasetNotFoundError(msg + (f" ({hint})" if hint else ""))



__all__ = ["DatasetError", "DatasetNotFoundError", "DatasetFormatError", "missing"]
