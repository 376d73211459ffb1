"""Dataset weights, epoch plans, frame-pair sampling and the reproducible PairDataset."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from lorat.data.sampler import (
    PairDataset,
    PairIndexSampler,
    dataset_sampling_weights,
    epoch_plan,
    read_image_rgb,
    sample_frame_pair,
    valid_frame_mask,
)
from lorat.data.sequence import Sequence
from lorat.data.transforms import SiameseTrainTransform, TransformConfig, collate_pairs

SMALL = TransformConfig(template_size=28, search_size=56, stride=14)


def _write_sequence(root: Path, name: str, n: int, seed: int, visible=None) -> Sequence:
    """n JPEG frames (64 x 48) of a coloured box drifting over noise."""
    rng = np.random.default_rng(seed)
    folder = root / name
    folder.mkdir(parents=True)
    frames, boxes = [], []
    for k in range(n):
        img = rng.integers(0, 80, (48, 64, 3), dtype=np.uint8)
        x, y = 10 + (k * 3) % 30, 8 + (k * 2) % 20
        img[y:y + 16, x:x + 20] = (40, 200, 220)
        path = folder / f"{k:04d}.jpg"
        assert cv2.imwrite(str(path), img)
        frames.append(path)
        boxes.append((x, y, 20, 16))
    vis = None if visible is None else np.asarray(visible, dtype=bool)
    return Sequence(name=name, frames=frames, boxes=np.array(boxes, dtype=np.float64), visible=vis)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("seqs")
    a = [_write_sequence(root, f"a{i}", 12, i) for i in range(3)]
    b = [_write_sequence(root, "b0", 1, 10)]  # a one-frame "track" (COCO-like)
    return [a, b]


# -------------------------------------------------------------------------------------- weights
def test_dataset_weights_groups():
    np.testing.assert_allclose(dataset_sampling_weights([10, 30, 5, 7]), [0.25] * 4)  # official full protocol
    # datasets 0 and 1 share one group split by sequence counts; dataset 2 is its own group
    np.testing.assert_allclose(dataset_sampling_weights([10, 30, 5], groups=[[0, 1]]), [0.125, 0.375, 0.5])
    np.testing.assert_allclose(dataset_sampling_weights([10, 30], groups=[[0, 1]]), [0.25, 0.75])
    np.testing.assert_allclose(dataset_sampling_weights([1, 1], groups=[[0], [1]], group_weights=[3, 1]),
                               [0.75, 0.25])
    with pytest.raises(ValueError):
        dataset_sampling_weights([1, 2], groups=[[0, 0]])


def test_epoch_plan_counts_balance_and_seed():
    weights = np.array([0.3, 0.3, 0.4])
    d, s = epoch_plan([7, 3, 5], weights, 1001, np.random.default_rng(0))
    counts = np.bincount(d, minlength=3)
    assert counts.tolist() == [300, 300, 401]  # floor(w N), remainder to the last dataset
    for ds, n in enumerate([7, 3, 5]):
        per_seq = np.bincount(s[d == ds], minlength=n)
        assert per_seq.max() - per_seq.min() <= 1  # repeated full permutations
    d2, s2 = epoch_plan([7, 3, 5], weights, 1001, np.random.default_rng(0))
    assert np.array_equal(d, d2) and np.array_equal(s, s2)
    d3, _ = epoch_plan([7, 3, 5], weights, 1001, np.random.default_rng(1))
    assert not np.array_equal(d, d3)
    assert not np.array_equal(np.sort(d), d)  # globally shuffled, not grouped by dataset


# ---------------------------------------------------------------------------------- frame pairs
def test_search_frame_within_window_and_never_the_template():
    rng = np.random.default_rng(0)
    mask = np.ones(500, dtype=bool)
    mask[200:260] = False
    gaps, zs = [], []
    for _ in range(3000):
        z, x = sample_frame_pair(mask, rng)
        assert mask[z] and mask[x] and x != z
        gaps.append(x - z)
        zs.append(z)
    gaps = np.array(gaps)
    assert np.abs(gaps).max() == 100 and gaps.min() < -90 and gaps.max() > 90
    assert min(zs) < 10 and max(zs) > 490
    for _ in range(50):
        z, x = sample_frame_pair(np.ones(50, dtype=bool), rng, max_gap=1)
        assert abs(x - z) == 1


def test_fallback_to_same_frame():
    rng = np.random.default_rng(1)
    assert sample_frame_pair(np.array([True]), rng) == (0, 0)
    isolated = np.zeros(400, dtype=bool)
    isolated[[0, 300]] = True  # more than 100 frames apart
    for _ in range(20):
        z, x = sample_frame_pair(isolated, rng)
        assert z == x and z in (0, 300)
    with pytest.raises(ValueError):
        sample_frame_pair(np.zeros(3, dtype=bool), rng)


def test_valid_frame_mask_uses_flags_and_boxes():
    seq = Sequence("s", [Path("f")] * 5, np.array([[0, 0, 5, 5], [0, 0, 0, 5], [np.nan] * 4, [1, 1, 2, 2],
                                                  [1, 1, 2, 2]], dtype=float),
                   visible=np.array([True, True, True, False, True]))
    np.testing.assert_array_equal(valid_frame_mask(seq), [True, False, False, False, True])


# -------------------------------------------------------------------------------------- reading
def test_read_image_rgb_order_and_errors(tmp_path):
    bgr = np.zeros((4, 5, 3), dtype=np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV's BGR
    cv2.imwrite(str(tmp_path / "blue.png"), bgr)
    rgb = read_image_rgb(tmp_path / "blue.png")
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 2] == 255).all() and (rgb[..., 0] == 0).all()
    with pytest.raises(FileNotFoundError, match="nothere.jpg"):
        read_image_rgb(tmp_path / "nothere.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"definitely not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        read_image_rgb(tmp_path / "broken.jpg")


# ---------------------------------------------------------------------------------- PairDataset
def _items_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_items_are_a_function_of_seed_epoch_index(datasets):
    tr = SiameseTrainTransform(SMALL)
    ds1 = PairDataset(datasets, tr, samples_per_epoch=12, seed=7)
    ds2 = PairDataset(datasets, tr, samples_per_epoch=12, seed=7)
    first = [ds1[(3, i)] for i in range(12)]
    for i in reversed(range(12)):  # other instance, other order
        assert _items_equal(ds2[(3, i)], first[i])
    ds2.set_epoch(3)
    assert _items_equal(ds2[5], first[5])
    assert not all(_items_equal(ds1[(4, i)], first[i]) for i in range(12))
    other_seed = PairDataset(datasets, tr, samples_per_epoch=12, seed=8)
    assert not all(_items_equal(other_seed[(3, i)], first[i]) for i in range(12))
    for item in first:
        d, s, z, x = item["pair"].tolist()
        if d == 0:
            assert z != x and abs(z - x) <= 100
        else:
            assert z == x == 0  # one-frame sequence: same image, different crops
    assert {int(it["pair"][0]) for it in first} == {0, 1}
    with pytest.raises(IndexError):
        ds1[12]


def test_same_batches_with_0_and_2_workers(datasets):
    tr = SiameseTrainTransform(SMALL)

    def batches(num_workers):
        ds = PairDataset(datasets, tr, samples_per_epoch=16, seed=3)
        sampler = PairIndexSampler(16, epoch=2)
        loader = DataLoader(ds, batch_size=4, sampler=sampler, num_workers=num_workers, collate_fn=collate_pairs)
        return list(loader)

    b0, b2 = batches(0), batches(2)
    assert len(b0) == len(b2) == 4
    for x, y in zip(b0, b2):
        assert _items_equal(x, y)


def test_rank_striding_gives_the_same_global_batches():
    full = list(PairIndexSampler(24, rank=0, world_size=1, epoch=5))
    r0 = list(PairIndexSampler(24, rank=0, world_size=2, epoch=5))
    r1 = list(PairIndexSampler(24, rank=1, world_size=2, epoch=5))
    assert sorted(r0 + r1) == full and not set(r0) & set(r1)
    assert all(e == 5 for e, _ in full)
    global_batch = 8
    for k in range(3):  # per-rank batch 4 at step k == global batch k of a single process
        local = r0[4 * k:4 * k + 4] + r1[4 * k:4 * k + 4]
        assert sorted(local) == full[global_batch * k:global_batch * (k + 1)]
    assert len(PairIndexSampler(25, rank=1, world_size=2)) == 12
    assert len(PairIndexSampler(25, rank=0, world_size=2, drop_last=False)) == 13


def test_rejected_pairs_are_redrawn_deterministically(datasets):
    inner = SiameseTrainTransform(SMALL)
    calls = []

    def picky(z_img, z_box, x_img, x_box, rng):
        calls.append(1)
        return None if rng.random() < 0.6 else inner(z_img, z_box, x_img, x_box, rng)

    ds = PairDataset(datasets, picky, samples_per_epoch=20, seed=1)
    items = [ds[(0, i)] for i in range(20)]
    assert len(calls) > 20  # some items needed redraws ...
    again = PairDataset(datasets, picky, samples_per_epoch=20, seed=1)
    assert all(_items_equal(again[(0, i)], items[i]) for i in range(20))  # ... reproducibly

    never = PairDataset(datasets, lambda *a: None, samples_per_epoch=2, max_redraws=5)
    with pytest.raises(RuntimeError, match="no valid training pair"):
        never[0]


def test_flags_and_unusable_sequences(tmp_path):
    seq = _write_sequence(tmp_path, "flags", 8, 0, visible=[False, False, True, False, False, True, False, False])
    dead = _write_sequence(tmp_path, "dead", 3, 1, visible=[False] * 3)
    ds = PairDataset([[seq, dead]], SiameseTrainTransform(SMALL), samples_per_epoch=10, seed=0)
    assert ds.num_sequences == [1]
    for i in range(10):
        _, _, z, x = ds[i]["pair"].tolist()
        assert {z, x} == {2, 5}


def test_missing_frame_is_reported_with_its_path(tmp_path):
    seq = Sequence("gone", [tmp_path / "gone" / "0001.jpg"], np.array([[1.0, 1.0, 10.0, 10.0]]))
    ds = PairDataset([[seq]], SiameseTrainTransform(SMALL), samples_per_epoch=1)
    with pytest.raises(FileNotFoundError, match="0001.jpg"):
        ds[0]


def test_weights_argument_plan_shares_and_collate(datasets):
    ds = PairDataset(datasets, SiameseTrainTransform(SMALL), samples_per_epoch=100, seed=0, weights=[3, 1])
    np.testing.assert_allclose(ds.weights, [0.75, 0.25])
    d, _ = ds.plan(0)
    assert np.bincount(d).tolist() == [75, 25]
    batch = ds.collate([ds[i] for i in range(3)])
    assert batch["x"].shape == (3, 3, 56, 56) and batch["pair"].shape == (3, 4)
    with pytest.raises(ValueError):
        PairDataset(datasets, SiameseTrainTransform(SMALL), 10, weights=[1.0])
