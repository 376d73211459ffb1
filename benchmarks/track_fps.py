"""Tracking speed of :class:`lorat.track.tracker.Tracker`: frames per second at several batch sizes and dtypes.

Usage::

    python benchmarks/track_fps.py                          # lorat-s-224, CPU, fp32 + bf16, batch 1/4/8
    python benchmarks/track_fps.py --preset lorat-b-224 --device cuda --dtypes float32 float16 --batches 1 32
    python benchmarks/track_fps.py --markdown benchmarks/track_fps.md   # also write the table

Weights are random (speed does not depend on them); LoRA is merged as in real tracking. Each measured *step*
is one ``Tracker.track_many`` call: crop + normalise every sequence's search region, one batched forward,
window penalty / argmax / mapping back. Frames are decoded beforehand (640x480 noise images), so decoding is
not included. ``model ms`` is the bare forward on the same batch, so ``step - model`` is the tracker's own
pre/post-processing. We report the min (what the machine can do) and the median (what you typically get);
fps = batch / step time.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(preset: str, device: str, dtype: str, batch: int, iters: int, warmup: int = 2) -> dict:
    """Time ``iters`` tracking steps of ``batch`` sequences; returns min/median step and model times (s)."""
    import lorat
    from lorat.track.tracker import TrackConfig, Tracker

    torch.manual_seed(0)
    tracker = Tracker(lorat.create_model(preset), TrackConfig(device=device, dtype=dtype))
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(batch)]
    ids = list(range(batch))
    tracker.initialize_many(ids, frames, [(200 + 10 * i, 150, 100, 80) for i in ids])
    # bare forward on the same inputs (crops made once and reused)
    states = [tracker.states[i] for i in ids]
    x = torch.stack([tracker._search_crop(f, s)[0] for f, s in zip(frames, states)]).to(tracker.device,
                                                                                        tracker._input_dtype)
    z = torch.stack([s.z for s in states])
    m = torch.stack([s.z_mask for s in states])
    # Steps and bare forwards alternate, so host noise (other tenants on a VM) hits both alike.
    steps, model_t = [], []
    for i in range(warmup + iters):
        _sync(tracker.device)
        t0 = time.perf_counter()
        tracker.track_many(ids, frames)
        _sync(tracker.device)
        t1 = time.perf_counter()
        tracker._forward(z, x, m)
        _sync(tracker.device)
        t2 = time.perf_counter()
        if i >= warmup:
            steps.append(t1 - t0)
            model_t.append(t2 - t1)
    return {"step_min": min(steps), "step_med": statistics.median(steps), "model_min": min(model_t),
            "model_med": statistics.median(model_t), "iters": iters}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="lorat-s-224")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 4, 8])
    p.add_argument("--frames", type=int, default=24, help="frames timed per configuration (split into steps)")
    p.add_argument("--markdown", type=Path, default=None, help="write the table to this file")
    args = p.parse_args(argv)

    rows = []
    header = ("| preset | device | dtype | batch | step ms min / med | ms per frame min / med | fps best / med "
              "| model ms min / med |")
    lines = [header, "|" + "---|" * 8]
    print(header)
    for dtype in args.dtypes:
        for b in args.batches:
            iters = max(3, args.frames // b)
            r = measure(args.preset, args.device, dtype, b, iters)
            rows.append((dtype, b, r))
            line = (f"| {args.preset} | {args.device} | {dtype} | {b} | {1e3 * r['step_min']:.1f} / "
                    f"{1e3 * r['step_med']:.1f} | {1e3 * r['step_min'] / b:.1f} / {1e3 * r['step_med'] / b:.1f} | "
                    f"{b / r['step_min']:.1f} / {b / r['step_med']:.1f} | {1e3 * r['model_min']:.1f} / "
                    f"{1e3 * r['model_med']:.1f} |")
            lines.append(line)
            print(line, flush=True)
    if args.markdown is not None:
        env = (f"{_cpu_name()}, {torch.get_num_threads()} torch threads; torch {torch.__version__}, "
               f"Python {platform.python_version()}")
        if args.device.startswith("cuda") and torch.cuda.is_available():
            env += f"; GPU {torch.cuda.get_device_name()}"
        text = ["# Tracking speed (`benchmarks/track_fps.py`)", "",
                f"Command: `python benchmarks/track_fps.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
                "", f"Machine: {env}.", "",
                "One step = one `Tracker.track_many` call over `batch` sequences (crop + one forward + decode); "
                "frames pre-decoded (640x480), random weights, LoRA merged. fps = batch / step time. "
                f"Per row {args.frames} frames are timed (frames / batch steps, at least 3) after 2 warm-up steps; "
                "steps and bare forwards alternate. Compare mins: shared VMs add +-10-30 % noise.", "",
                *lines, ""]
        args.markdown.write_text("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
