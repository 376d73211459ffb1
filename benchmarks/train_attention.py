"""Training-step forms on CPU: attention (``TrainConfig.attention`` sdpa / manual) x LoRA form (official / fused).

    PYTHONPATH=src python benchmarks/train_attention.py [--threads 2] [--demo-out DEMO_OUT] [--markdown FILE]

Variants, each a training step (forward, backward, AdamW) of the demo's ViT (256-d, 4 blocks, LoRA):

* ``sdpa``: SDPA's fused CPU kernel, the official LoRA op sequence (``lorat.models.peft.FUSED_TRAINING`` off);
* ``math``: SDPA's math backend (``sdpa_kernel(SDPBackend.MATH)``), official LoRA form: the trainer's ``manual``
  before matmul attention existed;
* ``matmul``: :func:`lorat.models.vit.matmul_attention`, official LoRA form;
* ``matmul+fused``: matmul attention and the fused LoRA form: the trainer's ``manual`` now;
* ``sdpa+fused``: the fused kernel with the fused LoRA form: the trainer's ``sdpa`` now.

Part 1, random inputs: four crop geometries (80, 180, 320 and 500 tokens), fp32 and bf16 autocast, the variants
interleaved over rounds; ms per step, median of the timed steps. Part 2 (``--demo-out``, a finished ``lorat demo``
folder: its domain-B data and stand-in backbone): the demo's LoRA stage for ``--steps`` steps through
``lorat.train.trainer.train`` with the previous default (``math``) and the current one (``manual`` = matmul +
fused), alternating ``--rounds`` times, wall seconds. Part 3: SPMTrack's TMoE adapters on the same 4 blocks
(4 experts, 80 tokens, bf16 autocast, matmul attention), a step with the input cast once in training mode vs
the official op sequence. Ratios within a run are what to read: these VMs drift by
20-40 % over minutes.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

import lorat.demo as demo
from lorat.bench import machine_info
from lorat.models import peft
from lorat.models.registry import create_model
from lorat.models.vit import matmul_attention_enabled
from lorat.train.trainer import train

# tokens of one pair: (search px, template px, batch)
GEOMETRIES = {80: (112, 56, 32), 180: (168, 84, 16), 320: (224, 112, 16), 500: (280, 140, 8)}
VARIANTS = ("sdpa", "math", "matmul", "matmul+fused", "sdpa+fused")


@contextmanager
def variant(name: str):
    """The attention and LoRA form of one variant (restored on exit)."""
    previous = peft.FUSED_TRAINING
    peft.FUSED_TRAINING = name.endswith("+fused")
    with ExitStack() as stack:
        if name == "math":
            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
        elif name.startswith("matmul"):
            stack.enter_context(matmul_attention_enabled())
        try:
            yield
        finally:
            peft.FUSED_TRAINING = previous


def interleaved_ms(step, names: tuple[str, ...], rounds: int, steps: int) -> dict[str, float]:
    """Median ms of ``step()`` under each :func:`variant` in ``names``, interleaved over ``rounds``; the first
    step of each block warms up and is not timed."""
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(rounds):
        for name in names:
            for i in range(steps + 1):
                t0 = time.perf_counter()
                with variant(name):
                    step()
                if i:
                    times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def step_ms(tokens: int, amp: bool, rounds: int = 2, steps: int = 4) -> dict[str, float]:
    """Median ms per training step of the demo model at ``tokens`` for each variant (interleaved)."""
    search, template, batch = GEOMETRIES[tokens]
    kw = {k: v for k, v in asdict(demo.DEMO_MODEL).items() if k != "name"}
    kw.update(search_size=search, template_size=template, pretrain_img_size=search, peft="lora")
    torch.manual_seed(0)
    model = create_model("lorat-s-224", **kw).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    z, x = torch.randn(batch, 3, template, template), torch.randn(batch, 3, search, search)
    mask = torch.ones(batch, (template // 14) ** 2, dtype=torch.long)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = model(z, x, mask)
            loss = sum(v.float().mean() for v in out.values() if v.is_floating_point())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return interleaved_ms(step, VARIANTS, rounds, steps)


def tmoe_step_ms(rounds: int = 3, steps: int = 4) -> dict[str, float]:
    """Median ms per training step of 4 TMoE-adapted blocks (256-d, 80 tokens, batch 32, bf16 autocast, matmul
    attention): ``matmul`` = the official op sequence, ``matmul+fused`` = the input cast once."""
    from torch import nn

    from lorat.models.tmoe import attach_tmoe
    from lorat.models.vit import Block

    torch.manual_seed(0)
    blocks = nn.Sequential(*[Block(256, 8) for _ in range(4)])
    attach_tmoe(blocks, r=8, alpha=16, num_experts=4)
    blocks.train()
    opt = torch.optim.AdamW([p for p in blocks.parameters() if p.requires_grad], lr=1e-4)
    x = torch.randn(32, 80, 256)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = blocks(x)
        y.float().mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return interleaved_ms(step, ("matmul", "matmul+fused"), rounds, steps)


def demo_stage_seconds(demo_out: Path, steps: int, rounds: int) -> dict[str, list[float]]:
    """Wall seconds of the demo's LoRA stage (``steps`` steps), previous vs current default, alternating."""
    backbone = demo_out / "pretrain_A" / "backbone_dinov2_layout.safetensors"
    if not backbone.is_file():
        raise FileNotFoundError(f"not a finished lorat demo folder (no {backbone})")
    plan = demo.DemoPlan()
    work = Path(tempfile.mkdtemp(prefix="train_attention_"))
    seconds: dict[str, list[float]] = {"math": [], "matmul+fused": []}
    try:
        for r in range(rounds):
            for name in seconds:
                # the demo's own LoRA-stage recipe; "math" is the previous default, run under its context
                cfg, overrides = demo._stage_recipe(work / f"{name}_{r}", plan, steps, demo_out / "data" / "domain_B",
                                                    {"peft": "lora"}, backbone, plan.lora_lr)
                t0 = time.perf_counter()
                with variant(name):
                    train(replace(cfg, attention="sdpa" if name == "math" else "manual"), overrides)
                seconds[name].append(time.perf_counter() - t0)
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
             "| tokens (search / template px, batch) | precision | " + " | ".join(f"{v} ms" for v in VARIANTS)
             + " | math / matmul+fused | sdpa+fused / matmul+fused |",
             "|---|---|" + "---:|" * (len(VARIANTS) + 2)]
    for tokens, (search, template, batch) in GEOMETRIES.items():
        for amp in (False, True):
            ms = step_ms(tokens, amp)
            lines.append(f"| {tokens} ({search} / {template}, {batch}) | {'bf16 autocast' if amp else 'fp32'} | "
                         + " | ".join(f"{ms[v]:.0f}" for v in VARIANTS)
                         + f" | {ms['math'] / ms['matmul+fused']:.2f} | {ms['sdpa+fused'] / ms['matmul+fused']:.2f} |")
            print(lines[-1], flush=True)
    tm = tmoe_step_ms()
    lines += ["", f"TMoE blocks (4 x 256-d, 4 experts, 80 tokens, batch 32, bf16 autocast, matmul attention): official "
              f"{tm['matmul']:.0f} ms / step, input cast once {tm['matmul+fused']:.0f} ms, "
              f"x{tm['matmul'] / tm['matmul+fused']:.2f}."]
    print(lines[-1], flush=True)
    if args.demo_out is not None:
        secs = demo_stage_seconds(args.demo_out, args.steps, args.rounds)
        lines += ["", f"The demo's LoRA stage, {args.steps} steps of 32 pairs (training precision `auto`), wall "
                  "seconds per round, previous default (`math`) vs current (`matmul+fused`):", "",
                  "| round | math | matmul+fused | math / matmul+fused |", "|---:|---:|---:|---:|"]
        lines += [f"| {r + 1} | {a:.1f} | {b:.1f} | {a / b:.2f} |" for r, (a, b) in
                  enumerate(zip(secs["math"], secs["matmul+fused"]))]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        from lorat.files import atomic_write_text

        atomic_write_text(args.markdown, "# Training-step forms: attention and LoRA form\n\n" + text)


if __name__ == "__main__":
    main()
