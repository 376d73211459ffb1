"""End-to-end CPU tracking speed of the low-resolution trackers: decode, crop, model, post-processing.

Usage::

    python benchmarks/cpu_realtime.py --markdown benchmarks/cpu_realtime.md
    python benchmarks/cpu_realtime.py --presets loretrack-b-128 --variants eager/bfloat16 onnx-int8/float32

Per preset (default ``loretrack-b-128`` (ViT-B, 64/128 px), ``lorat-s-112``, ``lorat-b-112``,
``lorat-s-168``; random weights: the model's speed does not depend on them) and per variant ``runtime/precision``
(default ``eager/bfloat16``: the tracker's default path, the model as written, LoRA merged, weights cast;
``prepared/bfloat16``: the ``eager`` runtime, i.e. the inference fusions, the attention choice and, on CPU,
oneDNN-prepacked linears; ``int8/bfloat16``; ``onnx-int8/float32``, onnxruntime with its thread spinning on,
as a tracker built by the library runs it, unless ``--no-ort-spinning``), one tracker
tracks a 640x480 JPEG sequence read from disk: every frame is decoded (``lorat.data.images.read_image``),
then ``tracker.track(frame)``; both are timed. With random weights the tracker's own boxes grow to the
whole frame within a few frames, and the search crop with them (~2800 px squares of mostly zero padding,
about 1 ms more per frame than a crop around the true box); ``--state reset`` (the default) therefore
restarts the tracker on the true box after each timed frame (untimed), so every timed frame crops what a
tracker that follows its target crops; ``--state tracked`` keeps the drifting boxes. The tracker is
``lorat.Tracker(model, TrackConfig(runtime=...))``; an
architecture whose registered tracker is not a ``lorat.Tracker`` subclass yet (OSTrack before its rebase)
gets its own tracker class over ``lorat.runtime.as_module(make_runtime(...))``, which is said in the
output.

Variants of a preset are interleaved (``--rounds`` rounds, each variant tracks ``--frames`` frames from
the first one, restarted on the same box), so host load hits them alike; we report fps = 1 / (min and
median per-frame time), the ratio of medians to the first variant, and the load average before and after.
The goal (issue 9): >= 60 fps end to end for the 128 geometry with the fastest runtime.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

DEFAULT_PRESETS = ["loretrack-b-128", "lorat-s-112", "lorat-b-112", "lorat-s-168"]
DEFAULT_VARIANTS = ["eager/bfloat16", "prepared/bfloat16", "int8/bfloat16", "onnx-int8/float32"]


def write_sequence(folder: Path, n: int, seed: int = 0) -> tuple[list[Path], list[tuple[float, float, float, float]]]:
    """``n`` 640x480 JPEGs of a textured background with a bright square moving across; its box per frame."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8), (640, 480), interpolation=cv2.INTER_LINEAR)
    paths, boxes = [], []
    for i in range(n):
        img = base.copy()
        x, y = 200 + 3 * i, 180 + int(20 * np.sin(i / 5))
        img[y:y + 60, x:x + 80] = (250, 200, 40)
        path = folder / f"{i:05d}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
        boxes.append((float(x), float(y), 80.0, 60.0))
    return paths, boxes


def build_tracker(model, runtime: str, precision: str, cache: Path, spinning: bool = True):
    """``(tracker, how)``: through ``TrackConfig.runtime`` when the registered tracker is a Tracker."""
    from lorat.models.registry import get_arch, import_path
    from lorat.runtime import as_module, make_runtime
    from lorat.track.tracker import TrackConfig, Tracker

    opts = {"allow_spinning": spinning, "cache_dir": str(cache)} if runtime.startswith("onnx") else {}
    if runtime == "prepared":  # the eager *runtime*: inference fusions, attention choice, prepacked linears
        runtime, opts = "eager", {"attention": "auto"}
    cls = import_path(get_arch(model.cfg).tracker)
    if isinstance(cls, type) and issubclass(cls, Tracker):
        cfg = TrackConfig(device="cpu", dtype=precision, runtime=runtime, runtime_options=opts, copy_model=True,
                          verbose=False)
        return Tracker(model, cfg), "lorat.Tracker"
    rt = make_runtime(model, runtime, precision, "cpu", **opts)
    return cls(as_module(rt), TrackConfig(device="cpu", dtype="float32", verbose=False)), f"{cls.__name__}+as_module"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", nargs="+", default=DEFAULT_PRESETS)
    p.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, metavar="RUNTIME/PRECISION")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--markdown", default=None)
    p.add_argument("--state", choices=["reset", "tracked"], default="reset",
                   help="reset: after each timed frame the tracker restarts on the true box (untimed), so every "
                        "search crop has the size a tracker that follows its target cuts; tracked: the random "
                        "model's own boxes, which grow to the whole frame (crops of ~2800 px, ~+1 ms each)")
    p.add_argument("--no-ort-spinning", action="store_true",
                   help="turn off onnxruntime's thread spinning (on by default, as in a tracker built by the library)")
    args = p.parse_args()
    import lorat
    from lorat.data.images import read_image

    load0 = os.getloadavg()
    tmp = tempfile.TemporaryDirectory(prefix="lorat-rt-")
    paths, boxes = write_sequence(Path(tmp.name), args.frames + 1)
    box = boxes[0]
    rows = []
    for preset in args.presets:
        torch.manual_seed(0)
        model = lorat.create_model(preset).eval()
        trackers, build_s, hows = {}, {}, {}
        for v in args.variants:
            runtime, precision = v.split("/")
            a = time.perf_counter()
            tr, how = build_tracker(model, runtime, precision, Path(tmp.name) / f"{preset}-{runtime}",
                                    spinning=not args.no_ort_spinning)
            tr.initialize(read_image(paths[0]), box)
            tr.track(read_image(paths[1]))  # first call: compiles
            trackers[v], build_s[v], hows[v] = tr, time.perf_counter() - a, how
        times = {v: [] for v in trackers}
        for _ in range(args.rounds):
            for v, tr in trackers.items():
                tr.initialize(read_image(paths[0]), box)
                for path, true_box in zip(paths[1:], boxes[1:]):
                    a = time.perf_counter()
                    frame = read_image(path)
                    tr.track(frame)
                    times[v].append(time.perf_counter() - a)
                    if args.state == "reset":
                        tr.initialize(frame, true_box)
        ref = statistics.median(times[args.variants[0]])
        for v, ts in times.items():
            med = statistics.median(ts)
            rows.append((preset, v, hows[v], 1 / min(ts), 1 / med, ref / med, build_s[v]))
            print(f"{preset:16s} {v:20s} {hows[v]:28s} fps best {1 / min(ts):6.1f} median {1 / med:6.1f} "
                  f"x{ref / med:.2f}  build+first {build_s[v]:.1f}s", flush=True)
        del trackers, model
    load1 = os.getloadavg()
    lines = [f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; load average "
             f"(1/5/15 min) at start {load0[0]:.1f}/{load0[1]:.1f}/{load0[2]:.1f}, at end "
             f"{load1[0]:.1f}/{load1[1]:.1f}/{load1[2]:.1f}; {args.rounds} rounds x {args.frames} frames, 640x480 "
             "JPEG decoded each frame; "
             f"state {args.state}", "",
             "| preset | variant | tracker | fps (best) | fps (median) | median vs first variant "
             "| build + first call s |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d:.1f} | {e:.1f} | {f:.2f} | {g:.1f} |" for a, b, c, d, e, f, g in rows]
    out = "\n".join(lines)
    print(out)
    if args.markdown:
        from lorat.files import atomic_write_text

        title = "# CPU real-time tracking (generated by cpu_realtime.py)\n\n"
        atomic_write_text(Path(args.markdown), title + out + "\n")


if __name__ == "__main__":
    main()
