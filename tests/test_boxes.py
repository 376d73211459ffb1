"""Box formats, rasterisation, validity, clipping and mmdet-style IoU / GIoU."""
import numpy as np
import pytest
import torch

from lorat import boxes as bx


def test_formats_round_trip_numpy_and_torch():
    xywh = np.array([[10.0, 20.0, 30.0, 5.0], [0.5, 0.25, 1.0, 2.0]])
    xyxy = bx.xywh_to_xyxy(xywh)
    np.testing.assert_array_equal(xyxy[0], [10, 20, 40, 25])  # x2 = x + w, no -1
    np.testing.assert_array_equal(bx.xyxy_to_xywh(xyxy), xywh)
    np.testing.assert_allclose(bx.cxcywh_to_xyxy(bx.xyxy_to_cxcywh(xyxy)), xyxy)
    np.testing.assert_array_equal(bx.xyxy_to_cxcywh(xyxy)[0], [25, 22.5, 30, 5])
    t = torch.tensor(xyxy, dtype=torch.float32)
    assert isinstance(bx.xyxy_to_cxcywh(t), torch.Tensor)
    torch.testing.assert_close(bx.cxcywh_to_xyxy(bx.xyxy_to_cxcywh(t)), t)
    np.testing.assert_array_equal(bx.box_area(xyxy), [150, 2])
    np.testing.assert_array_equal(bx.box_center(xyxy)[0], [25, 22.5])
    # integer input is promoted to float instead of truncating centres
    np.testing.assert_array_equal(bx.xyxy_to_cxcywh(np.array([0, 0, 3, 3]))[:2], [1.5, 1.5])


def test_rasterize_floor_start_and_tolerant_ceil_end():
    b = np.array([[0.5, 1.0, 2.0, 3.00005],  # ends within 1e-4 of a boundary do not claim the next pixel
                  [0.0, 0.0, 2.0002, 3.5],  # ... but beyond the tolerance they do
                  [-0.5, 4.99, 0.0, 5.0]])
    np.testing.assert_array_equal(bx.rasterize(b), [[0, 1, 2, 3], [0, 0, 3, 4], [-1, 4, 0, 5]])
    assert bx.rasterize(b).dtype == np.int64


def test_validity_clip_and_intersection():
    b = np.array([[0, 0, 1, 1], [1, 0, 1, 2], [0, 0, np.nan, 1], [2, 2, 1, 3], [-5, -5, -1, -1]], float)
    np.testing.assert_array_equal(bx.is_valid(b), [True, False, False, False, True])
    clipped = bx.clip_to_image(np.array([-3.0, 5.0, 120.0, 90.0]), 100, 80)
    np.testing.assert_array_equal(clipped, [0, 5, 100, 80])
    assert bx.intersects_image(np.array([90.0, 70.0, 130.0, 99.0]), 100, 80)
    assert not bx.intersects_image(np.array([100.0, 10.0, 130.0, 20.0]), 100, 80)  # touching only
    assert not bx.intersects_image(np.array([-5.0, -5.0, -1.0, 20.0]), 100, 80)
    assert bool(bx.intersects_image(torch.tensor([10.0, 10.0, 20.0, 20.0]), 100, 80))


def test_hflip_scale_translate_and_inverse():
    b = np.array([10.0, 5.0, 30.0, 25.0])
    np.testing.assert_array_equal(bx.hflip(b, 100), [70, 5, 90, 25])
    np.testing.assert_array_equal(bx.hflip(bx.hflip(b, 100), 100), b)
    s, t = np.array([2.0, 0.5]), np.array([3.0, -1.0])
    mapped = bx.scale_and_translate(b, s, t)
    np.testing.assert_array_equal(mapped, [23, 1.5, 63, 11.5])
    np.testing.assert_allclose(bx.scale_and_translate(mapped, *bx.invert_scale_and_translation(s, t)), b)


def test_enlarge_to_min_size_keeps_centre():
    b = np.array([[10.0, 10.0, 14.0, 40.0], [0.0, 0.0, 50.0, 60.0]])
    out = bx.enlarge_to_min_size(b, 10)
    np.testing.assert_allclose(out[0], [7, 10, 17, 40])
    np.testing.assert_allclose(out[1], b[1])
    np.testing.assert_allclose(bx.box_center(out), bx.box_center(b))
    np.testing.assert_allclose(bx.enlarge_to_min_size(b[0], (2, 50)), [10, 0, 14, 50])


def test_bbox_overlaps_mmdet_examples_and_brute_force():
    b1 = torch.tensor([[0, 0, 10, 10], [10, 10, 20, 20], [32, 32, 38, 42]], dtype=torch.float32)
    b2 = torch.tensor([[0, 0, 10, 20], [0, 10, 10, 19], [10, 10, 20, 20]], dtype=torch.float32)
    expected = torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(bx.box_iou(b1, b2), expected)
    torch.testing.assert_close(bx.elementwise_iou(b1, b2), torch.tensor([0.5, 0.0, 0.0]))

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(20, 2, generator=g, dtype=torch.float64)
    a = torch.cat([xy, xy + torch.rand(20, 2, generator=g, dtype=torch.float64)], 1)
    xy = torch.rand(20, 2, generator=g, dtype=torch.float64)
    b = torch.cat([xy, xy + torch.rand(20, 2, generator=g, dtype=torch.float64)], 1)
    iou, giou = bx.elementwise_iou(a, b), bx.elementwise_giou(a, b)
    for k in range(20):
        (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a[k].tolist(), b[k].tolist()
        inter = max(0, min(ax1, bx1) - max(ax0, bx0)) * max(0, min(ay1, by1) - max(ay0, by0))
        union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
        hull = (max(ax1, bx1) - min(ax0, bx0)) * (max(ay1, by1) - min(ay0, by0))
        assert iou[k].item() == pytest.approx(inter / union, abs=1e-12)
        assert giou[k].item() == pytest.approx(inter / union - (hull - union) / hull, abs=1e-12)
    # pairwise diagonal equals aligned; GIoU is negative for distant boxes
    torch.testing.assert_close(torch.diagonal(bx.box_iou(a, b)), iou)
    far = bx.elementwise_giou(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([[3.0, 0, 4, 1]]))
    assert far.item() == pytest.approx(-0.5)


def test_bbox_overlaps_eps_clamps_degenerate_union():
    z = torch.zeros(1, 4)
    assert bx.elementwise_iou(z, z).item() == 0.0  # 0 / max(0, eps) instead of NaN
    assert torch.isfinite(bx.elementwise_giou(z, z)).all()
    assert bx.box_iou(torch.zeros(0, 4), torch.ones(3, 4)).shape == (0, 3)
    with pytest.raises(ValueError):
        bx.bbox_overlaps(z, z, mode="diou")


def test_iou_numpy():
    a = np.array([[0.0, 0, 10, 10], [0, 0, 0, 0]])
    b = np.array([[5.0, 0, 15, 10], [0, 0, 0, 0]])
    np.testing.assert_allclose(bx.iou_numpy(a, b), [1 / 3, 0.0])
