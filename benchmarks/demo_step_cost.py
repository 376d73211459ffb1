"""Cost of one training step (forward, backward, AdamW) of demo-sized models, fp32 vs bf16 autocast, on CPU.

    PYTHONPATH=src python benchmarks/demo_step_cost.py

Batch 32, 2 threads, random inputs; prints the best of 2 rounds of 3 steps per variant. Ratios between rows are what
transfers between machines (absolute times depend on the CPU and its load).
"""
from __future__ import annotations

import time

import torch

from lorat.models.registry import create_model

BASE = dict(embed_dim=128, depth=4, num_heads=4, template_size=56, search_size=112, pretrain_img_size=112,
            lora_r=8, lora_alpha=16.0, peft="full")
VARIANTS = {
    "patch 14, search 112 / template 56 (8x8 / 4x4 tokens, the demo)": {},
    "patch 8, search 96 / template 48 (12x12 / 6x6 tokens)": dict(patch_size=8, search_size=96, template_size=48,
                                                                  pretrain_img_size=96),
}


def main() -> None:
    torch.set_num_threads(2)
    models = {k: create_model("lorat-s-224", **{**BASE, **v}) for k, v in VARIANTS.items()}
    best: dict[tuple[str, str], float] = {}
    for _ in range(2):
        for name, m in models.items():
            c = m.cfg
            for amp in (None, torch.bfloat16):
                z, x = torch.randn(32, 3, c.template_size, c.template_size), torch.randn(32, 3, c.search_size,
                                                                                         c.search_size)
                mask = torch.ones(32, c.template_feat, c.template_feat, dtype=torch.long)
                opt = torch.optim.AdamW(m.parameters(), 1e-4)
                t0 = time.perf_counter()
                for _ in range(3):
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp is not None):
                        out = m(z, x, mask)
                    (out["score_map"].float().mean() + out["boxes"].float().mean()).backward()
                    opt.step()
                    opt.zero_grad()
                key = (name, "bf16 autocast" if amp else "fp32")
                best[key] = min(best.get(key, float("inf")), (time.perf_counter() - t0) / 3)
    print("| model | precision | ms / step |\n|---|---|---:|")
    for (name, prec), s in best.items():
        print(f"| {name} | {prec} | {1000 * s:.0f} |")


if __name__ == "__main__":
    main()
