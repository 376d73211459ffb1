"""End to end through the CLI: `lorat track`, `lorat eval` on LaSOT- and GOT-10k-format benchmarks,
`lorat analyze`, and a `lorat eval` killed halfway that resumes to the same result files."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import lorat
from fake_datasets import make_fake_lasot
from lorat.cli import main
from lorat.data.synthetic import SyntheticConfig, make_synthetic_benchmark

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    torch.manual_seed(0)
    model = lorat.create_model("lorat-s-224", embed_dim=32, depth=2, num_heads=2, template_size=28, search_size=56,
                               lora_r=4, lora_alpha=8.0)
    ckpt = root / "tiny.safetensors"
    lorat.save_checkpoint(model, ckpt)
    got = root / "got10k"
    make_synthetic_benchmark(got, SyntheticConfig(frames_per_sequence=40, image_size=(96, 72)), num_train=0,
                             num_val=6, progress=False)
    lasot = root / "lasot"
    make_fake_lasot(lasot)
    return {"ckpt": ckpt, "got": got, "lasot": lasot}


def test_track_a_generated_sequence(assets, tmp_path):
    seq = assets["got"] / "val" / "GOT-10k_Val_000001"
    first = (seq / "groundtruth.txt").read_text().splitlines()[0]
    assert main(["track", str(seq), "--box", first, "--checkpoint", str(assets["ckpt"]), "--output",
                 str(tmp_path), "--quiet"]) == 0
    boxes = (tmp_path / "GOT-10k_Val_000001_boxes.txt").read_text().splitlines()
    assert len(boxes) == 40
    assert [float(v) for v in boxes[0].split(",")] == pytest.approx([float(v) for v in first.split(",")], abs=1e-3)
    assert (tmp_path / "GOT-10k_Val_000001_tracked.mp4").stat().st_size > 0


def test_eval_two_formats_then_analyze(assets, tmp_path):
    out = tmp_path / "results"
    assert main(["eval", "--benchmark", "lasot", "got10k_val", "--root", f"lasot={assets['lasot']}",
                 f"got10k_val={assets['got']}", "--checkpoint", str(assets["ckpt"]), "--name", "tiny",
                 "--output", str(out), "--batch", "2", "--quiet"]) == 0
    assert sorted(p.stem for p in (out / "tiny" / "lasot").glob("*-?.txt")) == ["cat-1", "dog-1"]
    assert len(list((out / "tiny" / "got10k_val").glob("GOT-10k_Val_00000?.txt"))) == 6
    report = tmp_path / "lasot.json"
    assert main(["analyze", "--dataset", "lasot", "--root", str(assets["lasot"]), "--results",
                 str(out / "tiny" / "lasot"), "--json", str(report), "--plots", str(tmp_path / "plots"),
                 "--quiet"]) == 0
    doc = json.loads(report.read_text())
    scores = doc["trackers"]["lasot"]["overall"]
    assert 0.0 <= scores["auc"] <= 100.0 and set(doc["trackers"]["lasot"]["sequences"]) == {"cat-1", "dog-1"}
    assert (tmp_path / "plots" / "success_plot.png").is_file()


def _eval_cmd(assets, out: Path) -> list[str]:
    return [sys.executable, "-m", "lorat.cli", "eval", "--benchmark", "got10k_val", "--root", str(assets["got"]),
            "--checkpoint", str(assets["ckpt"]), "--name", "tiny", "--output", str(out), "--batch", "1",
            "--workers", "0", "--quiet"]


def _boxes(out: Path) -> dict[str, bytes]:
    folder = out / "tiny" / "got10k_val"
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.txt")) if not p.name.endswith("_time.txt")}


def test_killed_eval_resumes_to_the_same_files(assets, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    subprocess.run(_eval_cmd(assets, clean), check=True, env=env, capture_output=True)
    reference = _boxes(clean)
    assert len(reference) == 6

    proc = subprocess.Popen(_eval_cmd(assets, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not _boxes(killed):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_at_kill = _boxes(killed)
    assert 1 <= len(done_at_kill) < 6, "the kill should land while sequences are still running"
    for name, data in done_at_kill.items():  # what exists is complete (written atomically)
        assert data == reference[name], name

    subprocess.run(_eval_cmd(assets, killed), check=True, env=env, capture_output=True)
    assert _boxes(killed) == reference
