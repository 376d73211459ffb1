"""Is data loading the training bottleneck? Samples/s of the real pipeline with a no-op model vs the real step.

Usage::

    python benchmarks/data_throughput.py --batch 8 --workers 0 2 --markdown benchmarks/data_throughput.md

A synthetic GOT-10k training split (JPEG frames on disk, the real layout) is written to a temporary folder;
the trainer's own datasets (``lorat.train.task.LoRATTask.build_datasets``: pair sampling, SiamFC crops,
augmentation; ``collate``) feed a ``DataLoader`` exactly as in training. Two rates are measured:

* *no-op model*: batches are only fetched (and moved to the device) - the most the pipeline can deliver;
* *real step*: forward + LoRAT loss + backward + AdamW on fetched batches (bf16 autocast on CPU, as
  ``--amp`` chooses), i.e. what training achieves.

Data loading is not the bottleneck when the no-op rate is well above the real-step rate.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="lorat-s-224")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--workers", nargs="+", type=int, default=[0, 2])
    p.add_argument("--amp", default="bf16", choices=("none", "bf16", "fp16"))
    p.add_argument("--markdown", default=None)
    args = p.parse_args(argv)

    import torch
    from torch.utils.data import DataLoader

    import lorat
    from lorat.config import TrainConfig
    from lorat.data.synthetic import SyntheticConfig, make_synthetic_benchmark
    from lorat.files import atomic_write_text
    from lorat.train.task import LoRATTask

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    amp = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    lines = ["| preset | batch | workers | no-op model samples/s | real step samples/s | no-op / real |",
             "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="lorat-data-") as tmp:
        root = Path(tmp) / "got10k"
        make_synthetic_benchmark(root, SyntheticConfig(seed=0, frames_per_sequence=40), num_train=8, num_val=0,
                                 progress=False)
        model = lorat.create_model(args.preset).to(device).train()
        opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-5)
        for workers in args.workers:
            tcfg = TrainConfig(model=args.preset, datasets=("got10k_train",), dataset_roots=(f"got10k_train={root}",),
                               val_dataset=None, samples_per_epoch=args.batch * (2 * args.steps + 4),
                               batch_size=args.batch, num_workers=workers)
            task = LoRATTask(tcfg, model.cfg)
            train_set, _ = task.build_datasets()
            loader = DataLoader(train_set, batch_size=args.batch, collate_fn=task.collate, num_workers=workers)
            it = iter(loader)
            next(it)  # worker start-up is not throughput
            t0 = time.perf_counter()
            for _ in range(args.steps):
                {k: v.to(device) if torch.is_tensor(v) else v for k, v in next(it).items()}
            noop = args.batch * args.steps / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in next(it).items()}
                with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                    loss, _ = task(model, batch)  # forward + the LoRAT loss, as the training loop runs it
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            real = args.batch * args.steps / (time.perf_counter() - t0)
            line = f"| {args.preset} | {args.batch} | {workers} | {noop:.1f} | {real:.1f} | {noop / real:.1f} |"
            lines.append(line)
            print(line, flush=True)
    if args.markdown:
        atomic_write_text(args.markdown, "# Data loading vs model step (`benchmarks/data_throughput.py`)\n\n"
                          + f"Device {device}, amp {args.amp}.\n\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
