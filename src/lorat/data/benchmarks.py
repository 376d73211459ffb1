"""Evaluation benchmarks as they lie on disk: LaSOT(_ext), GOT-10k, TrackingNet, TNL2K, OTB100, NFS, UAV123, folders.

Every reader takes the dataset root and returns ``list[Sequence]``. Boxes are returned exactly as the
files write them (``x, y, w, h``; LaSOT and OTB are 1-based, the others 0-based), because the
reference metrics expect them that way. Layouts and quirks are described in ``docs/datasets.md``.

Errors are raised as :class:`DatasetError` subclasses whose message names the file (and line).
Use :func:`lorat.data.datasets.load_benchmark` rather than calling the readers directly: it also
resolves the dataset root from the environment or the config file. The training readers built on
these live in :mod:`lorat.data.training`; file parsers in :mod:`lorat.data.formats`, frame listing in
:mod:`lorat.data.frames`, image decoding in :mod:`lorat.data.images`.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .errors import DatasetError, DatasetFormatError, DatasetNotFoundError, missing
from .formats import parse_resolution, read_boxes, read_flags, read_ini, read_name_list, read_text
from .frames import FrameList, compact_frames, frames_in_range, list_images, natural_key, numbered_images
from .images import IMAGE_EXTENSIONS, image_size
from .sequence import Sequence

# ----------------------------------------------------------------------------------------------
# LaSOT and LaSOT_extension


# Protocol II test split (280 sequences): the 4 test instances of each of the 70 classes. A
# ``testing_set.txt`` in the root takes precedence over this table.
LASOT_TEST_SPLIT: dict[str, tuple[int, ...]] = {
    "airplane": (1, 9, 13, 15), "basketball": (1, 6, 7, 11), "bear": (2, 4, 6, 17),
    "bicycle": (2, 7, 9, 18), "bird": (2, 3, 15, 17), "boat": (3, 4, 12, 17), "book": (3, 10, 11, 19),
    "bottle": (1, 12, 14, 18), "bus": (2, 5, 17, 19), "car": (2, 6, 9, 17), "cat": (1, 3, 18, 20),
    "cattle": (2, 7, 12, 13), "chameleon": (3, 6, 11, 20), "coin": (3, 6, 7, 18), "crab": (3, 6, 12, 18),
    "crocodile": (3, 4, 10, 14), "cup": (1, 4, 7, 17), "deer": (4, 8, 10, 14), "dog": (1, 7, 15, 19),
    "drone": (2, 7, 13, 15), "electricfan": (1, 10, 18, 20), "elephant": (1, 12, 16, 18),
    "flag": (2, 3, 5, 9), "fox": (2, 3, 5, 20), "frog": (3, 4, 9, 20), "gametarget": (1, 2, 7, 13),
    "gecko": (1, 5, 16, 19), "giraffe": (2, 10, 13, 15), "goldfish": (3, 7, 8, 10),
    "gorilla": (4, 6, 9, 13), "guitar": (3, 8, 10, 16), "hand": (2, 3, 9, 16), "hat": (1, 2, 5, 18),
    "helmet": (5, 11, 13, 19), "hippo": (1, 7, 9, 20), "horse": (1, 4, 12, 15),
    "kangaroo": (2, 5, 11, 14), "kite": (4, 6, 10, 15), "leopard": (1, 7, 16, 20),
    "licenseplate": (6, 12, 13, 15), "lion": (1, 5, 12, 20), "lizard": (1, 3, 6, 13),
    "microphone": (2, 6, 14, 16), "monkey": (3, 4, 9, 17), "motorcycle": (1, 3, 9, 18),
    "mouse": (1, 8, 9, 17), "person": (1, 5, 10, 12), "pig": (2, 10, 13, 18), "pool": (3, 7, 12, 15),
    "rabbit": (10, 13, 17, 19), "racing": (10, 15, 16, 20), "robot": (1, 5, 8, 19),
    "rubicCube": (1, 6, 14, 19), "sepia": (6, 8, 13, 16), "shark": (2, 3, 5, 6), "sheep": (3, 5, 7, 9),
    "skateboard": (3, 8, 16, 19), "spider": (14, 16, 18, 20), "squirrel": (8, 11, 13, 19),
    "surfboard": (4, 5, 8, 12), "swing": (10, 14, 17, 20), "tank": (6, 9, 14, 16),
    "tiger": (4, 6, 12, 18), "train": (1, 7, 11, 20), "truck": (3, 6, 7, 16), "turtle": (5, 8, 9, 16),
    "umbrella": (2, 9, 17, 19), "volleyball": (1, 13, 18, 19), "yoyo": (7, 15, 17, 19),
    "zebra": (10, 14, 16, 17),
}


def lasot_test_names() -> list[str]:
    """The 280 Protocol II test sequence names (class order, then instance number)."""
    return [f"{c}-{k}" for c in sorted(LASOT_TEST_SPLIT) for k in LASOT_TEST_SPLIT[c]]


def lasot_sequence_dir(root: Path, name: str) -> Path:
    """``<root>/<class>/<class>-<k>``, or ``<root>/<class>-<k>`` for flat copies."""
    cls = name.rsplit("-", 1)[0]
    nested = root / cls / name
    if nested.is_dir() or not (root / name).is_dir():
        return nested
    return root / name


def lasot_sequences_on_disk(root: Path) -> list[str]:
    """Names of all ``<class>-<k>`` folders (with a ``groundtruth.txt``) under a LaSOT-style root."""
    if not root.is_dir():
        raise missing(root, "dataset root")
    names = set()
    for cls_dir in root.iterdir():
        if not cls_dir.is_dir():
            continue
        if (cls_dir / "groundtruth.txt").is_file():  # flat layout
            names.add(cls_dir.name)
            continue
        for seq_dir in cls_dir.iterdir():
            if seq_dir.name.startswith(cls_dir.name + "-") and (seq_dir / "groundtruth.txt").is_file():
                names.add(seq_dir.name)
    return sorted(names, key=natural_key)


def lasot_split_names(root: Path, split: str) -> list[str]:
    """LaSOT Protocol II ``test`` or ``train`` names.

    Uses ``testing_set.txt`` / ``training_set.txt`` from the root when present (file order); otherwise
    the built-in test table, and for ``train`` every sequence on disk that is not a test sequence.
    """
    list_file = root / ("testing_set.txt" if split == "test" else "training_set.txt")
    if list_file.is_file():
        return read_name_list(list_file, f"LaSOT {split} split")
    if split == "test":
        return lasot_test_names()
    test = set(lasot_test_names())
    other = root / "testing_set.txt"
    if other.is_file():
        test = set(read_name_list(other, "LaSOT test split"))
    return [n for n in lasot_sequences_on_disk(root) if n not in test]


def read_lasot_sequence(seq_dir: Path, name: str, dataset: str) -> Sequence:
    """One LaSOT(-ext) sequence: 1-based boxes as written, visibility from the two flag files."""
    if not seq_dir.is_dir():
        raise missing(seq_dir, f"{dataset} sequence folder '{name}'")
    boxes = read_boxes(seq_dir / "groundtruth.txt")
    n = len(boxes)
    occ = read_flags(seq_dir / "full_occlusion.txt", n, "full_occlusion.txt")
    oov = read_flags(seq_dir / "out_of_view.txt", n, "out_of_view.txt")
    nlp = seq_dir / "nlp.txt"
    language = read_text(nlp, "nlp.txt").strip() if nlp.is_file() else None
    return Sequence(
        name=name,
        frames=FrameList(seq_dir / "img", "{:08d}.jpg", 1, n),
        boxes=boxes,
        visible=(occ == 0) & (oov == 0),
        dataset=dataset,
        object_class=name.rsplit("-", 1)[0],
        language=language or None,
    )


def read_lasot(root: Path, split: str = "test") -> list[Sequence]:
    """LaSOT Protocol II split (``test``: 280 sequences, ``train``: 1120)."""
    root = Path(root)
    if not root.is_dir():
        raise missing(root, "LaSOT root")
    source = root / ("testing_set.txt" if split == "test" else "training_set.txt")
    source_text = f"listed in {source}" if source.is_file() else f"in the built-in Protocol II {split} split"
    out = []
    for n in lasot_split_names(root, split):
        d = lasot_sequence_dir(root, n)
        if not d.is_dir():
            raise missing(d, f"LaSOT sequence folder '{n}' ({source_text})")
        out.append(read_lasot_sequence(d, n, "lasot"))
    return out


def read_lasot_ext(root: Path) -> list[Sequence]:
    """LaSOT_extension: every ``<class>/<class>-<k>`` sequence under the root (150 in the release)."""
    root = Path(root)
    names = lasot_sequences_on_disk(root)
    if not names:
        raise DatasetNotFoundError(f"no LaSOT_ext sequences (<class>/<class>-<k>/groundtruth.txt) under {root}")
    return [read_lasot_sequence(lasot_sequence_dir(root, n), n, "lasot_ext") for n in names]


# ----------------------------------------------------------------------------------------------
# GOT-10k


def got10k_sequence_names(root: Path, split: str) -> list[str]:
    """Names from ``<root>/<split>/list.txt``."""
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise missing(split_dir, f"GOT-10k {split} folder")
    list_file = split_dir / "list.txt"
    if not list_file.is_file():
        raise missing(list_file, f"GOT-10k {split} list.txt", "every GOT-10k split folder ships one")
    return read_name_list(list_file, "GOT-10k list.txt")


def read_got10k_sequence(seq_dir: Path, split: str, *, labels: bool = True) -> Sequence:
    """One GOT-10k sequence. ``labels=False`` skips ``cover.label``/``cut_by_image.label``/meta extras."""
    name = seq_dir.name
    if not seq_dir.is_dir():
        raise missing(seq_dir, f"GOT-10k sequence folder '{name}' listed in {seq_dir.parent / 'list.txt'}")
    gt = read_boxes(seq_dir / "groundtruth.txt")
    if split == "test":
        # The test split publishes the first box only: the frame count comes from the folder.
        numbers = numbered_images(seq_dir)
        n = max(len(numbers), len(gt))
        frames = frames_in_range(seq_dir, numbers, 1, n, f"GOT-10k {name}")
        boxes = np.full((n, 4), np.nan)
        boxes[: len(gt)] = gt
    else:
        n = len(gt)
        frames = FrameList(seq_dir, "{:08d}.jpg", 1, n)
        boxes = gt
    visible = None
    absence = seq_dir / "absence.label"
    if absence.is_file():
        visible = read_flags(absence, n, "absence.label") == 0
    extra: dict = {}
    meta_file = seq_dir / "meta_info.ini"
    object_class = None
    if meta_file.is_file():
        meta = read_ini(meta_file)
        object_class = meta.get("object_class") or None
        if "resolution" in meta:
            extra["image_size"] = parse_resolution(meta["resolution"], meta_file)
        if labels:
            extra["meta"] = meta
    if labels:
        for key in ("cover", "cut_by_image"):
            f = seq_dir / f"{key}.label"
            if f.is_file():
                extra[key] = read_flags(f, n, f.name)
    return Sequence(name=name, frames=frames, boxes=boxes, visible=visible, dataset="got10k",
                    object_class=object_class, extra=extra)


def read_got10k(root: Path, split: str = "val") -> list[Sequence]:
    """GOT-10k ``train``/``val``/``test`` split in ``list.txt`` order."""
    root = Path(root)
    return [read_got10k_sequence(root / split / n, split) for n in got10k_sequence_names(root, split)]


# ----------------------------------------------------------------------------------------------
# TrackingNet


def trackingnet_frames(frame_dir: Path, count: int | None, what: str) -> list[Path] | FrameList:
    """``frames/<seq>/0.jpg, 1.jpg, ...`` (0-based, no padding). ``count=None`` lists the folder."""
    if count is not None:
        return FrameList(frame_dir, "{}.jpg", 0, count)
    numbers = numbered_images(frame_dir)
    if not numbers:
        raise DatasetNotFoundError(f"{what}: no frames in {frame_dir}")
    return frames_in_range(frame_dir, numbers, 0, max(numbers) + 1, what)


def read_trackingnet_test(root: Path) -> list[Sequence]:
    """TrackingNet ``TEST`` (511 sequences; the first box only, frames counted from the folder)."""
    root = Path(root)
    anno_dir = root / "TEST" / "anno"
    if not anno_dir.is_dir():
        raise missing(anno_dir, "TrackingNet TEST/anno folder")
    out = []
    for anno in sorted(anno_dir.glob("*.txt"), key=lambda p: p.name):
        name = anno.stem
        gt = read_boxes(anno)
        frames = trackingnet_frames(root / "TEST" / "frames" / name, None, f"TrackingNet {name}")
        n = max(len(frames), len(gt))
        if len(gt) > len(frames):
            raise DatasetFormatError(f"{anno}: {len(gt)} rows but only {len(frames)} frames")
        boxes = np.full((n, 4), np.nan)
        boxes[: len(gt)] = gt
        out.append(Sequence(name=name, frames=frames, boxes=boxes, dataset="trackingnet"))
    if not out:
        raise DatasetNotFoundError(f"no TrackingNet test annotations (*.txt) in {anno_dir}")
    return out


# ----------------------------------------------------------------------------------------------
# TNL2K


TNL2K_DAMAGED_FRAMES = {("test_015_Sord_video_Q01_done", "00000492.png")}


def read_tnl2k(root: Path) -> list[Sequence]:
    """TNL2K test: ``<seq>/imgs/*`` sorted by name, ``groundtruth.txt``, ``language.txt``.

    The damaged frame ``00000492.png`` of ``test_015_Sord_video_Q01_done`` is replaced by the frame
    before it (the documented fix), so no copy is needed on disk.
    """
    root = Path(root)
    if not root.is_dir():
        raise missing(root, "TNL2K root")
    seq_dirs = sorted((d for d in root.iterdir() if (d / "groundtruth.txt").is_file()), key=lambda d: d.name)
    if not seq_dirs:
        raise DatasetNotFoundError(f"no TNL2K sequences (<seq>/groundtruth.txt) under {root}")
    out = []
    for d in seq_dirs:
        gt = read_boxes(d / "groundtruth.txt")
        frames = list_images(d / "imgs")
        frames = _fit_frames(frames, len(gt), d / "imgs", d / "groundtruth.txt")
        for i, p in enumerate(frames):
            if i > 0 and (d.name, p.name) in TNL2K_DAMAGED_FRAMES:
                frames[i] = frames[i - 1]
        lang = d / "language.txt"
        language = read_text(lang, "language.txt").strip() if lang.is_file() else None
        out.append(Sequence(name=d.name, frames=frames, boxes=gt, dataset="tnl2k", language=language or None))
    return out


def _fit_frames(frames: list[Path], rows: int, folder: Path, gt_file: Path) -> list[Path]:
    """The ground truth defines the length: drop extra trailing frames, raise on missing ones."""
    if len(frames) < rows:
        raise DatasetNotFoundError(
            f"{gt_file} has {rows} rows but {folder} holds only {len(frames)} frames")
    return list(frames[:rows])


# ----------------------------------------------------------------------------------------------
# OTB100


# Image-number ranges that do not start at 1 or stop before the last image (from the OTB config).
OTB_FRAME_RANGES: dict[str, tuple[int, int]] = {
    "David": (300, 770), "BlurCar1": (247, 988), "BlurCar3": (3, 359), "BlurCar4": (18, 397),
    "Football1": (1, 74), "Freeman3": (1, 460), "Freeman4": (1, 283), "Diving": (1, 215),
}
OTB_INIT_OMIT: dict[str, int] = {"Tiger1": 5}  # first frames and gt rows dropped


def _otb_annotation_files(seq_dir: Path) -> list[tuple[str, Path]]:
    """``[(sequence name, gt file)]``: one target, or ``<Name>_1``/``_2`` for two-target folders."""
    single = seq_dir / "groundtruth_rect.txt"
    if single.is_file():
        return [(seq_dir.name, single)]
    multi = []
    for f in seq_dir.glob("groundtruth_rect.*.txt"):
        k = f.name[len("groundtruth_rect."):-len(".txt")]
        if k.isdigit() and f.stat().st_size > 0 and read_text(f, "OTB ground truth").strip():
            multi.append((int(k), f))  # Human4: .1 is empty, .2 is the target
    multi.sort()
    if len(multi) == 1:
        return [(seq_dir.name, multi[0][1])]
    return [(f"{seq_dir.name}_{k}", f) for k, f in multi]


def read_otb(root: Path) -> list[Sequence]:
    """OTB100: ``<Name>/img/0001.jpg`` (any padding/extension), ``groundtruth_rect[.k].txt``.

    Applies the per-sequence frame ranges (``David`` starts at image 300, ...), ``Tiger1``'s
    ``initOmit`` of 5 and splits ``Jogging``/``Skating2`` into ``_1``/``_2`` targets.
    """
    root = Path(root)
    if not root.is_dir():
        raise missing(root, "OTB root")
    out = []
    for seq_dir in sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: d.name.lower()):
        annos = _otb_annotation_files(seq_dir)
        if not annos:
            continue
        img_dir = seq_dir / "img" if (seq_dir / "img").is_dir() else seq_dir
        numbers = numbered_images(img_dir)
        for name, gt_file in annos:
            gt = read_boxes(gt_file)
            start, end = OTB_FRAME_RANGES.get(seq_dir.name, (1, None))
            n = len(gt) if end is None else min(len(gt), end - start + 1)
            gt = gt[:n]
            omit = OTB_INIT_OMIT.get(seq_dir.name, 0)
            frames = frames_in_range(img_dir, numbers, start + omit, n - omit, f"OTB {name}")
            out.append(Sequence(name=name, frames=frames, boxes=gt[omit:], dataset="otb100"))
    if not out:
        raise DatasetNotFoundError(f"no OTB sequences (<Name>/groundtruth_rect.txt) under {root}")
    return out


# ----------------------------------------------------------------------------------------------
# NFS (30 fps)


NFS_IGNORE_FROM = {"pingpong_2": 263}  # trackit ignores these annotations (240-fps frame index)


def read_nfs_vatic(path: Path, name: str) -> dict[int, tuple[list[float], bool, bool]]:
    """Parse an NFS VATIC file into ``{30-fps frame index: (xyxy, lost, occluded)}``.

    Rows are ``track_id xmin ymin xmax ymax frame lost occluded generated "label"`` on the 240-fps clock;
    the 30-fps frames are the rows with ``(frame - 1) % 8 == 0``.
    """
    out = {}
    for lineno, raw in enumerate(read_text(path, "NFS annotation").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        head = line.split('"', 1)[0].split()
        try:
            if len(head) < 9:
                raise ValueError
            xyxy = [float(v) for v in head[1:5]]
            frame, lost, occluded = int(head[5]), int(head[6]), int(head[7])
        except ValueError:
            raise DatasetFormatError(
                f"{path}:{lineno}: expected 'track_id xmin ymin xmax ymax frame lost occluded generated "
                f"\"label\"', got {raw!r}") from None
        index240 = frame - 1
        if index240 >= NFS_IGNORE_FROM.get(name, 1 << 62) or index240 % 8:
            continue
        out[index240 // 8] = (xyxy, bool(lost), bool(occluded))
    return out


def read_nfs(root: Path) -> list[Sequence]:
    """NFS 30 fps, raw download (``<seq>/30/<seq>/00001.jpg`` + VATIC ``<seq>/30/<seq>.txt``) or the
    pytracking layout (``sequences/<seq>/`` + tab-separated ``anno/nfs_<seq>.txt``).

    Raw layout: boxes are converted from corners to ``x, y, w, h``; the sequence runs from the first
    image to the last annotated 30-fps frame; unannotated frames are NaN; ``extra['lost']`` and
    ``extra['occluded']`` keep the VATIC flags.
    """
    root = Path(root)
    if not root.is_dir():
        raise missing(root, "NFS root")
    if (root / "anno").is_dir() and (root / "sequences").is_dir():
        return _read_nfs_pytracking(root)
    out = []
    for seq_dir in sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: d.name):
        name = seq_dir.name
        anno = seq_dir / "30" / f"{name}.txt"
        if not anno.is_file():
            continue
        rows = read_nfs_vatic(anno, name)
        if not rows:
            raise DatasetFormatError(f"{anno}: no 30-fps annotation rows")
        n = max(rows) + 1
        frame_dir = seq_dir / "30" / name
        frames = frames_in_range(frame_dir, numbered_images(frame_dir), 1, n, f"NFS {name}")
        boxes = np.full((n, 4), np.nan)
        lost = np.zeros(n, bool)
        occluded = np.zeros(n, bool)
        for i, (xyxy, lo, oc) in rows.items():
            boxes[i] = [xyxy[0], xyxy[1], xyxy[2] - xyxy[0], xyxy[3] - xyxy[1]]
            lost[i], occluded[i] = lo, oc
        out.append(Sequence(name=name, frames=frames, boxes=boxes, dataset="nfs30",
                            extra={"lost": lost, "occluded": occluded}))
    if not out:
        raise DatasetNotFoundError(f"no NFS sequences (<seq>/30/<seq>.txt or anno/nfs_<seq>.txt) under {root}")
    return out


def _read_nfs_pytracking(root: Path) -> list[Sequence]:
    out = []
    for anno in sorted((root / "anno").glob("nfs_*.txt"), key=lambda p: p.name):
        name = anno.stem[len("nfs_"):]
        gt = read_boxes(anno)
        frame_dir = root / "sequences" / name
        frames = frames_in_range(frame_dir, numbered_images(frame_dir), 1, len(gt), f"NFS {name}")
        out.append(Sequence(name=name, frames=frames, boxes=gt, dataset="nfs30"))
    if not out:
        raise DatasetNotFoundError(f"no NFS annotations (anno/nfs_<seq>.txt) under {root}")
    return out


# ----------------------------------------------------------------------------------------------
# UAV123


# First image number of the evaluation sub-sequences cut from one long folder (UAV123 configSeqs);
# each annotation file has exactly end - start + 1 rows, so the start is all that is needed.
UAV123_SUBSEQUENCE_STARTS: dict[str, tuple[int, ...]] = {
    "bird1": (1, 775, 1573), "car1": (1, 751, 1627), "car16": (1, 415), "car6": (1, 487, 1807, 2953, 3925),
    "car8": (1, 1357), "group1": (1, 1333, 2515, 3925), "group2": (1, 907, 1771),
    "group3": (1, 1567, 2827, 4369), "person12": (1, 601), "person14": (1, 847, 1813), "person17": (1, 1501),
    "person19": (1, 1243, 2791), "person2": (1, 1189), "person4": (1, 1501), "person5": (1, 877),
    "person7": (1, 1249), "person8": (1, 1075), "truck4": (1, 577), "uav1": (1, 1555, 2473),
}


def _uav_dirs(root: Path) -> tuple[Path, Path]:
    for base in (root, root / "UAV123"):
        anno, data = base / "anno" / "UAV123", base / "data_seq" / "UAV123"
        if anno.is_dir():
            return anno, data
    raise missing(root / "anno" / "UAV123", "UAV123 annotation folder")


def read_uav123(root: Path) -> list[Sequence]:
    """UAV123: ``anno/UAV123/<seq>.txt`` (comma, NaN rows when absent), frames in
    ``data_seq/UAV123/<folder>/000001.jpg``; ``<folder>_<k>`` sub-sequences start at the configSeqs frame."""
    root = Path(root)
    anno_dir, data_dir = _uav_dirs(root)
    numbers_cache: dict[Path, dict[int, Path]] = {}
    out = []
    for anno in sorted(anno_dir.glob("*.txt"), key=lambda p: natural_key(p.name)):
        name = anno.stem
        gt = read_boxes(anno)
        folder, start = name, 1
        m = re.fullmatch(r"(.+)_(\d+)", name)
        if not (data_dir / name).is_dir() and m:
            folder, k = m.group(1), int(m.group(2))
            starts = UAV123_SUBSEQUENCE_STARTS.get(folder, ())
            if k > len(starts):
                raise DatasetFormatError(
                    f"{anno}: '{name}' looks like sub-sequence {k} of folder '{folder}', but its start frame "
                    f"is not in the UAV123 configSeqs table")
            start = starts[k - 1]
        frame_dir = data_dir / folder
        if frame_dir not in numbers_cache:
            numbers_cache[frame_dir] = numbered_images(frame_dir)
        frames = frames_in_range(frame_dir, numbers_cache[frame_dir], start, len(gt), f"UAV123 {name}")
        out.append(Sequence(name=name, frames=frames, boxes=gt, dataset="uav123",
                            extra={"start_frame": start}))
    if not out:
        raise DatasetNotFoundError(f"no UAV123 annotations (*.txt) in {anno_dir}")
    return out


# ----------------------------------------------------------------------------------------------
# Generic folders


FOLDER_FRAME_DIRS = ("img", "imgs", "frames", "images", "color")


def read_folder_sequence(seq_dir: Path) -> Sequence:
    """A folder with ``groundtruth.txt`` and frames (in ``img/``, ``imgs/``, ``frames/``, ``images/``,
    ``color/`` or the folder itself, natural order). Rows missing after the last gt row are NaN,
    so a file with only the first box is enough to run a tracker."""
    gt_file = seq_dir / "groundtruth.txt"
    gt = read_boxes(gt_file)
    if len(gt) == 0:
        raise DatasetFormatError(f"{gt_file}: empty, the first frame's box is required")
    frame_dir = next((seq_dir / d for d in FOLDER_FRAME_DIRS if (seq_dir / d).is_dir()), seq_dir)
    frames = list_images(frame_dir)
    if len(frames) < len(gt):
        raise DatasetNotFoundError(f"{gt_file} has {len(gt)} rows but {frame_dir} holds only {len(frames)} frames")
    boxes = np.full((len(frames), 4), np.nan)
    boxes[: len(gt)] = gt
    return Sequence(name=seq_dir.name, frames=compact_frames(frames), boxes=boxes, dataset="folder")


def read_folder(root: Path) -> list[Sequence]:
    """One sequence (``root/groundtruth.txt``) or a folder of them (``root/<seq>/groundtruth.txt``)."""
    root = Path(root)
    if not root.is_dir():
        raise missing(root, "sequence folder")
    if (root / "groundtruth.txt").is_file():
        return [read_folder_sequence(root)]
    dirs = sorted((d for d in root.iterdir() if (d / "groundtruth.txt").is_file()), key=lambda d: natural_key(d.name))
    if not dirs:
        raise DatasetNotFoundError(f"no groundtruth.txt in {root} or in its sub-folders")
    return [read_folder_sequence(d) for d in dirs]


__all__ = [
    "LASOT_TEST_SPLIT", "lasot_test_names", "lasot_sequence_dir", "lasot_sequences_on_disk", "lasot_split_names",
    "read_lasot_sequence", "read_lasot", "read_lasot_ext", "got10k_sequence_names", "read_got10k_sequence",
    "read_got10k", "trackingnet_frames", "read_trackingnet_test", "TNL2K_DAMAGED_FRAMES", "read_tnl2k",
    "OTB_FRAME_RANGES", "OTB_INIT_OMIT", "read_otb", "NFS_IGNORE_FROM", "read_nfs_vatic", "read_nfs",
    "UAV123_SUBSEQUENCE_STARTS", "read_uav123", "FOLDER_FRAME_DIRS", "read_folder_sequence", "read_folder",
    # re-exported from the modules they moved to (importers still find them here)
    "DatasetError", "DatasetFormatError", "DatasetNotFoundError", "FrameList", "IMAGE_EXTENSIONS", "image_size",
    "natural_key", "list_images", "numbered_images", "frames_in_range", "compact_frames", "read_boxes",
    "read_flags", "read_ini", "read_name_list", "parse_resolution",
]
