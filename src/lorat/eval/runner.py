"""Run a tracker over benchmark sequences: batched, resumable, sharded; raw results and submission zips.

``lorat eval --checkpoint CKPT --benchmark lasot got10k_val --output OUT [--batch 8] [--repeat 3]
[--submission]``

Raw results (pytracking layout, one folder per tracker and benchmark; ``lorat analyze --results`` reads it)::

    OUT/<tracker>/<benchmark>/<seq>.txt          one "x<TAB>y<TAB>w<TAB>h" row per frame (%.3f, not rasterised)
    OUT/<tracker>/<benchmark>/<seq>_time.txt     seconds per frame (frame 0: initialisation)

With ``--repeat N`` (N > 1) run ``k`` goes to ``OUT/<tracker>/<benchmark>/run_{k:03d}/`` instead (each a
complete result folder); the printed summary averages the runs, and the GOT-10k zip holds them as
``<seq>_001.txt`` ... ``<seq>_00N.txt``.

Coordinates are those of the benchmark's files. LaSOT boxes are 1-based: as the official evaluation does,
tracking starts from the ground-truth box shifted by -1 and the results are written shifted back by +1
(official LaSOT handling, ``docs/tracking.md``); every other benchmark is used as is. Frame 0's result is
the ground-truth box.

Behaviour:

* **Batched**: up to ``--batch`` sequences are tracked at once, one forward per frame for all of them; a
  finished sequence is replaced by the next one, as the official batched evaluator does. Per-frame time =
  batch time / batch size.
* **Resumable**: a sequence whose ``<seq>.txt`` exists is skipped. Both files of a sequence are written
  atomically (temporary file + ``os.replace``, the time file first) when it finishes, so a killed run loses
  only the sequences in flight.
* **Sharded**: under ``torchrun`` (env ``RANK``/``WORLD_SIZE``; no process group needed) rank ``r`` takes
  jobs ``r::WORLD_SIZE`` of the deterministic job list (run, then benchmark, then sequence order).
* **Submissions** (``--submission``): ``OUT/<tracker>/<benchmark>_submission.zip`` in the servers' layouts,
  boxes rasterised to integers (the official ``bbox_rasterize``: every touched pixel): GOT-10k
  (``got10k_test``/``got10k_val``): a folder per sequence with ``<seq>_00k.txt`` (``%.4f``, comma) and
  ``<seq>_time.txt`` (one line per frame, one comma-separated column per run); TrackingNet: ``<seq>.txt``
  per sequence at the zip root (``%.2f``, comma; run 1). Zips are written atomically once every result of
  the benchmark exists (under sharding by the rank that finishes last; rerunning packs them from the
  existing results).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import zipfile
from collections import deque
from collections.abc import Callable, Mapping
from collections.abc import Sequence as Seq
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import boxes as bx
from ..data.formats import format_boxes, read_boxes
from ..data.sequence import Sequence
from ..files import atomic_path, atomic_write_text
from ..track.video import read_image

__all__ = ["ONE_BASED_DATASETS", "EvalJob", "EvalStats", "result_dir", "plan_jobs", "shard_info", "evaluate",
           "read_result", "write_got10k_submission", "write_trackingnet_submission", "write_submissions",
           "summarize", "load_benchmarks", "add_eval_arguments", "run_eval"]

ONE_BASED_DATASETS = frozenset({"lasot"})
"""``Sequence.dataset`` values whose boxes are 1-based and get the official -1 / +1 shift."""

_GOT10K_BENCHMARKS = ("got10k_test", "got10k_val")
_TRACKINGNET_BENCHMARKS = ("trackingnet",)
_NO_GROUND_TRUTH = ("got10k_test", "trackingnet")


# ============================================================================ layout and jobs
def result_dir(output: str | os.PathLike, tracker_name: str, benchmark: str, run: int = 1, repeat: int = 1) -> Path:
    """Folder holding ``<seq>.txt`` for run ``run`` (1-based) of ``repeat`` runs (see module docstring)."""
    base = Path(output) / tracker_name / benchmark
    return base if repeat == 1 else base / f"run_{run:03d}"


@dataclass
class EvalJob:
    """One sequence to track in one run of one benchmark."""

    benchmark: str
    run: int
    sequence: Sequence
    folder: Path

    @property
    def boxes_path(self) -> Path:
        """``<folder>/<seq>.txt``: its existence marks the job as done."""
        return self.folder / f"{self.sequence.name}.txt"

    @property
    def time_path(self) -> Path:
        """``<folder>/<seq>_time.txt``."""
        return self.folder / f"{self.sequence.name}_time.txt"

    @property
    def key(self) -> tuple[str, int, str]:
        """Unique id of the job (also the tracker's sequence id)."""
        return (self.benchmark, self.run, self.sequence.name)


def plan_jobs(benchmarks: Mapping[str, Seq[Sequence]], output: str | os.PathLike, tracker_name: str,
              repeat: int = 1) -> list[EvalJob]:
    """Every job in the deterministic order: run 1..repeat, then benchmarks in the given order, then
    sequences in the benchmark's order."""
    if repeat < 1:
        raise ValueError(f"repeat={repeat} must be >= 1")
    jobs = []
    for run in range(1, repeat + 1):
        for name, seqs in benchmarks.items():
            folder = result_dir(output, tracker_name, name, run, repeat)
            jobs.extend(EvalJob(name, run, s, folder) for s in seqs)
    return jobs


def shard_info() -> tuple[int, int]:
    """``(rank, world_size)`` from an initialised process group, else env ``RANK``/``WORLD_SIZE``, else (0, 1)."""
    try:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:  # pragma: no cover
        pass
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad sharding environment: RANK={rank}, WORLD_SIZE={world}")
    return rank, world


# ============================================================================ tracking loop
@dataclass
class EvalStats:
    """What one :func:`evaluate` call did."""

    done: list[EvalJob] = field(default_factory=list)  # sequences tracked in this call
    skipped: list[EvalJob] = field(default_factory=list)  # results already on disk
    frames: int = 0
    seconds: float = 0.0  # tracker time (crop + forward + decode), excluding image decoding

    @property
    def fps(self) -> float:
        """Tracked frames per second of tracker time."""
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


class _FrameReader:
    """Reads one sequence's frames in order, keeping up to ``depth`` decodes in flight on a thread pool."""

    def __init__(self, frames: Seq, pool: ThreadPoolExecutor | None, depth: int) -> None:
        self.frames, self.pool, self.depth = frames, pool, depth
        self.submitted = 0
        self.queue: deque[Future] = deque()

    def _fill(self) -> None:
        while self.pool is not None and len(self.queue) < self.depth and self.submitted < len(self.frames):
            self.queue.append(self.pool.submit(read_image, self.frames[self.submitted]))
            self.submitted += 1

    def next(self) -> np.ndarray:
        if self.pool is None:
            self.submitted += 1
            return read_image(self.frames[self.submitted - 1])
        self._fill()
        image = self.queue.popleft().result()
        self._fill()
        return image

    def cancel(self) -> None:
        for f in self.queue:
            f.cancel()


@dataclass
class _Active:
    job: EvalJob
    reader: _FrameReader
    shift: np.ndarray  # (4,) added to results (LaSOT: +1 on x, y)
    boxes: list = field(default_factory=list)
    times: list = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return len(self.job.sequence.frames) - len(self.boxes)


def _format_boxes(rows: Seq[np.ndarray], delimiter: str = "\t", fmt: str = "%.3f") -> str:
    return format_boxes(rows, delimiter, fmt)


def _finish(a: _Active) -> None:
    # Time file first: the boxes file is the "done" marker a rerun looks for.
    atomic_write_text(a.job.time_path, "".join(f"{t:.6f}\n" for t in a.times))
    atomic_write_text(a.job.boxes_path, _format_boxes(a.boxes))


def _start(job: EvalJob, pool: ThreadPoolExecutor | None, depth: int) -> tuple[_Active, np.ndarray]:
    seq = job.sequence
    if len(seq.frames) == 0:
        raise ValueError(f"{job.benchmark}/{seq.name}: sequence has no frames")
    shift = np.array([1.0, 1.0, 0.0, 0.0]) if seq.dataset in ONE_BASED_DATASETS else np.zeros(4)
    a = _Active(job, _FrameReader(seq.frames, pool, depth), shift)
    return a, np.asarray(seq.boxes[0], dtype=np.float64) - shift


def evaluate(tracker, benchmarks: Mapping[str, Seq[Sequence]], output: str | os.PathLike, tracker_name: str, *,
             batch: int = 8, repeat: int = 1, rank: int | None = None, world_size: int | None = None,
             workers: int = 2, progress: bool = True,
             on_sequence_done: Callable[[EvalJob], None] | None = None) -> EvalStats:
    """Track every pending sequence of this rank's shard and write its result files.

    Args:
        tracker: a :class:`lorat.track.tracker.Tracker` of any architecture (``lorat.Tracker(model)`` picks
            it; only ``initialize_many``/``track_many``/``remove`` are used).
        benchmarks: benchmark name -> sequences (e.g. from :func:`lorat.data.datasets.load_benchmark`).
        output: results root; files go to :func:`result_dir`.
        tracker_name: folder name of this tracker's results.
        batch: sequences tracked at once (one forward per frame for all of them).
        repeat: number of runs.
        rank, world_size: shard to run (default :func:`shard_info`).
        workers: image-decoding threads (0 = decode in the main thread).
        progress: show a tqdm bar with the tracking speed.
        on_sequence_done: called after a sequence's files are written (tests use it to simulate a crash).
    """
    from tqdm.auto import tqdm

    if batch < 1:
        raise ValueError(f"batch={batch} must be >= 1")
    if rank is None or world_size is None:
        rank, world_size = shard_info()
    stats = EvalStats()
    pending: deque[EvalJob] = deque()
    for job in plan_jobs(benchmarks, output, tracker_name, repeat)[rank::world_size]:
        (stats.skipped if job.boxes_path.is_file() else pending).append(job)
    total = sum(len(j.sequence.frames) for j in pending)
    desc = f"eval {tracker_name}" + (f" [rank {rank}/{world_size}]" if world_size > 1 else "")
    bar = tqdm(total=total, unit="frame", desc=desc, disable=not progress, dynamic_ncols=True)
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 0 else None
    depth = 2 if pool is not None else 0
    active: list[_Active] = []
    try:
        while pending or active:
            # admit new sequences: frame 0 gives the template (no forward), its result is the GT box
            new, init_boxes = [], []
            while pending and len(active) + len(new) < batch:
                a, init_box = _start(pending.popleft(), pool, depth)
                new.append(a)
                init_boxes.append(init_box)
            images = [a.reader.next() for a in new]
            if new:
                if hasattr(tracker, "set_sequence_length"):  # a memory tracker (SPMTrack) can then prune more
                    for a in new:
                        tracker.set_sequence_length(a.job.key, len(a.job.sequence.frames))
                t0 = time.perf_counter()
                tracker.initialize_many([a.job.key for a in new], images, init_boxes)  # errors name the job key
                dt = (time.perf_counter() - t0) / len(new)
                for a, box in zip(new, init_boxes):
                    a.boxes.append(box + a.shift)
                    a.times.append(dt)
                stats.seconds += dt * len(new)
                stats.frames += len(new)
                bar.update(len(new))
                active.extend(new)
            # one batched step for every active sequence that has frames left
            stepping = [a for a in active if a.remaining > 0]
            if stepping:
                images = [a.reader.next() for a in stepping]
                t0 = time.perf_counter()
                results = tracker.track_many([a.job.key for a in stepping], images)
                dt = (time.perf_counter() - t0) / len(stepping)
                for a, (box, _score) in zip(stepping, results):
                    a.boxes.append(box + a.shift)
                    a.times.append(dt)
                stats.seconds += dt * len(stepping)
                stats.frames += len(stepping)
                bar.update(len(stepping))
                n_seqs = len(stats.done) + len(pending) + len(active)
                bar.set_postfix(fps=f"{stats.fps:.1f}", seqs=f"{len(stats.done)}/{n_seqs}", refresh=False)
            for a in [a for a in active if a.remaining == 0]:
                _finish(a)
                tracker.remove([a.job.key])
                active.remove(a)
                stats.done.append(a.job)
                if on_sequence_done is not None:
                    on_sequence_done(a.job)
    finally:
        for a in active:
            a.reader.cancel()
            tracker.remove([a.job.key])
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return stats


# ============================================================================ reading results, submissions
def read_result(path: str | os.PathLike) -> np.ndarray:
    """``(N, 4)`` float64 boxes of a raw result file (tab, comma or space separated)."""
    return read_boxes(path, "result file", skip_blank_lines=True, header=False)


def _read_times(path: Path) -> np.ndarray:
    return np.asarray([float(v) for v in path.read_text(encoding="utf-8").split()], dtype=np.float64)


def _rasterized_xywh(boxes_xywh: np.ndarray) -> np.ndarray:
    """Continuous xywh -> the integer box covering every touched pixel, as xywh (official ``bbox_rasterize``)."""
    r = bx.rasterize(bx.xywh_to_xyxy(boxes_xywh)).astype(np.float64)
    return bx.xyxy_to_xywh(r)


def _atomic_zip(path: Path, members: dict[str, str]) -> None:
    with atomic_path(path, suffix=".tmp.zip") as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for name, text in members.items():
                z.writestr(name, text)


def write_got10k_submission(run_dirs: Seq[Path], names: Seq[str], zip_path: str | os.PathLike) -> Path:
    """GOT-10k server zip: ``<seq>/<seq>_{k:03d}.txt`` (rasterised, ``%.4f``, comma) for every run ``k`` and
    ``<seq>/<seq>_time.txt`` (one line per frame, a comma-separated column per run)."""
    members: dict[str, str] = {}
    for name in names:
        times = []
        for k, folder in enumerate(run_dirs, 1):
            boxes = _rasterized_xywh(read_result(folder / f"{name}.txt"))
            members[f"{name}/{name}_{k:03d}.txt"] = _format_boxes(boxes, ",", "%.4f")
            times.append(_read_times(folder / f"{name}_time.txt"))
        n = min(len(t) for t in times)
        members[f"{name}/{name}_time.txt"] = "".join(",".join(f"{t[i]:.6f}" for t in times) + "\n" for i in range(n))
    _atomic_zip(Path(zip_path), members)
    return Path(zip_path)


def write_trackingnet_submission(run_dir: Path, names: Seq[str], zip_path: str | os.PathLike) -> Path:
    """TrackingNet server zip: ``<seq>.txt`` per sequence at the root (rasterised, ``%.2f``, comma)."""
    members = {f"{name}.txt": _format_boxes(_rasterized_xywh(read_result(run_dir / f"{name}.txt")), ",", "%.2f")
               for name in names}
    _atomic_zip(Path(zip_path), members)
    return Path(zip_path)


def _complete(jobs: Seq[EvalJob]) -> bool:
    return all(j.boxes_path.is_file() and j.time_path.is_file() for j in jobs)


def write_submissions(benchmarks: Mapping[str, Seq[Sequence]], output: str | os.PathLike, tracker_name: str,
                      repeat: int = 1) -> list[Path]:
    """Write the submission zip of every GOT-10k / TrackingNet benchmark whose results are all on disk."""
    written = []
    for name, seqs in benchmarks.items():
        if name not in _GOT10K_BENCHMARKS + _TRACKINGNET_BENCHMARKS:
            continue
        if not _complete(plan_jobs({name: seqs}, output, tracker_name, repeat)):
            continue
        names = [s.name for s in seqs]
        dirs = [result_dir(output, tracker_name, name, k, repeat) for k in range(1, repeat + 1)]
        zip_path = Path(output) / tracker_name / f"{name}_submission.zip"
        if name in _GOT10K_BENCHMARKS:
            written.append(write_got10k_submission(dirs, names, zip_path))
        else:
            written.append(write_trackingnet_submission(dirs[0], names, zip_path))
    return written


# ============================================================================ summary
def summarize(benchmarks: Mapping[str, Seq[Sequence]], output: str | os.PathLike, tracker_name: str,
              repeat: int = 1, rule: str = "pytracking") -> dict[str, dict]:
    """Score every complete benchmark that has ground truth with :func:`lorat.eval.report.analyze`.

    Returns ``{benchmark: {"runs": [overall dict per run], "mean": {metric: mean over runs}}}``; benchmarks
    with unpublished ground truth (GOT-10k test, TrackingNet) or missing results are left out.
    """
    from . import report

    out: dict[str, dict] = {}
    for name, seqs in benchmarks.items():
        if name in _NO_GROUND_TRUTH or not seqs or not _complete(plan_jobs({name: seqs}, output, tracker_name, repeat)):
            continue
        runs = []
        for k in range(1, repeat + 1):
            src = report.ResultSource(tracker_name, result_dir(output, tracker_name, name, k, repeat))
            doc = report.analyze([src], seqs, rule=rule, protocol=report.protocol_for_dataset(name))
            runs.append(doc["trackers"][tracker_name]["overall"])
        keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        mean = {k: float(np.mean([r[k] for r in runs if k in r])) for k in keys if all(k in r for r in runs)}
        out[name] = {"runs": runs, "mean": mean}
    return out


# ============================================================================ CLI
def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``lorat eval``."""
    from ..loading import add_model_arguments
    from ..runtime import add_runtime_argument

    p.add_argument("--benchmark", nargs="+", required=True, metavar="NAME",
                   help="lasot, lasot_ext, got10k_val, got10k_test, trackingnet, tnl2k, otb100, nfs30, uav123, folder")
    p.add_argument("--root", nargs="+", default=None, metavar="PATH|NAME=PATH",
                   help="dataset root: one PATH for every benchmark, or NAME=PATH per benchmark "
                        "(default: LORAT_<NAME>_ROOT or the datasets file, see `lorat data`)")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="results root")
    p.add_argument("--name", default=None, help="tracker name (results folder); default: checkpoint stem or preset")
    p.add_argument("--batch", type=int, default=8, help="sequences tracked at once (default 8)")
    p.add_argument("--repeat", type=int, default=1, help="number of runs (results in run_001 ...; default 1)")
    p.add_argument("--sequences", nargs="+", default=None, metavar="SEQ", help="only these sequences")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N sequences per benchmark")
    p.add_argument("--workers", type=int, default=2, help="image-decoding threads (default 2; 0 = none)")
    p.add_argument("--submission", action="store_true",
                   help="also write GOT-10k / TrackingNet submission zips (rasterised boxes)")
    p.add_argument("--rule", default="pytracking", help="metric rule of the final summary (see lorat analyze)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_arguments(p)
    add_runtime_argument(p)


def _roots(benchmarks: Seq[str], specs: Seq[str] | None) -> dict[str, str | None]:
    """``--root`` values -> ``{benchmark: root or None}`` (one PATH for all, or NAME=PATH each)."""
    roots: dict[str, str | None] = {b: None for b in benchmarks}
    if not specs:
        return roots
    named = [s.partition("=")[0] in roots and "=" in s for s in specs]
    if len(specs) == 1 and not named[0]:
        return {b: specs[0] for b in benchmarks}
    for spec, ok in zip(specs, named):
        if not ok:
            raise ValueError(f"--root {spec!r}: with several roots each must be NAME=PATH, NAME one of "
                             f"{list(benchmarks)}")
        name, _, path = spec.partition("=")
        roots[name] = path
    return roots


def load_benchmarks(names: Seq[str], roots: Mapping[str, str | None], sequences: Seq[str] | None = None,
                    limit: int | None = None) -> dict[str, list[Sequence]]:
    """``{name: sequences}`` through :func:`lorat.data.datasets.load_benchmark`, optionally filtered."""
    from ..data.datasets import load_benchmark

    out = {}
    for name in names:
        seqs = list(load_benchmark(name, roots.get(name)))
        if sequences:
            wanted = set(sequences)
            seqs = [s for s in seqs if s.name in wanted]
        if limit is not None:
            seqs = seqs[:limit]
        out[name] = seqs
    if sequences and not any(out.values()):
        raise ValueError(f"--sequences {list(sequences)} matched no sequence of {list(names)}")
    return out


def run_eval(args: argparse.Namespace) -> int:
    """Run ``lorat eval``; returns 0."""
    from ..loading import model_from_args
    from ..runtime import runtime_name
    from ..track.tracker import Tracker
    from .report import RULES

    if args.rule not in RULES:  # checked before hours of tracking, not after
        raise ValueError(f"--rule {args.rule!r}; choose from {', '.join(RULES)}")
    if len(set(args.benchmark)) != len(args.benchmark):
        raise ValueError(f"--benchmark lists a name twice: {args.benchmark}")
    benchmarks = load_benchmarks(args.benchmark, _roots(args.benchmark, args.root), args.sequences, args.limit)
    model, track_cfg, default_name = model_from_args(args)
    name = (args.name or default_name).replace("/", "-")
    tracker = Tracker(model, track_cfg)
    rank, world = shard_info()
    stats = evaluate(tracker, benchmarks, args.output, name, batch=args.batch, repeat=args.repeat, rank=rank,
                     world_size=world, workers=args.workers, progress=not args.quiet)
    where = Path(args.output) / name
    print(f"tracked {len(stats.done)} sequences ({stats.frames} frames, {stats.fps:.1f} fps on "
          f"{tracker.device}, precision {tracker.precision}, runtime {runtime_name(tracker)}), "
          f"{len(stats.skipped)} already done; results in {where}")
    if args.submission:
        zips = write_submissions(benchmarks, args.output, name, args.repeat)
        for z in zips:
            print(f"submission: {z}")
        wanted = [b for b in benchmarks if b in _GOT10K_BENCHMARKS + _TRACKINGNET_BENCHMARKS]
        if len(zips) < len(wanted):
            print("some submission zips are not written yet (results incomplete: other ranks still running?); "
                  "rerun the same command to pack them", file=sys.stderr)
    if rank == 0 or world == 1:
        for bench, res in summarize(benchmarks, args.output, name, args.repeat, args.rule).items():
            m = res["mean"]
            parts = [f"{k}={m[k]:.2f}" for k in ("auc", "precision", "norm_precision", "ao", "success_score")
                     if k in m]
            runs = f" (mean of {len(res['runs'])} runs)" if len(res["runs"]) > 1 else ""
            print(f"{bench}: {', '.join(parts) or 'scored'}{runs} [{args.rule}]")
    return 0
