"""Training checkpoints: ``<output_dir>/checkpoints/step_XXXXXXXX/``.

Each folder holds the trainable weights (``model.safetensors``, lorat format with the model config in its
header), the training record (``train_config.json``: train + model config) and ``state.pt`` (optimizer,
GradScaler, counters, RNG states, the record again and how many lines ``metrics.jsonl`` had; read back with
``weights_only=True``). A folder is written under a temporary name and renamed, so a crash never leaves a
half checkpoint; folders without ``state.pt`` are ignored.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from .. import hub
from ..files import atomic_path
from .record import RECORD_FILE, TrainRecord


def save_training_checkpoint(out: Path, model: nn.Module, optimizer, scaler, counters: dict, record: TrainRecord,
                             keep: int, metrics_lines: int | None = None) -> Path:
    """Write ``checkpoints/step_N`` atomically and keep the newest ``keep`` (all when ``keep <= 0``)."""
    root = Path(out) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{counters['step']:08d}"
    tmp = root / f".tmp_step_{counters['step']:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    hub.save_checkpoint(model, tmp / "model.safetensors", contents="trainable")
    record.write(tmp / RECORD_FILE)
    state = {
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "counters": dict(counters),
        "record": record.to_json(),
        "metrics_lines": -1 if metrics_lines is None else int(metrics_lines),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    with atomic_path(tmp / "state.pt") as path:
        torch.save(state, path)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in sorted(root.glob("step_*"))[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint folder under ``out`` (temporary folders are ignored)."""
    done = sorted(p for p in (Path(out) / "checkpoints").glob("step_*") if (p / "state.pt").is_file())
    return done[-1] if done else None


def _state(path: Path) -> dict:
    if not (path / "state.pt").is_file():
        raise FileNotFoundError(f"not a training checkpoint (no state.pt): {path}")
    return torch.load(path / "state.pt", map_location="cpu", weights_only=True)


def checkpoint_record(path: str | Path) -> TrainRecord:
    """The training record of a checkpoint folder (its ``train_config.json``, else the one in ``state.pt``).

    Checkpoints written before model configs were recorded give a record with ``model=None``.
    """
    path = Path(path)
    if (path / RECORD_FILE).is_file():
        return TrainRecord.read(path / RECORD_FILE)
    state = _state(path)
    text = state.get("record") or state.get("train_config")  # "train_config": the older, train-only field
    if text is None:
        raise ValueError(f"{path}: checkpoint holds no training record")
    return TrainRecord.from_dict(json.loads(text), str(path / "state.pt"))


def load_trainable_state(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Load the trainable tensors of a training checkpoint into ``model`` (any architecture), strictly:
    unknown keys, shape mismatches and missing trainable parameters are errors naming ``source``."""
    own = model.state_dict()
    unexpected = sorted(set(tensors) - set(own))
    if unexpected:
        raise hub.CheckpointError(f"{source}: {len(unexpected)} keys the model does not have, e.g. {unexpected[:8]}")
    wrong = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in tensors.items() if v.shape != own[k].shape]
    if wrong:
        raise hub.CheckpointError(f"{source}: shape mismatch (key, file, model): {wrong[:8]}")
    missing = sorted(n for n, p in model.named_parameters() if p.requires_grad and n not in tensors)
    if missing:
        raise hub.CheckpointError(f"{source}: missing trainable parameters {missing[:8]}")
    model.load_state_dict(tensors, strict=False)


def load_training_checkpoint(path: str | Path, model: nn.Module, optimizer, scaler) -> dict:
    """Restore weights, optimizer, scaler and RNG from ``path``.

    Returns ``{"counters": {...}, "metrics_lines": int | None}``.
    """
    path = Path(path)
    state = _state(path)
    tensors, _ = hub.read_state_file(path / "model.safetensors")
    load_trainable_state(model, tensors, str(path / "model.safetensors"))
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng_cpu"])
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    lines = int(state.get("metrics_lines", -1))
    return {"counters": dict(state["counters"]), "metrics_lines": lines if lines >= 0 else None}


__all__ = ["save_training_checkpoint", "latest_checkpoint", "checkpoint_record", "load_trainable_state",
           "load_training_checkpoint"]
