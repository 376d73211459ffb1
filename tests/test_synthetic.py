"""Tests of the procedural GOT-10k-layout benchmark (lorat.data.synthetic)."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from lorat.data import synthetic as syn
from lorat.data.synthetic import (
    DOMAINS,
    SyntheticConfig,
    generate_sequence,
    make_synthetic_benchmark,
    sequence_names,
    write_got10k_split,
)

SMALL = SyntheticConfig(image_size=(96, 72), frames_per_sequence=8)
META_KEYS = [
    "url",
    "begin",
    "end",
    "anno_fps",
    "object_class",
    "motion_class",
    "major_class",
    "root_class",
    "motion_adverb",
    "resolution",
]
BOX_ROW = re.compile(r"^-?\d+\.\d{4},-?\d+\.\d{4},-?\d+\.\d{4},-?\d+\.\d{4}$")


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _hidden_target_frames(cfg: SyntheticConfig, seed: int, length: int) -> list[np.ndarray]:
    """The same sequence rendered without the target (every other random draw is unchanged)."""
    return [img for img, _ in syn._frames(cfg, seed, length, hide_target=True)]


def _visible_area_bound(frame: np.ndarray, hidden: np.ndarray) -> float:
    """Lower bound of the target area (in pixels) that must be visible to explain ``frame - hidden``.

    A pixel covered with opacity a changes by at most a * 255 * max_gain (illumination gain is below
    1.6); uint8 rounding adds at most 1 level per touched pixel.
    """
    d = np.abs(frame.astype(float) - hidden.astype(float)).max(-1)
    return float(np.clip(d - 1, 0, None).sum() / (255 * 1.6))


# ---------------------------------------------------------------------------------------------
# In-memory sequences
# ---------------------------------------------------------------------------------------------


def test_generate_sequence_is_deterministic_and_seed_dependent():
    cfg = SyntheticConfig()
    f1, b1, l1 = generate_sequence(cfg, 123, 20)
    f2, b2, l2 = generate_sequence(cfg, 123, 20)
    f3, b3, _ = generate_sequence(cfg, 124, 20)
    assert len(f1) == 20 and f1[0].shape == (120, 160, 3) and f1[0].dtype == np.uint8
    assert all(np.array_equal(a, b) for a, b in zip(f1, f2, strict=True))
    assert np.array_equal(b1, b2)
    for k in ("absence", "cover", "cut_by_image"):
        assert np.array_equal(l1[k], l2[k])
    assert l1["meta"] == l2["meta"]
    assert not np.array_equal(f1[0], f3[0]) and not np.array_equal(b1, b3)


@pytest.mark.parametrize("domain", ["A", "B"])
def test_boxes_enclose_exactly_the_rendered_target(domain):
    # Blur spreads a target over neighbouring pixels, so switch it off to compare pixel sets exactly.
    cfg = SyntheticConfig(domain=domain, motion_blur=0.0, blur_prob=0.0, occlusion_rate=4.0)
    W, H = cfg.image_size
    checked_visible = checked_absent = 0
    for seed in range(4):
        frames, boxes, labels = generate_sequence(cfg, seed, 40, return_masks=True)
        hidden = _hidden_target_frames(cfg, seed, 40)
        for t in range(40):
            diff = np.abs(frames[t].astype(int) - hidden[t].astype(int)).max(-1) > 1  # > uint8 rounding
            mask = labels["masks"][t]
            if labels["absence"][t]:
                assert not mask.any()
                assert np.array_equal(boxes[t], [-1, -1, -1, -1])
                assert _visible_area_bound(frames[t], hidden[t]) < cfg.min_visible_pixels
                checked_absent += 1
                continue
            x, y, w, h = boxes[t].astype(int)
            assert np.array_equal(boxes[t], [x, y, w, h]) and w >= 1 and h >= 1
            assert 0 <= x and 0 <= y and x + w <= W and y + h <= H
            # The box is the tight box of the visible-target mask ...
            ys, xs = np.nonzero(mask)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)
            # ... and every pixel the target visibly changed lies inside it. Pixels it covers by
            # less than 5 % change by at most 0.05 * 255 * (max illumination gain ~1.6) ~ 21 levels.
            strong = np.abs(frames[t].astype(int) - hidden[t].astype(int)).max(-1) > 24
            outside = strong.copy()
            outside[y : y + h, x : x + w] = False
            assert not outside.any(), f"seed {seed} frame {t}: target pixels outside the box"
            assert diff[y : y + h, x : x + w].any()
            checked_visible += 1
    assert checked_visible > 100


def test_labels_are_consistent_with_visibility():
    for domain in DOMAINS:
        cfg = SyntheticConfig(domain=domain, exit_prob=0.5, occlusion_rate=3.0)
        W, H = cfg.image_size
        for seed in range(6):
            _, boxes, lab = generate_sequence(cfg, seed, 60)
            absent = lab["absence"] == 1
            assert lab["absence"][0] == 0 and lab["cover"][0] == 8 and lab["cut_by_image"][0] == 0
            assert np.array_equal(absent, lab["cover"] == 0)
            assert np.all(boxes[absent] == -1)
            vis = ~absent
            assert np.all(boxes[vis, 2:] >= 1) and np.all(boxes[vis, :2] >= 0)
            assert np.all(boxes[vis, 0] + boxes[vis, 2] <= W) and np.all(boxes[vis, 1] + boxes[vis, 3] <= H)
            expected_cover = np.ceil(8 * lab["visible_ratio"][vis] - 1e-9).clip(1, 8)
            assert np.array_equal(lab["cover"][vis], expected_cover.astype(np.uint8))
            assert np.array_equal(lab["cut_by_image"] == 1, lab["in_frame_ratio"] < 1 - 1e-6)
            assert set(np.unique(lab["cover"])) <= set(range(9))


def test_full_occlusion_marks_target_absent():
    cfg = SyntheticConfig(
        occlusion_rate=6.0,
        full_occlusion_prob=1.0,
        exit_prob=0.0,
        num_distractors=(0, 0),
        motion_blur=0.0,
        blur_prob=0.0,
    )
    found_full = found_partial = 0
    for seed in range(8):
        frames, _, lab = generate_sequence(cfg, seed, 60)
        inside = lab["in_frame_ratio"] > 1 - 1e-6  # the whole target is in the image ...
        full = inside & (lab["absence"] == 1)  # ... yet nothing of it is visible: occluded
        partial = inside & (lab["cover"] >= 1) & (lab["cover"] <= 6)
        found_partial += int(partial.sum())
        if full.any():
            hidden = _hidden_target_frames(cfg, seed, 60)
            for t in np.nonzero(full)[0]:
                assert lab["cover"][t] == 0 and lab["cut_by_image"][t] == 0
                assert _visible_area_bound(frames[t], hidden[t]) < cfg.min_visible_pixels
                found_full += 1
    assert found_full >= 3 and found_partial >= 3


def test_leaving_the_frame_sets_absence_and_cut():
    cfg = SyntheticConfig(exit_prob=1.0, occlusion_rate=0.0)
    W, H = cfg.image_size
    n_out = n_cut = 0
    for seed in range(6):
        _, boxes, lab = generate_sequence(cfg, seed, 60)
        out = lab["in_frame_ratio"] == 0
        assert np.all(lab["absence"][out] == 1) and np.all(lab["cut_by_image"][out] == 1)
        assert np.all(lab["cover"][out] == 0)
        cut = (lab["in_frame_ratio"] > 0) & (lab["in_frame_ratio"] < 1 - 1e-6) & (lab["absence"] == 0)
        b = boxes[cut]
        # A truncated target's visible box touches the image border.
        touches = (b[:, 0] == 0) | (b[:, 1] == 0) | (b[:, 0] + b[:, 2] == W) | (b[:, 1] + b[:, 3] == H)
        assert touches.all()
        n_out += int(out.sum())
        n_cut += int(cut.sum())
    assert n_out >= 5 and n_cut >= 10


def test_targets_move_enough_to_defeat_the_first_box_baseline():
    def iou(a, b):
        iw = np.clip(np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
        ih = np.clip(np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
        inter = iw * ih
        return inter / (a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter)

    ious = []
    for domain in DOMAINS:
        for seed in range(5):
            _, boxes, lab = generate_sequence(SyntheticConfig(domain=domain), seed, 60)
            vis = lab["cover"][1:] > 0
            ious.append(iou(np.repeat(boxes[:1], vis.sum(), 0), boxes[1:][vis]))
    ao = float(np.concatenate(ious).mean())  # GOT-10k style pooled AO of "repeat the first box"
    assert ao < 0.3, ao


def test_domains_differ_in_colour_and_vocabulary():
    stats = {}
    for domain in ("A", "B"):
        cfg = SyntheticConfig(domain=domain)
        rb, shapes = [], set()
        for seed in range(6):
            frames, _, lab = generate_sequence(cfg, seed, 3)
            f = np.stack(frames).astype(np.float64) / 255
            rb.append(float((f[..., 0] - f[..., 2]).mean()))
            shapes.add(lab["meta"]["major_class"])
        stats[domain] = (np.mean(rb), shapes)
        assert shapes <= set(DOMAINS[domain].shapes)
    assert stats["A"][0] > 0.05 and stats["B"][0] < -0.05  # warm vs cool palettes
    assert not set(DOMAINS["A"].shapes) & set(DOMAINS["B"].shapes)
    assert not set(DOMAINS["A"].backgrounds) & set(DOMAINS["B"].backgrounds)
    with pytest.raises(ValueError):
        SyntheticConfig(domain="Z").style()


# ---------------------------------------------------------------------------------------------
# On-disk GOT-10k layout
# ---------------------------------------------------------------------------------------------


def test_written_split_has_exact_got10k_layout(tmp_path):
    cfg = SMALL
    root = make_synthetic_benchmark(tmp_path / "got10k", cfg, num_train=3, num_val=2, num_test=1, progress=False)
    W, H = cfg.image_size
    n = cfg.frames_per_sequence
    jpgs = [f"{i:08d}.jpg" for i in range(1, n + 1)]
    for split, count in (("train", 3), ("val", 2), ("test", 1)):
        names = (root / split / "list.txt").read_text().splitlines()
        assert names == sequence_names(split, count)
        assert not list((root / split).glob(".tmp-*"))
        for name in names:
            d = root / split / name
            files = sorted(p.name for p in d.iterdir())
            labels = [] if split == "test" else ["absence.label", "cover.label", "cut_by_image.label"]
            assert files == sorted(jpgs + labels + ["groundtruth.txt", "meta_info.ini"])
            img = cv2.imread(str(d / "00000001.jpg"))
            assert img.shape == (H, W, 3)
            gt = (d / "groundtruth.txt").read_text().splitlines()
            assert len(gt) == (1 if split == "test" else n)
            assert all(BOX_ROW.match(r) for r in gt)
            for lf in labels:
                vals = (d / lf).read_text().splitlines()
                assert len(vals) == n and all(re.fullmatch(r"\d", v) for v in vals)
                assert set(int(v) for v in vals) <= (set(range(9)) if lf == "cover.label" else {0, 1})
            meta = (d / "meta_info.ini").read_text().splitlines()
            assert meta[0] == "[METAINFO]" and [m.split(": ", 1)[0] for m in meta[1:]] == META_KEYS
            assert meta[-1] == f"resolution: ({W}, {H})"
            if split != "test":
                # Files match the in-memory generator for the sequence's own seed.
                seed = int(meta[1].rsplit("seed-", 1)[1])
                frames, boxes, lab = generate_sequence(cfg, seed, n)
                assert np.allclose(np.loadtxt(d / "groundtruth.txt", delimiter=",", ndmin=2), boxes)
                assert np.array_equal(np.loadtxt(d / "cover.label", dtype=int), lab["cover"])
                dec = cv2.cvtColor(cv2.imread(str(d / f"{n:08d}.jpg")), cv2.COLOR_BGR2RGB)
                assert np.abs(dec.astype(int) - frames[-1].astype(int)).mean() < 6  # JPEG only


def test_splits_are_disjoint(tmp_path):
    root = make_synthetic_benchmark(tmp_path, SMALL, num_train=4, num_val=3, num_test=2, progress=False)
    seeds, hashes, names = [], [], []
    for split in ("train", "val", "test"):
        for name in (root / split / "list.txt").read_text().splitlines():
            names.append(name)
            url = (root / split / name / "meta_info.ini").read_text().splitlines()[1]
            seeds.append(url.rsplit("seed-", 1)[1])
            hashes.append(hashlib.sha1((root / split / name / "00000001.jpg").read_bytes()).hexdigest())
    assert len(set(names)) == len(set(seeds)) == len(set(hashes)) == 9


def test_files_are_byte_identical_across_runs_and_workers(tmp_path):
    cfg = dataclasses.replace(SMALL, domain="B")
    write_got10k_split(tmp_path / "a", "train", 3, cfg, seed=5, progress=False)
    write_got10k_split(tmp_path / "b", "train", 3, cfg, seed=5, progress=False, workers=2)
    ta, tb = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert ta == tb and len(ta) > 3 * cfg.frames_per_sequence
    write_got10k_split(tmp_path / "c", "train", 3, cfg, seed=6, progress=False)
    assert (
        _tree(tmp_path / "c")["train/GOT-10k_Train_000001/00000001.jpg"]
        != ta["train/GOT-10k_Train_000001/00000001.jpg"]
    )


def test_resume_after_interruption_matches_a_clean_run(tmp_path, monkeypatch):
    cfg = SMALL
    write_got10k_split(tmp_path / "clean", "val", 3, cfg, seed=9, progress=False)

    # Interrupt the second run in the middle of its second sequence: a partial temporary folder is
    # left behind and list.txt is never written.
    real_render = syn._Scene.render
    calls = {"n": 0}

    def flaky_render(self, t, hide_target=False):
        calls["n"] += 1
        if calls["n"] == cfg.frames_per_sequence + 3:
            raise KeyboardInterrupt
        return real_render(self, t, hide_target)

    monkeypatch.setattr(syn._Scene, "render", flaky_render)
    with pytest.raises(KeyboardInterrupt):
        write_got10k_split(tmp_path / "resumed", "val", 3, cfg, seed=9, progress=False)
    split_dir = tmp_path / "resumed" / "val"
    assert (split_dir / "GOT-10k_Val_000001").is_dir()
    assert not (split_dir / "GOT-10k_Val_000002").exists()
    assert any(split_dir.glob(".tmp-GOT-10k_Val_000002/*.jpg"))
    assert not (split_dir / "list.txt").exists()
    first = (split_dir / "GOT-10k_Val_000001" / "00000001.jpg").stat().st_mtime_ns

    monkeypatch.setattr(syn._Scene, "render", real_render)
    names = write_got10k_split(tmp_path / "resumed", "val", 3, cfg, seed=9, progress=False)
    assert names == sequence_names("val", 3)
    assert _tree(tmp_path / "resumed") == _tree(tmp_path / "clean")
    assert (split_dir / "GOT-10k_Val_000001" / "00000001.jpg").stat().st_mtime_ns == first  # skipped


def test_rerun_with_other_settings_is_refused(tmp_path):
    write_got10k_split(tmp_path, "train", 1, SMALL, seed=1, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        write_got10k_split(tmp_path, "train", 1, dataclasses.replace(SMALL, occlusion_rate=0.0), seed=1, progress=False)
    with pytest.raises(ValueError):
        write_got10k_split(tmp_path, "train", 1, SMALL, seed=2, progress=False)
    with pytest.raises(ValueError):
        sequence_names("training", 1)


def test_meta_end_time_matches_length():
    _, _, lab = generate_sequence(SyntheticConfig(), 0, 61)
    assert lab["meta"]["end"] == "00:00:06" and lab["meta"]["anno_fps"] == "10Hz"
    assert math.isclose(len(lab["cover"]), 61)
