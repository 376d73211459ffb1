"""OSTrack training loss against the official fixtures (set B) plus behaviour of its pieces."""
from __future__ import annotations

import pytest
import torch

from lorat.train.ostrack_loss import (
    OSTrackLossConfig,
    focal_loss,
    gaussian_radius,
    generalized_box_iou,
    generate_heatmap,
    ostrack_loss,
)
from ostrack_fixtures import assert_close, assert_grad, assert_loss, build_student, fixture_dirs, ids, manifest, tensors

DIRS = fixture_dirs()


def _search_size(d) -> int:
    return manifest(d)["geometry"]["student"]["search_px"]


@pytest.mark.parametrize("d", DIRS, ids=ids())
def test_heatmap_exact(d):
    B = tensors(d, "loss")
    gauss = generate_heatmap(B["label.search_anno"], _search_size(d), 16)
    assert torch.equal(gauss, B["label.gaussian_map"])
    assert (gauss == 1).sum() == B["loss.focal_num_pos"]


@pytest.mark.parametrize("d", DIRS, ids=ids())
def test_loss_terms_and_gradients(d):
    A, B = tensors(d, "io"), tensors(d, "loss")
    model = build_student(d).train()
    out = model(A["input.template"], A["input.search"])
    total, terms = ostrack_loss(out, B["label.search_anno"], _search_size(d))
    assert torch.equal(terms["gt_xyxy"], B["label.gt_boxes_xyxy"])
    assert_close(terms["pred_xyxy"], B["pred.boxes_xyxy"], 2e-5, "pred xyxy")
    assert_close(terms["giou_per_sample"], B["loss.giou_per_sample"], 1e-5, "giou per sample")
    assert_close(terms["iou_per_sample"], B["loss.iou_per_sample"], 1e-5, "iou per sample")
    for k in ("focal", "giou", "l1"):
        assert_loss(terms[k], B[f"loss.{k}"], k)
    assert_loss(terms["iou"], B["loss.mean_iou"], "mean iou")
    assert_loss(total, B["loss.total"], "total")
    _, (pos, neg, num) = focal_loss(out["score_map"], terms["gaussian_map"], return_parts=True)
    assert_loss(pos, B["loss.focal_pos_sum"], "focal pos")
    assert_loss(neg, B["loss.focal_neg_sum"], "focal neg")
    assert float(num) == float(B["loss.focal_num_pos"])
    total.backward()
    params = dict(model.named_parameters())
    grads = [k for k in B if k.startswith("grad.")]
    assert grads
    for k in grads:
        assert_grad(params[k[5:]].grad, B[k], k)


def test_heatmap_centre_rounds_half_to_even():
    # centre at 2.5 cells -> round half to even = 2 (floor(x + 0.5) would give 3)
    anno = torch.tensor([[2.0 / 16, 2.0 / 16, 1.0 / 16, 1.0 / 16]])  # centre (2.5, 2.5) cells
    g = generate_heatmap(anno, 256, 16)[0, 0]
    assert g[2, 2] == 1 and (g == 1).sum() == 1


def test_heatmap_truncates_at_border_and_radius_nonnegative():
    anno = torch.tensor([[-0.2, 0.6, 0.4, 0.5]])
    g = generate_heatmap(anno, 256, 16)
    assert g.shape == (1, 1, 16, 16) and g.max() == 1 and g.min() == 0
    r = gaussian_radius(torch.tensor([[3.0, 5.0], [0.0, 0.0]]))
    assert r[0] > 0 and r[1] == 0


def test_focal_loss_without_positives_is_negative_sum():
    pred = torch.full((1, 1, 4, 4), 0.3)
    target = torch.zeros(1, 1, 4, 4)
    loss, (pos, neg, num) = focal_loss(pred, target, return_parts=True)
    assert num == 0 and torch.allclose(loss, -neg)
    assert loss > 0


def test_giou_matches_definition():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 3.0, 3.0]])
    giou, iou = generalized_box_iou(a, b)
    assert torch.allclose(iou, torch.tensor([1 / 7, 0.0]))
    assert torch.allclose(giou, torch.tensor([1 / 7 - (9 - 7) / 9, 0.0 - (9 - 2) / 9]))


def test_weights_are_configurable():
    out = {"pred_boxes": torch.tensor([[[0.5, 0.5, 0.2, 0.2]]]), "score_map": torch.full((1, 1, 16, 16), 0.1)}
    anno = torch.tensor([[0.35, 0.4, 0.25, 0.2]])
    total, t = ostrack_loss(out, anno, 256)
    assert torch.allclose(total, 2 * t["giou"] + 5 * t["l1"] + t["focal"])
    total2, _ = ostrack_loss(out, anno, 256, OSTrackLossConfig(giou_weight=0, l1_weight=0))
    assert torch.allclose(total2, t["focal"])
