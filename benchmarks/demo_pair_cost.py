"""Milliseconds per training pair of the demo's data pipeline (decode, pair sampling, crops, augmentation).

    PYTHONPATH=src python benchmarks/demo_pair_cost.py [--pairs 320] [--rounds 5]

Writes the demo's domain-B training sequences to a temporary folder and draws pairs from the trainer's own
dataset (``PairDataset`` + ``SiameseTrainTransform`` with the demo's augmentation overrides), inline in this
process as the demo's ``workers=0`` does. Prints ms per pair for each round and the minimum (the least disturbed
round on a shared machine). Run it on two commits to compare them.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from lorat.config import TrainConfig
from lorat.data.datasets import load_training_dataset
from lorat.data.sampler import PairDataset
from lorat.data.synthetic import SyntheticConfig, make_synthetic_benchmark
from lorat.data.transforms import SiameseTrainTransform
from lorat.demo import DEMO_MODEL, DemoPlan


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=320)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(2)
    plan = DemoPlan()
    work = Path(tempfile.mkdtemp(prefix="demo_pair_cost_"))
    try:
        root = make_synthetic_benchmark(work, SyntheticConfig(domain="B", seed=1, frames_per_sequence=plan.frames),
                                        num_train=plan.train_b, num_val=0, progress=False)
        transform = SiameseTrainTransform.from_model_config(
            DEMO_MODEL, **TrainConfig(augment=plan.augment).augment_overrides())
        pairs = PairDataset([load_training_dataset("got10k_train", root)], transform,
                            args.pairs * (args.rounds + 1), plan.seed)
        for i in range(32):  # warm-up: imports, allocator, file cache
            pairs[i]
        costs = []
        for r in range(args.rounds):
            start = (r + 1) * args.pairs
            t0 = time.perf_counter()
            for i in range(start, start + args.pairs):
                pairs[i]
            costs.append(1000 * (time.perf_counter() - t0) / args.pairs)
            print(f"round {r + 1}: {costs[-1]:.2f} ms per pair", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"minimum {min(costs):.2f} ms per pair ({args.pairs} pairs per round, {args.rounds} rounds)")


if __name__ == "__main__":
    main()
