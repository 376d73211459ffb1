"""Dataset weights, epoch plans, frame-pair sampling and the reproducible PairDataset."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from lorat.data.sampler import (
    PairDataset,
    dataset_sampling_weights,
    epoch_plan,
    read_image_rgb,
    sample_frame_pair,
    sampling_units,
    valid_frame_mask,
)
from lorat.data.sequence import Sequence
from lorat.data.transforms import SiameseTrainTransform, TransformConfig, collate_pairs
from lorat.train.trainer import RankBatches

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


def test_negative_pairs_search_another_track_with_no_positive_cell(datasets):
    from lorat.train.losses import lorat_loss

    tr = SiameseTrainTransform(SMALL)
    plain = PairDataset(datasets, tr, samples_per_epoch=40, seed=3)
    off = PairDataset(datasets, tr, samples_per_epoch=40, seed=3, negative_prob=0.0)
    for i in range(40):  # 0 draws nothing extra: the official stream
        assert _items_equal(plain[i], off[i]) and "negative" not in off[i]
    neg = PairDataset(datasets, tr, samples_per_epoch=40, seed=3, negative_prob=0.5)
    items = [neg[i] for i in range(40)]
    flags = [bool(it["negative"]) for it in items]
    assert 8 < sum(flags) < 32
    for it, negative in zip(items, flags):
        d, s = it["pair"][:2].tolist()
        assert (tuple(it["x_track"].tolist()) != (d, s)) == negative
        assert (len(it["positive_indices"]) == 0) == negative
    assert all(_items_equal(neg[i], items[i]) for i in (0, 7, 39))  # still a function of (seed, epoch, index)
    # a mixed batch: negatives are all-background targets of the loss, the positives normalise it
    batch = collate_pairs(items[:8])
    n_pos = sum(len(it["positive_indices"]) for it in items[:8])
    assert float(batch["num_positive_samples"]) == n_pos > 0
    score, boxes = torch.randn(8, 4, 4), torch.rand(8, 4, 4, 4)
    boxes[..., 2:] += boxes[..., :2]
    total, terms = lorat_loss(score, boxes, batch, return_details=True)
    assert torch.isfinite(total)
    has_positive = set(batch["positive_sample_batch_dim_indices"].tolist())
    for k in range(8):
        assert (k in has_positive) != flags[k]
        if flags[k]:
            assert not terms["cls_target_map"][k].any()  # every cell of a negative pair is background
    with pytest.raises(ValueError, match="negative_prob=1.0"):
        PairDataset(datasets, tr, samples_per_epoch=4, negative_prob=1.0)


def test_same_batches_with_0_and_2_workers(datasets):
    tr = SiameseTrainTransform(SMALL)

    def batches(num_workers):
        ds = PairDataset(datasets, tr, samples_per_epoch=16, seed=3)
        ds.set_epoch(2)  # before the iterator exists: the workers' copies carry it
        loader = DataLoader(ds, batch_sampler=RankBatches(steps=4, batch=4, accum=1, rank=0, world=1),
                            num_workers=num_workers, collate_fn=collate_pairs)
        return list(loader)

    b0, b2 = batches(0), batches(2)
    assert len(b0) == len(b2) == 4
    for x, y in zip(b0, b2):
        assert _items_equal(x, y)


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


# ------------------------------------------------------------------------- COCO: one unit per image
def _one_frame_track(name: str, image: str, x: float, unit: str | None) -> Sequence:
    return Sequence(name, [Path(image)], np.array([[x, 4.0, 10.0, 10.0]]), visible=np.array([True]),
                    sampling_unit=unit)


def _record_pairs(datasets, n: int, seed: int = 3, **kw) -> np.ndarray:
    """``(n, 4)`` ``pair`` rows of ``n`` items, frames stubbed (no file is read)."""
    ds = PairDataset(datasets, lambda *a: {"ok": torch.zeros(1)}, samples_per_epoch=n, seed=seed,
                     image_reader=lambda p: np.zeros((32, 48, 3), np.uint8), **kw)
    return np.stack([ds[i]["pair"].numpy() for i in range(n)]), ds


def test_sampling_units_group_tracks_of_one_image():
    seqs = [_one_frame_track("a_1", "a.jpg", 1, "coco/a"), _one_frame_track("v", "v.jpg", 1, None),
            _one_frame_track("b_1", "b.jpg", 1, "coco/b"), _one_frame_track("a_2", "a.jpg", 5, "coco/a")]
    assert [u.tolist() for u in sampling_units(seqs)] == [[0, 3], [1], [2]]


def test_coco_sampling_unit_is_the_image_not_the_annotation():
    # image "crowded" holds 9 objects, image "single" one: per annotation the single image would get 10 %
    # of the items, per image (official) it gets 50 %, and each crowded object 50 % / 9.
    crowded = [_one_frame_track(f"crowded_{k}", "crowded.jpg", 2 * k, "coco/crowded") for k in range(9)]
    single = [_one_frame_track("single_0", "single.jpg", 3, "coco/single")]
    pairs, ds = _record_pairs([crowded + single], 3000)
    assert ds.num_sequences == [2]  # the plan (and the dataset weights) count images
    track = pairs[:, 1]
    assert abs((track == 9).mean() - 0.5) < 0.04
    per_object = np.bincount(track[track < 9], minlength=9) / len(track)
    assert np.all(np.abs(per_object - 0.5 / 9) < 0.02)
    assert (pairs[:, 2] == pairs[:, 3]).all()  # one-frame tracks: template and search are the same image
    # without units every annotation is its own unit: the single image falls to ~10 %
    flat = [_one_frame_track(s.name, str(s.frames[0]), s.boxes[0, 0], None) for s in crowded + single]
    pairs_flat, ds_flat = _record_pairs([flat], 3000)
    assert ds_flat.num_sequences == [10] and abs((pairs_flat[:, 1] == 9).mean() - 0.1) < 0.03


def test_coco_reader_output_is_sampled_per_image(tmp_path):
    from fake_datasets import make_fake_coco
    from lorat.data.datasets import load_training_dataset

    seqs = load_training_dataset("coco2017_train", make_fake_coco(tmp_path / "coco").root,
                                 cache_dir=tmp_path / "cache")  # image 1 has two usable objects, image 2 one
    pairs, ds = _record_pairs([seqs], 2000)
    assert ds.num_sequences == [2]
    image_2 = [i for i, s in enumerate(ds.sequences[0]) if s.sampling_unit == "coco2017/2"]
    assert abs(np.isin(pairs[:, 1], image_2).mean() - 0.5) < 0.05


def test_rejected_pairs_redraw_a_unit_and_a_track():
    crowded = [_one_frame_track(f"c{k}", "c.jpg", 2 * k, "img/c") for k in range(4)]
    calls = []

    def every_other(*a):
        calls.append(1)
        return {"ok": torch.zeros(1)} if len(calls) % 2 == 0 else None

    ds = PairDataset([crowded], every_other, samples_per_epoch=50, seed=0,
                     image_reader=lambda p: np.zeros((32, 48, 3), np.uint8))
    tracks = {int(ds[i]["pair"][1]) for i in range(50)}
    assert tracks == {0, 1, 2, 3} and len(calls) == 100


# ------------------------------------------------------------- training decodes with the one reader
def _jpeg_with_exif_orientation(path: Path, orientation: int) -> np.ndarray:
    """A 40x20 (W x H) JPEG whose EXIF says "rotate" (6 = 90 degrees clockwise); returns the stored RGB."""
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, :20] = (250, 10, 10)  # left half red, right half black
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    # APP1 "Exif": big-endian TIFF header, one IFD with a single SHORT entry 0x0112 (Orientation)
    tiff = b"MM\x00\x2a\x00\x00\x00\x08" + b"\x00\x01" + b"\x01\x12\x00\x03\x00\x00\x00\x01" \
        + orientation.to_bytes(2, "big") + b"\x00\x00" + b"\x00\x00\x00\x00"
    payload = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    raw = data.tobytes()
    path.write_bytes(raw[:2] + app1 + raw[2:])
    return rgb


def test_training_ignores_exif_orientation_like_the_official_reader(tmp_path):
    from lorat.data.images import image_size, read_image

    path = tmp_path / "rotated.jpg"
    stored = _jpeg_with_exif_orientation(path, 6)
    assert cv2.imread(str(path)).shape[:2] == (40, 20)  # OpenCV's default applies the tag: the test means it
    assert read_image_rgb is read_image
    img = read_image(path)
    assert img.shape == (20, 40, 3) and image_size(path) == (40, 20)
    # stored order: red on the left, black on the right (away from the JPEG ringing at the edge)
    assert np.abs(img[:, :16].astype(int) - stored[:, :16]).max() < 12 and img[:, 24:].max() < 12
    # the box of a dataset drawn on the stored pixels stays on the object in the training crop
    seq = Sequence("rot", [path], np.array([[0.0, 0.0, 20.0, 20.0]]))
    ds = PairDataset([[seq]], lambda z, zb, x, xb, rng: {"z": torch.from_numpy(z.copy()), "zb": torch.tensor(zb)},
                     samples_per_epoch=1)
    item = ds[0]
    assert item["z"].shape == (20, 40, 3) and item["z"][:, :20, 0].float().mean() > 200


def test_training_rejects_a_truncated_jpeg_as_tracking_does(tmp_path):
    from lorat.track.video import read_image as tracking_reader

    seq = _write_sequence(tmp_path, "cut", 2, 0)
    data = Path(seq.frames[1]).read_bytes()
    Path(seq.frames[1]).write_bytes(data[: len(data) * 2 // 3])  # libjpeg alone would only warn
    with pytest.raises(ValueError, match=r"0001\.jpg is a truncated JPEG"):
        tracking_reader(seq.frames[1])
    ds = PairDataset([[seq]], SiameseTrainTransform(SMALL), samples_per_epoch=4, seed=0)
    with pytest.raises(ValueError, match=r"0001\.jpg is a truncated JPEG"):
        for i in range(4):
            ds[i]
