"""Hard-example mining for the demo's LoRA stage: oversample the frames where a look-alike is next to the target.

    PYTHONPATH=src python benchmarks/demo_hard_clips.py DEMO_OUT OUT_ROOT [--radius 1.0] [--half 8] [--copies 1]

The GOT-10k layout has no distractor annotations, but the generator is deterministic: each training sequence of
``DEMO_OUT/data/domain_B`` (seed 1 = the demo's seed 0 + 1, as ``lorat demo`` draws it) is rebuilt as a scene
(no rendering) and, per frame, the distance between the target's centre and the nearest distractor's centre is
measured in target sizes (the geometric mean of the target's sprite box sides). A frame is *hard* when the
target is visible and a distractor is within ``--radius`` target sizes. ``OUT_ROOT/domain_B/train`` then holds
the demo's sequences (symlinked) plus, for every run of hard frames, ``--copies`` clips of ``2 * --half + 1``
frames around its middle (JPEGs symlinked, label files sliced): the sampler draws sequences uniformly, so the
clips add pairs whose search frame shows a look-alike beside the target. Train on it with
``benchmarks/demo_ablation.py DEMO_OUT TAG data=OUT_ROOT``.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from lorat.data.synthetic import SyntheticConfig, _sequence_seed, _split_seed, sequence_names
from lorat.data.synthetic_scene import _Scene


def nearest_distractor(scene: _Scene) -> np.ndarray:
    """Per frame: distance from the target's centre to the nearest distractor's, in target sizes (inf: none)."""
    tgt = scene.target
    out = np.full(scene.n, np.inf)
    for t in range(scene.n):
        x0, y0, x1, y1 = tgt.bounds(t)
        size = math.sqrt(max(x1 - x0, 1e-6) * max(y1 - y0, 1e-6))
        for d in scene.distractors:
            out[t] = min(out[t], math.hypot(d.cx[t] - tgt.cx[t], d.cy[t] - tgt.cy[t]) / size)
    return out


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the runs of True in ``mask``."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(zip(np.nonzero(edges == 1)[0].tolist(), np.nonzero(edges == -1)[0].tolist()))


def write_clip(src: Path, dst: Path, start: int, stop: int) -> None:
    """A GOT-10k sequence folder of frames ``start..stop-1`` of ``src`` (JPEGs symlinked, labels sliced)."""
    dst.mkdir(parents=True)
    for i, t in enumerate(range(start, stop)):
        (dst / f"{i + 1:08d}.jpg").symlink_to((src / f"{t + 1:08d}.jpg").resolve())
    for name in ("groundtruth.txt", "absence.label", "cover.label", "cut_by_image.label"):
        lines = (src / name).read_text().splitlines()
        (dst / name).write_text("".join(line + "\n" for line in lines[start:stop]))
    (dst / "meta_info.ini").write_text((src / "meta_info.ini").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("demo_out", type=Path)
    p.add_argument("out_root", type=Path)
    p.add_argument("--radius", type=float, default=1.0)
    p.add_argument("--half", type=int, default=8)
    p.add_argument("--copies", type=int, default=1)
    p.add_argument("--seed", type=int, default=1, help="domain-B seed of the demo's data (demo seed + 1)")
    a = p.parse_args()
    src_root = a.demo_out / "data" / "domain_B" / "train"
    names = (src_root / "list.txt").read_text().split()
    frames = len(list((src_root / names[0]).glob("*.jpg")))
    cfg = SyntheticConfig(domain="B", seed=a.seed, frames_per_sequence=frames)
    split_seed = _split_seed(cfg.seed, "train")
    if names != sequence_names("train", len(names)):
        raise SystemExit(f"{src_root}: unexpected sequence names")
    dst_root = a.out_root / "domain_B" / "train"
    dst_root.mkdir(parents=True, exist_ok=False)
    out_names, n_hard, stats = [], 0, []
    for i, name in enumerate(names):
        src = src_root / name
        (dst_root / name).symlink_to(src.resolve())
        out_names.append(name)
        scene = _Scene(cfg, _sequence_seed(split_seed, i), frames)
        # the rebuilt scene must be the one on disk: its target centre against the ground truth on full-view frames
        gt = np.loadtxt(src / "groundtruth.txt", delimiter=",")
        cover = np.loadtxt(src / "cover.label")
        full = np.nonzero(cover == 8)[0]
        if len(full):
            # (the shape need not be centred in its sprite: allow a quarter of the box's size)
            err = max(abs(scene.target.cx[t] - (gt[t, 0] + gt[t, 2] / 2)) / math.sqrt(gt[t, 2] * gt[t, 3])
                      for t in full[:5])
            if err > 0.25:
                raise SystemExit(f"{name}: rebuilt scene does not match the files (centre off by {err:.2f} sizes)")
        dist = nearest_distractor(scene)
        hard = (dist < a.radius) & (cover > 0)
        stats.append(int(hard.sum()))
        for start, stop in runs(hard):
            mid = (start + stop) // 2
            lo, hi = max(0, mid - a.half), min(frames, mid + a.half + 1)
            for c in range(a.copies):
                clip = f"{name}_hard{start:03d}_{c}"
                write_clip(src, dst_root / clip, lo, hi)
                out_names.append(clip)
                n_hard += 1
    (dst_root / "list.txt").write_text("".join(n + "\n" for n in out_names))
    print(json.dumps({"sequences": len(names), "clips": n_hard, "hard_frames": int(sum(stats)),
                      "sequences_with_hard_frames": int(sum(s > 0 for s in stats)), "radius": a.radius}))


if __name__ == "__main__":
    main()
