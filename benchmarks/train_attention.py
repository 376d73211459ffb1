"""Training steps with SDPA's fused CPU kernel vs its math backend (``TrainConfig.attention`` sdpa / manual).

    PYTHONPATH=src python benchmarks/train_attention.py [--threads 2] [--demo-out DEMO_OUT] [--markdown FILE]

Part 1, random inputs: one training step (forward, backward, AdamW) of the demo's ViT (256-d, 4 blocks, LoRA) at
three crop geometries (80, 180 and 320 tokens), fp32 and bf16 autocast, each attention interleaved over rounds;
ms per step, median of the timed steps. Part 2 (``--demo-out``, a finished ``lorat demo`` folder: its domain-B
data and its stand-in backbone): the demo's LoRA stage for ``--steps`` steps through ``lorat.train.trainer.train``,
both attentions alternating ``--rounds`` times, wall seconds. Ratios within a run are what to read: these VMs
drift by 20-40 % over minutes.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

import lorat.demo as demo
from lorat.bench import machine_info
from lorat.models.registry import create_model
from lorat.train.trainer import train

GEOMETRIES = {80: (112, 56, 32), 180: (168, 84, 16), 320: (224, 112, 16)}  # tokens: (search, template, batch)


def step_ms(tokens: int, amp: bool, rounds: int = 2, steps: int = 4) -> dict[str, float]:
    """Median ms per training step of the demo model at ``tokens`` for each attention (interleaved)."""
    search, template, batch = GEOMETRIES[tokens]
    kw = {k: v for k, v in asdict(demo.DEMO_MODEL).items() if k != "name"}
    kw.update(search_size=search, template_size=template, pretrain_img_size=search, peft="lora")
    torch.manual_seed(0)
    model = create_model("lorat-s-224", **kw).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    z, x = torch.randn(batch, 3, template, template), torch.randn(batch, 3, search, search)
    mask = torch.ones(batch, (template // 14) ** 2, dtype=torch.long)
    times: dict[str, list[float]] = {"sdpa": [], "manual": []}
    for _ in range(rounds):
        for att in times:
            for i in range(steps + 1):
                t0 = time.perf_counter()
                with (sdpa_kernel(SDPBackend.MATH) if att == "manual" else nullcontext()), \
                        torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                    out = model(z, x, mask)
                    loss = sum(v.float().mean() for v in out.values() if v.is_floating_point())
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                if i:  # the first step of each block warms up
                    times[att].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def demo_stage_seconds(demo_out: Path, steps: int, rounds: int) -> dict[str, list[float]]:
    """Wall seconds of the demo's LoRA stage (``steps`` steps) per attention, alternating ``rounds`` times."""
    backbone = demo_out / "pretrain_A" / "backbone_dinov2_layout.safetensors"
    if not backbone.is_file():
        raise FileNotFoundError(f"not a finished lorat demo folder (no {backbone})")
    plan = demo.DemoPlan()
    work = Path(tempfile.mkdtemp(prefix="train_attention_"))
    seconds: dict[str, list[float]] = {"sdpa": [], "manual": []}
    try:
        for r in range(rounds):
            for att in seconds:
                # the demo's own LoRA-stage recipe, with only the attention set
                cfg, overrides = demo._stage_recipe(work / f"{att}_{r}", plan, steps, demo_out / "data" / "domain_B",
                                                    {"peft": "lora"}, backbone, plan.lora_lr)
                t0 = time.perf_counter()
                train(replace(cfg, attention=att), overrides)
                seconds[att].append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--demo-out", type=Path, default=None)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--markdown", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [f"`benchmarks/train_attention.py --threads {args.threads}`, {when}: "
             f"{machine_info(torch.device('cpu'))['cpu']}, torch {torch.__version__}", "",
             "| tokens (search / template px, batch) | precision | sdpa ms / step | manual ms / step | sdpa / manual |",
             "|---|---|---:|---:|---:|"]
    for tokens, (search, template, batch) in GEOMETRIES.items():
        for amp in (False, True):
            ms = step_ms(tokens, amp)
            lines.append(f"| {tokens} ({search} / {template}, {batch}) | {'bf16 autocast' if amp else 'fp32'} | "
                         f"{ms['sdpa']:.0f} | {ms['manual']:.0f} | {ms['sdpa'] / ms['manual']:.2f} |")
            print(lines[-1], flush=True)
    if args.demo_out is not None:
        secs = demo_stage_seconds(args.demo_out, args.steps, args.rounds)
        lines += ["", f"The demo's LoRA stage, {args.steps} steps of 32 pairs (training precision `auto`), wall "
                  "seconds per round:", "", "| round | sdpa | manual | sdpa / manual |", "|---:|---:|---:|---:|"]
        lines += [f"| {r + 1} | {a:.1f} | {b:.1f} | {a / b:.2f} |" for r, (a, b) in
                  enumerate(zip(secs["sdpa"], secs["manual"]))]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        from lorat.files import atomic_write_text

        atomic_write_text(args.markdown, "# Training attention: fused kernel vs math backend\n\n" + text)


if __name__ == "__main__":
    main()
