"""The training record: one description of a run (train config + full model config) and its checks.

``<output_dir>/train_config.json`` and every checkpoint hold ``{"train": TrainConfig, "model": model
config}``; the model part is the complete config of the architecture (preset *and* ``--model-set``
overrides), so ``lorat train --config train_config.json`` rebuilds the same model and ``--resume``
restores it. A resume compares the requested record with the checkpoint's: any difference in a field
outside :data:`RESUME_FREE_FIELDS` is an error naming the fields, unless changes are accepted explicitly
(then the *new* values are used and the changes are printed).

After a resume the logs are cut back to the checkpoint: ``metrics.jsonl`` to the lines it held when the
checkpoint was written (so steps between the checkpoint and a crash are not logged twice), TensorBoard
through ``SummaryWriter(purge_step=...)``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import TrainConfig, from_dict, to_dict
from ..files import atomic_write_text

RECORD_FILE = "train_config.json"
METRICS_FILE = "metrics.jsonl"

RESUME_FREE_FIELDS: frozenset[str] = frozenset({
    # where things are and how fast they run; none of them changes what is computed on a given device
    "output_dir", "dataset_roots", "num_workers", "device", "compile", "attention",
    # logging, checkpointing, when to stop and what to evaluate at the end
    "log_every", "checkpoint_every", "checkpoint_every_steps", "keep_checkpoints", "max_steps", "eval_benchmarks",
})
"""TrainConfig fields that may differ between a checkpoint and the command that resumes it."""


def model_config_from_dict(data: dict[str, Any], source: str = "record") -> Any:
    """Rebuild a model config of any registered architecture from its ``to_dict`` form."""
    from ..models.registry import get_arch

    try:
        return from_dict(get_arch(data.get("arch", "lorat")).config_cls, data)
    except (KeyError, TypeError) as e:
        raise ValueError(f"{source}: unreadable model config ({e})") from None


@dataclass
class TrainRecord:
    """What a run is: its :class:`~lorat.config.TrainConfig` and its full model config.

    ``model`` is ``None`` only for records written before model configs were recorded (then the model
    comes from ``train.model``, a preset name, as before).
    """

    train: TrainConfig
    model: Any | None

    def to_dict(self) -> dict[str, Any]:
        """``{"train": {...}, "model": {...}}`` as plain JSON types."""
        return {"train": to_dict(self.train), "model": to_dict(self.model) if self.model is not None else None}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "record") -> TrainRecord:
        """Inverse of :meth:`to_dict`; a flat TrainConfig dict (the older layout) gives ``model=None``."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if "train" not in data:  # older train_config.json: the TrainConfig fields only
            data = {"train": data, "model": None}
        unknown = set(data) - {"train", "model"}
        if unknown:
            raise ValueError(f"{source}: unknown top-level keys {sorted(unknown)} (expected 'train' and 'model')")
        try:
            train = from_dict(TrainConfig, data["train"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"{source}: unreadable train config ({e})") from None
        model = model_config_from_dict(data["model"], source) if data.get("model") is not None else None
        return cls(train, model)

    @classmethod
    def read(cls, path: str | Path) -> TrainRecord:
        """Read a ``train_config.json`` (a clear error names the file when it is missing or malformed)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"training record not found: {path}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(data, str(path))

    def write(self, path: str | Path) -> None:
        """Write atomically."""
        atomic_write_text(path, self.to_json())


def record_changes(saved: TrainRecord, new: TrainRecord) -> list[str]:
    """``["train.batch_size: 16 -> 32", "model.lora_alpha: 8.0 -> 128.0"]``: every field that differs,
    ignoring :data:`RESUME_FREE_FIELDS`. A saved record without a model config compares the train part only.
    """
    changes = []
    a, b = saved.to_dict(), new.to_dict()
    for part in ("train", "model"):
        if a[part] is None or b[part] is None:
            continue
        for key in sorted(set(a[part]) | set(b[part])):
            if part == "train" and key in RESUME_FREE_FIELDS:
                continue
            old, cur = a[part].get(key), b[part].get(key)
            if old != cur:
                changes.append(f"{part}.{key}: {old!r} -> {cur!r}")
    return changes


def check_resume(saved: TrainRecord, new: TrainRecord, checkpoint: str | Path, accept_changes: bool) -> list[str]:
    """Compare the checkpoint's record with the requested one; raise ValueError naming every changed field
    unless ``accept_changes`` (then the changes are returned, and the caller trains with the new values)."""
    changes = record_changes(saved, new)
    if changes and not accept_changes:
        raise ValueError(
            f"resuming {checkpoint} with settings that differ from the checkpoint's: {'; '.join(changes)}. "
            "Resume without them (the checkpoint's values are restored), or pass --accept-changes "
            "(train(..., accept_changes=True)) to continue with the new values")
    return changes


def truncate_metrics(path: str | Path, step: int, lines: int | None = None) -> int:
    """Cut ``metrics.jsonl`` back to a checkpoint; return the TensorBoard ``purge_step``.

    ``lines``: how many lines the file had when the checkpoint was written (exact); without it (older
    checkpoints) records with ``step`` > the checkpoint's step are dropped. A torn last line goes too.
    The purge step is the first step whose records were dropped (``step + 1`` when none were).
    """
    path = Path(path)
    if not path.is_file():
        return step + 1
    rows = path.read_text().split("\n")
    complete, torn = [r for r in rows[:-1] if r], rows[-1] != ""  # the text after the last newline is torn
    if lines is not None:
        kept, dropped = complete[:lines], complete[lines:]
    else:
        kept, dropped = [], []
        for r in complete:
            try:
                (dropped if json.loads(r).get("step", 0) > step else kept).append(r)
            except json.JSONDecodeError:
                dropped.append(r)
    if dropped or torn:
        atomic_write_text(path, "".join(r + "\n" for r in kept))
    steps = []
    for r in dropped:
        try:
            steps.append(int(json.loads(r)["step"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            pass
    return min(steps) if steps else step + 1


__all__ = ["RECORD_FILE", "METRICS_FILE", "RESUME_FREE_FIELDS", "TrainRecord", "record_changes", "check_resume",
           "truncate_metrics", "model_config_from_dict"]
