"""The tracker's own work per frame (crop, normalise, stack, decode, map back), without the model.

Usage::

    python benchmarks/track_overhead.py --markdown benchmarks/track_overhead.md
    PYTHONPATH=/path/to/older/src python benchmarks/track_overhead.py   # the same numbers for older code

A stub with the preset's geometry replaces the network (it returns a fixed random score map and boxes in a
few microseconds), so a ``Tracker.track`` call on a 640x480 frame measures only the tracker. Variants, run
interleaved in one process so that host load hits them alike:

* ``host_threads=1``: pre/post-processing on one torch thread (what :class:`lorat.Tracker` does);
* ``host_threads=N``: on all N torch threads (what it did before; ``N = torch.get_num_threads()``).

Per variant: min and median ms/frame over ``--rounds`` x ``--frames`` calls, and a cProfile of the
slowest variant's top functions. The load average is recorded: on a busy 2-core host the N-thread numbers
explode (OpenMP regions wait for a descheduled thread), on a quiet one the two are close.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


class StubModel(nn.Module):
    """``model(z, x, mask)`` with the geometry of ``cfg``: fixed outputs, no computation."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        f = int(cfg.search_feat)
        g = torch.Generator().manual_seed(0)
        self.score = torch.randn(1, f, f, generator=g)
        self.boxes = torch.tensor([0.4, 0.4, 0.6, 0.6]) + 0.05 * torch.randn(1, f, f, 4, generator=g)

    def forward(self, z, x, z_feat_mask):
        b = x.shape[0]
        return {"score_map": self.score.expand(b, -1, -1), "boxes": self.boxes.expand(b, -1, -1, -1)}


def build(preset: str, threads: int):
    import lorat
    from lorat.track.tracker import TrackConfig, Tracker

    tracker = Tracker(StubModel(lorat.get_preset(preset)), TrackConfig(device="cpu", dtype="float32", verbose=False))
    if hasattr(type(tracker), "host_threads"):
        tracker.host_threads = threads
    return tracker


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", nargs="+", default=["lorat-b-224", "lorat-s-112"])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--markdown", default=None)
    args = p.parse_args()
    import lorat.track.tracker as tr

    n = torch.get_num_threads()
    has_knob = hasattr(tr.Tracker, "host_threads")
    load0 = os.getloadavg()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(8)]
    rows, profiles = [], {}
    for preset in args.presets:
        variants = {"host_threads=1": build(preset, 1), f"host_threads={n}": build(preset, n)} if has_knob \
            else {f"no host_threads knob ({n} threads)": build(preset, n)}
        for t in variants.values():
            t.initialize(frames[0], (270, 200, 100, 80))
            for f in frames[:3]:
                t.track(f)
        times = {k: [] for k in variants}
        for _r in range(args.rounds):
            for k, t in variants.items():
                for i in range(args.frames):
                    a = time.perf_counter()
                    t.track(frames[i % 8])
                    times[k].append(time.perf_counter() - a)
        for k, ts in times.items():
            rows.append((preset, k, 1e3 * min(ts), 1e3 * statistics.median(ts)))
        worst = max(times, key=lambda k: statistics.median(times[k]))
        best = min(times, key=lambda k: statistics.median(times[k]))
        for k in dict.fromkeys([best, worst]):
            pr = cProfile.Profile()
            pr.enable()
            for i in range(args.frames):
                variants[k].track(frames[i % 8])
            pr.disable()
            s = io.StringIO()
            pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(8)
            profiles[(preset, k)] = "\n".join(line for line in s.getvalue().splitlines()
                                              if line.strip() and "function calls" not in line
                                              and "Ordered by" not in line and "List reduced" not in line)
    load1 = os.getloadavg()
    lines = [f"torch {torch.__version__}, {n} torch threads, {os.cpu_count()} CPUs; load average at start "
             f"{load0[0]:.1f}, at end {load1[0]:.1f}; frames 640x480, target 100x80 px", "",
             "| preset | variant | min ms/frame | median ms/frame |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c:.2f} | {d:.2f} |" for a, b, c, d in rows]
    for (preset, k), text in profiles.items():
        lines += ["", f"cProfile, {preset}, {k}, {args.frames} frames (top by own time):", "", "```", text, "```"]
    out = "\n".join(lines)
    print(out)
    if args.markdown:
        from lorat.files import atomic_write_text

        atomic_write_text(Path(args.markdown), "# Tracker overhead (generated by track_overhead.py)\n\n" + out + "\n")


if __name__ == "__main__":
    main()
