"""Tiny, format-exact copies of the tracking datasets, written on the fly (tests and demos).

Each ``make_fake_<dataset>(root)`` writes one dataset *at* ``root`` (the folder a user would point
``LORAT_<KEY>_ROOT`` at) with real JPEG/PNG frames of :data:`FRAME_SIZE`, and returns a
:class:`FakeDataset` whose ``expected`` maps a dataset name as accepted by ``load_benchmark`` /
``load_training_dataset`` to the sequences a correct reader returns, in order::

    fake = make_fake_got10k(tmp_path / "got10k")
    seqs = load_benchmark("got10k_val", fake.root)
    assert [s.name for s in seqs] == [e["name"] for e in fake.expected["got10k_val"]]

Every expected sequence is a dict with ``name``, ``frames`` (paths relative to ``root``), ``boxes``
(``(N, 4)`` list, NaN where unpublished or invalid), ``visible`` (list of bool or None) and, where the
dataset has them, ``object_class``, ``language`` and ``image_size``. The trees exercise the format quirks
listed in ``docs/datasets.md`` (separators, NaN rows, absent frames, sub-ranges, two-target folders, ...).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

FRAME_SIZE = (64, 48)  # (width, height) of every fake frame unless a dataset says otherwise
NAN = math.nan

_ENCODED: dict[tuple, bytes] = {}


@dataclass
class FakeDataset:
    """A fake dataset on disk: its root and the sequences each reader should return."""

    root: Path
    expected: dict[str, list[dict]] = field(default_factory=dict)


def write_frame(path: Path, size: tuple[int, int] = FRAME_SIZE, color: tuple[int, int, int] = (40, 90, 160)) -> Path:
    """Write a solid-colour image of ``size = (width, height)``; the format follows the suffix."""
    key = (size, color, path.suffix.lower())
    if key not in _ENCODED:
        img = np.zeros((size[1], size[0], 3), np.uint8)
        img[:] = color
        ok, buf = cv2.imencode(path.suffix, img)
        assert ok, path
        _ENCODED[key] = buf.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_ENCODED[key])
    return path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _rows(boxes, fmt: str = "{:g}", sep: str = ",") -> str:
    return "".join(sep.join(fmt.format(v) for v in b) + "\n" for b in boxes)


def _frames(folder: str, pattern: str, numbers) -> list[str]:
    return [f"{folder}/{pattern.format(n)}" for n in numbers]


# ----------------------------------------------------------------------------------------------
# LaSOT / LaSOT_ext


def _lasot_seq(root: Path, name: str, boxes, occ, oov, nlp: str, size=FRAME_SIZE) -> None:
    d = root / name.rsplit("-", 1)[0] / name
    for i in range(len(boxes)):
        write_frame(d / "img" / f"{i + 1:08d}.jpg", size)
    _write(d / "groundtruth.txt", _rows(boxes))
    _write(d / "full_occlusion.txt", ",".join(str(v) for v in occ) + "\n")
    _write(d / "out_of_view.txt", ",".join(str(v) for v in oov) + "\n")
    _write(d / "nlp.txt", nlp + "\n")


def make_fake_lasot(root: Path, *, split_files: bool = True) -> FakeDataset:
    """LaSOT with test sequences ``cat-1``, ``dog-1`` and training sequences ``cat-2``, ``dog-2``.

    ``cat-1``: absent frames 3-4 written ``1,1,-1,-1`` and a visible frame with ``x = 0``; ``dog-1``: an
    out-of-view frame carrying a stale box; ``cat-2``: absent head (2) and tail (1) frames, a box that
    crosses the image border and one fully outside it; ``dog-2``: absent throughout (dropped for
    training). ``split_files=False`` omits ``testing_set.txt``/``training_set.txt``, so the built-in
    Protocol II table decides (cat-1 and dog-1 are official test sequences, cat-2 and dog-2 are not).
    Expected keys: ``lasot``, ``lasot_train``.
    """
    root = Path(root)
    cat1 = [[10 + i, 8, 20, 16] for i in range(10)]
    cat1[3] = cat1[4] = [1, 1, -1, -1]
    cat1[7] = [0, 8, 20, 16]
    occ1 = [0] * 10
    occ1[3] = occ1[4] = 1
    _lasot_seq(root, "cat-1", cat1, occ1, [0] * 10, "white cat on the sofa")

    dog1 = [[5, 5 + i, 12, 10] for i in range(8)]
    dog1[5] = dog1[4]  # stale box on the out-of-view frame
    oov1 = [0] * 8
    oov1[5] = 1
    _lasot_seq(root, "dog-1", dog1, [0] * 8, oov1, "brown dog running")

    cat2 = [[20 + i, 10, 16, 12] for i in range(12)]
    cat2[0] = cat2[1] = [0, 0, 0, 0]
    cat2[11] = [1, 1, -1, -1]
    cat2[5] = [55, 40, 20, 20]   # 0-based x 54..74, y 39..59 -> clipped to 54..64, 39..48
    cat2[6] = [70, 10, 10, 10]   # entirely right of the 64-px image -> invalid
    occ2, oov2 = [0] * 12, [0] * 12
    oov2[0] = oov2[1] = 1
    occ2[11] = 1
    _lasot_seq(root, "cat-2", cat2, occ2, oov2, "grey cat")
    _lasot_seq(root, "dog-2", [[5, 5, 10, 10]] * 6, [1] * 6, [0] * 6, "hidden dog")
    if split_files:
        _write(root / "testing_set.txt", "cat-1\ndog-1\n")
        _write(root / "training_set.txt", "cat-2\ndog-2\n")

    def bench(name, boxes, occ, oov, lang):
        n = len(boxes)
        return {"name": name, "frames": _frames(f"{name.split('-')[0]}/{name}/img", "{:08d}.jpg", range(1, n + 1)),
                "boxes": boxes, "visible": [o == 0 and v == 0 for o, v in zip(occ, oov)],
                "object_class": name.split("-")[0], "language": lang}

    train_boxes = [[b[0] - 1, b[1] - 1, b[2], b[3]] for b in cat2[2:11]]
    train_boxes[3] = [54, 39, 10, 9]
    train_boxes[4] = [NAN] * 4
    train_visible = [True] * 9
    train_visible[4] = False
    return FakeDataset(root, {
        "lasot": [bench("cat-1", cat1, occ1, [0] * 10, "white cat on the sofa"),
                  bench("dog-1", dog1, [0] * 8, oov1, "brown dog running")],
        "lasot_train": [{"name": "cat-2", "frames": _frames("cat/cat-2/img", "{:08d}.jpg", range(3, 12)),
                         "boxes": train_boxes, "visible": train_visible, "object_class": "cat",
                         "language": "grey cat", "image_size": FRAME_SIZE, "first_frame": 2}],
    })


def make_fake_lasot_ext(root: Path) -> FakeDataset:
    """LaSOT_extension with one sequence ``atv/atv-1`` (10 frames, frames 6-7 out of view). Key ``lasot_ext``."""
    root = Path(root)
    boxes = [[3 + 2 * i, 4, 18, 14] for i in range(10)]
    oov = [0] * 10
    oov[6] = oov[7] = 1
    _lasot_seq(root, "atv-1", boxes, [0] * 10, oov, "red atv on the dunes")
    return FakeDataset(root, {"lasot_ext": [{
        "name": "atv-1", "frames": _frames("atv/atv-1/img", "{:08d}.jpg", range(1, 11)), "boxes": boxes,
        "visible": [v == 0 for v in oov], "object_class": "atv", "language": "red atv on the dunes"}]})


# ----------------------------------------------------------------------------------------------
# GOT-10k


def _got10k_meta(object_class: str, size=FRAME_SIZE) -> str:
    return ("[METAINFO]\nurl: https://youtu.be/xxxxxxxxxxx\nbegin: 00:00:01\nend: 00:00:05\nanno_fps: 10Hz\n"
            f"object_class: {object_class}\nmotion_class: walking\nmajor_class: mammal\nroot_class: animal\n"
            f"motion_adverb: slowly\nresolution: ({size[0]}, {size[1]})\n")


def _got10k_seq(split_dir: Path, name: str, n_frames: int, boxes, absence=None, cover=None, cls="ferret") -> None:
    d = split_dir / name
    for i in range(n_frames):
        write_frame(d / f"{i + 1:08d}.jpg")
    _write(d / "groundtruth.txt", _rows(boxes, "{:.4f}"))
    if absence is not None:
        _write(d / "absence.label", "".join(f"{v}\n" for v in absence))
        cover = cover if cover is not None else [0 if a else 8 for a in absence]
        _write(d / "cover.label", "".join(f"{v}\n" for v in cover))
        _write(d / "cut_by_image.label", "".join("0\n" for _ in absence))
    _write(d / "meta_info.ini", _got10k_meta(cls))


def make_fake_got10k(root: Path, *, vottrain_file: bool = True) -> FakeDataset:
    """GOT-10k with 3 train, 2 val and 2 test sequences, ``list.txt`` per split, ``%.4f`` boxes.

    Train ``_000001`` has absent first and last frames, ``_000002`` a box crossing the border,
    ``_000003`` is absent throughout (dropped). ``vottrain_file`` writes
    ``<root>/got10k_vot_train_split.txt`` with the 0-based indices ``1, 0``. Test ground truth holds the
    first row only. Expected keys: ``got10k_val``, ``got10k_test``, ``got10k_train``, ``got10k_vottrain``.
    """
    root = Path(root)
    train = root / "train"
    t1 = [[10.5 + i, 8.25, 20.125, 16.0] for i in range(8)]
    t1_abs = [1, 0, 0, 0, 0, 0, 0, 1]
    _got10k_seq(train, "GOT-10k_Train_000001", 8, t1, t1_abs)
    t2 = [[30.0, 20.0 + i, 12.5, 10.0] for i in range(6)]
    t2[2] = [50.0, 40.0, 30.0, 20.0]  # crosses the right and bottom border -> [50, 40, 14, 8]
    _got10k_seq(train, "GOT-10k_Train_000002", 6, t2, [0] * 6, cls="lynx")
    _got10k_seq(train, "GOT-10k_Train_000003", 5, [[1, 1, 5, 5]] * 5, [1] * 5)
    _write(train / "list.txt", "GOT-10k_Train_000001\nGOT-10k_Train_000002\nGOT-10k_Train_000003\n")
    if vottrain_file:
        _write(root / "got10k_vot_train_split.txt", "1\n0\n")

    val = root / "val"
    v1 = [[4.0 + i, 6.0, 14.0, 12.0] for i in range(7)]
    _got10k_seq(val, "GOT-10k_Val_000001", 7, v1, [0] * 7, cls="ferret")
    v2 = [[7.0, 3.0 + i, 9.5, 11.25] for i in range(5)]
    v2_abs = [0, 0, 1, 0, 0]
    _got10k_seq(val, "GOT-10k_Val_000002", 5, v2, v2_abs, cover=[8, 5, 0, 3, 8], cls="bird")
    _write(val / "list.txt", "GOT-10k_Val_000001\nGOT-10k_Val_000002\n")

    test = root / "test"
    _got10k_seq(test, "GOT-10k_Test_000001", 6, [[5.0, 6.0, 7.0, 8.0]], cls="unknown")
    _got10k_seq(test, "GOT-10k_Test_000002", 4, [[1.5, 2.5, 3.5, 4.5]], cls="unknown")
    _write(test / "list.txt", "GOT-10k_Test_000001\nGOT-10k_Test_000002\n")

    def frames(split, name, n):
        return _frames(f"{split}/{name}", "{:08d}.jpg", range(1, n + 1))

    def nan_after_first(first, n):
        return [first] + [[NAN] * 4] * (n - 1)

    tr1 = {"name": "GOT-10k_Train_000001", "frames": frames("train", "GOT-10k_Train_000001", 8)[1:7],
           "boxes": t1[1:7], "visible": [True] * 6, "object_class": "ferret", "image_size": FRAME_SIZE,
           "first_frame": 1}
    tr2_boxes = [list(b) for b in t2]
    tr2_boxes[2] = [50.0, 40.0, 14.0, 8.0]
    tr2 = {"name": "GOT-10k_Train_000002", "frames": frames("train", "GOT-10k_Train_000002", 6),
           "boxes": tr2_boxes, "visible": [True] * 6, "object_class": "lynx", "image_size": FRAME_SIZE,
           "first_frame": 0}
    return FakeDataset(root, {
        "got10k_val": [
            {"name": "GOT-10k_Val_000001", "frames": frames("val", "GOT-10k_Val_000001", 7), "boxes": v1,
             "visible": [True] * 7, "object_class": "ferret", "cover": [8] * 7, "image_size": FRAME_SIZE},
            {"name": "GOT-10k_Val_000002", "frames": frames("val", "GOT-10k_Val_000002", 5), "boxes": v2,
             "visible": [a == 0 for a in v2_abs], "object_class": "bird", "cover": [8, 5, 0, 3, 8],
             "image_size": FRAME_SIZE},
        ],
        "got10k_test": [
            {"name": "GOT-10k_Test_000001", "frames": frames("test", "GOT-10k_Test_000001", 6),
             "boxes": nan_after_first([5.0, 6.0, 7.0, 8.0], 6), "visible": None, "object_class": "unknown"},
            {"name": "GOT-10k_Test_000002", "frames": frames("test", "GOT-10k_Test_000002", 4),
             "boxes": nan_after_first([1.5, 2.5, 3.5, 4.5], 4), "visible": None, "object_class": "unknown"},
        ],
        "got10k_train": [tr1, tr2],
        "got10k_vottrain": [tr2, tr1],
    })


# ----------------------------------------------------------------------------------------------
# TrackingNet


def make_fake_trackingnet(root: Path, *, chunks: tuple[int, ...] = (0, 1)) -> FakeDataset:
    """TrackingNet with ``TRAIN_<k>`` chunks (one sequence each) and ``TEST`` (one sequence).

    ``TRAIN_0/Nf1aqv5Fg5o_0`` and ``TEST/tst0000001_0`` have 12 frames ``0.jpg .. 11.jpg`` (numeric
    order differs from name order past 10); ``TRAIN_1/zz9xyz_1`` starts with a zero-width box that is
    cut for training. Expected keys: ``trackingnet``, ``trackingnet_train``.
    """
    root = Path(root)
    expected_train = []
    for k in chunks:
        chunk = root / f"TRAIN_{k}"
        if k == 0:
            name, n = "Nf1aqv5Fg5o_0", 12
            boxes = [[2.5 + i, 3.25, 10.0, 8.5] for i in range(n)]
            first = 0
        else:
            name, n = f"zz9xyz{k}_{k}", 5
            boxes = [[6.0, 7.0, 0.0, 9.0]] + [[6.0 + i, 7.0, 11.0, 9.0] for i in range(1, n)]
            first = 1
        for i in range(n):
            write_frame(chunk / "frames" / name / f"{i}.jpg")
        _write(chunk / "anno" / f"{name}.txt", _rows(boxes, "{:.2f}"))
        expected_train.append({"name": name, "frames": _frames(f"TRAIN_{k}/frames/{name}", "{}.jpg", range(first, n)),
                               "boxes": boxes[first:], "visible": [True] * (n - first), "image_size": FRAME_SIZE,
                               "first_frame": first})
    name = "tst0000001_0"
    for i in range(12):
        write_frame(root / "TEST" / "frames" / name / f"{i}.jpg")
    _write(root / "TEST" / "anno" / f"{name}.txt", "12.00,13.00,14.50,15.50\n")
    return FakeDataset(root, {
        "trackingnet": [{"name": name, "frames": _frames(f"TEST/frames/{name}", "{}.jpg", range(12)),
                         "boxes": [[12.0, 13.0, 14.5, 15.5]] + [[NAN] * 4] * 11, "visible": None}],
        "trackingnet_train": expected_train,
    })


# ----------------------------------------------------------------------------------------------
# COCO


def make_fake_coco(root: Path, *, layout: str = "images") -> FakeDataset:
    """COCO 2017 train: 2 images, 5 annotations (one crowd, one 30x30, one crossing the border of a
    40x30 image, one zero-width), float boxes, category ids 1 and 3 (a gap). ``layout='images'`` puts
    frames in ``images/train2017`` (pytracking/trackit), ``'plain'`` in ``train2017``. Key ``coco2017_train``.
    """
    root = Path(root)
    img_dir = root / ("images/train2017" if layout == "images" else "train2017")
    write_frame(img_dir / "000000000001.jpg", (64, 48))
    write_frame(img_dir / "000000000002.jpg", (40, 30))
    ann = {
        "info": {"description": "fake"},
        "images": [{"id": 1, "file_name": "000000000001.jpg", "width": 64, "height": 48},
                   {"id": 2, "file_name": "000000000002.jpg", "width": 40, "height": 30}],
        "annotations": [
            {"id": 11, "image_id": 1, "category_id": 1, "bbox": [5.5, 6.25, 20.0, 10.5], "area": 210.0, "iscrowd": 0,
             "segmentation": [[5.5, 6.25, 25.5, 6.25, 25.5, 16.75]]},
            {"id": 12, "image_id": 1, "category_id": 3, "bbox": [30.0, 10.0, 30.0, 30.0], "area": 900.0, "iscrowd": 0,
             "segmentation": [[30, 10, 60, 10, 60, 40]]},
            {"id": 13, "image_id": 2, "category_id": 1, "bbox": [1.0, 1.0, 20.0, 20.0], "area": 400.0, "iscrowd": 1,
             "segmentation": {"counts": [0, 400], "size": [30, 40]}},
            {"id": 14, "image_id": 2, "category_id": 3, "bbox": [30.0, 20.0, 20.0, 20.0], "area": 400.0, "iscrowd": 0,
             "segmentation": [[30, 20, 50, 20, 50, 40]]},
            {"id": 15, "image_id": 2, "category_id": 3, "bbox": [5.0, 5.0, 0.0, 10.0], "area": 0.0, "iscrowd": 0,
             "segmentation": []},
        ],
        "categories": [{"id": 1, "name": "person", "supercategory": "person"},
                       {"id": 3, "name": "car", "supercategory": "vehicle"}],
    }
    _write(root / "annotations" / "instances_train2017.json", json.dumps(ann))
    rel = img_dir.relative_to(root).as_posix()

    def seq(name, img, box, cls, size, image_id):
        return {"name": name, "frames": [f"{rel}/{img}"], "boxes": [box], "visible": [True], "object_class": cls,
                "image_size": size, "sampling_unit": f"coco2017/{image_id}"}

    return FakeDataset(root, {"coco2017_train": [
        seq("000000000001_11", "000000000001.jpg", [5.5, 6.25, 20.0, 10.5], "person", (64, 48), 1),
        seq("000000000001_12", "000000000001.jpg", [30.0, 10.0, 30.0, 30.0], "car", (64, 48), 1),
        seq("000000000002_14", "000000000002.jpg", [30.0, 20.0, 10.0, 10.0], "car", (40, 30), 2),
    ]})


# ----------------------------------------------------------------------------------------------
# TNL2K


TNL2K_DAMAGED = "test_015_Sord_video_Q01_done"


def make_fake_tnl2k(root: Path, *, damaged_sequence: bool = False) -> FakeDataset:
    """TNL2K test with a PNG sequence and a JPG sequence (``imgs/``, ``groundtruth.txt``, ``language.txt``).

    ``damaged_sequence`` adds ``test_015_Sord_video_Q01_done`` with 493 frames, whose frame
    ``00000492.png`` the reader must replace by ``00000491.png``. Key ``tnl2k``.
    """
    root = Path(root)
    out = []
    specs = [("Arrow_Video_ZZ04_done", ".jpg", "{:04d}", 5), ("advSamp_Baseball_game_002-Done", ".png", "{:05d}", 6)]
    if damaged_sequence:
        specs.append((TNL2K_DAMAGED, ".png", "{:08d}", 493))
    for name, ext, pat, n in sorted(specs):
        d = root / name
        for i in range(1, n + 1):
            write_frame(d / "imgs" / (pat.format(i) + ext))
        boxes = [[1 + i % 7, 2, 15, 12] for i in range(n)]
        _write(d / "groundtruth.txt", _rows(boxes))
        lang = f"the target of {name.lower()}"
        _write(d / "language.txt", lang + "\n")
        frames = _frames(f"{name}/imgs", pat + ext, range(1, n + 1))
        if name == TNL2K_DAMAGED:
            frames[491] = frames[490]
        out.append({"name": name, "frames": frames, "boxes": boxes, "visible": None, "language": lang})
    return FakeDataset(root, {"tnl2k": out})


# ----------------------------------------------------------------------------------------------
# OTB100


def make_fake_otb(root: Path) -> FakeDataset:
    """OTB100 quirks: comma (``Basketball``), tab (``Biker``) and whitespace (``Bird1``) ground truth;
    two targets (``Jogging`` -> ``Jogging_1``/``_2``); ``Human4`` with an empty ``.1`` file; ``BlurCar3``
    starting at image 3; ``Tiger1`` with ``initOmit = 5``; ``Board`` with 5-digit names; ``KiteSurf``
    with PNG frames. Key ``otb100``.
    """
    root = Path(root)
    exp = {}

    def seq(folder, n_images, digits=4, ext=".jpg"):
        for i in range(1, n_images + 1):
            write_frame(root / folder / "img" / (f"{i:0{digits}d}" + ext))

    def boxes(n, x0=3):
        return [[x0 + i, 4, 10, 8] for i in range(n)]

    def add(name, folder, numbers, bx, digits=4, ext=".jpg"):
        exp[name] = {"name": name, "frames": _frames(f"{folder}/img", f"{{:0{digits}d}}{ext}", numbers),
                     "boxes": bx, "visible": None}

    b = boxes(6)
    seq("Basketball", 6)
    _write(root / "Basketball" / "groundtruth_rect.txt", _rows(b))
    add("Basketball", "Basketball", range(1, 7), b)
    b = boxes(5, 5)
    seq("Biker", 5)
    _write(root / "Biker" / "groundtruth_rect.txt", _rows(b, sep="\t"))
    add("Biker", "Biker", range(1, 6), b)
    b = boxes(5, 7)
    seq("Bird1", 5)
    _write(root / "Bird1" / "groundtruth_rect.txt", _rows(b, sep="  "))
    add("Bird1", "Bird1", range(1, 6), b)
    seq("Jogging", 5)
    b1, b2 = boxes(5, 1), boxes(5, 20)
    _write(root / "Jogging" / "groundtruth_rect.1.txt", _rows(b1))
    _write(root / "Jogging" / "groundtruth_rect.2.txt", _rows(b2, sep="\t"))
    add("Jogging_1", "Jogging", range(1, 6), b1)
    add("Jogging_2", "Jogging", range(1, 6), b2)
    seq("Human4", 4)
    b = boxes(4, 9)
    _write(root / "Human4" / "groundtruth_rect.1.txt", "")
    _write(root / "Human4" / "groundtruth_rect.2.txt", _rows(b))
    add("Human4", "Human4", range(1, 5), b)
    seq("BlurCar3", 8)
    b = boxes(5, 11)
    _write(root / "BlurCar3" / "groundtruth_rect.txt", _rows(b))
    add("BlurCar3", "BlurCar3", range(3, 8), b)
    seq("Tiger1", 8)
    b = boxes(8, 2)
    _write(root / "Tiger1" / "groundtruth_rect.txt", _rows(b))
    add("Tiger1", "Tiger1", range(6, 9), b[5:])
    seq("Board", 4, digits=5)
    b = boxes(4, 6)
    _write(root / "Board" / "groundtruth_rect.txt", _rows(b))
    add("Board", "Board", range(1, 5), b, digits=5)
    seq("KiteSurf", 3, ext=".png")
    b = boxes(3, 8)
    _write(root / "KiteSurf" / "groundtruth_rect.txt", _rows(b, sep=", "))
    add("KiteSurf", "KiteSurf", range(1, 4), b, ext=".png")
    order = ["Basketball", "Biker", "Bird1", "BlurCar3", "Board", "Human4", "Jogging_1", "Jogging_2", "KiteSurf",
             "Tiger1"]
    return FakeDataset(root, {"otb100": [exp[n] for n in order]})


# ----------------------------------------------------------------------------------------------
# NFS


def _vatic_row(frame240: int, box, lost=0, occluded=0, generated=0, label="person") -> str:
    x1, y1, x2, y2 = box
    return f"0 {x1} {y1} {x2} {y2} {frame240} {lost} {occluded} {generated} \"{label}\"\n"


def make_fake_nfs(root: Path, *, layout: str = "raw") -> FakeDataset:
    """NFS at 30 fps.

    ``layout='raw'``: ``Gymnastics/30/Gymnastics/00001.jpg..00008.jpg`` with a VATIC file holding all 57
    rows of the 240-fps clock (the reader keeps frames 1, 9, ..., 57), one ``lost`` and one ``occluded``
    row; and ``pingpong_2`` (36 frames, annotations every 8th 240-fps frame) whose annotations from
    240-fps index 263 on are ignored, leaving 33 frames. ``layout='pytracking'``: ``sequences/Gymnastics/``
    + tab-separated ``anno/nfs_Gymnastics.txt``. Key ``nfs30``.
    """
    root = Path(root)
    if layout == "pytracking":
        b = [[10 + i, 5, 20, 20] for i in range(8)]
        for i in range(1, 9):
            write_frame(root / "sequences" / "Gymnastics" / f"{i:05d}.jpg")
        _write(root / "anno" / "nfs_Gymnastics.txt", _rows(b, sep="\t"))
        return FakeDataset(root, {"nfs30": [{"name": "Gymnastics", "visible": None, "boxes": b,
                                             "frames": _frames("sequences/Gymnastics", "{:05d}.jpg", range(1, 9))}]})
    d = root / "Gymnastics" / "30"
    for i in range(1, 9):
        write_frame(d / "Gymnastics" / f"{i:05d}.jpg")
    rows, boxes, lost, occ = [], [], [], []
    for f in range(1, 58):
        k = (f - 1) // 8
        box = (10 + k, 5, 30 + k, 25)
        lo, oc = int(k == 3 and (f - 1) % 8 == 0), int(k == 5 and (f - 1) % 8 == 0)
        rows.append(_vatic_row(f, box, lo, oc, generated=int((f - 1) % 8 != 0)))
        if (f - 1) % 8 == 0:
            boxes.append([10 + k, 5, 20, 20])
            lost.append(bool(lo))
            occ.append(bool(oc))
    _write(d / "Gymnastics.txt", "".join(rows))
    gym = {"name": "Gymnastics", "frames": _frames("Gymnastics/30/Gymnastics", "{:05d}.jpg", range(1, 9)),
           "boxes": boxes, "visible": None, "lost": lost, "occluded": occ}

    d = root / "pingpong_2" / "30"
    for i in range(1, 37):
        write_frame(d / "pingpong_2" / f"{i:05d}.jpg")
    _write(d / "pingpong_2.txt", "".join(_vatic_row(8 * k + 1, (k, 2, k + 4, 6), label="ball") for k in range(36)))
    ping = {"name": "pingpong_2", "frames": _frames("pingpong_2/30/pingpong_2", "{:05d}.jpg", range(1, 34)),
            "boxes": [[k, 2, 4, 4] for k in range(33)], "visible": None}
    return FakeDataset(root, {"nfs30": [gym, ping]})


# ----------------------------------------------------------------------------------------------
# UAV123


def make_fake_uav123(root: Path) -> FakeDataset:
    """UAV123 with ``car6_1`` (frames 1-487) and ``car6_2`` (487-490) cut from folder ``car6`` (the
    boundary frame is shared), NaN rows in ``car6_2``, and a whole-folder sequence ``uav3``. Key ``uav123``."""
    root = Path(root)
    data = root / "data_seq" / "UAV123"
    anno = root / "anno" / "UAV123"
    for i in range(1, 491):
        write_frame(data / "car6" / f"{i:06d}.jpg")
    for i in range(1, 6):
        write_frame(data / "uav3" / f"{i:06d}.jpg")
    c1 = [[1 + i % 40, 2, 10, 8] for i in range(487)]
    c2 = [[5, 6, 7, 8], [NAN] * 4, [NAN] * 4, [6, 6, 7, 8]]
    u3 = [[3, 3 + i, 9, 9] for i in range(5)]
    _write(anno / "car6_1.txt", _rows(c1))
    _write(anno / "car6_2.txt", _rows(c2))
    _write(anno / "uav3.txt", _rows(u3))
    return FakeDataset(root, {"uav123": [
        {"name": "car6_1", "frames": _frames("data_seq/UAV123/car6", "{:06d}.jpg", range(1, 488)), "boxes": c1,
         "visible": None},
        {"name": "car6_2", "frames": _frames("data_seq/UAV123/car6", "{:06d}.jpg", range(487, 491)), "boxes": c2,
         "visible": None},
        {"name": "uav3", "frames": _frames("data_seq/UAV123/uav3", "{:06d}.jpg", range(1, 6)), "boxes": u3,
         "visible": None},
    ]})


# ----------------------------------------------------------------------------------------------
# Generic folder


def make_fake_folder(root: Path) -> FakeDataset:
    """Two user sequences: ``seqA`` (frames in ``img/``, a header line and only the first box) and
    ``seqB`` (PNG frames next to a complete tab-separated ``groundtruth.txt``). Key ``folder``."""
    root = Path(root)
    for i in range(1, 6):
        write_frame(root / "seqA" / "img" / f"{i:04d}.jpg")
    _write(root / "seqA" / "groundtruth.txt", "x,y,w,h\n4,5,10,12\n")
    b = [[1, 2, 3, 4], [2, 2, 3, 4], [3, 2, 3, 4]]
    for i in range(1, 4):
        write_frame(root / "seqB" / f"{i}.png")
    _write(root / "seqB" / "groundtruth.txt", _rows(b, sep="\t"))
    return FakeDataset(root, {"folder": [
        {"name": "seqA", "frames": _frames("seqA/img", "{:04d}.jpg", range(1, 6)),
         "boxes": [[4, 5, 10, 12]] + [[NAN] * 4] * 4, "visible": None},
        {"name": "seqB", "frames": _frames("seqB", "{}.png", range(1, 4)), "boxes": b, "visible": None},
    ]})


# ----------------------------------------------------------------------------------------------


MAKERS = {
    "lasot": make_fake_lasot, "lasot_ext": make_fake_lasot_ext, "got10k": make_fake_got10k,
    "trackingnet": make_fake_trackingnet, "coco": make_fake_coco, "tnl2k": make_fake_tnl2k, "otb100": make_fake_otb,
    "nfs": make_fake_nfs, "uav123": make_fake_uav123, "folder": make_fake_folder,
}


def make_all_fake_datasets(base: Path) -> dict[str, FakeDataset]:
    """Write every fake dataset under ``base/<root key>`` (root keys as in ``lorat.data.datasets.ROOTS``)."""
    return {key: maker(Path(base) / key) for key, maker in MAKERS.items()}


def assert_sequences_match(seqs, expected: list[dict], root: Path) -> None:
    """Compare reader output with a fake dataset's expectation (names, frames, boxes, flags, metadata)."""
    assert [s.name for s in seqs] == [e["name"] for e in expected]
    for s, e in zip(seqs, expected):
        assert len(s.frames) == len(e["frames"]) == len(s.boxes), s.name
        assert [Path(p) for p in s.frames] == [Path(root) / p for p in e["frames"]], s.name
        np.testing.assert_allclose(s.boxes, np.asarray(e["boxes"], dtype=np.float64).reshape(-1, 4),
                                   err_msg=s.name)
        if e.get("visible") is None:
            assert s.visible is None, s.name
        else:
            assert s.visible is not None and s.visible.dtype == bool, s.name
            assert s.visible.tolist() == list(e["visible"]), s.name
        for key in ("object_class", "language"):
            if key in e:
                assert getattr(s, key) == e[key], (s.name, key)
        assert s.sampling_unit == e.get("sampling_unit"), s.name  # None unless the dataset groups tracks
        for key in ("image_size", "first_frame"):
            if key in e:
                assert tuple(np.atleast_1d(s.extra[key])) == tuple(np.atleast_1d(e[key])), (s.name, key)
        for key in ("cover", "lost", "occluded"):
            if key in e:
                assert np.asarray(s.extra[key]).tolist() == list(e[key]), (s.name, key)
