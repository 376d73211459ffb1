"""``lorat eval``: result layout, batching, resume after a crash, sharding, repeats, submission zips."""
from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import lorat
from lorat.cli import main
from lorat.data.datasets import load_benchmark
from lorat.data.sequence import Sequence
from lorat.eval.runner import (
    evaluate,
    plan_jobs,
    read_result,
    result_dir,
    write_got10k_submission,
    write_trackingnet_submission,
)
from lorat.track.tracker import TrackConfig, Tracker

LENGTHS = [4, 6, 3, 7, 5]  # different lengths: finished sequences are replaced mid-batch


def _write_got10k_val(root: Path) -> list[str]:
    """A tiny GOT-10k val split: moving squares on noise, 64x48 JPEGs, groundtruth.txt with 4 decimals."""
    split = root / "val"
    names = [f"GOT-10k_Val_{i + 1:06d}" for i in range(len(LENGTHS))]
    for i, (name, n) in enumerate(zip(names, LENGTHS)):
        d = split / name
        d.mkdir(parents=True)
        rng = np.random.default_rng(i)
        rows = []
        for t in range(n):
            img = rng.integers(0, 80, (48, 64, 3)).astype(np.uint8)
            x, y = 8 + 4 * t + i, 10 + 2 * t
            img[y:y + 12, x:x + 14] = (40 * i % 255, 220, 90)
            cv2.imwrite(str(d / f"{t + 1:08d}.jpg"), img)
            rows.append(f"{x:.4f},{y:.4f},{14:.4f},{12:.4f}")
        (d / "groundtruth.txt").write_text("\n".join(rows) + "\n")
    (split / "list.txt").write_text("\n".join(names) + "\n")
    return names


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("got10k")
    names = _write_got10k_val(root)
    return root, names


@pytest.fixture
def seqs(bench):
    return load_benchmark("got10k_val", bench[0])


@pytest.fixture
def tracker(tiny_cfg):
    torch.manual_seed(0)
    return Tracker(lorat.create_model(tiny_cfg), TrackConfig(device="cpu", dtype="float32"))


def _files(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: read_result(p) for p in sorted(folder.glob("*.txt")) if not p.name.endswith("_time.txt")}


def test_results_layout(tracker, seqs, tmp_path):
    stats = evaluate(tracker, {"got10k_val": seqs}, tmp_path, "tiny", batch=3, progress=False)
    folder = tmp_path / "tiny" / "got10k_val"
    assert folder == result_dir(tmp_path, "tiny", "got10k_val")
    assert len(stats.done) == 5 and stats.frames == sum(LENGTHS) and not stats.skipped
    for seq, n in zip(seqs, LENGTHS):
        lines = (folder / f"{seq.name}.txt").read_text().splitlines()
        assert len(lines) == n and all(len(line.split("\t")) == 4 for line in lines)  # pytracking: tab
        np.testing.assert_allclose(read_result(folder / f"{seq.name}.txt")[0], seq.boxes[0])  # frame 0 = GT
        times = (folder / f"{seq.name}_time.txt").read_text().split()
        assert len(times) == n and all(float(t) >= 0 for t in times)
    assert tracker.active_ids == []  # finished sequences are released
    assert not list(folder.glob(".*"))  # no temporary files


def test_batched_equals_one_at_a_time(tracker, seqs, tmp_path):
    evaluate(tracker, {"got10k_val": seqs}, tmp_path / "b1", "t", batch=1, workers=0, progress=False)
    evaluate(tracker, {"got10k_val": seqs}, tmp_path / "b4", "t", batch=4, progress=False)
    a, b = _files(tmp_path / "b1" / "t" / "got10k_val"), _files(tmp_path / "b4" / "t" / "got10k_val")
    assert a.keys() == b.keys() and len(a) == 5
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=2e-3)


def test_resume_after_crash_matches_clean_run(tracker, seqs, tmp_path):
    evaluate(tracker, {"got10k_val": seqs}, tmp_path / "clean", "t", batch=2, progress=False)

    done = []

    def crash_after_two(job):
        done.append(job.sequence.name)
        if len(done) == 2:
            raise RuntimeError("simulated kill")

    with pytest.raises(RuntimeError, match="simulated kill"):
        evaluate(tracker, {"got10k_val": seqs}, tmp_path / "resumed", "t", batch=2, progress=False,
                 on_sequence_done=crash_after_two)
    folder = tmp_path / "resumed" / "t" / "got10k_val"
    assert sorted(_files(folder)) == sorted(f"{n}.txt" for n in done)  # only finished sequences on disk
    assert tracker.active_ids == []
    before = {n: (folder / f"{n}.txt").stat().st_mtime_ns for n in done}
    stats = evaluate(tracker, {"got10k_val": seqs}, tmp_path / "resumed", "t", batch=2, progress=False)
    assert sorted(j.sequence.name for j in stats.skipped) == sorted(done)
    assert len(stats.done) == 3
    assert {n: (folder / f"{n}.txt").stat().st_mtime_ns for n in done} == before  # not rewritten
    clean = _files(tmp_path / "clean" / "t" / "got10k_val")
    resumed = _files(folder)
    assert clean.keys() == resumed.keys()
    for k in clean:
        np.testing.assert_allclose(clean[k], resumed[k], atol=2e-3)


def test_sharding_covers_each_sequence_once(tracker, seqs, tmp_path):
    s0 = evaluate(tracker, {"got10k_val": seqs}, tmp_path, "t", batch=2, rank=0, world_size=2, progress=False)
    names0 = sorted(j.sequence.name for j in s0.done)
    assert names0 == [seqs[0].name, seqs[2].name, seqs[4].name]  # rank 0 takes jobs 0::2
    s1 = evaluate(tracker, {"got10k_val": seqs}, tmp_path, "t", batch=2, rank=1, world_size=2, progress=False)
    names1 = sorted(j.sequence.name for j in s1.done)
    assert s1.skipped == []  # rank 1 never looks at rank 0's jobs
    assert not set(names0) & set(names1) and sorted(names0 + names1) == sorted(s.name for s in seqs)
    assert len(_files(tmp_path / "t" / "got10k_val")) == 5


def test_sharding_from_environment(tracker, seqs, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    stats = evaluate(tracker, {"got10k_val": seqs}, tmp_path, "t", batch=2, progress=False)
    assert sorted(j.sequence.name for j in stats.done) == [seqs[1].name, seqs[4].name]


def test_repeat_layout_and_job_order(seqs, tmp_path):
    jobs = plan_jobs({"a": seqs[:2], "b": seqs[2:3]}, tmp_path, "t", repeat=2)
    assert [(j.run, j.benchmark, j.sequence.name) for j in jobs] == [
        (1, "a", seqs[0].name), (1, "a", seqs[1].name), (1, "b", seqs[2].name),
        (2, "a", seqs[0].name), (2, "a", seqs[1].name), (2, "b", seqs[2].name)]
    assert jobs[0].boxes_path == tmp_path / "t" / "a" / "run_001" / f"{seqs[0].name}.txt"
    assert jobs[-1].time_path == tmp_path / "t" / "b" / "run_002" / f"{seqs[2].name}_time.txt"


class RecordingTracker:
    """Stands in for Tracker: records the init boxes, predicts the previous frame's GT + 0.5."""

    def __init__(self, seqs):
        self.gt = {s.name: s.boxes for s in seqs}
        self.inits, self.frame = {}, {}

    def initialize_many(self, ids, images, boxes):
        for sid, box in zip(ids, boxes):
            self.inits[sid] = np.asarray(box)
            self.frame[sid] = 0

    def track_many(self, ids, images):
        out = []
        for sid in ids:
            self.frame[sid] += 1
            out.append((self.gt[sid[2]][self.frame[sid]] - np.array([1, 1, 0, 0]) + 0.5, 0.5))
        return out

    def remove(self, ids):
        pass


def test_lasot_boxes_are_shifted_to_zero_based_and_back(seqs, tmp_path):
    lasot = [Sequence(s.name, s.frames, s.boxes, dataset="lasot") for s in seqs[:2]]
    rec = RecordingTracker(lasot)
    evaluate(rec, {"lasot": lasot}, tmp_path, "t", batch=2, progress=False)
    for s in lasot:
        np.testing.assert_allclose(rec.inits[("lasot", 1, s.name)], s.boxes[0] - [1, 1, 0, 0])
        res = read_result(tmp_path / "t" / "lasot" / f"{s.name}.txt")
        np.testing.assert_allclose(res[0], s.boxes[0])  # frame 0: GT as in the file
        np.testing.assert_allclose(res[1:], s.boxes[1:] + 0.5, atol=1e-3)  # tracked in 0-based, written +1


def test_submission_zips(seqs, tmp_path):
    rec = RecordingTracker(seqs)
    evaluate(rec, {"got10k_val": seqs}, tmp_path, "t", batch=3, repeat=2, progress=False)
    dirs = [result_dir(tmp_path, "t", "got10k_val", k, 2) for k in (1, 2)]
    names = [s.name for s in seqs]
    z = write_got10k_submission(dirs, names, tmp_path / "got10k.zip")
    with zipfile.ZipFile(z) as f:
        members = set(f.namelist())
        assert members == {f"{n}/{n}_{k:03d}.txt" for n in names for k in (1, 2)} | {f"{n}/{n}_time.txt" for n in names}
        rows = f.read(f"{names[0]}/{names[0]}_002.txt").decode().splitlines()
        times = f.read(f"{names[0]}/{names[0]}_time.txt").decode().splitlines()
    assert len(rows) == LENGTHS[0] and len(times) == LENGTHS[0] and all(len(t.split(",")) == 2 for t in times)
    # frame 1 was predicted at GT - 0.5 (x, y) with the GT size: rasterised to the covering integer box
    gt = seqs[0].boxes[1]
    x, y, w, h = (float(v) for v in rows[1].split(","))
    assert rows[1].split(",")[0].endswith(".0000")
    assert (x, y) == (np.floor(gt[0] - 0.5), np.floor(gt[1] - 0.5)) and (w, h) == (gt[2] + 1, gt[3] + 1)
    z = write_trackingnet_submission(dirs[0], names, tmp_path / "tn.zip")
    with zipfile.ZipFile(z) as f:
        assert set(f.namelist()) == {f"{n}.txt" for n in names}
        first = f.read(f"{names[1]}.txt").decode().splitlines()
    assert len(first) == LENGTHS[1] and first[0] == ",".join(f"{v:.2f}" for v in seqs[1].boxes[0])


def test_cli_eval_end_to_end(bench, tiny_cfg, tmp_path, capsys):
    root, names = bench
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.safetensors"
    lorat.save_checkpoint(lorat.create_model(tiny_cfg), ckpt)
    out = tmp_path / "results"
    args = ["eval", "--checkpoint", str(ckpt), "--benchmark", "got10k_val", "--root", str(root), "--output",
            str(out), "--batch", "2", "--device", "cpu", "--submission", "--quiet", "--limit", "3"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "tracked 3 sequences" in text and "got10k_val: auc=" in text
    times = sorted(p.name for p in (out / "tiny" / "got10k_val").glob("*_time.txt"))
    assert times == [f"{n}_time.txt" for n in names[:3]]
    with zipfile.ZipFile(out / "tiny" / "got10k_val_submission.zip") as f:
        assert f"{names[0]}/{names[0]}_001.txt" in f.namelist()
    assert main(args) == 0  # resumed: nothing left to do
    assert "tracked 0 sequences" in capsys.readouterr().out
    args[args.index("--benchmark") + 1: args.index("--benchmark") + 2] = ["got10k_val", "got10k_val"]
    assert main(args) == 1  # named twice
    assert "twice" in capsys.readouterr().err


def test_invalid_first_box_names_the_sequence(seqs, tracker, tmp_path):
    bad = Sequence("broken_seq", seqs[0].frames, np.vstack([[np.nan] * 4, seqs[0].boxes[1:]]), dataset="got10k")
    with pytest.raises(ValueError, match="broken_seq.*NaN"):
        evaluate(tracker, {"got10k_val": [bad]}, tmp_path, "t", progress=False)
    assert not (tmp_path / "t" / "got10k_val" / "broken_seq.txt").exists()
