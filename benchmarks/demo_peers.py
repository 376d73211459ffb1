"""OpenCV CSRT / KCF / MIL on the held-out sequences of a ``lorat demo`` output folder, scored by ``analyze``.

    PYTHONPATH=src python benchmarks/demo_peers.py DEMO_OUT [N_SEQUENCES]

Prints a markdown table (AUC, P@20, NP@0.2 in percent, fps) and the load average, for ``demo_peers.md``.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from lorat.data.datasets import load_benchmark
from lorat.demo_peers import OPENCV_PEERS, run_opencv_peer
from lorat.eval.report import ResultSource, analyze


def main(out: Path, n: int | None) -> None:
    test = load_benchmark("got10k_val", out / "data" / "domain_B")[:n]
    sources, fps = [], {}
    for label, factory in OPENCV_PEERS.items():
        folder = out / "bench_peers" / label.replace(" ", "_")
        t0 = time.perf_counter()
        run_opencv_peer(factory, test, folder)
        times = np.concatenate([np.loadtxt(folder / f"{s.name}_time.txt")[1:] for s in test])
        fps[label] = len(times) / times.sum()
        print(f"{label}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        sources.append(ResultSource(label, folder))
    doc = analyze(sources, test, rule="pytracking", protocol="generic")
    print(f"{len(test)} held-out domain-B sequences of {out}; load average {os.getloadavg()}\n")
    print("| tracker | AUC | P@20 | NP@0.2 | fps (1 thread) |\n|---|---:|---:|---:|---:|")
    for name, t in doc["trackers"].items():
        o = t["overall"]
        print(f"| {name} | {o['auc']:.1f} | {o['precision']:.1f} | {o['norm_precision']:.1f} | {fps[name]:.0f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None)
