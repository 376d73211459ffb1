"""IoU-aware BCE + GIoU loss against the official fixture, and its normalisation rules."""

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from conftest import OFFICIAL as FIXTURES
from lorat.data.transforms import positive_cell_indices
from lorat.train.losses import lorat_loss


def _targets_from_px(gt_px: np.ndarray, search: int = 224, feat: int = 16) -> dict[str, torch.Tensor]:
    pos = [positive_cell_indices(g, search, feat) for g in gt_px]
    return {
        "positive_sample_batch_dim_indices": torch.cat([torch.full((len(p),), i) for i, p in enumerate(pos)]),
        "positive_sample_map_dim_indices": torch.from_numpy(np.concatenate(pos)),
        "boxes": torch.from_numpy((gt_px / search).astype(np.float32)),
        "num_positive_samples": torch.tensor([float(sum(len(p) for p in pos))]),
    }


def test_reproduces_official_fixture_b():
    io = load_file(str(FIXTURES / "lorat_A_io.safetensors"))
    ref = load_file(str(FIXTURES / "lorat_B_loss.safetensors"))
    targets = _targets_from_px(ref["label.gt_boxes_search_region_px"].numpy())
    assert torch.equal(targets["positive_sample_map_dim_indices"], ref["label.positive_sample_map_dim_indices"])
    # fixture B used the outputs of fixture A's (identical train-mode) forward
    total, terms = lorat_loss(io["output.score_map"], io["output.boxes"], targets, return_details=True)
    pairs = {"cls_target_map": "loss.cls_target_map", "iou_per_positive": "loss.iou_per_positive",
             "giou_loss_per_positive": "loss.giou_loss_per_positive", "bce_map": "loss.bce_map_unreduced",
             "bce": "loss.bce", "giou": "loss.giou"}
    for mine, theirs in pairs.items():
        torch.testing.assert_close(terms[mine], ref[theirs], atol=1e-6, rtol=0, msg=mine)
    torch.testing.assert_close(total, ref["loss.total"], atol=1e-6, rtol=0)
    assert total.shape == () and terms["num_positive_samples"].item() == 90.0
    assert targets["num_positive_samples"].item() == 90.0  # the caller's tensor is not modified


def _random_outputs(seed: int, b: int = 2, h: int = 4, w: int = 4):
    g = torch.Generator().manual_seed(seed)
    score = torch.randn(b, h, w, generator=g)
    centre = torch.rand(b, h, w, 2, generator=g) * 0.6 + 0.2
    half = torch.rand(b, h, w, 2, generator=g) * 0.3 + 0.05
    return score, torch.cat([centre - half, centre + half], -1)


def test_iou_target_is_detached_and_weights_apply():
    score, boxes = _random_outputs(0)
    boxes.requires_grad_(True)
    targets = _targets_from_px(np.array([[10.0, 10.0, 40.0, 30.0], [0.0, 20.0, 56.0, 56.0]]), 56, 4)
    total, terms = lorat_loss(score, boxes, targets, giou_weight=0.0)
    total.backward()
    assert torch.count_nonzero(boxes.grad) == 0  # the BCE target carries no gradient to the boxes
    assert terms["giou"] > 0
    total2, terms2 = lorat_loss(score, boxes, targets, bce_weight=2.0, giou_weight=3.0)
    assert total2.item() == pytest.approx(2 * terms2["bce"].item() + 3 * terms2["giou"].item(), rel=1e-6)
    # normaliser: total positive cells of the batch, not a per-sample mean
    n = targets["num_positive_samples"].item()
    _, d = lorat_loss(score, boxes, targets, return_details=True)
    assert d["bce"].item() == pytest.approx(d["bce_map"].sum().item() / n, rel=1e-6)
    assert d["giou"].item() == pytest.approx(d["giou_loss_per_positive"].sum().item() / n, rel=1e-6)
    assert (d["cls_target_map"] > 0).sum() <= n and d["cls_target_map"].max() <= 1


def test_no_positives_clamps_normaliser_and_keeps_graph():
    score, boxes = _random_outputs(1)
    boxes.requires_grad_(True)
    empty = {"positive_sample_batch_dim_indices": torch.zeros(0, dtype=torch.long),
             "positive_sample_map_dim_indices": torch.zeros(0, dtype=torch.long),
             "boxes": torch.zeros(2, 4), "num_positive_samples": torch.tensor([0.0])}
    total, terms = lorat_loss(score, boxes, empty)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(score, torch.zeros_like(score), reduction="sum")
    assert terms["num_positive_samples"].item() == 1.0
    torch.testing.assert_close(terms["bce"], expected)
    assert terms["giou"].item() == 0.0
    total.backward()
    assert boxes.grad is not None and torch.count_nonzero(boxes.grad) == 0


def _ddp_worker(rank: int, tmp: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=2)
    try:
        score, boxes = _random_outputs(10 + rank)
        gt = np.array([[4.0, 4.0, 30.0, 30.0], [10.0, 2.0, 20.0, 50.0]]) if rank == 0 else \
            np.array([[0.0, 0.0, 56.0, 56.0], [30.0, 30.0, 55.0, 55.0]])
        targets = _targets_from_px(gt, 56, 4)
        _, terms = lorat_loss(score, boxes, targets, return_details=True)
        torch.save((targets["num_positive_samples"].item(), terms["num_positive_samples"].item(),
                    terms["bce"].item(), terms["bce_map"].sum().item()), f"{tmp}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_num_positives_is_averaged_across_ranks(tmp_path):
    mp.spawn(_ddp_worker, args=(str(tmp_path),), nprocs=2, join=True)
    (p0, n0, bce0, sum0), (p1, n1, bce1, sum1) = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True)
                                                  for r in (0, 1))
    assert p0 != p1
    assert n0 == n1 == pytest.approx((p0 + p1) / 2)
    assert bce0 == pytest.approx(sum0 / n0, rel=1e-6) and bce1 == pytest.approx(sum1 / n1, rel=1e-6)
