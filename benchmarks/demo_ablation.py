"""Ablations of the demo's training recipe: retrain the LoRA stage (optionally the pretraining too) with overrides.

    PYTHONPATH=src python benchmarks/demo_ablation.py DEMO_OUT TAG [--pretrain] [--test DIR ...] [key=value ...]

``DEMO_OUT`` is a finished ``lorat demo`` folder (its data, and its domain-A backbone unless ``--pretrain``).
Keys: ``m.<field>=v`` a ModelConfig override of the demo model (``m.search_area_factor=3.0``), ``steps=N``
(adaptation steps, default the demo's), ``psteps=N`` (pretraining steps with ``--pretrain``),
``lr=x`` (the adaptation stage's peak learning rate; default ``DemoPlan.lora_lr`` / ``full_lr``), ``data=DIR``
(another data root with ``domain_A`` / ``domain_B``), ``peft=full``, ``neg=p``
(share of negative pairs, ``TrainConfig.negative_pair_prob``), ``seed=N`` (``DemoPlan.seed``, the training
seed: another draw of the same recipe); any other
``field=value`` is a training-transform override (``TrainConfig.augment``: ``translation_jitter=1.0``) added to
the demo's (a later entry wins: ``m.search_area_factor=4.0 translation_jitter=3.0`` is LoRAT's geometry). Each
``--test`` folder (a GOT-10k-layout root with a ``val`` split: the demo's ``data/domain_B``, a second held-out set
written by ``lorat.data.synthetic``) is tracked like the report's LoRAT row (bf16, the demo's ``size_lr``) and
scored with the same ``analyze`` call. One JSON line per run goes to stdout and to
``/tmp/demo_ablation/results.jsonl``; runs resume (a finished stage is not retrained).
"""
from __future__ import annotations

import argparse
import ast
import json
import time
from pathlib import Path

import torch

import lorat.demo as demo
from lorat.hub import export_dinov2, load_checkpoint

ROOT = Path("/tmp/demo_ablation")


def auc_of(tracker, test_root: Path, results_root: Path, tag: str) -> float:
    """The report's LoRAT-row AUC of ``tracker`` on the ``val`` split of ``test_root`` (boxes: ``results_root/tag``)."""
    from lorat.data.datasets import load_benchmark
    from lorat.eval.report import ResultSource, analyze
    from lorat.eval.runner import evaluate

    test = load_benchmark("got10k_val", test_root)
    evaluate(tracker, {"b": test}, results_root, tag, batch=8, workers=0, progress=False)
    doc = analyze([ResultSource(tag, results_root / tag / "b")], test, rule="pytracking", protocol="generic")
    return round(doc["trackers"][tag]["overall"]["auc"], 1)


def auc_on(ckpt: Path, test_root: Path, tag: str) -> float:
    """:func:`auc_of` the demo's tracker (bf16, the demo's ``size_lr``) with the weights ``ckpt``."""
    from lorat.track.tracker import Tracker

    return auc_of(Tracker(load_checkpoint(ckpt), demo._track_config()), test_root, ROOT / "results", tag)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("demo_out", type=Path)
    p.add_argument("tag")
    p.add_argument("--pretrain", action="store_true", help="pretrain on domain A again with the overrides")
    p.add_argument("--test", type=Path, action="append", default=[], help="held-out root (default: the demo's)")
    p.add_argument("overrides", nargs="*")
    a = p.parse_intermixed_args()
    torch.set_num_threads(2)
    plan = demo.DemoPlan()
    model_over, augment, peft, lr = {}, list(plan.augment), "lora", None
    steps, psteps, data, negative = plan.adapt_steps, plan.pretrain_steps, a.demo_out / "data", 0.0
    for item in a.overrides:
        key, value = item.split("=", 1)
        if key.startswith("m."):
            model_over[key[2:]] = ast.literal_eval(value)
        elif key in ("steps", "psteps"):
            steps, psteps = (int(value), psteps) if key == "steps" else (steps, int(value))
        elif key == "lr":
            lr = float(value)
        elif key == "data":
            data = Path(value)
        elif key == "peft":
            peft = value
        elif key == "neg":
            negative = float(value)
        elif key == "seed":
            plan.seed = int(value)
        else:
            augment.append(item)
    plan.augment = tuple(augment)
    plan.negative_pair_prob = negative
    out = ROOT / a.tag
    backbone = a.demo_out / "pretrain_A" / "backbone_dinov2_layout.safetensors"
    t0 = time.perf_counter()
    if a.pretrain:
        demo._train_stage("pretrain_A", out, plan, psteps, data / "domain_A", {"peft": "full", **model_over}, None,
                          lr=plan.pretrain_lr)
        backbone = out / "pretrain_A" / "backbone.safetensors"
        if not backbone.is_file():
            export_dinov2(load_checkpoint(out / "pretrain_A" / "model_final.safetensors"), backbone)
    t1 = time.perf_counter()
    stage = f"{peft}_B"
    demo._train_stage(stage, out, plan, steps, data / "domain_B", {"peft": peft, **model_over}, backbone,
                      lr=lr if lr is not None else plan.lora_lr if peft == "lora" else plan.full_lr)
    row = {"tag": a.tag, "overrides": a.overrides, "pretrain": a.pretrain, "pretrain_s": round(t1 - t0),
           "adapt_s": round(time.perf_counter() - t1)}
    tests = a.test or [a.demo_out / "data" / "domain_B"]
    row["tests"] = [str(t) for t in tests]
    row["auc"] = [auc_on(out / stage / "model_final.safetensors", t, f"{a.tag}_{i}") for i, t in enumerate(tests)]
    print(json.dumps(row))
    ROOT.mkdir(parents=True, exist_ok=True)
    with open(ROOT / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
