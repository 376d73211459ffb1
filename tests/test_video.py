"""``lorat track``: frame sources, drawing, atomic outputs, and the CLI end to end on tiny synthetic media."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import lorat
from lorat.cli import main
from lorat.track.video import (
    AtomicVideoWriter,
    ImageFolderSource,
    VideoFileSource,
    draw_tracking,
    open_source,
    parse_box,
    read_image,
    write_boxes,
)

W, H = 96, 72


def _frame(t: int) -> np.ndarray:
    """RGB frame: textured background and a red square moving right."""
    rng = np.random.default_rng(100 + t)
    img = (rng.integers(0, 60, (H, W, 3))).astype(np.uint8)
    x = 20 + 3 * t
    img[30:46, x:x + 16] = (230, 30, 30)
    return img


@pytest.fixture
def checkpoint(tmp_path, tiny_cfg) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "tiny.safetensors"
    lorat.save_checkpoint(lorat.create_model(tiny_cfg), path)
    return path


@pytest.fixture
def video(tmp_path) -> Path:
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (W, H))
    assert writer.isOpened()
    for t in range(10):
        writer.write(cv2.cvtColor(_frame(t), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    d = tmp_path / "frames"
    d.mkdir()
    for t in range(12):  # 1.jpg .. 12.jpg: natural order must put 2 before 10
        cv2.imwrite(str(d / f"{t + 1}.jpg"), cv2.cvtColor(_frame(t), cv2.COLOR_RGB2BGR))
    return d


def _track_args(source, checkpoint, out, *extra):
    return ["track", str(source), "--box", "20,30,16,16", "--checkpoint", str(checkpoint), "--output", str(out),
            "--device", "cpu", "--quiet", *extra]


# ------------------------------------------------------------------------------ end to end
def test_track_video_end_to_end(video, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_track_args(video, checkpoint, out)) == 0
    boxes = np.loadtxt(out / "clip_boxes.txt", delimiter=",")
    assert boxes.shape == (10, 4)
    np.testing.assert_allclose(boxes[0], [20, 30, 16, 16])  # frame 0 = the given box
    assert ((boxes[1:, 2] > 0) & (boxes[1:, 0] >= 0) & (boxes[1:, 0] + boxes[1:, 2] <= W + 1e-3)).all()
    scores = np.loadtxt(out / "clip_scores.txt")
    assert scores.shape == (10,) and scores[0] == 1 and ((scores >= 0) & (scores <= 1)).all()
    cap = cv2.VideoCapture(str(out / "clip_tracked.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == 10
    assert not list(out.glob(".*tmp*"))  # no temporary files left behind
    assert "tracked 10 frames of clip" in capsys.readouterr().out


def test_track_folder_no_video_and_overrides(folder, checkpoint, tmp_path):
    out = tmp_path / "out"
    assert main(_track_args(folder, checkpoint, out, "--no-video", "--max-frames", "7",
                            "--set", "window_penalty=0.3", "min_box_size=12")) == 0
    assert (out / "frames_boxes.txt").read_text().count("\n") == 7
    assert not (out / "frames_tracked.mp4").exists()


def test_folder_order_is_natural(folder):
    src = open_source(folder)
    assert isinstance(src, ImageFolderSource) and src.num_frames == 12
    assert [p.name for p in src.files[:3]] == ["1.jpg", "2.jpg", "3.jpg"] and src.files[-1].name == "12.jpg"
    first = next(iter(src))
    assert first.shape == (H, W, 3) and first.dtype == np.uint8
    assert first[38, 25, 0] > 180 and first[38, 25, 2] < 80  # RGB order: the square is red


def test_video_source_reads_rgb_frames(video):
    src = open_source(video)
    assert isinstance(src, VideoFileSource) and src.name == "clip" and src.fps == pytest.approx(10)
    frames = list(src)
    assert len(frames) == 10 and frames[0].shape == (H, W, 3)
    assert frames[0][38, 25, 0] > 150 and frames[0][38, 25, 2] < 100


# ------------------------------------------------------------------------------ errors
def test_corrupt_frame_in_folder(folder, checkpoint, tmp_path, capsys):
    bad = folder / "5.jpg"
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])  # truncated JPEG
    with pytest.raises(ValueError, match="5.jpg"):
        read_image(bad)
    out = tmp_path / "out"
    assert main(_track_args(folder, checkpoint, out)) == 1
    err = capsys.readouterr().err
    assert "corrupt frame" in err and "5.jpg" in err and len(err.strip().splitlines()) == 1
    assert not (out / "frames_boxes.txt").exists() and not (out / "frames_tracked.mp4").exists()
    assert not list(out.glob(".*tmp*"))


def test_garbage_and_empty_images(tmp_path):
    (tmp_path / "a.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="a.png"):
        read_image(tmp_path / "a.png")
    (tmp_path / "b.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="empty: .*b.jpg"):
        read_image(tmp_path / "b.jpg")
    ok, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "c.png").write_bytes(png.tobytes()[:-20])
    with pytest.raises(ValueError, match="truncated PNG"):
        read_image(tmp_path / "c.png")
    with pytest.raises(FileNotFoundError, match="d.jpg"):
        read_image(tmp_path / "d.jpg")


def test_missing_source_and_checkpoint(checkpoint, tmp_path, capsys):
    assert main(_track_args(tmp_path / "nope.mp4", checkpoint, tmp_path / "out")) == 1
    assert "nope.mp4" in capsys.readouterr().err
    assert main(_track_args(tmp_path, tmp_path / "missing.safetensors", tmp_path / "out")) == 1  # empty folder
    assert "no images" in capsys.readouterr().err


def test_missing_checkpoint(folder, tmp_path, capsys):
    assert main(_track_args(folder, tmp_path / "missing.safetensors", tmp_path / "out")) == 1
    assert "missing.safetensors" in capsys.readouterr().err


def test_empty_and_unreadable_videos(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.mp4"):
        open_source(tmp_path / "empty.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 4096)
    with pytest.raises(ValueError, match="junk.mp4"):
        src = open_source(tmp_path / "junk.mp4")
        list(src)


def test_box_outside_image(video, checkpoint, tmp_path, capsys):
    args = _track_args(video, checkpoint, tmp_path / "out")
    args[args.index("--box") + 1] = "500,10,20,20"
    assert main(args) == 1
    assert "outside the 96x72 image" in capsys.readouterr().err
    assert not (tmp_path / "out" / "clip_boxes.txt").exists()
    with pytest.raises(ValueError, match="4 numbers"):
        parse_box("1,2,3")
    with pytest.raises(ValueError, match="not 4 numbers"):
        parse_box("1,2,x,4")


def test_bad_set_key(folder, checkpoint, tmp_path, capsys):
    assert main(_track_args(folder, checkpoint, tmp_path / "out", "--set", "bogus=1")) == 1
    assert "bogus" in capsys.readouterr().err


# ------------------------------------------------------------------------------ writers
def test_atomic_writers(tmp_path):
    frame = _frame(0)
    with pytest.raises(RuntimeError):
        with AtomicVideoWriter(tmp_path / "v.mp4", 5) as w:
            w.write(frame)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []  # failed: neither the final nor a temporary file
    with AtomicVideoWriter(tmp_path / "v.mp4", 5) as w:
        w.write(frame)
        w.write(cv2.resize(frame, (50, 40)))  # other sizes are resized to the first
    assert (tmp_path / "v.mp4").stat().st_size > 0 and w.frames == 2
    write_boxes(tmp_path / "b.txt", [[1, 2, 3, 4], [5.5, 6, 7, 8]])
    assert (tmp_path / "b.txt").read_text() == "1.000,2.000,3.000,4.000\n5.500,6.000,7.000,8.000\n"


def test_draw_tracking_draws_box_without_touching_input():
    frame = np.zeros((60, 80, 3), np.uint8)
    out = draw_tracking(frame, (10, 10, 30, 20), 0.9, fps=12.3)
    assert frame.sum() == 0 and out.shape == frame.shape
    edge = out[30, 15:35]  # bottom edge of the box (y + h = 30) is green
    assert (edge[:, 1] > 200).all() and (edge[:, 0] < 60).all()
    assert out[40:, :].sum() == 0  # nothing below the box
    assert draw_tracking(frame, (np.nan, 0, 1, 1), None).sum() == 0  # nothing to draw


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        with AtomicVideoWriter(tmp_path / "v.mp4", 5) as w:
            w.write(_frame(0))
        write_boxes(tmp_path / "b.txt", [[1, 2, 3, 4]])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "v.mp4").stat().st_mode) == mode  # as open() would create it
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == mode


def test_track_prints_precision_and_accepts_aliases(folder, checkpoint, tmp_path, capsys):
    assert main(_track_args(folder, checkpoint, tmp_path / "o", "--no-video", "--max-frames", "3",
                            "--dtype", "fp32")) == 0
    out = capsys.readouterr().out
    assert "precision float32" in out and "geometry: template 28px, search 56px, grid 4" in out
    with pytest.raises(SystemExit):
        main(_track_args(folder, checkpoint, tmp_path / "o", "--dtype", "float64"))
    assert "float64" in capsys.readouterr().err
