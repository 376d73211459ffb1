"""Shared pieces of the training tests: a tiny model, a small synthetic GOT-10k root and a fast recipe."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from lorat.config import TrainConfig
from lorat.data.synthetic import SyntheticConfig, make_synthetic_benchmark
from lorat.hub import read_state_file

TINY = dict(embed_dim=32, depth=2, num_heads=2, template_size=28, search_size=56, lora_r=4, lora_alpha=8.0,
            pretrain_img_size=56, drop_path=0.1)
"""ModelConfig overrides of lorat-s-224 that make a model trainable in a second on CPU."""


def make_synth_root(root: Path) -> Path:
    """6 training and 2 validation sequences of 12 frames in GOT-10k layout."""
    make_synthetic_benchmark(root, SyntheticConfig(num_train=6, num_val=2, frames_per_sequence=12, image_size=(96, 72)),
                             progress=False)
    return root


def small_cfg(root: Path, out: Path, **kw) -> TrainConfig:
    """2 epochs of 4 steps (batch 8), validation on 8 pairs, float32 (amp=auto would pick bf16 on some CPUs)."""
    base = TrainConfig(model="lorat-s-224", datasets=("got10k_train",),
                       dataset_roots=(f"got10k_train={root}", f"got10k_val={root}"), val_dataset="got10k_val",
                       val_samples=8, epochs=2, samples_per_epoch=32, batch_size=8, num_workers=0, device="cpu",
                       output_dir=str(out), warmup_epochs=0.5, lr=1e-3, log_every=1, checkpoint_every=1,
                       amp="float32")
    return replace(base, **kw)


def metrics(out: Path) -> list[dict]:
    """The records of ``out/metrics.jsonl`` in order."""
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def losses(out: Path) -> dict[int, float]:
    """``{step: loss}`` of the training records."""
    return {r["step"]: r["loss"] for r in metrics(out) if "loss" in r}


def weights(path: Path) -> dict[str, torch.Tensor]:
    return read_state_file(path)[0]


def assert_same_weights(a_file: Path, b_file: Path, atol: float | None = None, rtol: float = 0.0) -> dict:
    """The two weight files hold the same keys and tensors: bit-identical, or within ``atol`` / ``rtol``
    (``torch.allclose``) when ``atol`` is given. Returns the first file's tensors."""
    a, b = weights(a_file), weights(b_file)
    assert a.keys() == b.keys()
    for k in a:
        same = torch.equal(a[k], b[k]) if atol is None else torch.allclose(a[k], b[k], atol=atol, rtol=rtol)
        assert same, k
    return a


def assert_stopped_before_step_3(out: Path, term: str, run) -> None:
    """``run()`` (a training into ``out`` whose task makes loss term ``term`` NaN at step 3) raises
    ``NonFiniteLossError`` naming the step, the samples and the term, and leaves the finite checkpoint of step 2
    and the log of steps 1-2 only."""
    import math
    import re

    import pytest

    from lorat.train.checkpoint import latest_checkpoint
    from lorat.train.trainer import NonFiniteLossError

    with pytest.raises(NonFiniteLossError, match=r"at step 3 \(epoch 0, micro-batch 0, rank 0: samples 16\.\.23 "
                                                 r"of epoch 0\); non-finite terms: \['" + re.escape(term) + r"'\]"):
        run()
    ckpt = latest_checkpoint(out)
    assert ckpt.name == "step_00000002"  # the state before the bad step, which was not applied
    assert all(torch.isfinite(v).all() for v in weights(ckpt / "model.safetensors").values())
    logged = [r for r in metrics(out) if "loss" in r]
    assert [r["step"] for r in logged] == [1, 2] and all(math.isfinite(r["loss"]) for r in logged)

