"""`lorat demo` runs end to end (quick plan) and resumes without redoing finished stages."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lorat.cli import main
from lorat.demo import (
    DEMO_MODEL,
    OFFICIAL_LABEL,
    SHIPPED_PRETRAINED,
    DemoPlan,
    _pretrain_phrase,
    export_pretrained,
    run_demo_pipeline,
    shipped_pretrained,
)
from lorat.demo_peers import OPENCV_PEERS
from lorat.hub import load_checkpoint, read_state_file, save_checkpoint
from lorat.track.tracker import TrackConfig, Tracker


def test_demo_quick_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "demo"
    numbers = run_demo_pipeline(out, DemoPlan.quick())
    assert set(numbers["auc"]) == {"LoRAT (LoRA on B)", "full fine-tuning on B", "domain-A model as is",
                                   "repeat first box", OFFICIAL_LABEL, *OPENCV_PEERS}
    # The peers ran through the same metric code, with timing files (so an fps).
    assert all(numbers["fps"][name] > 0 for name in OPENCV_PEERS)
    assert all(0.0 <= v <= 100.0 for v in numbers["auc"].values())
    lora, full = numbers["trainable"]["LoRAT (LoRA on B)"], numbers["trainable"]["full fine-tuning on B"]
    assert 0 < lora < full
    report = (out / "report.md").read_text()
    assert "| LoRAT (LoRA on B) |" in report and "repeat first box" in report and "| OpenCV CSRT |" in report
    assert "What you are seeing" in report
    for rel in ("plots/success_plot.png", "frames.png", "results.json",
                "pretrain_A/backbone_dinov2_layout.safetensors"):
        assert (out / rel).is_file(), rel
    assert list(out.glob("*.mp4")), "annotated video missing"
    assert json.loads((out / "results.json").read_text())["auc"] == numbers["auc"]
    # the shipped stand-in was used: no domain-A data, no pretraining stage, its recipe in the report
    assert not (out / "data" / "domain_A").exists() and not (out / "pretrain_A" / "summary.json").exists()
    assert numbers["pretrain"]["offline"] is True and "pretrain_A" not in numbers["steps"]
    assert "shipped with the package" in report
    # every stage trained with the demo's augmentation overrides, recorded in its training record
    for stage in ("lora_B", "full_B"):
        record = json.loads((out / stage / "train_config.json").read_text())
        assert record["train"]["augment"] == list(DemoPlan.quick().augment), stage
        assert record["train"]["augment"] == ["deit3=false", "translation_jitter=1.0"], stage
        # ... and the demo's crop geometry (search area factor 3, not LoRAT's 4)
        assert record["model"]["search_area_factor"] == DEMO_MODEL.search_area_factor == 3.0, stage
    # the saved weights carry that geometry, so the report's tracker crops 3x the target too
    tracker = Tracker(load_checkpoint(out / "lora_B" / "model_final.safetensors"), TrackConfig(device="cpu"))
    assert tracker.search_area_factor == 3.0
    # A second run reuses every finished stage (and the CLI prints where the report is).
    capsys.readouterr()
    assert main(["demo", "--quick", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("already trained") == 2
    assert f"report: {out / 'report.md'}" in printed
    # --pretrain on this folder is refused before any work (no domain-A data generated)
    assert main(["demo", "--quick", "--pretrain", "--output", str(out)]) == 1
    assert "rerun it without --pretrain" in capsys.readouterr().err
    assert not (out / "data" / "domain_A").exists()


def test_demo_pretrain_inside_the_run(tmp_path, capsys):
    # --pretrain: the stand-in is trained on generated domain-A data within the run, with the demo's recipe
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--pretrain", "--output", str(out)]) == 0
    numbers = json.loads((out / "results.json").read_text())
    assert numbers["pretrain"]["offline"] is False and numbers["steps"]["pretrain_A"] == DemoPlan.quick().pretrain_steps
    record = json.loads((out / "pretrain_A" / "train_config.json").read_text())
    assert record["train"]["augment"] == ["deit3=false", "translation_jitter=1.0"]
    assert record["model"]["peft"] == "full" and record["model"]["embed_dim"] == DEMO_MODEL.embed_dim
    assert "inside this run" in (out / "report.md").read_text()
    capsys.readouterr()
    assert main(["demo", "--quick", "--pretrain", "--output", str(out)]) == 0
    assert capsys.readouterr().out.count("already trained") == 3
    # the finished stages adapted this stand-in: the shipped one may not be mixed into the same folder
    assert main(["demo", "--quick", "--output", str(out)]) == 1
    assert "rerun it with --pretrain, or pass another --output" in capsys.readouterr().err


def test_shipped_pretrained_model_fits_the_demo_and_says_how_it_was_made():
    path, recipe = shipped_pretrained()
    assert path == SHIPPED_PRETRAINED
    assert recipe["steps"] > 0 and recipe["batch_size"] > 0 and recipe["sequences"] > 0
    model = load_checkpoint(path)
    assert model.cfg.embed_dim == DEMO_MODEL.embed_dim and model.cfg.search_area_factor == 3.0
    assert all(p.dtype == torch.float32 for p in model.parameters())  # float16 on disk, float32 in the model
    tensors, _ = read_state_file(path)
    assert {t.dtype for t in tensors.values()} == {torch.float16}


def test_report_phrase_lists_every_pretraining_stage_of_a_continued_stand_in():
    first = {"steps": 100, "batch_size": 8, "sequences": 10, "seconds": 120.0}
    second = {"steps": 50, "batch_size": 16, "sequences": 30, "seconds": 60.0, "continued_from": first}
    one = _pretrain_phrase({**first, "offline": True})
    assert one.startswith("100 steps of 8 pairs from 10 sequences, 2 min") and "shipped" in one
    both = _pretrain_phrase({**second, "offline": True})
    assert both.startswith("100 steps of 8 pairs from 10 sequences, then 50 steps of 16 pairs from 30 sequences, "
                           "3 min")
    assert _pretrain_phrase({**first, "offline": False}) == "100 steps of 8 pairs from 10 sequences, inside this run"


def test_shipped_pretrained_problems_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="--pretrain"):
        shipped_pretrained(tmp_path / "missing.safetensors")
    model = load_checkpoint(SHIPPED_PRETRAINED)
    plain = tmp_path / "plain.safetensors"
    save_checkpoint(model, plain)  # a lorat checkpoint without the recipe header
    with pytest.raises(ValueError, match="demo_recipe"):
        shipped_pretrained(plain)
    other = load_checkpoint(SHIPPED_PRETRAINED, search_area_factor=4.0)
    save_checkpoint(other, tmp_path / "other_full.safetensors")
    export_pretrained(tmp_path / "other_full.safetensors", tmp_path / "other.safetensors", {"steps": 1})
    with pytest.raises(ValueError, match="search_area_factor=4.0"):
        shipped_pretrained(tmp_path / "other.safetensors")


def test_shipped_pretrained_model_tracks_unseen_domain_a_sequences(tmp_path):
    # The shipped file is a trained tracker, not a placeholder: on domain-A sequences of a seed it was not
    # trained on, its mean IoU is far above that of repeating the first box.
    from lorat.data.datasets import load_benchmark
    from lorat.data.images import read_image
    from lorat.data.synthetic import SyntheticConfig, make_synthetic_benchmark
    from lorat.eval.metrics import iou_xywh

    make_synthetic_benchmark(tmp_path / "A", SyntheticConfig(domain="A", seed=77, frames_per_sequence=30),
                             num_train=0, num_val=4)
    tracker = Tracker(load_checkpoint(SHIPPED_PRETRAINED), TrackConfig(device="cpu", size_lr=0.15, verbose=False))
    tracked, first = [], []
    for s in load_benchmark("got10k_val", tmp_path / "A"):
        tracker.initialize(read_image(s.frames[0]), s.boxes[0])
        boxes = np.array([tracker.track(read_image(f))[0] for f in s.frames[1:]])
        gt = s.boxes[1:]
        ok = np.isfinite(gt).all(1) & (gt[:, 2] > 0)
        tracked.append(iou_xywh(boxes[ok], gt[ok]).mean())
        first.append(iou_xywh(np.repeat(s.boxes[:1], ok.sum(), axis=0), gt[ok]).mean())
    assert np.mean(tracked) > np.mean(first) + 0.15, (tracked, first)


@pytest.fixture
def adaptation_inputs(tmp_path):
    """Tiny domain-B training data and the shipped stand-in's backbone, as the demo's adaptation stages take them."""
    from lorat.data.synthetic import SyntheticConfig, make_synthetic_benchmark
    from lorat.hub import export_dinov2

    data = tmp_path / "domain_B"
    make_synthetic_benchmark(data, SyntheticConfig(domain="B", seed=3, frames_per_sequence=12), num_train=3,
                             num_val=0, progress=False)
    backbone = tmp_path / "backbone.safetensors"
    export_dinov2(load_checkpoint(SHIPPED_PRETRAINED), backbone)
    return data, backbone


def _stage(name, out, data, backbone, steps, peft="full"):
    return (name, out, DemoPlan.quick(), steps, data, {"peft": peft}, backbone, 1e-3)


def test_adaptation_stages_side_by_side_match_their_records(tmp_path, adaptation_inputs, capsys):
    from lorat.demo import _adapt_side_by_side

    data, backbone = adaptation_inputs
    out = tmp_path / "out"
    torch.set_num_threads(2)
    first, second = _adapt_side_by_side(_stage("lora_B", out, data, backbone, 3, "lora"),
                                        _stage("full_B", out, data, backbone, 3), out)
    assert torch.get_num_threads() == 2  # restored after the stage
    assert first["status"] == second["status"] == "finished" and first["step"] == second["step"] == 3
    assert second == json.loads((out / "full_B" / "summary.json").read_text())
    assert 0 < first["trainable_params"] < second["trainable_params"]
    for stage, peft in (("lora_B", "lora"), ("full_B", "full")):  # each process trained its own stage's recipe
        record = json.loads((out / stage / "train_config.json").read_text())
        assert record["model"]["peft"] == peft and record["train"]["lr"] == 1e-3, stage
        assert record["train"]["output_dir"] == str(out / stage), stage
    log = (out / "full_B" / "train.log").read_text()
    assert "[train] done: 3 steps" in log  # the second process wrote its output there ...
    printed = capsys.readouterr().out
    assert "training alongside lora_B" in printed and "[demo] full_B: [train] done: 3 steps" in printed  # ... echoed


def test_side_by_side_failure_of_the_other_stage_names_its_log(tmp_path, adaptation_inputs):
    from lorat.demo import _adapt_side_by_side

    data, backbone = adaptation_inputs
    out = tmp_path / "out"
    torch.set_num_threads(2)
    with pytest.raises(RuntimeError, match=r"full_B stage stopped \(exit code 1\)(.|\n)*train\.log(.|\n)*no_such"):
        _adapt_side_by_side(_stage("lora_B", out, data, backbone, 2, "lora"),
                            _stage("full_B", out, tmp_path / "no_such_data", backbone, 2), out)
    assert (out / "lora_B" / "summary.json").is_file()  # this process's stage finished regardless


def test_interrupting_side_by_side_checkpoints_the_other_stage_and_a_rerun_resumes(tmp_path, adaptation_inputs,
                                                                                     monkeypatch, capsys):
    import time

    import lorat.demo as demo

    data, backbone = adaptation_inputs
    out = tmp_path / "out"
    log = out / "full_B" / "train.log"

    def interrupted_stage(*args):  # this process's stage: Ctrl-C once the other one is training
        deadline = time.monotonic() + 120
        while "| 1/30" not in (log.read_text() if log.is_file() else ""):
            assert time.monotonic() < deadline, "the second stage did not start"
            time.sleep(0.2)
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "_train_stage", interrupted_stage)
    torch.set_num_threads(2)
    second = _stage("full_B", out, data, backbone, 30)
    with pytest.raises(KeyboardInterrupt):
        demo._adapt_side_by_side(_stage("lora_B", out, data, backbone, 30, "lora"), second, out)
    assert torch.get_num_threads() == 2
    # the other stage got one SIGTERM: it finished its step and wrote a checkpoint, not a final model
    assert "signal 15" in log.read_text()
    assert list((out / "full_B" / "checkpoints").iterdir()) and not (out / "full_B" / "summary.json").exists()
    monkeypatch.undo()
    capsys.readouterr()
    summary = demo._train_stage(*second)  # a rerun continues from that checkpoint
    assert summary["status"] == "finished" and summary["step"] == 30
    assert "[train] resumed from" in capsys.readouterr().out
