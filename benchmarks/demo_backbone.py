"""Pretrain the demo's stand-in foundation model: a long domain-A run, done once, offline.

Usage::

    python benchmarks/demo_backbone.py --output /tmp/demo_backbone --steps 15000
    python benchmarks/demo_backbone.py --output /tmp/demo_backbone --steps 15000 \
        --export src/lorat/assets/demo_pretrained_A.safetensors
    # a second stage: continue from a stand-in's backbone (its head is trained anew) on more sequences
    python benchmarks/demo_backbone.py --output /tmp/demo_backbone2 \
        --init src/lorat/assets/demo_pretrained_A.safetensors --sequences 1800 --steps 12000 --lr 5e-4 \
        --export /tmp/demo_pretrained_A.safetensors
    # a deeper stand-in grown from the shipped one (blocks appended as near-identity copies of its last block)
    python benchmarks/demo_backbone.py --output /tmp/demo_backbone_d6 \
        --init src/lorat/assets/demo_pretrained_A.safetensors --depth 6 --steps 6000 --lr 5e-4

LoRAT adapts a foundation model (DINOv2) that was pretrained elsewhere, for far longer than any tracking run.
``lorat demo`` used to pretrain its stand-in inside its own 10-minute budget (1000 steps, ~3.4 min), which made
the demo's backbone, not LoRAT, the limit. This script is the stand-in's offline pretraining: the demo's model
(:data:`lorat.demo.DEMO_MODEL`) trained with full fine-tuning on domain A only (seed ``--seed``, 1000 by default:
no seed the demo or its held-out sets use), with the demo's augmentation, for ``--steps`` steps of
``--batch`` pairs (from scratch, or from the backbone of an earlier stand-in with ``--init``), resumable
(rerun the same command after an interruption). ``--export`` writes the final model as float16 safetensors
(the tracker: backbone, token types and head), which is the file the package ships and ``lorat demo`` starts
from. Domain B, on which the demo adapts and tests, is never seen here.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lorat.data.synthetic import SyntheticConfig, make_synthetic_benchmark
from lorat.demo import DemoPlan, _train_stage


def grow_backbone(src: Path, depth: int, dst: Path, gamma: float = 1e-5) -> Path:
    """Write ``src`` (a DINOv2-layout backbone) with blocks appended up to ``depth`` blocks, to ``dst``.

    Each new block is a copy of the last one with both LayerScales set to ``gamma`` (DINOv2's initial value), so
    the grown network starts as the old one's function up to ~gamma and its new blocks begin from trained weights.
    """
    from safetensors.torch import load_file

    from lorat.hub import atomic_save_safetensors

    sd = load_file(str(src))
    have = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    if depth <= have:
        raise SystemExit(f"--depth {depth}: {src} already has {have} blocks")
    last = {k[len(f"blocks.{have - 1}."):]: v for k, v in sd.items() if k.startswith(f"blocks.{have - 1}.")}
    for i in range(have, depth):
        for name, v in last.items():
            sd[f"blocks.{i}.{name}"] = torch.full_like(v, gamma) if name.endswith("gamma") else v.clone()
    atomic_save_safetensors(sd, dst, {"format": "dinov2", "grown_from": f"{src.name}, {have} blocks"})
    return dst


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", required=True, type=Path)
    p.add_argument("--steps", type=int, default=15000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--sequences", type=int, default=600, help="domain-A training sequences")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--init", type=Path, default=None,
                   help="start from this stand-in's backbone (a file --export wrote); the head is trained anew")
    p.add_argument("--depth", type=int, default=None,
                   help="with --init: grow its backbone to this many blocks (see grow_backbone) and train that model")
    p.add_argument("--export", type=Path, default=None, help="write the final model here (float16 safetensors)")
    p.add_argument("--augment", nargs="*", default=[], help="training-transform overrides added to the demo's "
                   "(TrainConfig.augment entries, e.g. translation_jitter=2.0)")
    p.add_argument("--negative", type=float, default=0.0, help="share of negative pairs (negative_pair_prob)")
    p.add_argument("--distractors", type=int, nargs=2, default=None, metavar=("LO", "HI"),
                   help="distractors per sequence in the generated data (SyntheticConfig.num_distractors)")
    p.add_argument("--similarity", type=float, default=None, help="SyntheticConfig.distractor_similarity")
    a = p.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    data = a.output / "data" / "domain_A"
    # resumable: finished sequences are kept on a rerun
    scene = {"num_distractors": tuple(a.distractors)} if a.distractors else {}
    if a.similarity is not None:
        scene["distractor_similarity"] = a.similarity
    make_synthetic_benchmark(data, SyntheticConfig(domain="A", seed=a.seed, frames_per_sequence=a.frames, **scene),
                             num_train=a.sequences, num_val=0)
    init, before = None, None
    if a.init:
        from lorat.demo import shipped_pretrained
        from lorat.hub import export_dinov2, load_checkpoint

        _, before = shipped_pretrained(a.init)  # checks the file against DEMO_MODEL, reads its recipe
        init = a.output / "init_backbone_dinov2_layout.safetensors"
        if not init.is_file():
            a.output.mkdir(parents=True, exist_ok=True)
            export_dinov2(load_checkpoint(a.init), init)
        if a.depth:
            init = grow_backbone(init, a.depth, a.output / f"init_backbone_depth{a.depth}.safetensors")
    elif a.depth:
        p.error("--depth grows an --init backbone; without --init set the depth in DEMO_MODEL")
    model = {"peft": "full", **({"depth": a.depth} if a.depth else {})}
    plan = DemoPlan(train_a=a.sequences, frames=a.frames, pretrain_steps=a.steps, batch_size=a.batch,
                    negative_pair_prob=a.negative)
    plan.augment = (*plan.augment, *a.augment)
    t0 = time.perf_counter()
    summary = _train_stage("pretrain_A", a.output, plan, a.steps, data, model, init, lr=a.lr)
    print(json.dumps({k: summary.get(k) for k in ("status", "step", "seconds", "trainable_params")}))
    print(f"{time.perf_counter() - t0:.0f} s")
    if a.export:
        from lorat.demo import export_pretrained

        # "seconds": the training time of the invocation that finished the run (all of it when not resumed)
        recipe = {"steps": a.steps, "batch_size": a.batch, "sequences": a.sequences, "frames": a.frames,
                  "seed": a.seed, "lr": a.lr, "seconds": summary.get("seconds"), "final_loss": summary.get("loss"),
                  "augment": list(plan.augment), "negative_pair_prob": a.negative, "scene": scene, "depth": a.depth,
                  "script": "benchmarks/demo_backbone.py"}
        if before is not None:
            recipe["continued_from"] = before  # the earlier stage's recipe, whose backbone this run started from
        export_pretrained(a.output / "pretrain_A" / "model_final.safetensors", a.export, recipe)
        print(f"wrote {a.export}: {json.dumps(recipe)}")


if __name__ == "__main__":
    main()
