"""Does ``torch.compile`` pay for the demo's training? Step time of the demo model, eager vs compiled, on CPU.

    PYTHONPATH=src python benchmarks/demo_compile.py

``lorat.demo.DEMO_MODEL`` with LoRA and with full fine-tuning, batch 32 of random inputs, bf16 autocast, AdamW,
2 threads. Prints the first step (the compilation) and the mean of 10 steps after 2 warm-up steps.
"""
from __future__ import annotations

import time

import torch

import lorat.demo as demo
from lorat.models.registry import create_model

FIELDS = ("embed_dim", "depth", "num_heads", "template_size", "search_size", "pretrain_img_size",
          "search_area_factor", "lora_r", "lora_alpha")


def step(forward, opt, z, x, mask) -> None:
    """One bf16-autocast training step on a dummy loss."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = forward(z, x, mask)
    (out["score_map"].float().mean() + out["boxes"].float().mean()).backward()
    opt.step()
    opt.zero_grad()


def main() -> None:
    torch.set_num_threads(2)
    kw = {f: getattr(demo.DEMO_MODEL, f) for f in FIELDS}
    for peft in ("lora", "full"):
        for compiled in (False, True):
            torch.manual_seed(0)
            model = create_model("lorat-s-224", peft=peft, **kw).train()
            forward = torch.compile(model) if compiled else model
            c = model.cfg
            z, x = torch.randn(32, 3, c.template_size, c.template_size), torch.randn(32, 3, c.search_size,
                                                                                     c.search_size)
            mask = torch.ones(32, c.template_feat, c.template_feat, dtype=torch.long)
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-4)

            args = (forward, opt, z, x, mask)
            t0 = time.perf_counter()
            step(*args)
            first = time.perf_counter() - t0
            step(*args)
            step(*args)
            t0 = time.perf_counter()
            for _ in range(10):
                step(*args)
            print(f"| {peft} | {'compiled' if compiled else 'eager'} | {first:.1f} | "
                  f"{100 * (time.perf_counter() - t0):.0f} |", flush=True)


if __name__ == "__main__":
    main()
