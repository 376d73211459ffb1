"""The training loop: exact resume, DDP equivalence, checkpoints, CLI errors."""
from __future__ import annotations

import json
import os
import socket
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import lorat
from lorat.hub import read_state_file
from lorat.train.trainer import RankBatches, latest_checkpoint, train
from train_helpers import TINY, assert_same_weights, losses, make_synth_root, small_cfg, weights


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return make_synth_root(tmp_path_factory.mktemp("synth"))


_cfg, _losses, _weights = small_cfg, losses, weights


def test_rank_batches_cover_each_global_batch_once():
    parts = [list(RankBatches(steps=3, batch=8, accum=2, rank=r, world=2)) for r in range(2)]
    assert all(len(p) == 6 for p in parts)
    flat = sorted(i for p in parts for mb in p for i in mb)
    assert flat == list(range(24))
    resumed = list(RankBatches(steps=3, batch=8, accum=2, rank=0, world=2, start_step=2))
    assert resumed == parts[0][4:]
    with pytest.raises(ValueError, match="divisible"):
        RankBatches(steps=1, batch=6, accum=4, rank=0, world=1)


def test_resume_reproduces_an_uninterrupted_run(synth_root, tmp_path):
    clean = train(_cfg(synth_root, tmp_path / "clean"), dict(TINY, peft="lora"))
    assert clean["status"] == "finished" and clean["step"] == 8
    # Interrupt in the middle of epoch 0, then continue from the checkpoint written at the interruption.
    part = train(_cfg(synth_root, tmp_path / "resumed"), dict(TINY, peft="lora"), stop_after_steps=3)
    assert part["status"] == "interrupted" and part["step"] == 3
    ckpt = latest_checkpoint(tmp_path / "resumed")
    assert ckpt is not None and ckpt.name == "step_00000003"
    done = train(_cfg(synth_root, tmp_path / "resumed"), dict(TINY, peft="lora"), resume=True)
    assert done["status"] == "finished" and done["step"] == 8
    assert _losses(tmp_path / "resumed") == _losses(tmp_path / "clean")
    a = assert_same_weights(tmp_path / "clean" / "model_final.safetensors",
                            tmp_path / "resumed" / "model_final.safetensors")
    # Training checkpoints hold exactly the trainable tensors, and training moved them.
    first = read_state_file(ckpt / "model.safetensors")[0]
    assert set(first) == {k for k in a if ".lora." in k or k.startswith("head.") or k == "token_type_embed"}
    assert not torch.equal(first["token_type_embed"], a["token_type_embed"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, root: str, out: str, result: dict):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    cfg = _cfg(Path(root), Path(out), epochs=1, samples_per_epoch=24, val_samples=0, val_dataset=None)
    result[rank] = train(cfg, dict(TINY, drop_path=0.0, peft="full"))["status"]
    torch.distributed.destroy_process_group()


def test_ddp_two_gloo_processes_equal_one_process(synth_root, tmp_path):
    single = train(_cfg(synth_root, tmp_path / "single", epochs=1, samples_per_epoch=24, val_samples=0,
                        val_dataset=None), dict(TINY, drop_path=0.0, peft="full"))
    assert single["step"] == 3
    manager = mp.Manager()
    result = manager.dict()
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(synth_root), str(tmp_path / "ddp"), result), nprocs=2, join=True)
    assert dict(result) == {0: "finished", 1: "finished"}
    a = assert_same_weights(tmp_path / "single" / "model_final.safetensors",
                            tmp_path / "ddp" / "model_final.safetensors", atol=2e-6, rtol=1e-5)
    torch.manual_seed(42)  # the trainer seeds before building the model: these are the initial weights
    init = lorat.create_model("lorat-s-224", **dict(TINY, drop_path=0.0, peft="full")).state_dict()
    assert not torch.equal(init["blocks.0.attn.qkv.weight"], a["blocks.0.attn.qkv.weight"])
    # rank 0 logs its local loss (half the batch), so only the steps are compared
    assert _losses(tmp_path / "single").keys() == _losses(tmp_path / "ddp").keys() == {1, 2, 3}


def test_tracker_evaluation_after_training(synth_root, tmp_path):
    cfg = _cfg(synth_root, tmp_path / "ev", epochs=1, samples_per_epoch=16, val_samples=0, val_dataset=None,
               eval_benchmarks=("got10k_val",))
    summary = train(cfg, TINY)
    auc = summary["eval"]["got10k_val"]["auc"]
    assert 0.0 <= auc <= 100.0
    results = sorted(p.name for p in (tmp_path / "ev" / "eval" / "final" / "got10k_val").glob("*.txt"))
    assert results == ["GOT-10k_Val_000001.txt", "GOT-10k_Val_000001_time.txt", "GOT-10k_Val_000002.txt",
                       "GOT-10k_Val_000002_time.txt"]
    assert json.loads((tmp_path / "ev" / "eval" / "scores.json").read_text())["got10k_val"]["auc"] == auc


def test_training_attention_manual_runs_matmul_attention(synth_root, tmp_path, capsys, monkeypatch):
    import torch.nn.functional as F

    from lorat.models import vit

    calls = []  # one entry per attention call in a training or validation forward: which implementation ran
    sdpa, matmul = F.scaled_dot_product_attention, vit.matmul_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append("sdpa") or sdpa(*a, **k))
    monkeypatch.setattr(vit, "matmul_attention", lambda *a: calls.append("matmul") or matmul(*a))
    cfg = _cfg(synth_root, tmp_path / "sdpa", epochs=1, attention="auto")  # float32: auto keeps the fused kernel
    train(cfg, dict(TINY, drop_path=0.0, peft="lora"))
    assert calls and set(calls) == {"sdpa"}
    assert "attention sdpa" in capsys.readouterr().out
    calls.clear()
    train(replace(cfg, output_dir=str(tmp_path / "manual"), attention="manual"), dict(TINY, drop_path=0.0, peft="lora"))
    assert calls and set(calls) == {"matmul"}
    assert "attention manual" in capsys.readouterr().out
    # the explicit matmuls compute the fused kernel's attention: the same run to float32 rounding
    a, b = _losses(tmp_path / "sdpa"), _losses(tmp_path / "manual")
    assert a.keys() == b.keys() and all(abs(a[k] - b[k]) <= 1e-4 * max(1.0, abs(a[k])) for k in a)
    assert_same_weights(tmp_path / "sdpa" / "model_final.safetensors", tmp_path / "manual" / "model_final.safetensors",
                        atol=1e-4, rtol=1e-3)
    # outside the trainer's forward context, attention is SDPA again
    calls.clear()
    model = lorat.create_model("lorat-s-224", **TINY).eval()
    z, x = torch.rand(1, 3, 28, 28), torch.rand(1, 3, 56, 56)
    model(z, x, torch.ones(1, 4, dtype=torch.long))
    assert set(calls) == {"sdpa"}
    # auto under bf16 autocast on CPU for this 20-token model: matmul attention
    calls.clear()
    train(replace(cfg, output_dir=str(tmp_path / "auto"), attention="auto", amp="bfloat16", epochs=1,
                  samples_per_epoch=8, val_samples=0, val_dataset=None), dict(TINY, peft="lora"))
    assert calls and set(calls) == {"matmul"} and "precision bfloat16, attention manual" in capsys.readouterr().out
    with pytest.raises(ValueError, match="TrainConfig.attention='flash'"):
        train(replace(cfg, output_dir=str(tmp_path / "bad"), attention="flash"), TINY)


def test_bad_config_errors(synth_root, tmp_path):
    with pytest.raises(ValueError, match="samples_per_epoch=4 is smaller than batch_size=8"):
        train(_cfg(synth_root, tmp_path / "x", samples_per_epoch=4), TINY)
    with pytest.raises(ValueError, match="amp=fp16: precision float16 is not supported on CPU"):
        train(_cfg(synth_root, tmp_path / "y", amp="fp16"), TINY)
    with pytest.raises(FileNotFoundError, match="no state.pt"):
        train(_cfg(synth_root, tmp_path / "z"), TINY, resume=tmp_path)


def test_cli_train_with_overrides(synth_root, tmp_path, capsys):
    from lorat.cli import main

    out = tmp_path / "cli"
    args = ["train", "--preset", "lorat-s-224", "--output", str(out),
            "--set", "datasets=got10k_train", "--set", f"dataset_roots=got10k_train={synth_root}",
            "--set", "val_dataset=none", "--set", "epochs=1", "--set", "samples_per_epoch=16",
            "--set", "batch_size=8", "--set", "num_workers=0", "--set", "device=cpu", "--set", "amp=fp32"]
    args += [f"--model-set={kv}" for kv in ("embed_dim=32", "depth=2", "num_heads=2", "template_size=28",
                                            "search_size=56", "lora_r=4", "pretrain_img_size=56")]
    assert main(args) == 0
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["train"]["epochs"] == 1 and saved["train"]["datasets"] == ["got10k_train"]
    assert saved["model"]["lora_r"] == 4 and saved["model"]["embed_dim"] == 32
    assert lorat.load_checkpoint(out / "model_final.safetensors").cfg.lora_r == 4
    assert main(["train", "--set", "epochs=x"]) == 1
    assert "bad value for TrainConfig.epochs: 'x'" in capsys.readouterr().err
