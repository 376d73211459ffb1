"""`lorat track` / `lorat eval` with OSTrack-architecture models: a lorat file, an official-style `.pth.tar`
with `--preset`, and a bare `--preset` (untrained head) with `--set` architecture overrides."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import lorat
from lorat.cli import main
from lorat.data.synthetic import SyntheticConfig, make_synthetic_benchmark

SMALL = dict(embed_dim=32, depth=1, num_heads=2, head_channels=16)
SETS = [f"{k}={v}" for k, v in SMALL.items()]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("ostrack_cli")
    torch.manual_seed(0)
    model = lorat.create_model("loretrack-b-128", **SMALL)
    lorat.save_checkpoint(model, root / "tiny_loretrack.safetensors")
    official = lorat.create_model("ostrack-b-256", **SMALL)
    torch.save({"net": official.state_dict(), "epoch": 300}, root / "OSTrack_ep0300.pth.tar")
    got = root / "got10k"
    make_synthetic_benchmark(got, SyntheticConfig(frames_per_sequence=12, image_size=(96, 72)), num_train=0,
                             num_val=3, progress=False)
    return {"lorat_file": root / "tiny_loretrack.safetensors", "official": root / "OSTrack_ep0300.pth.tar",
            "got": got, "model": model}


def _boxes(path):
    lines = path.read_text().replace("\t", ",").splitlines()  # track writes commas, GOT-10k results tabs
    return np.array([[float(v) for v in line.split(",")] for line in lines])


def test_track_with_a_lorat_file_matches_the_python_tracker(assets, tmp_path):
    seq = assets["got"] / "val" / "GOT-10k_Val_000001"
    first = (seq / "groundtruth.txt").read_text().splitlines()[0]
    assert main(["track", str(seq), "--box", first, "--checkpoint", str(assets["lorat_file"]), "--output",
                 str(tmp_path), "--dtype", "float32", "--device", "cpu", "--quiet"]) == 0
    boxes = _boxes(tmp_path / "GOT-10k_Val_000001_boxes.txt")
    assert boxes.shape == (12, 4)
    np.testing.assert_allclose(boxes[0], [float(v) for v in first.split(",")], atol=1e-3)
    # the same boxes as lorat.Tracker on the decoded frames (the CLI dispatches to OSTrackTracker)
    from lorat.data.sampler import read_image_rgb

    frames = [read_image_rgb(p) for p in sorted(seq.glob("*.jpg"))]
    tr = lorat.Tracker(lorat.load_checkpoint(assets["lorat_file"]),
                       lorat.TrackConfig(device="cpu", dtype="float32", verbose=False))
    tr.initialize(frames[0], boxes[0])
    for t in range(1, len(frames)):
        box, _ = tr.track(frames[t])
        np.testing.assert_allclose(box, boxes[t], atol=2e-3)  # the file keeps a few decimals


def test_eval_official_pth_tar_with_preset(assets, tmp_path):
    out = tmp_path / "results"
    assert main(["eval", "--benchmark", "got10k_val", "--root", f"got10k_val={assets['got']}", "--checkpoint",
                 str(assets["official"]), "--preset", "ostrack-b-256", "--set", *SETS, "--name", "ost",
                 "--output", str(out), "--batch", "2", "--device", "cpu", "--quiet"]) == 0
    files = sorted((out / "ost" / "got10k_val").glob("GOT-10k_Val_00000?.txt"))
    assert len(files) == 3
    for f in files:
        b = _boxes(f)
        assert b.shape == (12, 4) and np.isfinite(b).all() and (b[1:, 2:] >= 10 - 1e-6).all()  # clip margin


def test_track_and_eval_with_bare_presets(assets, tmp_path):
    seq = assets["got"] / "val" / "GOT-10k_Val_000002"
    first = (seq / "groundtruth.txt").read_text().splitlines()[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "untrained head"
        assert main(["track", str(seq), "--box", first, "--preset", "ostrack-b-256", "--set", *SETS, "--output",
                     str(tmp_path), "--device", "cpu", "--quiet"]) == 0
        assert _boxes(tmp_path / "GOT-10k_Val_000002_boxes.txt").shape == (12, 4)
        assert main(["eval", "--benchmark", "got10k_val", "--root", f"got10k_val={assets['got']}", "--preset",
                     "loretrack-b-128", "--set", *SETS, "--name", "lt", "--output", str(tmp_path / "r"),
                     "--device", "cpu", "--quiet"]) == 0
    assert len(list((tmp_path / "r" / "lt" / "got10k_val").glob("GOT-10k_Val_00000?.txt"))) == 3
