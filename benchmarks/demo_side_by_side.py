"""The demo's two adaptation stages one after the other (2 threads) vs side by side (two processes, 1 thread each).

    PYTHONPATH=src python benchmarks/demo_side_by_side.py [--steps 60] [--rounds 2] [--markdown FILE]

Builds what ``lorat demo`` trains on (its domain-B training sequences, the shipped stand-in's backbone), then
alternates the two schedules ``--rounds`` times, each training the LoRA and the full fine-tuning stage for
``--steps`` steps of the demo's batch from scratch (``lorat.demo._train_stage`` /
``lorat.demo._adapt_side_by_side``, so exactly the demo's code). Prints and records the wall time of each and the
ratio within each round (rounds alternate, so a machine that slows down during the run shows in the spread).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

import lorat.demo as demo
from lorat.bench import machine_info
from lorat.data.synthetic import SyntheticConfig, make_synthetic_benchmark
from lorat.device import resolve_precision
from lorat.hub import export_dinov2, load_checkpoint


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--markdown", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(2)
    plan = demo.DemoPlan()
    work = Path(tempfile.mkdtemp(prefix="demo_side_by_side_"))
    try:
        data = make_synthetic_benchmark(work / "domain_B", SyntheticConfig(domain="B", seed=1,
                                                                            frames_per_sequence=plan.frames),
                                        num_train=plan.train_b, num_val=0, progress=False)
        backbone = work / "backbone.safetensors"
        export_dinov2(load_checkpoint(demo.SHIPPED_PRETRAINED), backbone)
        rows = []
        for r in range(args.rounds):
            times = {}
            for mode in ("one after the other", "side by side"):
                out = work / f"run_{r}_{mode.replace(' ', '_')}"
                first, second = demo._adaptation_stages(out, plan, args.steps, data, backbone)
                t0 = time.perf_counter()
                if mode == "side by side":
                    demo._adapt_side_by_side(first, second, out)
                else:
                    demo._train_stage(*first)
                    demo._train_stage(*second)
                times[mode] = time.perf_counter() - t0
                shutil.rmtree(out)
            ratio = times["one after the other"] / times["side by side"]
            rows.append((times["one after the other"], times["side by side"], ratio))
            print(f"round {r + 1}: one after the other {rows[-1][0]:.1f} s, side by side {rows[-1][1]:.1f} s, "
                  f"ratio {ratio:.2f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        "# The demo's adaptation stages: one after the other vs side by side", "",
        f"`benchmarks/demo_side_by_side.py --steps {args.steps} --rounds {args.rounds}`, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {machine_info(torch.device('cpu'))['cpu']}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, training precision "
        f"{resolve_precision(plan.amp, torch.device('cpu'))}; load average at the end {list(os.getloadavg())}.",
        "", f"Both stages ({args.steps} steps of {plan.batch_size} pairs each), wall seconds:", "",
        "| round | one after the other (2 threads) | side by side (2 processes x 1 thread) | ratio |",
        "|---:|---:|---:|---:|",
    ]
    lines += [f"| {i + 1} | {a:.1f} | {b:.1f} | {c:.2f} |" for i, (a, b, c) in enumerate(rows)]
    lines += ["", f"Median ratio {statistics.median(r[2] for r in rows):.2f}."]
    print("\n".join(lines))
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
