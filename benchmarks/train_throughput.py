"""Training throughput (samples/s) and peak memory, LoRA vs full fine-tuning, for a small preset.

Each configuration runs in a fresh process (so peak RSS is its own): build the preset, then time
optimizer steps (forward, LoRAT loss, backward, clip, AdamW) on random inputs with realistic labels.
Data loading is left out: it runs in worker processes and is measured separately by the demo.

    python benchmarks/train_throughput.py --markdown benchmarks/train_throughput.md
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time


def one_config(preset: str, peft: str, batch: int, steps: int, dtype: str) -> dict:
    """Time ``steps`` training steps of ``preset`` in this process; returns the measurements."""
    import torch

    import lorat
    from lorat.data.transforms import positive_cell_indices
    from lorat.train.losses import lorat_loss
    from lorat.train.optim import param_groups

    torch.manual_seed(0)
    model = lorat.create_model(preset, peft=peft).train()
    cfg = model.cfg
    groups = param_groups(model, 0.1)
    opt = torch.optim.AdamW([{k: v for k, v in g.items() if k != "names"} for g in groups], lr=1e-4)
    hz, hx = cfg.template_feat, cfg.search_feat
    z = torch.randn(batch, 3, cfg.template_size, cfg.template_size)
    x = torch.randn(batch, 3, cfg.search_size, cfg.search_size)
    mask = torch.zeros(batch, hz, hz, dtype=torch.long)
    mask[:, hz // 4: 3 * hz // 4, hz // 4: 3 * hz // 4] = 1
    box = [0.4 * cfg.search_size, 0.4 * cfg.search_size, 0.6 * cfg.search_size, 0.6 * cfg.search_size]
    pos = torch.as_tensor(positive_cell_indices(box, cfg.search_size, (hx, hx)))
    targets = {
        "positive_sample_batch_dim_indices": torch.arange(batch).repeat_interleave(len(pos)),
        "positive_sample_map_dim_indices": pos.repeat(batch),
        "boxes": torch.tensor([[0.4, 0.4, 0.6, 0.6]]).repeat(batch, 1),
        "num_positive_samples": torch.tensor([float(batch * len(pos))]),
    }
    amp = {"float32": None, "bfloat16": torch.bfloat16}[dtype]
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
            out = model(z, x, mask)
        loss, _ = lorat_loss(out["score_map"], out["boxes"], targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 2:  # two warm-up steps
            times.append(time.perf_counter() - t0)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {
        "preset": preset, "peft": peft, "batch": batch, "dtype": dtype, "steps": steps,
        "step_ms_min": 1000 * min(times), "step_ms_median": 1000 * statistics.median(times),
        "samples_per_s_best": batch / min(times), "samples_per_s_median": batch / statistics.median(times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "trainable": trainable, "total": total, "threads": torch.get_num_threads(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="lorat-s-224")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--markdown", default=None)
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one config, print JSON
    args = p.parse_args()
    if args.one:
        peft, dtype = args.one.split(",")
        print(json.dumps(one_config(args.preset, peft, args.batch, args.steps, dtype)))
        return
    rows = []
    for dtype in args.dtypes.split(","):
        for peft in ("lora", "full"):
            cmd = [sys.executable, __file__, "--preset", args.preset, "--batch", str(args.batch),
                   "--steps", str(args.steps), "--one", f"{peft},{dtype}"]
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            rows.append(res)
            print(f"{peft:5s} {dtype:9s} {res['samples_per_s_best']:.1f} samples/s (best), "
                  f"peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
    import torch

    lines = [
        "# Training throughput (`benchmarks/train_throughput.py`)", "",
        f"Command: `python benchmarks/train_throughput.py --preset {args.preset} --batch {args.batch} "
        f"--steps {args.steps} --markdown ...`", "",
        f"Machine: {platform.processor() or platform.machine()}, {rows[0]['threads']} torch threads, torch "
        f"{torch.__version__}, no GPU. One step = forward + LoRAT loss + backward + clip + AdamW on random "
        "inputs (data loading excluded); each row in a fresh process; peak RSS of that process.", "",
        "| preset | peft | dtype | batch | trainable / total params | step ms min / med | samples/s best / med "
        "| peak RSS MB |", "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['peft']} | {r['dtype']} | {r['batch']} | "
                     f"{r['trainable'] / 1e6:.2f} M / {r['total'] / 1e6:.2f} M | "
                     f"{r['step_ms_min']:.0f} / {r['step_ms_median']:.0f} | "
                     f"{r['samples_per_s_best']:.1f} / {r['samples_per_s_median']:.1f} | {r['peak_rss_mb']:.0f} |")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
