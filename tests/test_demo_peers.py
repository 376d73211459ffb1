"""OpenCV peers: they follow a moving target and write results that the scoring code reads."""
from __future__ import annotations

import numpy as np
import pytest

from lorat.data.datasets import load_benchmark
from lorat.data.synthetic import SyntheticConfig, make_synthetic_benchmark
from lorat.demo_peers import OPENCV_PEERS, make_opencv_tracker, run_opencv_peer, run_opencv_peers, track_opencv


def test_every_peer_exists():
    for factory in OPENCV_PEERS.values():
        assert make_opencv_tracker(factory) is not None


def test_csrt_follows_a_synthetic_target_and_resumes(tmp_path):
    root = make_synthetic_benchmark(tmp_path / "b", SyntheticConfig(domain="B", seed=3, frames_per_sequence=10,
                                                                     num_distractors=(0, 0), occlusion_rate=0.0,
                                                                     exit_prob=0.0),
                                    num_train=0, num_val=1, progress=False)
    seq = load_benchmark("got10k_val", root)[0]
    boxes, times = track_opencv(OPENCV_PEERS["OpenCV CSRT"], seq.frames, seq.boxes[0])
    assert boxes.shape == (10, 4) and times.shape == (10,) and (times > 0).all()
    np.testing.assert_allclose(boxes[0], seq.boxes[0])
    # the centre stays near the target's (a box that stayed put would drift off a moving target)
    centre = boxes[:, :2] + boxes[:, 2:] / 2
    true = seq.boxes[:, :2] + seq.boxes[:, 2:] / 2
    assert np.abs(centre - true).max() < seq.boxes[:, 2:].max()
    folder = tmp_path / "res"
    run_opencv_peer(OPENCV_PEERS["OpenCV CSRT"], [seq], folder)
    written = np.loadtxt(folder / f"{seq.name}.txt")
    assert written.shape == (10, 4) and (folder / f"{seq.name}_time.txt").is_file()
    (folder / f"{seq.name}.txt").write_text("marker\n")  # a finished sequence is not redone
    run_opencv_peer(OPENCV_PEERS["OpenCV CSRT"], [seq], folder)
    assert (folder / f"{seq.name}.txt").read_text() == "marker\n"


def test_peers_on_two_processes_write_what_one_process_writes(tmp_path):
    root = make_synthetic_benchmark(tmp_path / "b", SyntheticConfig(domain="B", seed=4, frames_per_sequence=8),
                                    num_train=0, num_val=2, progress=False)
    seqs = load_benchmark("got10k_val", root)
    peers = {k: OPENCV_PEERS[k] for k in ("OpenCV CSRT", "OpenCV KCF")}
    serial = {k: tmp_path / "serial" / k for k in peers}
    pooled = {k: tmp_path / "pooled" / k for k in peers}
    run_opencv_peers(peers, seqs, serial, workers=1)
    run_opencv_peers(peers, seqs, pooled, workers=2)
    for k in peers:
        for s in seqs:
            one, two = np.loadtxt(serial[k] / f"{s.name}.txt"), np.loadtxt(pooled[k] / f"{s.name}.txt")
            assert one.shape == (8, 4)
            np.testing.assert_array_equal(one, two)
            assert np.loadtxt(pooled[k] / f"{s.name}_time.txt").shape == (8,)
    broken = seqs[0].frames[3]
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="cannot read frame"):
        run_opencv_peers(peers, seqs[:1], {k: tmp_path / "again" / k for k in peers}, workers=2)
