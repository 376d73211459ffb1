"""``lorat export``: a LoRAT model as ONNX (LoRA merged), checked against PyTorch with onnxruntime.

The exported graph takes the tracker's model inputs, ``z`` (B,3,Hz,Wz), ``x`` (B,3,Hx,Wx) normalised crops
and ``z_feat_mask`` (B,Hz/14,Wz/14) int64, and returns ``score_map`` (B,H,W) logits and ``boxes``
(B,H,W,4) normalised xyxy, exactly like ``LoRAT.forward``; cropping and the Hann-window decoding stay in
Python (``lorat.track``). The batch dimension is dynamic. Needs the ``onnx`` extra (onnx, onnxruntime).
"""
from __future__ import annotations

import argparse
import copy
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .files import atomic_path


def example_inputs(model: nn.Module, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs of the model's geometry (a square template mask in the middle of the template)."""
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, 3, cfg.template_size, cfg.template_size, generator=g)
    x = torch.randn(batch, 3, cfg.search_size, cfg.search_size, generator=g)
    hz = cfg.template_feat
    mask = torch.zeros(batch, hz, hz, dtype=torch.long)
    mask[:, hz // 4: hz - hz // 4, hz // 4: hz - hz // 4] = 1
    return z, x, mask


def export_onnx(model: nn.Module, path: str | Path, opset: int = 17) -> Path:
    """Write ``model`` (a merged copy, fp32, eval mode) as ONNX to ``path`` atomically; returns the path."""
    plain = copy.deepcopy(model).float().eval()
    if hasattr(plain, "merge_lora"):
        plain.merge_lora()
    path = Path(path)
    # The TorchScript exporter needs no extra dependency (the dynamo one needs onnxscript); torch marks it
    # deprecated, which is noise for users of this command.
    with atomic_path(path, suffix=".tmp.onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            plain, example_inputs(plain), str(tmp), input_names=["z", "x", "z_feat_mask"],
            output_names=["score_map", "boxes"], opset_version=opset, dynamo=False,
            dynamic_axes={n: {0: "batch"} for n in ("z", "x", "z_feat_mask", "score_map", "boxes")})
    return path


def check_onnx(model: nn.Module, path: str | Path, batch: int = 2) -> dict[str, float]:
    """Max abs difference between onnxruntime and PyTorch outputs on random inputs of ``batch`` samples."""
    import onnxruntime as ort

    inputs = example_inputs(model, batch, seed=1)
    ref_model = copy.deepcopy(model).float().eval()
    with torch.inference_mode():
        ref = ref_model(*inputs)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feeds = {"z": inputs[0].numpy(), "x": inputs[1].numpy(), "z_feat_mask": inputs[2].numpy()}
    score_map, boxes = session.run(["score_map", "boxes"], feeds)
    return {"score_map": float(np.abs(score_map - ref["score_map"].numpy()).max()),
            "boxes": float(np.abs(boxes - ref["boxes"].numpy()).max())}


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``lorat export``."""
    from .loading import add_model_arguments

    p.add_argument("--output", "-o", required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs difference the check accepts")
    add_model_arguments(p)


def run_export(args: argparse.Namespace) -> int:
    """Entry point of ``lorat export``."""
    from .loading import model_from_args

    model, _, _ = model_from_args(args)
    path = export_onnx(model, args.output, args.opset)
    print(f"[export] wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if args.no_check:
        return 0
    diff = check_onnx(model, path)
    print(f"[export] onnxruntime vs PyTorch, max abs difference: score_map {diff['score_map']:.2e}, "
          f"boxes {diff['boxes']:.2e}")
    if max(diff.values()) > args.tolerance:
        print(f"[export] parity check failed (tolerance {args.tolerance:g})")
        return 1
    return 0
