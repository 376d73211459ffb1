"""Procedural tracking sequences written in the GOT-10k on-disk layout.

``lorat demo`` needs a benchmark that exists on a laptop with no downloads: this module draws one.
Each sequence is a textured background seen by a slowly panning camera, one target object (a
textured shape with its own pattern) that moves, bounces, turns, and changes scale and aspect,
similar-looking distractors that pass behind it, occluders (poles, blobs, panels) that pass in
front of it, partial and full exits through the image border, illumination changes, motion blur
and sensor noise. Two visual *domains* ("A" and "B") use disjoint texture families, colour
palettes and object shapes, so a model can be pretrained on one and adapted to the other.

Files follow the GOT-10k on-disk layout::

    <root>/<split>/list.txt                       sequence names, one per line (written last)
    <root>/<split>/GOT-10k_Train_000001/
        00000001.jpg ...                          8-digit, 1-based
        groundtruth.txt                           "x,y,w,h" with 4 decimals (test: first row only)
        absence.label  cover.label  cut_by_image.label   one integer per line (train/val only)
        meta_info.ini                             [METAINFO] + 10 "key: value" lines

Label semantics (ours, chosen to match how GOT-10k consumers read the files):

* ground truth = the axis-aligned box of the target's *visible* pixels (in the image and not
  behind an occluder; a pixel counts when the target contributes more than 5 % of its colour, so
  the box holds every pixel the target visibly changes, anti-aliased rim included);
* ``visible ratio`` f = visible target area / whole target area (area outside the image counts as
  hidden); ``cover = ceil(8 f)`` in 1..8 for visible frames and 0 for absent ones, so pytracking's
  ``cover / 8`` reads back an upper bound of f;
* ``absence = 1`` when the target is not visible (fully occluded or fully out of frame; slivers
  of less than ``min_visible_pixels`` pixels of area count as not visible);
  those rows of ``groundtruth.txt`` hold ``-1,-1,-1,-1``, the value GOT-10k mostly uses for targets
  outside the image (got-10k/toolkit#10), and the GOT-10k toolkit drops them via ``cover == 0``;
* ``cut_by_image = 1`` when any part of the target lies outside the image (also when all of it does).

Everything is deterministic per seed (numpy ``Generator`` streams, OpenCV JPEG encoding with a fixed
quality), and generation is resumable: each sequence is written into a temporary folder and renamed
into place, finished sequences are skipped on a rerun, and ``list.txt`` is replaced atomically last.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

from .synthetic_config import DOMAINS, DomainStyle, SyntheticConfig
from .synthetic_scene import _collect_labels, _Scene, generate_sequence
from .synthetic_scene import _frames as _frames  # re-exported for tests

__all__ = [
    "DOMAINS",
    "DomainStyle",
    "SyntheticConfig",
    "generate_sequence",
    "make_synthetic_benchmark",
    "sequence_names",
    "write_got10k_split",
]

# Bump when a change alters generated pixels or labels: it invalidates resumable folders on disk.
GENERATOR_VERSION = 1
_FINGERPRINT_FILE = "synthetic_config.json"
_TMP_PREFIX = ".tmp-"
_SPLIT_PREFIX = {"train": "GOT-10k_Train_", "val": "GOT-10k_Val_", "test": "GOT-10k_Test_"}
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}


# ------------------------------------------------------------------------------------------------
# GOT-10k writer
# ------------------------------------------------------------------------------------------------


def sequence_names(split: str, num_sequences: int) -> list[str]:
    """GOT-10k style folder names of a split, e.g. ``GOT-10k_Val_000001`` (1-based)."""
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split must be one of {sorted(_SPLIT_PREFIX)}, got {split!r}")
    return [f"{_SPLIT_PREFIX[split]}{i + 1:06d}" for i in range(num_sequences)]


def _sequence_seed(split_seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(split_seed) & (2**63 - 1), index]).generate_state(1, np.uint64)[0] >> 1)


def _split_seed(root_seed: int, split: str) -> int:
    return int(
        np.random.SeedSequence([int(root_seed) & (2**63 - 1), 7919, _SPLIT_CODE[split]]).generate_state(1, np.uint64)[0]
        >> 1
    )


def _fmt_box(b) -> str:
    return ",".join(f"{float(v):.4f}" for v in b)


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def _write_sequence(split_dir: Path, name: str, split: str, cfg: SyntheticConfig, seed: int) -> str:
    """Render one sequence into ``.tmp-<name>`` and rename it to ``<name>`` when complete."""
    final = split_dir / name
    if final.is_dir():
        return name
    tmp = split_dir / f"{_TMP_PREFIX}{name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    scene = _Scene(cfg, seed, cfg.frames_per_sequence)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(cfg.jpeg_quality)]
    infos = []
    for t in range(scene.n):
        img, info = scene.render(t)
        info.pop("mask")
        infos.append(info)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {name} frame {t + 1}")
        (tmp / f"{t + 1:08d}.jpg").write_bytes(buf.tobytes())
    lab = _collect_labels(infos)
    rows = lab["boxes"][:1] if split == "test" else lab["boxes"]  # GOT-10k test: first box only
    _write_text(tmp / "groundtruth.txt", "".join(_fmt_box(b) + "\n" for b in rows))
    if split != "test":
        for key in ("absence", "cover", "cut_by_image"):
            _write_text(tmp / f"{key}.label", "".join(f"{int(v)}\n" for v in lab[key]))
    meta = scene.meta(seed)
    _write_text(tmp / "meta_info.ini", "[METAINFO]\n" + "".join(f"{k}: {v}\n" for k, v in meta.items()))
    try:
        os.rename(tmp, final)  # atomic on one filesystem: a sequence folder is complete or absent
    except OSError:
        if not final.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # someone else finished it first
    return name


def _write_sequence_job(args: tuple) -> str:
    cv2.setNumThreads(1)  # workers are the parallelism; OpenCV threads would only oversubscribe
    return _write_sequence(*args)


def _fingerprint(split: str, cfg: SyntheticConfig, seed: int) -> dict:
    conf = asdict(cfg)
    for k in ("num_train", "num_val", "num_test", "seed"):  # counts may grow; the split seed is below
        conf.pop(k)
    return json.loads(
        json.dumps(
            {
                "generator": "lorat.data.synthetic",
                "version": GENERATOR_VERSION,
                "split": split,
                "seed": int(seed),
                "config": conf,
            }
        )
    )


def write_got10k_split(
    root: Path | str,
    split: str,
    num_sequences: int,
    cfg: SyntheticConfig,
    seed: int,
    progress: bool = True,
    workers: int = 1,
) -> list[str]:
    """Write (or finish writing) one split of a synthetic benchmark in GOT-10k layout.

    Sequences already on disk are kept, so an interrupted run resumes where it stopped; leftover
    temporary folders are removed first. ``list.txt`` is replaced atomically at the end.
    ``<root>/<split>/synthetic_config.json`` records the settings, and a rerun with different
    settings raises instead of mixing two benchmarks in one folder.

    Args:
        root: benchmark root (the folder that holds ``train/``, ``val/``, ``test/``).
        split: ``train``, ``val`` or ``test`` (test writes only the first ground-truth row and no
            label files, like the real GOT-10k test split).
        num_sequences: number of sequences, named ``GOT-10k_<Split>_000001`` onwards.
        cfg: generator settings; ``cfg.frames_per_sequence`` frames per sequence.
        seed: split seed; sequence ``i`` uses a seed derived from ``(seed, i)``.
        progress: show a tqdm progress bar.
        workers: processes rendering sequences in parallel (output does not depend on it).

    Returns:
        The sequence names, in ``list.txt`` order.
    """
    names = sequence_names(split, num_sequences)
    split_dir = Path(root) / split
    split_dir.mkdir(parents=True, exist_ok=True)
    fp_path = split_dir / _FINGERPRINT_FILE
    fp = _fingerprint(split, cfg, seed)
    if fp_path.exists():
        old = json.loads(fp_path.read_text(encoding="utf-8"))
        if old != fp:
            raise ValueError(
                f"{split_dir} holds a synthetic split generated with other settings "
                f"(see {fp_path.name}); delete the folder or choose another root"
            )
    else:
        _write_text(fp_path, json.dumps(fp, indent=2, sort_keys=True) + "\n")
    for stale in split_dir.glob(_TMP_PREFIX + "*"):  # debris of an interrupted run
        shutil.rmtree(stale, ignore_errors=True)

    jobs = [
        (split_dir, nm, split, cfg, _sequence_seed(seed, i))
        for i, nm in enumerate(names)
        if not (split_dir / nm).is_dir()
    ]
    from tqdm.auto import tqdm

    with tqdm(
        total=num_sequences,
        initial=num_sequences - len(jobs),
        disable=not progress,
        desc=f"synthetic {cfg.style().name}/{split}",
        unit="seq",
    ) as bar:
        if workers > 1 and len(jobs) > 1:
            # "spawn", not fork: forking a process whose OpenCV/OpenMP thread pools are running can
            # deadlock the children (seen under pytest with torch imported).
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
                for _ in pool.map(_write_sequence_job, jobs):
                    bar.update(1)
        else:
            for job in jobs:
                _write_sequence(*job)
                bar.update(1)

    tmp_list = split_dir / "list.txt.tmp"
    _write_text(tmp_list, "".join(nm + "\n" for nm in names))
    os.replace(tmp_list, split_dir / "list.txt")
    return names


def make_synthetic_benchmark(
    root: Path | str,
    cfg: SyntheticConfig,
    num_train: int | None = None,
    num_val: int | None = None,
    num_test: int | None = 0,
    *,
    progress: bool = True,
    workers: int = 1,
) -> Path:
    """Write ``train``/``val`` (and optionally ``test``) splits of a synthetic GOT-10k benchmark.

    Split seeds derive from ``cfg.seed`` and the split name, so the splits share no sequence.

    Args:
        root: benchmark root to create.
        cfg: generator settings.
        num_train, num_val, num_test: sequences per split; ``None`` takes ``cfg.num_*``. A split with
            0 sequences is not written.
        progress: show tqdm progress bars.
        workers: processes rendering sequences in parallel.

    Returns:
        ``root`` as a :class:`~pathlib.Path` (pass it to the GOT-10k readers).
    """
    root = Path(root)
    counts = {
        "train": cfg.num_train if num_train is None else num_train,
        "val": cfg.num_val if num_val is None else num_val,
        "test": cfg.num_test if num_test is None else num_test,
    }
    for split, count in counts.items():
        if count > 0:
            write_got10k_split(
                root, split, count, cfg, _split_seed(cfg.seed, split), progress=progress, workers=workers
            )
    return root
