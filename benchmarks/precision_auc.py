"""Accuracy cost of the fast inference paths: AUC of bf16, int8 and ONNX int8 tracking against fp32.

Usage::

    python benchmarks/precision_auc.py --checkpoint model.safetensors --markdown benchmarks/precision_auc.md
    python benchmarks/precision_auc.py --work /tmp/pauc --markdown benchmarks/precision_auc.md  # trains first

The model: ``--checkpoint`` (any lorat checkpoint), or without it the LoRA-on-B model of ``lorat demo``'s
default plan, trained into ``--work`` (resumable; a few minutes on a quiet 2-core CPU). Test data: held-out
synthetic domain-B sequences generated with a seed the demo never uses (``--seed``), GOT-10k layout, full
ground truth. Each variant ``runtime/precision`` tracks every sequence through ``lorat.eval.runner.evaluate``
(``lorat.Tracker`` with ``TrackConfig.runtime``, batch ``--batch``) and is scored by
``lorat.eval.runner.summarize`` (pytracking rule). Reported per variant: AUC / precision / normalised
precision, the AUC difference to ``eager/float32``, the paired per-sequence AUC differences (mean and its
standard error: the noise level of the difference), and how far its boxes are from fp32's (mean IoU between
the two trackers' boxes on the same frames, share of frames with IoU < 0.5: where tracks diverged).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

DEFAULT_VARIANTS = ["eager/float32", "eager/bfloat16", "onnx/float32", "onnx-int8/float32", "int8/bfloat16",
                    "int8/float32"]


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of (N, 4) xywh boxes."""
    x1, y1 = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def read_boxes(path: Path) -> np.ndarray:
    """(N, 4) boxes of a result file (tab, comma or space separated)."""
    rows = [line.replace(",", " ").split() for line in path.read_text().splitlines() if line.strip()]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def sequence_auc(pred: np.ndarray, gt: np.ndarray) -> float:
    """Success AUC of one sequence (thresholds 0..1 step 0.05, frames with a valid ground truth box)."""
    valid = (gt[:, 2] > 0) & (gt[:, 3] > 0)
    ious = iou(pred[valid], gt[valid])
    return float(np.mean([(ious > t).mean() for t in np.linspace(0, 1, 21)]) * 100)


def train_demo_model(work: Path) -> Path:
    """The default demo plan's LoRA-on-B checkpoint (trained into ``work`` unless already there)."""
    from lorat.demo import DemoPlan, run_demo_pipeline

    final = work / "demo" / "lora_B" / "model_final.safetensors"
    if not final.is_file():
        run_demo_pipeline(work / "demo", DemoPlan())
    return final


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--work", default="/tmp/lorat-precision-auc")
    p.add_argument("--sequences", type=int, default=50)
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, metavar="RUNTIME/PRECISION")
    p.add_argument("--size-lr", type=float, default=1.0,
                   help="TrackConfig.size_lr of every variant (1.0: the official tracker; the demo's rows use 0.15)")
    p.add_argument("--markdown", default=None)
    args = p.parse_args()
    import lorat
    from lorat.data.datasets import load_benchmark
    from lorat.data.synthetic import SyntheticConfig, make_synthetic_benchmark
    from lorat.eval.runner import evaluate, result_dir, summarize
    from lorat.track.tracker import TrackConfig, Tracker

    work = Path(args.work)
    ckpt = Path(args.checkpoint) if args.checkpoint else train_demo_model(work)
    data = work / f"heldout_B_seed{args.seed}_{args.sequences}x{args.frames}"
    if not (data / "val").is_dir():
        make_synthetic_benchmark(data, SyntheticConfig(domain="B", seed=args.seed, frames_per_sequence=args.frames),
                                 num_train=0, num_val=args.sequences, progress=False)
    seqs = list(load_benchmark("got10k_val", str(data)))
    benchmarks = {"got10k_val": seqs}
    results = work / "results"
    load0 = os.getloadavg()
    rows = {}
    for v in args.variants:
        runtime, precision = v.split("/")
        name = f"{ckpt.stem}-{runtime}-{precision}"
        tracker = Tracker(lorat.load_checkpoint(ckpt), TrackConfig(device="cpu", dtype=precision, runtime=runtime,
                                                                       size_lr=args.size_lr))
        t0 = time.perf_counter()
        stats = evaluate(tracker, benchmarks, results, name, batch=args.batch, progress=False)
        m = summarize(benchmarks, results, name)["got10k_val"]["mean"]
        folder = result_dir(results, name, "got10k_val")
        boxes = {s.name: read_boxes(folder / f"{s.name}.txt") for s in seqs}
        rows[v] = {"name": name, "auc": m["auc"], "precision": m["precision"], "norm_precision": m["norm_precision"],
                   "fps": stats.fps, "seconds": time.perf_counter() - t0, "boxes": boxes,
                   "seq_auc": np.array([sequence_auc(boxes[s.name], np.asarray(s.boxes, dtype=np.float64))
                                        for s in seqs])}
        print(f"{v:20s} AUC {m['auc']:.2f}  P {m['precision']:.2f}  NP {m['norm_precision']:.2f}  "
              f"({stats.fps:.0f} fps)", flush=True)
    ref = rows[args.variants[0]]
    lines = [f"checkpoint `{ckpt.name}`; {len(seqs)} held-out synthetic domain-B sequences x {args.frames} frames "
             f"(seed {args.seed}); batch {args.batch}; size_lr {args.size_lr}; CPU, load average at start "
             f"{load0[0]:.1f}", "",
             "| variant | AUC | precision | norm. precision | AUC - fp32 | per-seq. AUC diff (mean +- s.e.) "
             "| mean IoU to fp32 boxes | frames IoU<0.5 to fp32 |", "|---|---|---|---|---|---|---|---|"]
    for v, r in rows.items():
        d = r["seq_auc"] - ref["seq_auc"]
        ious = np.concatenate([iou(r["boxes"][k], ref["boxes"][k]) for k in ref["boxes"]])
        lines.append(f"| {v} | {r['auc']:.2f} | {r['precision']:.2f} | {r['norm_precision']:.2f} | "
                     f"{r['auc'] - ref['auc']:+.2f} | {d.mean():+.2f} +- {d.std(ddof=1) / np.sqrt(len(d)):.2f} | "
                     f"{ious.mean():.4f} | {(ious < 0.5).mean() * 100:.1f} % |")
    out = "\n".join(lines)
    print(out)
    if args.markdown:
        from lorat.files import atomic_write_text

        atomic_write_text(Path(args.markdown), "# Accuracy cost of bf16 and ONNX int8 (generated by precision_auc.py)"
                          "\n\n" + out + "\n")


if __name__ == "__main__":
    main()
