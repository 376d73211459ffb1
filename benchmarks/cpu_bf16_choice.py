"""Is bf16 faster than fp32 on this CPU? The measurements behind ``dtype="auto"`` / ``amp="auto"`` on CPU.

    PYTHONPATH=src python benchmarks/cpu_bf16_choice.py > benchmarks/cpu_bf16_choice.md

Times, in one run on 2 threads, fp32 against bf16 (weights cast, as the tracker runs it; autocast for training):
square GEMMs, the probe :func:`lorat.device.cpu_bf16_speedup` uses, a LoRAT-S-224 and -B-224 forward at batch 1,
the demo model's tracking forward (batch 8) and its training step (batch 32, LoRA and full fine-tuning). Every
pair is timed interleaved, best of several rounds, so a busy machine slows both alike; the ratio column is what
transfers between machines of a kind.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import platform
import time
from functools import partial

import torch

from lorat import device as dev
from lorat.demo import DEMO_MODEL
from lorat.models.peft import fold_lora
from lorat.models.registry import create_model


def best_pair(fns: dict[str, callable], rounds: int) -> dict[str, float]:
    """Best seconds per call of each function, the functions called in turn (after one warm-up each)."""
    for f in fns.values():
        f()
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def gemm_rows() -> list[tuple[str, float, float]]:
    """Square ``torch.mm`` in both precisions: ``(label with GFLOP/s, fp32 s, bf16 s)`` per size."""
    rows = []
    for n in (256, 1024, 2048):
        a32, b32 = torch.randn(n, n), torch.randn(n, n)
        a16, b16 = a32.bfloat16(), b32.bfloat16()
        t = best_pair({"fp32": partial(torch.mm, a32, b32), "bf16": partial(torch.mm, a16, b16)}, 5)
        rows.append((f"GEMM {n}x{n}x{n} (GFLOP/s: fp32 {2 * n**3 / t['fp32'] / 1e9:.0f}, "
                     f"bf16 {2 * n**3 / t['bf16'] / 1e9:.0f})", t["fp32"], t["bf16"]))
    return rows


def forward_rows() -> list[tuple[str, float, float]]:
    """Merged-LoRA eval forwards, fp32 weights against bf16-cast weights (the tracker's two CPU paths)."""
    rows = []
    for name, batch, kw in (("lorat-s-224", 1, {}), ("lorat-b-224", 1, {}),
                            ("demo model (tracking batch 8)", 8, None)):
        m = create_model(DEMO_MODEL) if kw is None else create_model(name, **kw)
        fold_lora(m.eval())
        c = m.cfg
        z = torch.randn(batch, 3, c.template_size, c.template_size)
        x = torch.randn(batch, 3, c.search_size, c.search_size)
        mask = torch.zeros(batch, c.template_feat, c.template_feat, dtype=torch.long)
        m16 = copy.deepcopy(m).bfloat16()
        z16, x16 = z.bfloat16(), x.bfloat16()
        with torch.inference_mode():
            t = best_pair({"fp32": partial(m, z, x, mask), "bf16": partial(m16, z16, x16, mask)}, 10)
        rows.append((f"forward {name}" + ("" if kw is None else " batch 1"), t["fp32"], t["bf16"]))
    return rows


def train_step(m, opt, z, x, mask, amp: bool) -> None:
    """Forward, backward, AdamW step (bf16: autocast, as ``TrainConfig.amp``)."""
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if amp else contextlib.nullcontext()
    with ctx:
        out = m(z, x, mask)
        loss = out["score_map"].float().mean() + out["boxes"].float().mean()
    loss.backward()
    opt.step()
    opt.zero_grad()


def train_rows() -> list[tuple[str, float, float]]:
    """The demo model's training step, fp32 against bf16 autocast, for the LoRA and the full stage."""
    rows = []
    batch = 32
    for peft in ("lora", "full"):
        m = create_model(dataclasses.replace(DEMO_MODEL, peft=peft)).train()
        opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)
        args = (m, opt, torch.randn(batch, 3, 56, 56), torch.randn(batch, 3, 112, 112),
                torch.zeros(batch, 4, 4, dtype=torch.long))
        t = best_pair({"fp32": partial(train_step, *args, False), "bf16": partial(train_step, *args, True)}, 3)
        rows.append((f"demo training step, {peft}, batch {batch} (bf16: autocast)", t["fp32"], t["bf16"]))
    return rows


def main() -> None:
    torch.set_num_threads(2)
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor())
    t0 = time.time()
    rows = gemm_rows() + forward_rows() + train_rows()
    probe = dev.cpu_bf16_speedup(2)
    print("# bf16 or fp32 on this CPU\n")
    print(f"`benchmarks/cpu_bf16_choice.py`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(t0))}: {cpu}, "
          f"2 torch threads, torch {torch.__version__}; native bf16 flags: {dev.cpu_has_native_bf16()}; "
          f"load average at the end {[round(v, 2) for v in os.getloadavg()]}.\n")
    print(f"`lorat.device.cpu_bf16_speedup` (the probe `auto` runs): **{probe:.2f}x**, so `auto` picks "
          f"**{'bf16' if dev.cpu_prefers_bf16() else 'fp32'}** (threshold {dev.BF16_MIN_SPEEDUP}x).\n")
    print("| workload | fp32 ms | bf16 ms | fp32 time / bf16 time |\n|---|---:|---:|---:|")
    for name, a, b in rows:
        print(f"| {name} | {a * 1e3:.2f} | {b * 1e3:.2f} | {a / b:.2f} |")


if __name__ == "__main__":
    main()
