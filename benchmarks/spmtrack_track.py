"""SPMTrack tracking cost: fps against LoRAT at the same size, and resident memory over a 10,000-frame sequence.

Usage::

    python benchmarks/spmtrack_track.py --markdown benchmarks/spmtrack_track.md          # both parts
    python benchmarks/spmtrack_track.py --skip-memory --width b --frames 20                # fps only, ViT-B
    python benchmarks/spmtrack_track.py --skip-fps --memory-frames 2000                    # a shorter memory run

fps: ``lorat-*-224`` and ``spmtrack-*-224`` (template 112, search 224, area 4) with the same backbone width
(``--width s``: ViT-S/14, 384 wide, 12 blocks, a reduced width of the B presets; ``--width b``: ViT-B/14),
random weights, ``--dtype`` (default bf16, weights cast once, as the tracker does on CPU), batch 1. LoRAT's
LoRA is merged; TMoE cannot be. Both trackers run in this process, alternating frame by frame, so load from
other processes hits both alike: the ratio is the number to compare. Frames are 640x480 noise, pre-generated.

memory: one child process per setting tracks ``--memory-frames`` generated frames (320x240) with a tiny
SPMTrack (32 wide, 1 block; crops at the real -224 sizes: 112 px templates, so one memory entry is
3 x 112 x 112 float32 = 147 kB) and reports VmRSS (``/proc/self/status``) every 1,000 frames and the peak
(VmHWM). Settings: both schedules, sequence length unknown / known (``set_sequence_length``), and
pruning off (everything kept, the official pipeline's behaviour).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

WIDTHS = {"s": dict(embed_dim=384, num_heads=6, depth=12), "b": {}}
TINY = dict(embed_dim=32, num_heads=2, depth=1, tmoe_r=4, tmoe_alpha=8.0, tmoe_experts=2)


def _status_mb(key: str = "VmRSS") -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process from ``/proc/self/status``, MB.

    VmHWM, not ``ru_maxrss``: Linux keeps ``ru_maxrss`` across ``exec``, so a child started from this script
    would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _moving_frames(n: int, h: int, w: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = []
    for t in range(n):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        x, y = w // 3 + (t * 3) % (w // 3), h // 3 + (t * 2) % (h // 3)
        img[y:y + h // 6, x:x + w // 6] = (240, 200, 40)
        frames.append(img)
    return frames


# ----------------------------------------------------------------------------------------------- fps
def measure_fps(width: str, dtype: str, frames: int, warmup: int = 3) -> dict:
    """Per-frame step times of LoRAT and SPMTrack at the -224 geometry, measured alternately."""
    import lorat
    from lorat.track.tracker import TrackConfig

    trackers = {}
    for arch in ("lorat", "spmtrack"):
        torch.manual_seed(0)
        model = lorat.create_model(f"{arch}-b-224", **WIDTHS[width])
        trackers[arch] = lorat.Tracker(model, TrackConfig(device="cpu", dtype=dtype, verbose=False))
    video = _moving_frames(8, 480, 640)
    for t in trackers.values():
        t.initialize(video[0], (213, 160, 107, 80))
    times: dict[str, list[float]] = {a: [] for a in trackers}
    for k in range(warmup + frames):
        for arch, t in trackers.items():
            t0 = time.perf_counter()
            t.track(video[1 + k % 7])
            if k >= warmup:
                times[arch].append(time.perf_counter() - t0)
    out = {"width": width, "dtype": trackers["lorat"].precision, "frames": frames}
    for arch, ts in times.items():
        out[arch] = {"min_ms": 1000 * min(ts), "med_ms": 1000 * statistics.median(ts)}
    out["ratio_min"] = out["spmtrack"]["min_ms"] / out["lorat"]["min_ms"]
    out["ratio_med"] = out["spmtrack"]["med_ms"] / out["lorat"]["med_ms"]
    tz = 1 + 3 * 64 + 256
    out["tokens"] = {"lorat": 64 + 256, "spmtrack": tz}
    return out


# -------------------------------------------------------------------------------------------- memory
def memory_child(schedule: str, known: bool, prune: bool, frames: int, trim_every: int = 100) -> dict:
    """Track ``frames`` frames with a tiny SPMTrack; VmRSS samples, peak RSS, kept entries, fps."""
    import lorat
    from lorat.track.spmtrack import SPMTrackTrackConfig

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = lorat.create_model("spmtrack-b-224", **TINY)
    tracker = lorat.Tracker(model, SPMTrackTrackConfig(device="cpu", dtype="float32", verbose=False,
                                                       schedule=schedule, prune_memory=prune,
                                                       trim_every=trim_every))
    video = _moving_frames(50, 240, 320)
    if known:
        tracker.set_sequence_length("seq", frames)
    tracker.initialize_many(["seq"], [video[0]], [(106, 80, 53, 40)])
    mem = tracker.memory("seq")
    samples = [(0, _status_mb())]
    t0 = time.perf_counter()
    for t in range(1, frames):
        tracker.track_many(["seq"], [video[t % 50]])
        if t % 1000 == 0 or t == frames - 1:
            samples.append((t, _status_mb()))
    elapsed = time.perf_counter() - t0
    entry_kb = 3 * 112 * 112 * 4 / 1024
    return {"schedule": schedule, "known": known, "prune": prune, "trim_every": trim_every, "frames": frames,
            "peak_entries": mem.peak, "final_entries": len(mem), "entry_kb": entry_kb, "vmrss_mb": samples,
            "maxrss_mb": _status_mb("VmHWM"), "fps": (frames - 1) / elapsed}


MALLOC_FIXED = {"MALLOC_MMAP_THRESHOLD_": "131072"}
"""glibc: a fixed mmap threshold (128 kB), so every crop-sized block is its own mapping, returned on free."""

SETTINGS = [  # schedule, length known, pruning, trim_every, extra environment
    ("default", False, True, 100, {}), ("default", True, True, 100, {}), ("thirds", False, True, 100, {}),
    ("thirds", True, True, 100, {}), ("default", False, False, 100, {}), ("default", False, True, 0, {}),
    ("default", False, True, 0, MALLOC_FIXED)]


def measure_memory(frames: int, parallel: int = 1, only: list[int] | None = None) -> list[dict]:
    """One child process per setting (``only``: these indices of :data:`SETTINGS`), ``parallel`` at a time (RSS is
    per process, so they do not interact)."""
    results: list[dict | None] = [None] * len(SETTINGS)
    running: list[tuple[int, subprocess.Popen]] = []
    todo = [(i, st) for i, st in enumerate(SETTINGS) if only is None or i in only]
    while todo or running:
        while todo and len(running) < parallel:
            i, (schedule, known, prune, trim, env) = todo.pop(0)
            cmd = [sys.executable, __file__, "--memory-child", json.dumps([schedule, known, prune, frames, trim])]
            running.append((i, subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, **env})))
        i, proc = running.pop(0)
        out, _ = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"memory child {SETTINGS[i][:4]} failed with exit code {proc.returncode}")
        r = json.loads(out.strip().splitlines()[-1])
        r["malloc"] = " ".join(f"{k}={v}" for k, v in SETTINGS[i][4].items()) or "default"
        results[i] = r
        print(f"memory {r['schedule']:7s} known={r['known']!s:5s} prune={r['prune']!s:5s} trim={r['trim_every']} "
              f"malloc={r['malloc']}: peak {r['peak_entries']} entries, max RSS {r['maxrss_mb']:.0f} MB, "
              f"{r['fps']:.0f} fps", flush=True)
    return [r for r in results if r is not None]


# ---------------------------------------------------------------------------------------------- report
def markdown(fps: dict | None, mem: list[dict] | None, load: str, argv: list[str]) -> str:
    lines = ["# SPMTrack tracking cost (`benchmarks/spmtrack_track.py`)", "",
             f"Command: `python benchmarks/spmtrack_track.py {' '.join(argv)}`", "",
             f"Machine: {os.cpu_count()} CPUs visible, torch {torch.__version__}, {torch.get_num_threads()} torch "
             f"threads; load before the run: `{load}` (shared with other jobs: compare the ratios, which are "
             "measured in the same run).", ""]
    if fps:
        w = "ViT-S/14 width (384, 12 blocks; reduced from B)" if fps["width"] == "s" else "ViT-B/14"
        lines += ["## fps, same size (-224: template 112, search 224), batch 1", "",
                  f"Backbone: {w}, random weights, {fps['dtype']}, {fps['frames']} timed frames per tracker, the two "
                  "trackers alternating frame by frame. Tokens per forward: LoRAT "
                  f"{fps['tokens']['lorat']}, SPMTrack {fps['tokens']['spmtrack']} (state + 3 templates + search).",
                  "", "| tracker | ms / frame min | ms / frame median | fps (min) | fps (median) |",
                  "|---|---|---|---|---|"]
        for arch in ("lorat", "spmtrack"):
            r = fps[arch]
            lines.append(f"| {arch} | {r['min_ms']:.1f} | {r['med_ms']:.1f} | {1000 / r['min_ms']:.1f} | "
                         f"{1000 / r['med_ms']:.1f} |")
        lines += ["", f"SPMTrack / LoRAT time per frame: **{fps['ratio_min']:.2f}x** (min), "
                  f"{fps['ratio_med']:.2f}x (median). Load when measured: `{fps.get('load', 'n/a')}`"
                  + (f" ({fps['measured_at']})" if "measured_at" in fps else "") + ".", ""]
    if mem:
        n = mem[0]["frames"]
        lines += [f"## Resident memory over a {n:,}-frame sequence", "",
                  f"Tiny SPMTrack (32 wide, 1 block) at the -224 crop sizes: one memory entry = "
                  f"{mem[0]['entry_kb']:.0f} kB (B-378: 196 px, 450 kB). One process per row; RSS from "
                  "`/proc/self/status` (VmRSS), peak from VmHWM.", "",
                  "| schedule | length | pruning | trim every | glibc malloc | peak entries | entries at the end | "
                  "VmRSS start -> end (MB) | max RSS (MB) | fps |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in mem:
            rss = r["vmrss_mb"]
            lines.append(f"| {r['schedule']} | {'known' if r['known'] else 'unknown'} | "
                         f"{'on' if r['prune'] else 'off (official)'} | {r['trim_every'] or 'off'} | "
                         f"{r.get('malloc', 'default')} | "
                         f"{r['peak_entries']:,} | "
                         f"{r['final_entries']:,} | {rss[0][1]:.0f} -> {rss[-1][1]:.0f} | {r['maxrss_mb']:.0f} | "
                         f"{r['fps']:.0f} |")
        lines += ["", "VmRSS every 1,000 frames (MB):", ""]
        for r in mem:
            lines.append(f"* {r['schedule']}, length {'known' if r['known'] else 'unknown'}, pruning "
                         f"{'on' if r['prune'] else 'off'}, trim {r['trim_every'] or 'off'}, malloc "
                         f"{r.get('malloc', 'default')}: "
                         + ", ".join(f"{v:.0f}" for _, v in r["vmrss_mb"]))
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", choices=sorted(WIDTHS), default="s")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--frames", type=int, default=20, help="timed frames per tracker (fps)")
    p.add_argument("--memory-frames", type=int, default=10_000)
    p.add_argument("--skip-fps", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--parallel", type=int, default=1, help="memory child processes at once (default 1)")
    p.add_argument("--only", type=int, nargs="+", default=None, metavar="I", help="only these memory settings")
    p.add_argument("--fps-from", metavar="JSON", help="report this earlier fps result instead of measuring")
    p.add_argument("--markdown", metavar="PATH", help="also write the report here")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(*json.loads(args.memory_child))))
        return 0
    load = Path("/proc/loadavg").read_text().strip() if Path("/proc/loadavg").is_file() else "n/a"
    if args.fps_from:
        fps = json.loads(Path(args.fps_from).read_text())
    else:
        fps = None if args.skip_fps else measure_fps(args.width, args.dtype, args.frames)
        if fps:
            fps["load"] = load
    if fps:
        print(json.dumps(fps, indent=1), flush=True)
    mem = None if args.skip_memory else measure_memory(args.memory_frames, args.parallel, args.only)
    text = markdown(fps, mem, load, argv)
    print(text)
    if args.markdown:
        from lorat.files import atomic_write_text

        atomic_write_text(Path(args.markdown), text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
