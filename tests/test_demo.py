"""`lorat demo` runs end to end (quick plan) and resumes without redoing finished stages."""
from __future__ import annotations

import json

from lorat.cli import main
from lorat.demo import DEMO_MODEL, OFFICIAL_LABEL, DemoPlan, run_demo_pipeline
from lorat.demo_peers import OPENCV_PEERS
from lorat.hub import load_checkpoint
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
    # every stage trained with the demo's augmentation overrides, recorded in its training record
    for stage in ("pretrain_A", "lora_B", "full_B"):
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
    assert printed.count("already trained") == 3
    assert f"report: {out / 'report.md'}" in printed
