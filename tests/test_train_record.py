"""The training record: model config in train_config.json and checkpoints, resume checks, log cut-back."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

import lorat
from lorat.cli import main
from lorat.config import TrainConfig
from lorat.models.registry import get_preset
from lorat.train.checkpoint import checkpoint_record, latest_checkpoint
from lorat.train.record import TrainRecord, record_changes, truncate_metrics
from lorat.train.trainer import train
from train_helpers import TINY, losses, make_synth_root, metrics, small_cfg, weights

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return make_synth_root(tmp_path_factory.mktemp("synth"))


def test_record_round_trip_and_older_flat_layout(tmp_path):
    model_cfg = lorat.models.registry.resolve_config("lorat-s-224", **TINY)
    rec = TrainRecord(TrainConfig(epochs=3, datasets=("lasot_train",)), model_cfg)
    rec.write(tmp_path / "r.json")
    back = TrainRecord.read(tmp_path / "r.json")
    assert back.train == rec.train and back.model == model_cfg and back.model.lora_alpha == 8.0
    # a train_config.json of an earlier version held only the TrainConfig fields
    (tmp_path / "old.json").write_text(json.dumps(asdict(TrainConfig(epochs=7))))
    old = TrainRecord.read(tmp_path / "old.json")
    assert old.train.epochs == 7 and old.model is None
    (tmp_path / "bad.json").write_text('{"train": {"epochz": 1}, "model": null}')
    with pytest.raises(ValueError, match=r"bad.json: unreadable train config .*epochz"):
        TrainRecord.read(tmp_path / "bad.json")
    changed = TrainRecord(TrainConfig(epochs=3, datasets=("lasot_train",), output_dir="elsewhere", num_workers=0,
                                      batch_size=32), model_cfg)
    assert record_changes(rec, changed) == ["train.batch_size: 128 -> 32"]  # output_dir, num_workers may change


def test_truncate_metrics_by_lines_or_steps(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "loss": 1.0} for s in (1, 2, 3)] + [{"step": 3, "val_loss": 0.5}, {"step": 4, "loss": 1.0}]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    path.write_text(text + '{"step": 5, "lo')  # torn by a kill during the write
    assert truncate_metrics(path, 3, lines=4) == 4
    assert [json.loads(x) for x in path.read_text().splitlines()] == rows[:4]
    path.write_text(text)
    assert truncate_metrics(path, 2) == 3  # no line count (older checkpoint): by step
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2]
    assert truncate_metrics(path, 2, lines=2) == 3 and len(path.read_text().splitlines()) == 2


def test_record_in_train_config_and_checkpoints(synth_root, tmp_path):
    out = tmp_path / "run"
    cfg = small_cfg(synth_root, out)
    train(cfg, TINY, stop_after_steps=2)
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["train"]["batch_size"] == 8 and saved["model"]["lora_alpha"] == 8.0
    assert saved["model"]["embed_dim"] == 32 and saved["model"]["name"] == "lorat-s-224"
    rec = checkpoint_record(latest_checkpoint(out))
    assert rec.train == cfg and rec.model.lora_r == 4 and rec.model.drop_path == 0.1


def test_resume_with_changed_settings_fails_naming_them(synth_root, tmp_path):
    out = tmp_path / "run"
    train(small_cfg(synth_root, out), TINY, stop_after_steps=2)
    with pytest.raises(ValueError, match=r"train\.batch_size: 8 -> 16"):
        train(small_cfg(synth_root, out, batch_size=16), TINY, resume=True)
    with pytest.raises(ValueError, match=r"model\.lora_alpha: 8\.0 -> 128\.0"):
        train(small_cfg(synth_root, out), dict(TINY, lora_alpha=128.0), resume=True)
    assert latest_checkpoint(out).name == "step_00000002"  # refused before anything was written
    # accepted explicitly: the new value is used, recorded and stored in the final weights
    done = train(small_cfg(synth_root, out), dict(TINY, lora_alpha=128.0), resume=True, accept_changes=True)
    assert done["status"] == "finished" and done["step"] == 8
    assert json.loads((out / "train_config.json").read_text())["model"]["lora_alpha"] == 128.0
    assert lorat.load_checkpoint(out / "model_final.safetensors").cfg.lora_alpha == 128.0
    assert checkpoint_record(latest_checkpoint(out)).model.lora_alpha == 128.0


def _cli_args(root: Path, out: Path) -> list[str]:
    args = ["train", "--preset", "lorat-s-224", "--output", str(out), "--set", "datasets=got10k_train",
            "--set", f"dataset_roots=got10k_train={root}", "--set", "val_dataset=none", "--set", "epochs=1",
            "--set", "samples_per_epoch=32", "--set", "batch_size=8", "--set", "num_workers=0",
            "--set", "device=cpu", "--set", "amp=fp32", "--set", "log_every=1", "--set", "eval_benchmarks="]
    return args + [f"--model-set={k}={v}" for k, v in TINY.items()] + ["--model-set=lora_alpha=16"]


def test_cli_resume_restores_the_record_and_config_reproduces_the_run(synth_root, tmp_path, capsys):
    from lorat.train.command import add_train_arguments, build_config

    out = tmp_path / "cli"
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    cfg, model_cfg = build_config(parser.parse_args(_cli_args(synth_root, out)[1:] + ["--set", "max_steps=2"]))
    assert cfg.eval_benchmarks == () and model_cfg.lora_alpha == 16.0 and model_cfg.embed_dim == 32
    assert build_config(parser.parse_args(["--set", "eval_benchmarks=[]"]))[0].eval_benchmarks == ()
    assert main(_cli_args(synth_root, out) + ["--set", "max_steps=2"]) == 0  # a run stopped after 2 of 4 steps
    # a bare --resume brings the checkpoint's settings back (only max_steps, a free field, is changed) ...
    assert main(["train", "--output", str(out), "--resume", "--set", "max_steps=none", "--set", "batch_size=16"]) == 1
    assert "train.batch_size: 8 -> 16" in capsys.readouterr().err
    assert main(["train", "--output", str(out), "--resume", "--model-set", "lora_alpha=32"]) == 1
    assert "model.lora_alpha: 16.0 -> 32.0" in capsys.readouterr().err
    assert main(["train", "--output", str(out), "--resume", "--set", "max_steps=none"]) == 0
    assert sorted(losses(out)) == [1, 2, 3, 4]
    # ... and --config train_config.json reproduces the run, --model-set values included
    again = tmp_path / "again"
    assert main(["train", "--config", str(out / "train_config.json"), "--output", str(again)]) == 0
    assert losses(again) == losses(out)
    a, b = weights(out / "model_final.safetensors"), weights(again / "model_final.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert lorat.load_checkpoint(again / "model_final.safetensors").cfg.lora_alpha == 16.0
    assert get_preset("lorat-s-224").lora_alpha != 16.0  # the value came from the record, not the preset


_KILLED_RUN = """
import json, os, signal, sys
from lorat.config import TrainConfig, from_dict
from lorat.train.task import LoRATTask
from lorat.train.trainer import train

class KillAtStep6(LoRATTask):
    def on_step(self, ctx):
        if ctx.step == 5:  # 5 steps done (and logged), the checkpoint is at step 4
            os.kill(os.getpid(), signal.SIGKILL)

train(from_dict(TrainConfig, json.loads(sys.argv[1])), json.loads(sys.argv[2]), task=KillAtStep6)
"""


def test_kill9_then_resume_logs_every_step_once(synth_root, tmp_path):
    out = tmp_path / "killed"
    cfg = small_cfg(synth_root, out, checkpoint_every_steps=2, checkpoint_every=100)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run([sys.executable, "-c", _KILLED_RUN, json.dumps(asdict(cfg)), json.dumps(TINY)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert [r["step"] for r in metrics(out) if "loss" in r] == [1, 2, 3, 4, 5]
    assert latest_checkpoint(out).name == "step_00000004"
    done = train(cfg, TINY, resume=True)
    assert done["status"] == "finished" and done["step"] == 8
    recs = metrics(out)
    assert [r["step"] for r in recs if "loss" in r] == list(range(1, 9))
    assert [r["step"] for r in recs if "val_loss" in r] == [4, 8]
    assert (out / "tensorboard").is_dir()


def test_bad_eval_benchmark_fails_before_training(synth_root, tmp_path):
    out = tmp_path / "ev"
    with pytest.raises(ValueError, match=r"eval_benchmarks=\['nope'\]: unknown benchmark 'nope'"):
        train(small_cfg(synth_root, out, eval_benchmarks=("nope",)), TINY)
    assert not (out / "metrics.jsonl").exists() and not (out / "checkpoints").exists()
    with pytest.raises(ValueError, match="malformed"):
        train(small_cfg(synth_root, out, eval_benchmarks=("[]",)), TINY)
