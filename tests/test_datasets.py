"""Dataset readers, roots, index cache and `lorat data check`, on tiny format-exact fake datasets."""
from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from lorat.data import datasets as D
from lorat.data.benchmarks import (
    LASOT_TEST_SPLIT,
    FrameList,
    image_size,
    lasot_test_names,
    read_boxes,
    read_flags,
)
from lorat.data.datasets import (
    BENCHMARKS,
    TRAIN_DATASETS,
    DatasetFormatError,
    DatasetNotFoundError,
    check_datasets,
    dataset_root,
    load_benchmark,
    load_training_dataset,
)

sys.path.insert(0, str(Path(__file__).parent))
import fake_datasets as F  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """No real config, roots or cache leak into the tests."""
    for k in list(os.environ):
        if k.startswith("LORAT_") or k in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("LORAT_DATASETS", str(tmp_path / "cfg" / "datasets.yaml"))
    monkeypatch.setenv("LORAT_CACHE_DIR", str(tmp_path / "cache"))


def _check(name, fake, train=False):
    seqs = (load_training_dataset(name, fake.root) if train else load_benchmark(name, fake.root))
    F.assert_sequences_match(seqs, fake.expected[name], fake.root)
    return seqs


# ---------------------------------------------------------------------------------------------- benchmarks


def test_lasot_test_split_visibility_and_language(tmp_path):
    fake = F.make_fake_lasot(tmp_path / "lasot")
    seqs = _check("lasot", fake)
    cat = seqs[0]
    assert cat.dataset == "lasot"
    assert cat.boxes[3].tolist() == [1, 1, -1, -1] and not cat.visible[3]  # absent row kept as written
    assert cat.boxes[7, 0] == 0 and cat.visible[7]
    assert all(Path(p).is_file() for s in seqs for p in s.frames)


def test_lasot_builtin_split_when_list_files_are_missing(tmp_path):
    assert len(LASOT_TEST_SPLIT) == 70 and len(lasot_test_names()) == 280 == len(set(lasot_test_names()))
    fake = F.make_fake_lasot(tmp_path / "lasot", split_files=False)
    # Without testing_set.txt the official 280 are required: a partial copy is an error, not a subset.
    missing = r"'airplane-1' \(in the built-in Protocol II test split\) not found"
    with pytest.raises(DatasetNotFoundError, match=missing):
        load_benchmark("lasot", fake.root)
    # The train split is every sequence on disk that is not an official test sequence.
    F.assert_sequences_match(load_training_dataset("lasot_train", fake.root), fake.expected["lasot_train"], fake.root)


def test_lasot_test_split_names_missing_sequence(tmp_path):
    fake = F.make_fake_lasot(tmp_path / "lasot")
    (fake.root / "testing_set.txt").write_text("cat-1\ncat-9\n")
    with pytest.raises(DatasetNotFoundError, match=r"cat-9"):
        load_benchmark("lasot", fake.root)


def test_lasot_ext(tmp_path):
    seqs = _check("lasot_ext", F.make_fake_lasot_ext(tmp_path / "ext"))
    assert seqs[0].dataset == "lasot_ext" and seqs[0].visible.sum() == 8


def test_got10k_val_and_test(tmp_path):
    fake = F.make_fake_got10k(tmp_path / "got10k")
    val = _check("got10k_val", fake)
    assert val[1].extra["meta"]["resolution"] == "(64, 48)" and val[1].extra["meta"]["anno_fps"] == "10Hz"
    assert val[1].extra["cut_by_image"].tolist() == [0] * 5
    test = _check("got10k_test", fake)
    assert np.isnan(test[0].boxes[1:]).all() and len(test[0]) == 6


def test_got10k_missing_list_and_folder(tmp_path):
    fake = F.make_fake_got10k(tmp_path / "got10k")
    (fake.root / "val" / "list.txt").write_text("GOT-10k_Val_000001\nGOT-10k_Val_000099\n")
    with pytest.raises(DatasetNotFoundError, match=r"GOT-10k_Val_000099"):
        load_benchmark("got10k_val", fake.root)
    (fake.root / "val" / "list.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"val[/\\]list\.txt"):
        load_benchmark("got10k_val", fake.root)


def test_got10k_label_length_mismatch_names_file(tmp_path):
    fake = F.make_fake_got10k(tmp_path / "got10k")
    (fake.root / "val" / "GOT-10k_Val_000002" / "absence.label").write_text("0\n0\n")
    with pytest.raises(DatasetFormatError, match=r"absence\.label: has 2 labels but the ground truth has 5"):
        load_benchmark("got10k_val", fake.root)


def test_trackingnet_test_numeric_frame_order(tmp_path):
    fake = F.make_fake_trackingnet(tmp_path / "tn")
    seq = _check("trackingnet", fake)[0]
    assert Path(seq.frames[2]).name == "2.jpg" and Path(seq.frames[10]).name == "10.jpg"


def test_tnl2k_png_jpg_and_damaged_frame(tmp_path):
    fake = F.make_fake_tnl2k(tmp_path / "tnl2k", damaged_sequence=True)
    seqs = _check("tnl2k", fake)
    damaged = seqs[-1]
    assert Path(damaged.frames[491]).name == "00000491.png" and Path(damaged.frames[492]).name == "00000493.png"


def test_otb_quirks(tmp_path):
    seqs = {s.name: s for s in _check("otb100", F.make_fake_otb(tmp_path / "otb"))}
    assert Path(seqs["BlurCar3"].frames[0]).name == "0003.jpg"
    assert Path(seqs["Tiger1"].frames[0]).name == "0006.jpg" and len(seqs["Tiger1"]) == 3
    assert "Human4" in seqs and "Jogging" not in seqs


def test_nfs_raw_vatic_subsampling(tmp_path):
    fake = F.make_fake_nfs(tmp_path / "nfs")
    seqs = _check("nfs30", fake)
    assert seqs[0].boxes[:, 2:].tolist() == [[20, 20]] * 8  # corners converted to w, h
    assert len(seqs[1]) == 33  # pingpong_2 annotations from 240-fps index 263 on are ignored


def test_nfs_pytracking_layout(tmp_path):
    _check("nfs30", F.make_fake_nfs(tmp_path / "nfs", layout="pytracking"))


def test_nfs_malformed_vatic_row(tmp_path):
    fake = F.make_fake_nfs(tmp_path / "nfs")
    f = fake.root / "Gymnastics" / "30" / "Gymnastics.txt"
    lines = f.read_text().splitlines(True)
    lines[4] = "0 10 5 30 \"person\"\n"
    f.write_text("".join(lines))
    with pytest.raises(DatasetFormatError, match=r"Gymnastics\.txt:5:"):
        load_benchmark("nfs30", fake.root)


def test_uav123_subranges_share_boundary_and_nan_rows(tmp_path):
    fake = F.make_fake_uav123(tmp_path / "uav")
    seqs = _check("uav123", fake)
    assert seqs[0].frames[-1] == seqs[1].frames[0]
    assert np.isnan(seqs[1].boxes[1:3]).all()
    (fake.root / "anno" / "UAV123" / "car6_9.txt").write_text("1,2,3,4\n")
    with pytest.raises(DatasetFormatError, match=r"car6_9.*configSeqs"):
        load_benchmark("uav123", fake.root)


def test_folder_single_and_multi(tmp_path):
    fake = F.make_fake_folder(tmp_path / "folder")
    _check("folder", fake)
    single = load_benchmark("folder", fake.root / "seqB")
    assert [s.name for s in single] == ["seqB"] and len(single[0]) == 3


def test_folder_more_rows_than_frames(tmp_path):
    fake = F.make_fake_folder(tmp_path / "folder")
    (fake.root / "seqB" / "groundtruth.txt").write_text("1,2,3,4\n" * 5)
    with pytest.raises(DatasetNotFoundError, match=r"5 rows but .* only 3 frames"):
        load_benchmark("folder", fake.root)


# ---------------------------------------------------------------------------------------------- training


def test_lasot_train_cleaning(tmp_path):
    fake = F.make_fake_lasot(tmp_path / "lasot")
    seqs = _check("lasot_train", fake, train=True)
    assert [s.name for s in seqs] == ["cat-2"]  # dog-2 is absent throughout
    s = seqs[0]
    assert s.visible[0] and s.visible[-1]  # head and tail cut to valid frames
    assert np.isnan(s.boxes[~s.visible]).all() and np.isfinite(s.boxes[s.visible]).all()


@pytest.mark.parametrize("name", ["got10k_train", "got10k_vottrain"])
def test_got10k_train_and_vottrain(tmp_path, name):
    _check(name, F.make_fake_got10k(tmp_path / "got10k"), train=True)


def test_got10k_vottrain_split_location_and_errors(tmp_path, monkeypatch):
    fake = F.make_fake_got10k(tmp_path / "got10k", vottrain_file=False)
    with pytest.raises(DatasetNotFoundError) as e:
        load_training_dataset("got10k_vottrain", fake.root)
    msg = str(e.value)
    assert "got10k_vot_train_split.txt" in msg and "LORAT_GOT10K_VOTTRAIN_SPLIT" in msg and "7,086" in msg
    split = tmp_path / "mysplit.txt"
    split.write_text("0\n")
    monkeypatch.setenv("LORAT_GOT10K_VOTTRAIN_SPLIT", str(split))
    assert [s.name for s in load_training_dataset("got10k_vottrain", fake.root)] == ["GOT-10k_Train_000001"]
    split.write_text("0\n7\n")
    with pytest.raises(DatasetFormatError, match=r"mysplit\.txt:2: index 7 outside"):
        load_training_dataset("got10k_vottrain", fake.root)
    monkeypatch.setenv("LORAT_GOT10K_VOTTRAIN_SPLIT", str(tmp_path / "nope.txt"))
    with pytest.raises(DatasetNotFoundError, match=r"nope\.txt.*LORAT_GOT10K_VOTTRAIN_SPLIT"):
        load_training_dataset("got10k_vottrain", fake.root)


def test_trackingnet_train_chunks_and_missing_chunk_warning(tmp_path):
    fake = F.make_fake_trackingnet(tmp_path / "tn")
    for _ in range(2):  # the scan warns, and so does the cached index
        with pytest.warns(UserWarning, match=r"2 of 12 training chunks.*TRAIN_2"):
            seqs = _check("trackingnet_train", fake, train=True)
    assert [s.extra["chunk"] for s in seqs] == ["TRAIN_0", "TRAIN_1"]
    assert len(list((Path(os.environ["LORAT_CACHE_DIR"]) / "index").glob("trackingnet_train-*.json"))) == 1


@pytest.mark.parametrize("layout", ["images", "plain"])
def test_coco_one_frame_sequences(tmp_path, layout):
    seqs = _check("coco2017_train", F.make_fake_coco(tmp_path / "coco", layout=layout), train=True)
    assert all(len(s) == 1 and s.dataset == "coco2017" for s in seqs)
    assert 13 not in [s.extra["annotation_id"] for s in seqs]  # crowd excluded


def test_training_boxes_are_clipped_and_valid(tmp_path):
    fakes = [F.make_fake_lasot(tmp_path / "l"), F.make_fake_got10k(tmp_path / "g"), F.make_fake_coco(tmp_path / "c")]
    for name, fake in zip(["lasot_train", "got10k_train", "coco2017_train"], fakes):
        for s in load_training_dataset(name, fake.root):
            w, h = s.extra["image_size"]
            b = s.boxes[s.visible]
            assert (b[:, 2:] > 0).all() and (b[:, :2] >= 0).all()
            assert (b[:, 0] + b[:, 2] <= w).all() and (b[:, 1] + b[:, 3] <= h).all()
            assert s.visible[0] and s.visible[-1]


# ---------------------------------------------------------------------------------------------- parsers


def test_read_boxes_separators_header_nan_and_errors(tmp_path):
    f = tmp_path / "gt.txt"
    f.write_text("x,y,w,h\n1,2,3,4\n5\t6\t7\t8\n9 10  11 12\nNaN,NaN,NaN,NaN\n\n\n")
    b = read_boxes(f)
    assert b.shape == (4, 4) and b[2].tolist() == [9, 10, 11, 12] and np.isnan(b[3]).all()
    f.write_text("1,2,3,4\n1,2,3\n")
    with pytest.raises(DatasetFormatError, match=r"gt\.txt:2: expected 4 numbers"):
        read_boxes(f)
    f.write_text("1,2,3,4\n1,2,x,4\n")
    with pytest.raises(DatasetFormatError, match=r"gt\.txt:2: not a number"):
        read_boxes(f)
    f.write_text("1,2,3,4\n\n1,2,3,4\n")
    with pytest.raises(DatasetFormatError, match=r"gt\.txt:2: blank line"):
        read_boxes(f)
    with pytest.raises(DatasetNotFoundError, match=r"ground-truth file not found: .*missing\.txt"):
        read_boxes(tmp_path / "missing.txt")


def test_one_box_file_reader_and_writer_everywhere(tmp_path):
    from lorat.data import formats
    from lorat.eval import report, runner
    from lorat.track import video

    boxes = np.array([[1.5, 2.0, 30.25, 40.0], [np.nan] * 4, [0.0, 0.0, 1e-3, 7.0]])
    for delim in (",", "\t", " "):
        f = tmp_path / f"out{len(delim)}{ord(delim)}.txt"
        formats.write_boxes(f, boxes, delimiter=delim, fmt="%.4f")
        np.testing.assert_array_equal(formats.read_boxes(f), np.round(boxes, 4))
        np.testing.assert_array_equal(runner.read_result(f), np.round(boxes, 4))  # results read the same way
        np.testing.assert_array_equal(report.read_boxes(f), np.round(boxes, 4))
    assert video.write_boxes is formats.write_boxes  # lorat track writes with the same writer
    # result files: blank lines are skipped (NumPy loadtxt, as the reference evaluators read them) but a
    # header is an error; annotation files: a blank line between rows is an error, a header is skipped
    f = tmp_path / "r.txt"
    f.write_text("1,2,3,4\n\n5,6,7,8\n")
    assert runner.read_result(f).tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    with pytest.raises(DatasetFormatError, match=r"r\.txt:2: blank line"):
        read_boxes(f)
    f.write_text("x,y,w,h\n1,2,3,4\n")
    assert read_boxes(f).tolist() == [[1, 2, 3, 4]]
    with pytest.raises(ValueError, match=r"r\.txt:1: not a number"):
        runner.read_result(f)
    f.write_text("")
    assert runner.read_result(f).shape == (0, 4) and read_boxes(f).shape == (0, 4)


def test_read_flags_formats(tmp_path):
    f = tmp_path / "flags.txt"
    f.write_text("0,1,0,1\n")
    assert read_flags(f, 4).tolist() == [0, 1, 0, 1]
    f.write_text("0\n1\n2\n")
    assert read_flags(f, 3).tolist() == [0, 1, 2]
    f.write_text("0\nyes\n")
    with pytest.raises(DatasetFormatError, match=r"flags\.txt:2"):
        read_flags(f)


def test_malformed_groundtruth_reaches_the_user_with_file_and_line(tmp_path):
    fake = F.make_fake_lasot(tmp_path / "lasot")
    gt = fake.root / "dog" / "dog-1" / "groundtruth.txt"
    lines = gt.read_text().splitlines(True)
    lines[2] = "5;6\n"
    gt.write_text("".join(lines))
    with pytest.raises(DatasetFormatError, match=r"dog-1[/\\]groundtruth\.txt:3:"):
        load_benchmark("lasot", fake.root)


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_image_size_from_header(tmp_path, ext):
    p = F.write_frame(tmp_path / f"a{ext}", (37, 23))
    assert image_size(p) == (37, 23)
    img = cv2.imread(str(p))
    assert img.shape[:2] == (23, 37)


def test_frame_list_behaves_like_a_list(tmp_path):
    fl = FrameList(tmp_path, "{:08d}.jpg", 3, 5)
    ref = [tmp_path / f"{i:08d}.jpg" for i in range(3, 8)]
    assert fl == ref and list(fl) == ref and len(fl) == 5 and fl[-1] == ref[-1]
    assert fl[1:3] == ref[1:3] and isinstance(fl[1:3], FrameList) and fl[::2] == ref[::2]
    assert pickle.loads(pickle.dumps(fl)) == fl and fl != ref[:4]
    with pytest.raises(IndexError):
        fl[5]


# ---------------------------------------------------------------------------------------------- roots


def test_dataset_root_env_config_and_errors(tmp_path, monkeypatch):
    cfg = Path(os.environ["LORAT_DATASETS"])
    with pytest.raises(DatasetNotFoundError) as e:
        dataset_root("lasot")
    assert "LORAT_LASOT_ROOT" in str(e.value) and str(cfg) in str(e.value)
    (tmp_path / "cfg" / "rel_lasot").mkdir(parents=True)
    cfg.write_text("lasot: rel_lasot\ngot10k: ~/nowhere-lorat-test\n")
    assert dataset_root("lasot") == tmp_path / "cfg" / "rel_lasot"
    assert dataset_root("lasot_train") == tmp_path / "cfg" / "rel_lasot"  # dataset names map to roots
    with pytest.raises(DatasetNotFoundError, match=r"nowhere-lorat-test.*from config.*does not exist"):
        dataset_root("got10k_val")
    other = tmp_path / "env_lasot"
    other.mkdir()
    monkeypatch.setenv("LORAT_LASOT_ROOT", str(other))  # env wins over the file
    assert dataset_root("lasot") == other
    cfg.write_text("lasott: /x\n")
    with pytest.raises(DatasetFormatError, match=r"unknown key 'lasott'"):
        D.read_config()
    with pytest.raises(ValueError, match=r"unknown dataset"):
        dataset_root("imagenet")


def test_load_benchmark_uses_configured_root(tmp_path, monkeypatch):
    fake = F.make_fake_lasot_ext(tmp_path / "ext")
    monkeypatch.setenv("LORAT_LASOT_EXT_ROOT", str(fake.root))
    F.assert_sequences_match(load_benchmark("lasot_ext"), fake.expected["lasot_ext"], fake.root)
    with pytest.raises(ValueError, match=r"unknown benchmark 'lasot_train'"):
        load_benchmark("lasot_train")
    with pytest.raises(DatasetNotFoundError, match=r"does not exist"):
        load_benchmark("otb100", tmp_path / "no-such-root")


# ---------------------------------------------------------------------------------------------- cache


def _count_scans(monkeypatch, name):
    info = TRAIN_DATASETS[name]
    calls = []
    real = info.reader

    def counting(root):
        calls.append(root)
        return real(root)

    monkeypatch.setattr(info, "reader", counting)
    return calls


def test_index_cache_avoids_rescanning(tmp_path, monkeypatch):
    fake = F.make_fake_got10k(tmp_path / "got10k")
    calls = _count_scans(monkeypatch, "got10k_train")
    first = load_training_dataset("got10k_train", fake.root)
    second = load_training_dataset("got10k_train", fake.root)
    assert len(calls) == 1
    files = list((tmp_path / "cache" / "index").glob("*"))
    assert len(files) == 1 and files[0].suffix == ".json" and json.loads(files[0].read_text())["num_sequences"] == 2
    F.assert_sequences_match(second, fake.expected["got10k_train"], fake.root)
    for a, b in zip(first, second):
        assert a.frames == b.frames and a.extra == b.extra and a.object_class == b.object_class

    # Editing an annotation file (new mtime) invalidates the cache and replaces the old file.
    gt = fake.root / "train" / "GOT-10k_Train_000002" / "groundtruth.txt"
    gt.write_text(gt.read_text().replace("30.0000,20.0000", "31.0000,20.0000"))
    os.utime(gt, ns=(time.time_ns() + 5 * 10**9,) * 2)
    third = load_training_dataset("got10k_train", fake.root)
    assert len(calls) == 2 and third[1].boxes[0, 0] == 31.0
    assert len(list((tmp_path / "cache" / "index").glob("*"))) == 1

    # A corrupt cache file is rebuilt with a warning; use_cache=False always scans.
    files = list((tmp_path / "cache" / "index").glob("*.json"))
    files[0].write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable index cache"):
        load_training_dataset("got10k_train", fake.root)
    assert len(calls) == 3
    load_training_dataset("got10k_train", fake.root, use_cache=False)
    assert len(calls) == 4


def test_index_cache_roundtrip_all_training_sets(tmp_path, monkeypatch):
    fakes = {"lasot_train": F.make_fake_lasot(tmp_path / "l"), "got10k_vottrain": F.make_fake_got10k(tmp_path / "g"),
             "trackingnet_train": F.make_fake_trackingnet(tmp_path / "t", chunks=tuple(range(12))),
             "coco2017_train": F.make_fake_coco(tmp_path / "c")}
    cache = tmp_path / "explicit-cache"
    for name, fake in fakes.items():
        calls = _count_scans(monkeypatch, name)
        a = load_training_dataset(name, fake.root, cache_dir=cache)
        b = load_training_dataset(name, fake.root, cache_dir=cache)
        assert len(calls) == 1, name
        F.assert_sequences_match(b, fake.expected[name], fake.root)
        assert [(s.dataset, s.language, s.extra) for s in a] == [(s.dataset, s.language, s.extra) for s in b]
    assert len(list(cache.glob("*.json"))) == 4
    assert not list(cache.glob(".*tmp"))


def test_vottrain_cache_key_follows_split_file(tmp_path, monkeypatch):
    fake = F.make_fake_got10k(tmp_path / "got10k")
    assert len(load_training_dataset("got10k_vottrain", fake.root)) == 2
    split = fake.root / "got10k_vot_train_split.txt"
    split.write_text("0\n")
    os.utime(split, ns=(time.time_ns() + 5 * 10**9,) * 2)
    assert [s.name for s in load_training_dataset("got10k_vottrain", fake.root)] == ["GOT-10k_Train_000001"]


# ---------------------------------------------------------------------------------------------- check / CLI


def _configure(tmp_path, monkeypatch):
    fakes = F.make_all_fake_datasets(tmp_path / "data")
    cfg = Path(os.environ["LORAT_DATASETS"])
    cfg.parent.mkdir(parents=True, exist_ok=True)
    keys = [k for k in fakes if k not in ("trackingnet", "folder")]
    cfg.write_text("".join(f"{k}: {fakes[k].root}\n" for k in keys))
    monkeypatch.setenv("LORAT_TRACKINGNET_ROOT", str(tmp_path / "missing-trackingnet"))
    return fakes


def test_check_datasets_reports_each_dataset(tmp_path, monkeypatch):
    fakes = _configure(tmp_path, monkeypatch)
    (fakes["lasot"].root / "dog" / "dog-1" / "img" / "00000008.jpg").unlink()
    results = {r.name: r for r in check_datasets()}
    assert set(results) == set(BENCHMARKS) | set(TRAIN_DATASETS)
    assert results["got10k_val"].ok and results["got10k_val"].num_sequences == 2
    assert results["got10k_val"].num_frames == 12 and results["got10k_val"].source.startswith("config")
    assert results["coco2017_train"].ok and results["uav123"].ok and results["otb100"].ok
    lasot = results["lasot"]
    assert lasot.status == "error" and "first missing frame" in lasot.problems[0]
    assert "dog-1" in lasot.problems[0] and "00000008.jpg" in lasot.problems[0]
    tn = results["trackingnet"]
    assert tn.configured and not tn.exists and tn.status == "missing" and "LORAT_TRACKINGNET_ROOT" in tn.source
    assert results["folder"].status == "not set" and not results["folder"].configured
    # deep mode finds a hole in the middle of a sequence that the quick check skips
    (fakes["lasot_ext"].root / "atv" / "atv-1" / "img" / "00000004.jpg").unlink()
    assert check_datasets(["lasot_ext"])[0].ok
    deep = check_datasets(["lasot_ext"], deep=True)[0]
    assert not deep.ok and "00000004.jpg" in deep.problems[0]
    # readers that list frame folders report a hole straight away
    (fakes["otb100"].root / "Biker" / "img" / "0003.jpg").unlink()
    otb = check_datasets(["otb100"])[0]
    assert otb.status == "error" and "frame number 3 not found" in otb.problems[0]


def test_check_reports_unset_root_and_parse_error(tmp_path):
    fake = F.make_fake_got10k(tmp_path / "got10k", vottrain_file=False)
    Path(os.environ["LORAT_DATASETS"]).parent.mkdir(parents=True)
    Path(os.environ["LORAT_DATASETS"]).write_text(f"got10k: {fake.root}\n")
    r = {s.name: s for s in check_datasets(["got10k_val", "got10k_vottrain", "lasot"])}
    assert r["got10k_val"].ok
    vot = r["got10k_vottrain"]
    assert vot.status == "error" and "vottrain split file not found" in vot.problems[0]
    assert r["lasot"].status == "not set" and "LORAT_LASOT_ROOT" in r["lasot"].notes[0]


def _run_cli(argv):
    parser = argparse.ArgumentParser()
    D.add_data_arguments(parser)
    return D.run_data(parser.parse_args(argv))


def test_cli_data_and_check(tmp_path, monkeypatch, capsys):
    assert _run_cli([]) == 0
    out = capsys.readouterr().out
    assert os.environ["LORAT_DATASETS"] in out and "LORAT_GOT10K_ROOT" in out and "LORAT_CACHE_DIR" in out
    _configure(tmp_path, monkeypatch)
    assert _run_cli(["check"]) == 1  # the TrackingNet root does not exist
    out = capsys.readouterr().out
    assert "got10k_val" in out and "missing" in out and "not set" in out
    assert _run_cli(["check", "got10k_val", "uav123"]) == 0
    assert "2 sequences, 12 frames" in capsys.readouterr().out
    assert _run_cli(["check", "--json", "nfs30"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[0]["name"] == "nfs30" and data[0]["status"] == "ok" and data[0]["num_sequences"] == 2
    assert _run_cli(["check", "no_such_dataset"]) == 2


def test_python_dash_m_entry_point(tmp_path):
    fake = F.make_fake_otb(tmp_path / "otb")
    env = {k: v for k, v in os.environ.items()}
    env["LORAT_OTB100_ROOT"] = str(fake.root)
    proc = subprocess.run([sys.executable, "-m", "lorat.data.datasets", "check", "otb100"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "otb100" in proc.stdout and "10 sequences" in proc.stdout
